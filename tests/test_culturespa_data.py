"""CultureSPA data pipeline: question generation and its filters, answering, CRQPC, the pipeline and the CLI.

Question generation runs on a scripted backend (a test double of the backend interface that answers each
request with the next text written for its topic) so that every filter sees known inputs; answering runs on
the tiny random Llama of the fixtures; the similarity filters use the real offline all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import math
import re

import datasets
import numpy as np
import pytest

from culture_align.backends import GenerationParams
from culture_align.backends.base import GenerationBackend
from culture_align.backends.option_scoring import OptionScorer
from culture_align.backends.transformers import TransformersBackend
from culture_align.cli import main
from culture_align.cultures import get_culture
from culture_align.embeddings import SentenceEmbedder
from culture_align.prompts.culturespa import (
    QUESTION_SYSTEM,
    build_self_alignment_conversation,
    cross_culture_setting,
)
from culture_align.prompts.wvs import SETTINGS, build_conversation
from culture_align.recipes.culturespa import (
    ANSWER_FEATURES,
    TRAIN_FEATURES,
    CultureSPAPipeline,
    CultureSPAPipelineConfig,
    QuestionRejected,
    SurveyAnswerer,
    answer_questions,
    collect_pairs,
    culture_similarity,
    generate_questions,
    generated_question_id,
    load_culture_similarity,
    most_and_least_similar,
    parse_generated_question,
    seed_questions_by_topic,
    survey_question,
)
from culture_align.recipes.culturespa.schemas import QUESTION_FEATURES
from culture_align.wvs.questions import SurveyQuestion


class ScriptedBackend(GenerationBackend):
    """Answers each request with the next text of its topic's script (then with an unparsable text)."""

    def __init__(self, scripts: dict[str, list], model_id: str = "scripted") -> None:
        self.model_id = model_id
        self.scripts = {name: [json.dumps(t) if isinstance(t, dict) else t for t in texts]
                        for name, texts in scripts.items()}
        self.used = {name: 0 for name in scripts}
        self.calls: list[list] = []

    def _generate(self, conversations, params):
        self.calls.append(conversations)
        out = []
        for conv in conversations:
            name = re.search(r'survey section "(.+?)"', conv[-1]["content"]).group(1)
            i = self.used[name]
            self.used[name] += 1
            script = self.scripts[name]
            out.append(script[i] if i < len(script) else "no more questions")
        return out


def q(text, options):
    return {"question": text, "options": options}


RELIGION_SEEDS = [
    SurveyQuestion("Q164", "How important is God in your life?", tuple(str(i) for i in range(1, 11)),
                   tuple(range(1, 11))),
    SurveyQuestion("Q171", "How often do you attend religious services?",
                   ("More than once a week", "Once a week", "Once a month", "Never"), (1, 2, 3, 4)),
    SurveyQuestion("Q289", "Do you belong to a religion or religious denomination?", ("Yes", "No"), (1, 2),
                   topic="religion"),  # a demographics id: never a seed
    SurveyQuestion("Q173", "Do you belong to a religion or religious denomination?", ("Yes", "No"), (1, 2)),
]
SOCIAL_SEEDS = [
    SurveyQuestion("Q1", "How important is your family in your life?",
                   ("Very important", "Rather important", "Not very important", "Not at all important"),
                   (1, 2, 3, 4)),
    SurveyQuestion("Q27", "Making my parents proud is one of my main goals in life.",
                   ("Agree strongly", "Agree", "Disagree", "Strongly disagree"), (1, 2, 3, 4)),
]
FREQ = ["Every day", "Every week", "Rarely", "Never"]
VOTE = {"question": "Should religious leaders influence how people vote?", "options": ["Yes", "No"]}

RELIGION_SCRIPT = [
    q("How often do you pray outside of religious services?", FREQ),                 # kept
    q("how often do you PRAY outside of religious services", FREQ),                   # exact_duplicate
    q("How often do you pray, apart from religious services?", FREQ),                 # near_duplicate (0.96)
    q("How important is God in your life?", ["Very", "Not"]),                         # contaminated (exact copy)
    q("How important is God in your life these days?", ["Very", "Not"]),              # contaminated (0.96)
    "Sure! Here is a new question about religion.",                                   # invalid_json
    q("Should religious leaders influence how people vote?", ["Yes"]),                # invalid_schema
    q("How religious are you?", ["1", "2", "3", "4", "5"]),                           # numeric_options_without_scale
    q("On a scale from 1 (not at all) to 5 (completely), how much do you trust religious leaders?",
      ["1", "2", "3", "4", "5"]),                                                     # kept, numeric scale
    q("Which statement is closest to your view on religion and science?",
      ["1. Religion is always right", "2) Science is always right"]),                 # kept, numbering stripped
]

SOCIAL_SCRIPT = [
    q("How important are friends in your life?", ["Very important", "Not important"]),
    q("Should children learn to be independent at home?", ["Yes", "No"]),
    q("How often do you help your neighbours?", FREQ),
    q("Is it acceptable for adult children to live far from their parents?", ["Yes", "No", "It depends"]),
    q("Do you think men make better business leaders than women do?", ["Agree", "Neither", "Disagree"]),
    q("How much time do you spend with your extended family?", ["A lot", "Some", "Little", "None"]),
]


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("text, reason", [
    ("no json here", "invalid_json"),
    ('{"question": "Why?", "options": ["Yes"]}', "invalid_schema"),
    ('{"question": "Why?", "options": ["Yes", "  "]}', "invalid_schema"),
    ('{"question": "", "options": ["Yes", "No"]}', "invalid_schema"),
    (json.dumps(q("Pick one", [str(i) for i in range(12)])), "invalid_schema"),
    ('{"question": "Agree?", "options": ["Yes", "yes"]}', "duplicate_options"),
    ('{"question": "How happy are you?", "options": ["1", "2", "3"]}', "numeric_options_without_scale"),
    ('{"question": "From 1 (low) to 3 (high)?", "options": ["1", "3", "5"]}', "numeric_options_not_a_scale"),
])
def test_invalid_questions_are_rejected_with_their_reason(text, reason):
    with pytest.raises(QuestionRejected) as err:
        parse_generated_question(text)
    assert err.value.reason == reason


def test_valid_questions_are_normalised():
    text, options, codes = parse_generated_question(
        'Here you go: ```json\n{"question": "  Do you   agree? ", "options": ["1. Agree", "2) Disagree", "(3) Unsure"]}```')
    assert (text, options, codes) == ("Do you agree?", ["Agree", "Disagree", "Unsure"], [1, 2, 3])
    for raw, clean in (("1. How religious are you?", "How religious are you?"),
                       ("Question 6: How religious are you?", "How religious are you?"),
                       ("1.5 hours of prayer a day: too much?", "1.5 hours of prayer a day: too much?")):
        assert parse_generated_question(json.dumps(q(raw, ["Yes", "No"])))[0] == clean
    _, options, codes = parse_generated_question(json.dumps(q("From 0 (never) to 10 (always): how often?",
                                                               [str(i) for i in range(11)])))
    assert codes == list(range(11)) and options == [str(i) for i in range(11)]
    _, options, _ = parse_generated_question(json.dumps(q("How many hours?", ["0", "1-2 hours", "3 or more"])))
    assert options == ["0", "1-2 hours", "3 or more"]  # a range is a label, not numbering
    sq = SurveyQuestion("gen-x", "From 0 (never) to 10 (always): how often?", tuple(options), (1, 2, 3))
    assert sq.num_options == 3


def test_ids_are_namespaced_and_stable():
    a = generated_question_id("religion", "How often do you pray?")
    assert re.fullmatch(r"gen-religion-[0-9a-f]{12}", a)
    assert a == generated_question_id("religion", "how often do you PRAY")  # same exact-duplicate key
    assert a != generated_question_id("ethics_norms", "How often do you pray?")
    assert not a.startswith("Q")


def test_seeds_by_topic_skip_non_evaluation_items():
    seeds = seed_questions_by_topic(RELIGION_SEEDS + SOCIAL_SEEDS)
    assert list(seeds) == ["social_values", "religion"]
    assert [s.qid for s in seeds["religion"]] == ["Q164", "Q171", "Q173"]
    with pytest.raises(ValueError, match="no seed item"):
        seed_questions_by_topic(SOCIAL_SEEDS, topics=["religion"])
    with pytest.raises(ValueError, match="unknown topic"):
        seed_questions_by_topic(SOCIAL_SEEDS, topics=["cooking"])


# ---------------------------------------------------------------------------------------- generation stage


def test_every_filter_is_counted_and_rejections_keep_their_reason(embedder):
    backend = ScriptedBackend({"Religious values": RELIGION_SCRIPT})
    seeds = seed_questions_by_topic(RELIGION_SEEDS, topics=["religion"])
    result = generate_questions(seeds, backend, questions_per_topic=10, requests_per_round=10,
                                max_requests_per_topic=10, embedder=embedder, show_progress=False)
    assert result.stats["requests"] == 10 and result.stats["rounds"] == 1 and len(backend.calls) == 1
    assert result.stats["rejections_by_reason"] == {
        "contaminated": 2, "exact_duplicate": 1, "invalid_json": 1, "invalid_schema": 1, "near_duplicate": 1,
        "numeric_options_without_scale": 1}
    assert result.stats["short_topics"] == {"religion": 3}
    kept = result.dataset
    assert kept.features == QUESTION_FEATURES
    assert kept["text"] == [RELIGION_SCRIPT[0]["question"], RELIGION_SCRIPT[8]["question"],
                            RELIGION_SCRIPT[9]["question"]]
    assert kept["codes"][1] == [1, 2, 3, 4, 5]
    assert kept["options"][2] == ["Religion is always right", "Science is always right"]
    assert all(i.startswith("gen-religion-") for i in kept["id"]) and len(set(kept["id"])) == 3
    rej = {r["reason"]: r for r in result.rejections.to_list()}
    near = json.loads(rej["near_duplicate"]["detail"])
    assert near["duplicate_of"] == kept["id"][0] and near["similarity"] >= 0.9
    assert json.loads(rej["exact_duplicate"]["detail"])["duplicate_of"] == kept["id"][0]
    contaminated = [json.loads(r["detail"]) for r in result.rejections.to_list() if r["reason"] == "contaminated"]
    assert {c["evaluation_item"] for c in contaminated} == {"Q164"}
    assert sorted(c["similarity"] for c in contaminated)[0] >= 0.85
    assert rej["invalid_json"]["text"] == "Sure! Here is a new question about religion."
    assert all(r["stage"] == "questions" and r["topic"] == "religion" for r in result.rejections.to_list())


def test_near_duplicates_within_a_round_and_across_topics(embedder):
    same = q("How often do you pray outside of religious services?", FREQ)
    close = q("How often do you pray, apart from religious services?", FREQ)
    backend = ScriptedBackend({"Religious values": [same], "Social values, attitudes and stereotypes": [close]})
    seeds = seed_questions_by_topic(RELIGION_SEEDS + SOCIAL_SEEDS)
    result = generate_questions(seeds, backend, questions_per_topic=1, requests_per_round=1,
                                max_requests_per_topic=1, embedder=embedder, show_progress=False)
    # social_values comes first in topic order, so its question is kept and religion's is the near duplicate
    assert result.dataset["topic"] == ["social_values"]
    assert result.rejections["reason"] == ["near_duplicate"]


def test_rounds_batch_all_topics_and_show_generated_examples():
    backend = ScriptedBackend({"Religious values": RELIGION_SCRIPT[8:] + [RELIGION_SCRIPT[0], VOTE],
                               "Social values, attitudes and stereotypes": SOCIAL_SCRIPT})
    seeds = seed_questions_by_topic(RELIGION_SEEDS + SOCIAL_SEEDS)
    result = generate_questions(seeds, backend, questions_per_topic=4, requests_per_round=2,
                                near_duplicate_threshold=None, contamination_threshold=None, show_progress=False)
    assert result.stats["per_topic"]["social_values"]["kept"] == 4
    assert result.stats["per_topic"]["religion"]["kept"] == 4
    assert [len(c) for c in backend.calls] == [4, 4]  # both topics in one call per round
    first = backend.calls[0][0]
    assert first[0]["content"] == QUESTION_SYSTEM
    assert first[-1]["content"].count("Question ") == 2  # seeds fill in: only 2 social seeds exist
    rows = result.dataset.to_list()
    for row in rows:
        provenance = row["provenance"]
        gen = [i for i in row["example_ids"] if i.startswith("gen-")]
        if provenance["round"] == 0:
            assert gen == []
        else:  # 3 seeds (as available) + 2 questions generated in the first round
            assert len(gen) == 2 and set(gen) <= {r["id"] for r in rows if r["topic"] == row["topic"]}
            assert len(row["example_ids"]) == 2 + min(3, len(seeds[row["topic"]]))
            assert provenance["params"]["seed"] == 1
    assert "How important is your family in your life?" in backend.calls[1][0][-1]["content"]


# ------------------------------------------------------------------------------------------------ answering


def _questions_table():
    rows = [
        {"id": "gen-religion-000000000001", "topic": "religion", "text": "How often do you pray?",
         "options": FREQ, "codes": [1, 2, 3, 4], "example_ids": [], "provenance": None},
        {"id": "gen-religion-000000000002", "topic": "religion",
         "text": "From 0 (never) to 10 (always): is it right to fast?", "options": [str(i) for i in range(11)],
         "codes": list(range(11)), "example_ids": [], "provenance": None},
        {"id": "gen-social_values-000000000003", "topic": "social_values", "text": "Are friends important?",
         "options": ["Yes", "No"], "codes": [1, 2], "example_ids": [], "provenance": None},
    ]
    return datasets.Dataset.from_list(rows, features=QUESTION_FEATURES)


def test_logprob_answers_are_the_option_scorer_distributions(tiny_model_and_tokenizer, tmp_path):
    model, tok = tiny_model_and_tokenizer
    questions = _questions_table()
    answerer = SurveyAnswerer(model, tok, batch_size=2, cache=tmp_path / "answers.jsonl")
    result = answer_questions(questions, ["USA", "CHN"], answerer, show_progress=False)
    answers = result.dataset
    assert answers.features == ANSWER_FEATURES and len(answers) == 6
    scorer = OptionScorer(model, tok)
    items = [survey_question(r) for r in questions.to_list()]
    unaware_convs = [build_conversation(SETTINGS["culture-unaware"], s) for s in items]
    expected_unaware = scorer.score(unaware_convs, [[str(c) for c in s.codes] for s in items])
    for row in answers.to_list():
        i = [s.qid for s in items].index(row["question_id"])
        aware_conv = build_conversation(SETTINGS["culture-aware"], items[i], get_culture(row["culture"]))
        expected_aware = scorer.score([aware_conv], [[str(c) for c in items[i].codes]])[0]
        for probs, expected in ((row["unaware_probs"], expected_unaware[i]), (row["aware_probs"], expected_aware)):
            assert math.isclose(sum(probs), 1.0, abs_tol=1e-9)
            np.testing.assert_allclose(np.log(probs), expected, atol=1e-5)
        assert row["unaware_answer"] == items[i].codes[int(np.argmax(row["unaware_probs"]))]
        assert row["aware_answer"] == items[i].codes[int(np.argmax(row["aware_probs"]))]
        p, qq = np.array(row["unaware_probs"]), np.array(row["aware_probs"])
        m = (p + qq) / 2
        jsd = 0.5 * (np.sum(p * np.log(p / m)) + np.sum(qq * np.log(qq / m)))
        assert math.isclose(row["js_distance"], math.sqrt(jsd), rel_tol=1e-6, abs_tol=1e-9)
        assert row["mode"] == "logprob" and row["unaware_invalid"] == 0
    # the unaware prompt is scored once for both cultures; a second pass comes entirely from the cache
    assert answerer.cache.misses == 3 + 6
    again = SurveyAnswerer(model, tok, cache=tmp_path / "answers.jsonl")
    answer_questions(questions, ["USA", "CHN"], again, show_progress=False)
    assert (again.cache.hits, again.cache.misses) == (9, 0)
    # A backend answers alike, under the same cache keys (a local backend's prompt text is the rendered prompt).
    backend = TransformersBackend.from_model(model, tok, batch_size=2)
    through = SurveyAnswerer(backend, cache=tmp_path / "answers.jsonl")
    assert through.model_id == answerer.model_id
    answer_questions(questions, ["USA", "CHN"], through, show_progress=False)
    assert (through.cache.hits, through.cache.misses) == (9, 0)
    fresh = answer_questions(questions, ["USA", "CHN"], SurveyAnswerer(backend), show_progress=False).dataset
    for got, want in zip(fresh["aware_probs"], answers["aware_probs"]):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_sampling_answers_parse_strictly(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    sampling = GenerationParams(n=3, temperature=0.6, top_p=0.9, max_new_tokens=4, seed=0)
    answerer = SurveyAnswerer(model, tok, mode="sampling", sampling=sampling)
    result = answer_questions(_questions_table(), ["DEU"], answerer, show_progress=False)
    for row in result.dataset.to_list():
        for probs, bad in ((row["unaware_probs"], row["unaware_invalid"]), (row["aware_probs"], row["aware_invalid"])):
            assert 0 <= bad <= 3
            if bad == 3:
                assert probs is None
            else:
                assert math.isclose(sum(probs), 1.0) and all(round(p * (3 - bad)) == p * (3 - bad) for p in probs)
    assert result.stats["per_culture"]["DEU"]["unparsable_samples"] == sum(result.dataset["aware_invalid"])


def test_culture_similarity_and_cross_culture_prompt(tiny_wvs, tmp_path):
    table = culture_similarity(tiny_wvs)
    shared = [qid for qid in tiny_wvs.questions if tiny_wvs.distribution("USA", qid) is not None
              and tiny_wvs.distribution("CHN", qid) is not None]
    diff = sum((tiny_wvs.modal_code("USA", x) - tiny_wvs.modal_code("CHN", x)) ** 2 for x in shared)
    worst = sum((tiny_wvs.questions[x].num_options - 1) ** 2 for x in shared)
    assert math.isclose(table["USA"]["CHN"], 100 * (1 - math.sqrt(diff) / math.sqrt(worst)))
    assert table["USA"]["CHN"] == table["CHN"]["USA"] and "USA" not in table["USA"]
    most, least = most_and_least_similar({"USA": {"CAN": 80, "GBR": 70, "CHN": 50, "NGA": 40}}, "USA", k=3)
    assert [c.iso3 for c in most] == ["CAN", "GBR"] and [c.iso3 for c in least] == ["NGA", "CHN"]
    template = cross_culture_setting(most, least)
    system = build_conversation(template, tiny_wvs.questions["Q1"], get_culture("USA"))[0]["content"]
    assert "an American cultural background" in system
    assert "Canada and United Kingdom" in system and "Nigeria and China" in system
    path = tmp_path / "sim.json"
    path.write_text(json.dumps({"usa": {"CAN": 71.3}}))
    assert load_culture_similarity(path) == {"USA": {"CAN": 71.3}}
    path.write_text(json.dumps({"USA": {"XYZ": 1}}))
    with pytest.raises(ValueError, match="sim.json.*XYZ"):
        load_culture_similarity(path)


def test_answer_variants(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    answerer = SurveyAnswerer(model, tok)
    cross = answer_questions(_questions_table(), ["USA"], answerer, variant="cross_culture",
                             similarity=culture_similarity(tiny_wvs), show_progress=False)
    assert cross.stats["per_culture"]["USA"]["most_similar"] + cross.stats["per_culture"]["USA"]["least_similar"] \
        == sorted(["CHN", "DEU"], key=lambda c: -culture_similarity(tiny_wvs)["USA"][c])
    plain = answer_questions(_questions_table(), ["USA"], answerer, show_progress=False)
    assert cross.dataset["unaware_probs"] == plain.dataset["unaware_probs"]
    assert cross.dataset["aware_probs"] != plain.dataset["aware_probs"]
    selfal = answer_questions(_questions_table(), ["USA"], answerer, variant="self_alignment", wvs=tiny_wvs,
                              num_self_alignment_examples=2, show_progress=False)
    examples = selfal.stats["per_culture"]["USA"]["examples"]
    assert len(examples) == 2 and all(code == tiny_wvs.modal_code("USA", qid) for qid, code in examples)
    conv = build_self_alignment_conversation(survey_question(_questions_table()[0]), get_culture("USA"),
                                             [(tiny_wvs.questions[qid], code) for qid, code in examples])
    assert [m["role"] for m in conv] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert conv[2]["content"] == str(examples[0][1])
    with pytest.raises(ValueError, match="similarity"):
        answer_questions(_questions_table(), ["USA"], answerer, variant="cross_culture", show_progress=False)


# ---------------------------------------------------------------------------------------------------- CRQPC


def _answers(rows):
    base = {"topic": "religion", "codes": [1, 2, 3, 4], "mode": "logprob", "variant": "plain",
            "unaware_invalid": 0, "aware_invalid": 0, "changed": False}
    return datasets.Dataset.from_list([{**base, **r} for r in rows], features=ANSWER_FEATURES)


def test_crqpc_argmax_and_js_criteria():
    qid = "gen-religion-000000000001"
    u = [0.7, 0.1, 0.1, 0.1]
    answers = _answers([
        {"id": "a", "question_id": qid, "culture": "USA", "unaware_probs": u, "aware_probs": [0.1, 0.7, 0.1, 0.1],
         "unaware_answer": 1, "aware_answer": 2, "js_distance": 0.5},
        {"id": "b", "question_id": qid, "culture": "CHN", "unaware_probs": u, "aware_probs": [0.45, 0.4, 0.1, 0.05],
         "unaware_answer": 1, "aware_answer": 1, "js_distance": 0.2},
        {"id": "c", "question_id": qid, "culture": "DEU", "unaware_probs": u, "aware_probs": None,
         "unaware_answer": 1, "aware_answer": None, "js_distance": None},
    ])
    argmax = collect_pairs(answers, _questions_table(), cultures=["USA", "CHN", "DEU", "NGA"])
    assert argmax.answers["changed"] == [True, False, False]
    assert argmax.train["culture"] == ["USA"] and argmax.train["answer"] == [2]
    assert argmax.stats["per_culture"]["USA"]["changed_share"] == 1.0
    assert argmax.stats["per_culture"]["CHN"]["changed_share"] == 0.0
    assert argmax.stats["per_culture"]["DEU"] == {"pairs": 1, "valid_pairs": 0, "changed": 0, "changed_share": None}
    assert argmax.stats["per_culture"]["NGA"]["pairs"] == 0
    js = collect_pairs(answers, _questions_table(), criterion="js", js_threshold=0.15)
    assert js.answers["changed"] == [True, True, False]
    assert js.train["answer"] == [2, 1] and js.stats["changed_share"] == 1.0
    assert collect_pairs(answers, _questions_table(), criterion="js", js_threshold=0.6).stats["changed"] == 0
    with pytest.raises(ValueError, match="criterion"):
        collect_pairs(answers, _questions_table(), criterion="kl")


def test_training_record_format():
    answers = _answers([{"id": "a", "question_id": "gen-religion-000000000002", "culture": "NGA",
                         "codes": list(range(11)), "unaware_probs": [0.5] + [0.05] * 10,
                         "aware_probs": [0.05] * 10 + [0.5], "unaware_answer": 0, "aware_answer": 10,
                         "js_distance": 0.4}])
    train = collect_pairs(answers, _questions_table()).train
    assert train.features == TRAIN_FEATURES
    row = train[0]
    item = survey_question(_questions_table()[1])
    expected = build_conversation(SETTINGS["culture-aware"], item, get_culture("NGA"))
    assert row["messages"][:2] == expected
    assert row["messages"][2] == {"role": "assistant", "content": "10"}
    assert "a Nigerian cultural background" in row["messages"][0]["content"]
    assert "Answer with a number from 0 to 10." in row["messages"][1]["content"]
    assert (row["task"], row["question_id"], row["unaware_answer"]) == ("survey", item.qid, 0)
    assert row["aware_probs"][-1] == 0.5 and row["unaware_probs"][0] == 0.5


# -------------------------------------------------------------------------------------------------- pipeline


def test_pipeline_end_to_end_and_resume(tiny_model_and_tokenizer, tiny_wvs, embedder, tmp_path):
    model, tok = tiny_model_and_tokenizer
    config = CultureSPAPipelineConfig(topics=["social_values"], questions_per_topic=4, requests_per_round=2,
                                      batch_size=4, show_progress=False)
    script = {"Social values, attitudes and stereotypes": SOCIAL_SCRIPT}
    backend = ScriptedBackend(script)
    pipeline = CultureSPAPipeline(model, ["USA", "CHN"], config, tokenizer=tok, question_backend=backend,
                                  wvs=tiny_wvs, embedder=embedder)
    corpus = pipeline.run(tmp_path / "run")
    assert set(corpus) == {"questions", "answers", "train", "rejections"}
    assert len(corpus["questions"]) == 4 and len(corpus["answers"]) == 8
    assert sum(corpus["answers"]["changed"]) == len(corpus["train"])
    assert all(math.isclose(sum(p), 1.0) for p in corpus["answers"]["aware_probs"])
    assert set(corpus["train"]["task"]) <= {"survey"}
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["counts"]["questions"] == 4 and set(stats["changed_share"]) == {"USA", "CHN"}
    assert stats["stages"]["questions"]["backend_requests"] == 4
    assert stats["stages"]["answers"]["answer_cache"] == {"hits": 0, "misses": 4 + 8}
    saved = datasets.load_from_disk(str(tmp_path / "run" / "dataset"))
    assert saved["answers"].to_list() == corpus["answers"].to_list()

    rerun_backend = ScriptedBackend(script)
    again = CultureSPAPipeline(model, ["USA", "CHN"], config, tokenizer=tok, question_backend=rerun_backend,
                               wvs=tiny_wvs, embedder=embedder).run(tmp_path / "run")
    assert rerun_backend.calls == []  # every completion comes from cache.jsonl
    rerun = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert rerun["stages"]["answers"]["answer_cache"] == {"hits": 12, "misses": 0}  # no forward pass
    assert again["train"].to_list() == corpus["train"].to_list()


def test_sampling_answers_decode_every_sample_of_a_batch_together(tiny_model_and_tokenizer, tiny_wvs, embedder,
                                                                  tmp_path, monkeypatch):
    """With n samples per answer, the pipeline's own model answers batch_size prompts' samples in one batch
    (batch_size x n rows), as the evaluator does; a backend the user gives keeps its own batch size."""
    from culture_align.recipes.culturespa import pipeline as pipeline_module

    rows = []
    original = pipeline_module.SurveyAnswerer

    def recording(backend, *args, **kwargs):
        rows.append(backend.batch_size)
        return original(backend, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "SurveyAnswerer", recording)
    model, tok = tiny_model_and_tokenizer
    config = CultureSPAPipelineConfig(topics=["social_values"], questions_per_topic=2, requests_per_round=2,
                                      batch_size=4, show_progress=False, answer_mode="sampling",
                                      answer_sampling=GenerationParams(n=3, temperature=0.6, max_new_tokens=2))
    script = {"Social values, attitudes and stereotypes": SOCIAL_SCRIPT}
    CultureSPAPipeline(model, ["USA"], config, tokenizer=tok, question_backend=ScriptedBackend(script), wvs=tiny_wvs,
                       embedder=embedder).run(tmp_path / "own")
    given = TransformersBackend.from_model(model, tok, batch_size=5)
    CultureSPAPipeline(given, ["USA"], config, question_backend=ScriptedBackend(script), wvs=tiny_wvs,
                       embedder=embedder).run(tmp_path / "given")
    assert rows == [12, 5]


def test_generate_culturespa_cli_on_the_tiny_model(tmp_path, tiny_model_dir, capsys):
    config = tmp_path / "spa.yaml"
    out = tmp_path / "out"
    config.write_text(
        f"model: {tiny_model_dir}\noutput_dir: {out}\ncultures: [USA, DEU]\n"
        "topics: [religion]\nquestions_per_topic: 1\nrequests_per_round: 2\nmax_requests_per_topic: 2\n"
        "question_params: {max_new_tokens: 12}\nnear_duplicate_threshold: null\n"
        "contamination_threshold: null\nshow_progress: false\n")
    assert main(["generate", "culturespa", "--config", str(config), "--seed", "2"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["config"]["seed"] == 2 and stats["config"]["topics"] == ["religion"]
    assert stats["stages"]["questions"]["requests"] == 2 and stats["stages"]["questions"]["backend_requests"] >= 1
    corpus = datasets.load_from_disk(str(out / "dataset"))
    # 12 tokens of a random model: whatever it wrote is kept as a question or recorded as a rejection
    assert len(corpus["questions"]) + len(corpus["rejections"]) == 2
    assert len(corpus["answers"]) == 2 * len(corpus["questions"])
    config.write_text("questions_per_topik: 2\n")
    assert main(["generate", "culturespa", "--config", str(config)]) == 2
    assert "unknown config keys: questions_per_topik" in capsys.readouterr().err


def test_pipeline_on_an_experiment_split_reads_training_cells_and_guards_every_item(tiny_model_and_tokenizer,
                                                                                   tiny_wvs, embedder, tmp_path):
    """Seeds come from training items only, while a generated copy of a held-out item is still rejected."""
    from culture_align.experiments import make_split

    model, tok = tiny_model_and_tokenizer
    split = make_split(tiny_wvs, "items_file", items_file=_write(tmp_path / "items.json", {
        "train_items": ["Q1", "Q57", "Q94", "Q182", "Q199"], "test_items": ["Q27"]}))
    copy_of_test_item = q(tiny_wvs.questions["Q27"].text, list(tiny_wvs.questions["Q27"].options))
    script = {"Social values, attitudes and stereotypes": [copy_of_test_item] + SOCIAL_SCRIPT}
    config = CultureSPAPipelineConfig(topics=["social_values"], questions_per_topic=2, requests_per_round=3,
                                      max_requests_per_topic=3, batch_size=4, contamination_threshold=None,
                                      answer_variant="self_alignment", self_alignment_examples=2,
                                      show_progress=False)

    def run(guard, folder):
        pipeline = CultureSPAPipeline(model, ["USA"], config, tokenizer=tok, question_backend=ScriptedBackend(script),
                                      wvs=split.training_view(tiny_wvs), guard_questions=guard, embedder=embedder)
        assert {s.qid for seeds in pipeline.seeds.values() for s in seeds} <= set(split.train_items)
        return pipeline.run(tmp_path / folder)

    guarded = run(tiny_wvs.questions, "guarded")
    assert tiny_wvs.questions["Q27"].text not in guarded["questions"]["text"]
    assert "contaminated" in " ".join(guarded["rejections"]["reason"])
    unguarded = run(None, "unguarded")  # the view alone does not know the held-out item's text
    assert tiny_wvs.questions["Q27"].text in unguarded["questions"]["text"]


def _write(path, data):
    path.write_text(json.dumps(data))
    return path
