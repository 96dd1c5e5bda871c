"""CultureLLM data: seeds and targets, augmentation filters, training records, pipeline, CLI.

The augmentation tests use the real all-MiniLM-L6-v2 embedder (offline, loaded once per session) and a
scripted teacher that answers from a table, so every kept / rejected text is known in advance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from culture_align.backends.base import GenerationBackend, GenerationParams
from culture_align.recipes.culturellm import (
    CULTURELLM_SEED_ITEMS,
    CultureLLMPipeline,
    CultureLLMPipelineConfig,
    build_seeds,
    build_training_set,
    lexical_variants,
    paraphrase_seeds,
    seed_label_stats,
    select_augmented,
    train_item_ids,
)
from culture_align.recipes.culturellm.lexical import content_words, lexical_variants_of, substitute
from culture_align.wvs.data import WVSData
from culture_align.wvs.loaders import load_wvs_csv
from culture_align.wvs.questions import SurveyQuestion

PROUD = "Do you agree that one of your main goals in life has been to make your parents proud?"
PROUD_REWRITES = [
    "Has making your parents proud been one of your main goals in life?",
    "Making my parents proud has been one of my main goals in life: do you agree?",
]
UNRELATED = "Bananas are a good source of potassium for athletes."
TRUST = "Can most people be trusted?"


def _question(qid: str, text: str) -> SurveyQuestion:
    return SurveyQuestion(qid, text, ("Agree strongly", "Agree", "Disagree", "Strongly disagree"), (1, 2, 3, 4))


def _wvs(distributions: dict[str, dict[str, list[float]]]) -> WVSData:
    questions = {"Q27": _question("Q27", PROUD), "Q57": SurveyQuestion("Q57", TRUST, ("Yes", "No"), (1, 2))}
    return WVSData(questions=questions, source="tests",
                   distributions={c: {q: np.asarray(p) for q, p in cells.items()} for c, cells in
                                  distributions.items()})


class ScriptedTeacher(GenerationBackend):
    """Answers rewrite and synonym requests from tables keyed by the item / sentence text.

    ``rewrites[text]`` is a list of answers, one per time the item is asked (the last one repeats);
    ``synonyms[sentence]`` is ``{word: [synonyms]}`` (missing: no synonyms). Counts every request it gets.
    """

    model_id = "scripted-teacher"

    def __init__(self, rewrites: dict[str, list] | None = None, synonyms: dict[str, dict] | None = None) -> None:
        self.rewrites = rewrites or {}
        self.synonyms = synonyms or {}
        self.asked: dict[str, int] = {}
        self.requests = 0

    def _generate(self, conversations, params: GenerationParams) -> list[str]:
        assert params.json_schema is not None  # structured output is always asked for
        out = []
        for conversation in conversations:
            self.requests += 1
            user = conversation[-1]["content"]
            item = re.search(r"^Item: (.*)$", user, re.MULTILINE)
            if item:
                text = item.group(1)
                k = self.asked.get(text, 0)
                self.asked[text] = k + 1
                script = self.rewrites.get(text, [[UNRELATED]])
                answer = script[min(k, len(script) - 1)]
                out.append(answer if isinstance(answer, str) else json.dumps({"rewrites": answer}))
            else:
                sentence = re.search(r"^Sentence: (.*)$", user, re.MULTILINE).group(1)
                table = self.synonyms.get(sentence, {})
                out.append(json.dumps({"words": [{"word": w, "synonyms": s} for w, s in table.items()]}))
        return out


@pytest.fixture(scope="session")
def embedder():
    from culture_align.embeddings import SentenceEmbedder

    return SentenceEmbedder()


# ------------------------------------------------------------------------------------------------ seeds


def test_default_seed_items_are_the_50_reference_items():
    assert len(CULTURELLM_SEED_ITEMS) == 50 == len(set(CULTURELLM_SEED_ITEMS))
    assert CULTURELLM_SEED_ITEMS[:2] == ("Q27", "Q28") and CULTURELLM_SEED_ITEMS[-1] == "Q233"
    for qid in ("Q41", "Q122", "Q129", "Q132", "Q138", "Q158", "Q162", "Q169", "Q170", "Q196", "Q198", "Q224"):
        assert qid in CULTURELLM_SEED_ITEMS
    for qid in ("Q26", "Q42", "Q121", "Q130", "Q131", "Q139", "Q163", "Q171", "Q199", "Q234"):
        assert qid not in CULTURELLM_SEED_ITEMS


def test_target_is_the_modal_valid_answer_never_a_mean(tmp_path):
    # USA answers Q27 with 1,1,1,4,4 and five missing (-1): the mode of the valid answers is 1, while the
    # reference's mean over all codes (missing included) would be 0 and the mean of the valid ones 2.
    # DEU never answered Q28 validly: no label, counted.
    rows = ["B_COUNTRY_ALPHA,Q27,Q28"]
    rows += [f"USA,{a},{b}" for a, b in zip([1, 1, 1, 4, 4, -1, -1, -1, -1, -1], [2, 2, 3, 3, 3, 3, -2, 1, 1, 1])]
    rows += [f"DEU,{a},-1" for a in [3, 3, -1, 2]]
    path = tmp_path / "wvs.csv"
    path.write_text("\n".join(rows) + "\n")
    catalog = {"Q27": _question("Q27", PROUD), "Q28": _question("Q28", "Do you agree that X?")}
    wvs = load_wvs_csv(path, catalog, weight_column=None)
    seeds = build_seeds(wvs, ["USA", "DEU"], items=["Q27", "Q28"])
    targets = {row["id"]: {t["culture"]: t for t in row["targets"]} for row in seeds}
    assert targets["Q27"]["USA"]["code"] == 1
    np.testing.assert_allclose(targets["Q27"]["USA"]["distribution"], [0.6, 0, 0, 0.4])
    assert targets["Q27"]["USA"]["n"] == 5
    assert targets["Q27"]["DEU"]["code"] == 3
    assert targets["Q28"]["USA"]["code"] == 3  # codes 1 x3, 2 x2, 3 x4 (and one missing)
    assert "DEU" not in targets["Q28"]
    stats = seed_label_stats(seeds)
    assert stats["unlabelled"] == {"DEU": ["Q28"]} and stats["unlabelled_cells"] == 1
    assert stats["labelled_cells"] == 3
    assert train_item_ids(seeds) == ["Q27", "Q28"]


def test_seed_rendering_and_distributions(tiny_wvs):
    seeds = build_seeds(tiny_wvs, ["USA", "CHN"], items=["Q27", "Q182", "Q94"])
    assert seeds["id"] == ["Q27", "Q182", "Q94"]
    q27, q182, q94 = seeds
    assert q27["prompt"].startswith(tiny_wvs.questions["Q27"].text)
    assert "\n1. Agree strongly\n2. Agree\n" in q27["prompt"] and "number only" in q27["prompt"]
    assert "from 1 to 10" in q182["prompt"] and "\n10." not in q182["prompt"]
    assert "0. Not a member" in q94["prompt"]
    for row in seeds:
        for target in row["targets"]:
            expected = tiny_wvs.distribution(target["culture"], row["id"])
            np.testing.assert_allclose(target["distribution"], expected)
            assert target["code"] == tiny_wvs.modal_code(target["culture"], row["id"])
    assert q182["unlabelled_cultures"] == ["CHN"] and [t["culture"] for t in q182["targets"]] == ["USA"]
    with pytest.raises(ValueError, match="Q999"):
        build_seeds(tiny_wvs, ["USA"], items=["Q27", "Q999"])


def test_content_words_and_substitution():
    assert content_words(PROUD) == ["agree", "main", "goals", "life", "make", "parents", "proud"]
    assert content_words(PROUD, max_words=2) == ["agree", "main"]
    assert substitute("Goals matter. My goals, your goalsetting.", "goals", "aims") == \
        "Aims matter. My aims, your goalsetting."
    variants = lexical_variants_of(PROUD, {"goals": ["aims", "objectives"], "proud": ["pleased"]}, 10)
    texts = [v for v, _ in variants]
    assert len(texts) == len(set(texts)) == 4  # 3 single swaps + 1 combined (the second combined is a repeat)
    assert variants[-1][1] == [("goals", "aims"), ("proud", "pleased")]
    assert len(lexical_variants_of(PROUD, {"goals": ["aims", "objectives"], "proud": ["pleased"]}, 2)) == 2


# ----------------------------------------------------------------------------------------- augmentation


def test_paraphrase_filter_retries_and_rejections(embedder):
    wvs = _wvs({"USA": {"Q27": [0.1, 0.6, 0.2, 0.1], "Q57": [0.3, 0.7]}})
    seeds = build_seeds(wvs, ["USA"], items=["Q27", "Q57"])
    teacher = ScriptedTeacher(rewrites={
        PROUD: [[PROUD_REWRITES[0], PROUD.upper()], "this is not JSON", [UNRELATED, PROUD_REWRITES[1]],
                [PROUD_REWRITES[0]] * 3],  # (never reached; 3 rewrites would be malformed: at most 2 asked)
        TRUST: [[UNRELATED]],  # never good enough: asked 1 + max_retries times, then given up
    })
    result = paraphrase_seeds(seeds, teacher, embedder, num_rewrites=2, threshold=0.8, max_retries=3,
                              show_progress=False)
    kept = result.dataset
    assert sorted(kept["text"]) == sorted(PROUD_REWRITES)
    assert set(kept["seed_id"]) == {"Q27"} and all(s > 0.8 for s in kept["similarity"])
    assert teacher.asked == {PROUD: 3, TRUST: 4}
    assert result.stats["requests_per_round"] == [2, 2, 2, 1]
    assert result.stats["seeds_short"] == ["Q57"] and result.stats["malformed_replies"] == 1
    reasons = {(r["seed_id"], r["reason"]) for r in result.rejections}
    assert reasons == {("Q27", "below_threshold"), ("Q27", "same_as_seed"), ("Q27", "malformed"),
                       ("Q57", "below_threshold"), ("Q57", "duplicate")}
    for row in result.rejections:
        if row["reason"] == "below_threshold":
            assert row["similarity"] is not None and row["similarity"] <= 0.8 and row["text"] == UNRELATED
        else:
            assert row["similarity"] is None
    assert next(r for r in result.rejections if r["reason"] == "malformed")["text"] == "this is not JSON"


def test_lexical_variants_dedupe_threshold_and_cap(embedder):
    wvs = _wvs({"USA": {"Q27": [0.1, 0.6, 0.2, 0.1]}})
    seeds = build_seeds(wvs, ["USA"], items=["Q27"])
    swapped = PROUD.replace("main", "chief")
    teacher = ScriptedTeacher(
        rewrites={PROUD: [[swapped, PROUD_REWRITES[0]]]},
        synonyms={PROUD: {"main": ["chief"], "goals": ["aims", "objectives"], "parents": ["bananas"],
                          "unlisted": ["ignored"]},
                  PROUD_REWRITES[0]: {"proud": ["happy"]}},
    )
    paraphrases = paraphrase_seeds(seeds, teacher, embedder, num_rewrites=2, max_retries=0, show_progress=False)
    assert len(paraphrases.dataset) == 2
    result = lexical_variants(seeds, paraphrases.dataset, teacher, embedder, threshold=0.9, show_progress=False)
    kept, rejected = result.dataset, result.rejections
    duplicates = [r for r in rejected if r["reason"] == "duplicate"]
    assert [r["text"] for r in duplicates] == [swapped]  # the seed's main->chief equals a kept rewrite
    assert all(s > 0.9 for s in kept["similarity"])
    low = [r for r in rejected if r["reason"] == "below_threshold"]
    assert low and all(r["similarity"] <= 0.9 for r in low)
    assert not any("ignored" in t for t in list(kept["text"]) + list(rejected["text"]))
    assert len(set(kept["text"])) == len(kept)
    assert kept["similarity"] == sorted(kept["similarity"], reverse=True)
    assert {r["source_id"] for r in kept} <= {"Q27", *paraphrases.dataset["id"]}

    capped = select_augmented(paraphrases.dataset, kept, max_samples_per_seed=3, seed_ids=["Q27"])
    assert len(capped.dataset) == 3
    assert capped.dataset["step"][:2] == ["paraphrase", "paraphrase"]  # rewrites first
    assert capped.dataset["text"][2] == kept["text"][0]                 # then the most similar variant
    over = capped.rejections
    assert len(over) == 2 + len(kept) - 3 and set(over["reason"]) == {"over_cap"}
    assert set(over["id"]) <= set(kept["id"])


def test_training_records_share_texts_and_differ_in_labels():
    wvs = _wvs({"USA": {"Q27": [0.1, 0.6, 0.2, 0.1], "Q57": [0.8, 0.2]}, "DEU": {"Q27": [0.5, 0.2, 0.2, 0.1]}})
    seeds = build_seeds(wvs, items=["Q27", "Q57"])
    augmented = select_augmented(
        _rows([("a1", "Q27", "paraphrase", PROUD_REWRITES[0], 0.9)]),
        _rows([("l1", "Q57", "lexical", "Can most folks be trusted?", 0.95)]), 10).dataset
    train = build_training_set(seeds, augmented)
    assert len(train) == 4 + 2  # USA: 2 seeds + 2 samples; DEU: Q27 + its sample (no data for Q57)
    assert set(train["task"]) == {"survey"} and len(set(train["id"])) == len(train)
    by = {(r["culture"], r["text_id"]): r for r in train}
    usa, deu = by[("USA", "a1")]["messages"], by[("DEU", "a1")]["messages"]
    assert usa[1] == deu[1] and usa[1]["content"].startswith(PROUD_REWRITES[0])
    assert (usa[2]["content"], deu[2]["content"]) == ("2", "1")
    assert "American" in usa[0]["content"] and "German" in deu[0]["content"]
    assert [m["role"] for m in usa] == ["system", "user", "assistant"]
    assert by[("USA", "l1")]["messages"][2]["content"] == "1" and ("DEU", "l1") not in by
    assert by[("USA", "Q27")]["source"] == "seed" and by[("USA", "l1")]["seed_id"] == "Q57"
    assert len(build_training_set(seeds, augmented, include_seeds=False)) == 3


def _rows(items):
    from culture_align.recipes.clca.schemas import to_dataset
    from culture_align.recipes.culturellm import AUGMENTED_FEATURES

    return to_dataset([{"id": i, "seed_id": s, "step": st, "text": t, "similarity": sim, "source_id": s,
                        "substitutions": [], "provenance": None} for i, s, st, t, sim in items],
                      AUGMENTED_FEATURES)


# ------------------------------------------------------------------------------------- pipeline and CLI


class CountingBackend(GenerationBackend):
    """Passes requests through to another backend and counts them."""

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend, self.model_id, self.requests = backend, backend.model_id, 0
        self.supports_json_schema = backend.supports_json_schema

    def _generate(self, conversations, params):
        self.requests += len(conversations)
        return self.backend.generate(conversations, params)


def test_pipeline_end_to_end_and_resume(tmp_path, embedder):
    wvs = _wvs({"USA": {"Q27": [0.1, 0.6, 0.2, 0.1], "Q57": [0.8, 0.2]}, "CHN": {"Q27": [0.7, 0.1, 0.1, 0.1]}})
    teacher = CountingBackend(ScriptedTeacher(
        rewrites={PROUD: [PROUD_REWRITES], TRUST: [["Would you say most people can be trusted?", UNRELATED]]},
        synonyms={PROUD: {"goals": ["aims"]}, TRUST: {"trusted": ["relied on"]}}))
    config = CultureLLMPipelineConfig(items=["Q27", "Q57"], num_rewrites=2, paraphrase_retries=1,
                                      max_samples_per_seed=3, show_progress=False)
    corpus = CultureLLMPipeline(teacher, wvs, ["USA", "CHN"], config, embedder=embedder).run(tmp_path)
    assert set(corpus) == {"seeds", "augmented", "train", "rejections"}
    assert all(n <= 3 for n in np.unique(corpus["augmented"]["seed_id"], return_counts=True)[1])
    seeds_per_culture = {"USA": 2, "CHN": 1}
    per_seed = dict(zip(*np.unique(corpus["augmented"]["seed_id"], return_counts=True)))
    for culture, n in seeds_per_culture.items():
        expected = n + sum(per_seed.get(q, 0) for q in (["Q27", "Q57"] if culture == "USA" else ["Q27"]))
        assert corpus["train"]["culture"].count(culture) == expected
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["train_items"] == ["Q27", "Q57"]
    assert stats["steps"]["seeds"]["unlabelled"] == {"CHN": ["Q57"]}
    assert stats["counts"]["augmented"] == len(corpus["augmented"]) > 0
    assert stats["steps"]["paraphrase"]["rounds"] == 2  # Q57 got one rewrite: one retry
    assert stats["embedding"]["sentences_encoded"] > 0
    assert (tmp_path / "similarity_histogram.png").stat().st_size > 1000
    assert (tmp_path / "dataset" / "dataset_dict.json").is_file() and (tmp_path / "cache.jsonl").is_file()
    calls = teacher.requests
    assert calls > 0

    again = CultureLLMPipeline(teacher, wvs, ["USA", "CHN"], config, embedder=embedder).run(tmp_path)
    assert teacher.requests == calls  # everything came from the cache
    assert again["train"]["id"] == corpus["train"]["id"]
    assert again["rejections"].to_list() == corpus["rejections"].to_list()


def test_pipeline_on_a_tiny_transformers_teacher(tmp_path, tiny_wvs, tiny_model_and_tokenizer, embedder):
    from culture_align.backends.transformers import TransformersBackend

    model, tokenizer = tiny_model_and_tokenizer
    teacher = TransformersBackend.from_model(model, tokenizer, model_id="tiny", batch_size=8)
    small = dict(max_new_tokens=24)
    config = CultureLLMPipelineConfig(
        items=["Q27", "Q57"], num_rewrites=2, paraphrase_retries=0, max_attempts=1, show_progress=False,
        paraphrase_params=GenerationParams(temperature=0.7, **small),
        synonym_params=GenerationParams(temperature=0.0, **small))
    corpus = CultureLLMPipeline(teacher, tiny_wvs, ["USA", "DEU"], config, embedder=embedder).run(tmp_path)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["steps"]["paraphrase"]["backend_requests"] == 2 and teacher.stats.requests >= 2
    # A random-weight model writes noise: whatever it wrote is either kept (above tau) or rejected with a reason.
    assert set(corpus["rejections"]["reason"]) <= {"malformed", "same_as_seed", "duplicate", "below_threshold",
                                                   "surplus", "over_cap"}
    assert len(corpus["train"]) == 2 * (2 + len(corpus["augmented"]))  # every text labelled for both cultures


def test_generate_cli(tmp_path, tiny_wvs, embedder, monkeypatch):
    from culture_align.cli import main
    from culture_align.config_values import dataclass_from_dict
    from culture_align.recipes.culturellm import CultureLLMPipelineConfig

    def pipeline_config_from_dict(values):
        return dataclass_from_dict(CultureLLMPipelineConfig, values, "CultureLLM pipeline")

    specs = []

    def scripted_backend(spec):
        specs.append(spec)
        return ScriptedTeacher(rewrites={tiny_wvs.questions["Q27"].text: [["Is making my parents proud a main "
                                                                           "goal of my life?"]]})

    monkeypatch.setattr("culture_align.embeddings.SentenceEmbedder", lambda *a, **k: embedder)
    monkeypatch.setattr("culture_align.backends.factory.backend_from_config", scripted_backend)
    data = tmp_path / "dists.json"
    data.write_text(json.dumps({c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
                                    for q, probs in cells.items()} for c, cells in tiny_wvs.distributions.items()}))
    (tmp_path / "wvs_questions.json").write_text(json.dumps([q.to_dict() for q in tiny_wvs.questions.values()]))
    config = tmp_path / "culturellm.yaml"
    config.write_text(
        "teacher: {backend: openai, base_url: http://127.0.0.1:9/v1, model: teacher-x}\n"
        f"output_dir: {tmp_path / 'out'}\nnum_rewrites: 1\nparaphrase_retries: 0\nmax_attempts: 1\n"
        "show_progress: false\nparaphrase_params: {max_new_tokens: 24}\n")
    code = main(["generate", "culturellm", "--config", str(config), "--wvs", str(data), "--items", "Q27,Q182",
                 "--cultures", "USA,CHN"])
    assert code == 0
    assert specs == [{"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "teacher-x"}]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["train_items"] == ["Q27", "Q182"] and stats["cultures"] == ["USA", "CHN"]
    assert stats["steps"]["seeds"]["unlabelled"] == {"CHN": ["Q182"]}
    assert stats["config"]["paraphrase_params"]["max_new_tokens"] == 24
    assert stats["counts"]["augmented_by_step"].get("paraphrase") == 1
    assert main(["generate", "culturellm", "--config", str(config), "--items", "Q27"]) == 2  # no --wvs: clear error
    with pytest.raises(ValueError, match="unknown CultureLLM pipeline settings: bogus"):
        pipeline_config_from_dict({"bogus": 1})


def test_pipeline_config_validation():
    with pytest.raises(ValueError, match="similarity_threshold"):
        CultureLLMPipelineConfig(similarity_threshold=1.5)
    assert CultureLLMPipelineConfig(num_seeds=3).seed_items == ("Q27", "Q28", "Q29")
    assert CultureLLMPipelineConfig(items="Q1, Q2").seed_items == ("Q1", "Q2")


def test_example_config_builds():
    from culture_align.recipes.culturellm import CultureLLMPipelineConfig
    from culture_align.scripts.config import parse_command
    from culture_align.scripts.culturellm import CultureLLMGenerateArguments

    path = Path(__file__).parents[1] / "examples/configs/culturellm_generate.yaml"
    args, config = parse_command((CultureLLMGenerateArguments, CultureLLMPipelineConfig), ["--config", str(path)])
    assert args.teacher["backend"] == "transformers" and args.output_dir == "runs/culturellm-data"
    assert config.num_rewrites == 5 and config.similarity_threshold == 0.8 and config.max_samples_per_seed == 10
