"""WVSEvaluator on a tiny random model: the numbers must be the metric module's, prompts scored once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from culture_align.backends import GenerationBackend, GenerationParams
from culture_align.backends.option_scoring import OptionScorer
from culture_align.backends.transformers import TransformersBackend
from culture_align.evaluation import EvaluationConfig, WVSEvaluator
from culture_align.metric import load_alignment_metric
from culture_align.prompts.wvs import SurveyPromptTemplate, build_conversation
from culture_align.wvs import load_wvs_csv


def _evaluator(model, tok, wvs, **kw):
    return WVSEvaluator(model, tok, wvs, show_progress=False, **kw)


def _rows(report, setting, culture):
    """The item rows of one setting and culture, as a dict of columns."""
    picked = [r for r in report.items if r["setting"] == setting and r["culture"] == culture]
    return {k: [r[k] for r in picked] for k in report.items.column_names}


def test_numbers_come_from_the_evaluate_metric(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    report = _evaluator(model, tok, tiny_wvs).evaluate()
    dist_metric = load_alignment_metric("distribution")
    align_metric = load_alignment_metric("alignment_score")
    for setting in ("culture-unaware", "culture-aware"):
        for culture in ("USA", "CHN", "DEU"):
            rows = _rows(report, setting, culture)
            expected = dist_metric.compute(predictions=rows["model_probs"], references=rows["human_probs"])
            got = report.row(setting, culture)
            assert got["kl_divergence"] == pytest.approx(expected["kl_divergence"], rel=1e-12)
            assert got["similarity"] == pytest.approx(expected["similarity"], rel=1e-12)
            assert got["accuracy"] == pytest.approx(expected["accuracy"])
            np.testing.assert_allclose(rows["kl_divergence"], expected["kl_per_item"])
            align = align_metric.compute(predictions=rows["model_code"], references=rows["human_code"],
                                         num_options=[len(c) for c in rows["codes"]])
            assert got["alignment_score"] == pytest.approx(align["alignment_score"])
    mean = report.row("culture-aware", "mean")
    per = [report.row("culture-aware", c)["kl_divergence"] for c in ("USA", "CHN", "DEU")]
    assert mean["kl_divergence"] == pytest.approx(np.mean(per))


def test_model_distribution_is_the_constrained_answer_distribution(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    report = _evaluator(model, tok, tiny_wvs, settings=["culture-aware"], cultures=["DEU"]).evaluate()
    row = report.items.filter(lambda q: q == "Q182", input_columns="qid")[0]
    from culture_align.cultures import get_culture
    from culture_align.prompts.wvs import get_setting

    conv = build_conversation(get_setting("culture-aware"), tiny_wvs.questions["Q182"], get_culture("DEU"))
    ids = OptionScorer(model, tok).encode(conv)
    digit = {d: tok.convert_tokens_to_ids(d) for d in "0123456789"}
    end = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        root = model(torch.tensor([ids])).logits[0, -1].float()
        after_one = model(torch.tensor([ids + [digit["1"]]])).logits[0, -1].float()
    # A decoder constrained to 1..10: first digit among 1-9; after "1", either end of turn or "0".
    first = torch.log_softmax(root[[digit[str(d)] for d in range(1, 10)]], dim=0)
    second = torch.log_softmax(after_one[[end, digit["0"]]], dim=0)
    expected = [first[0] + second[0]] + [first[d - 1] for d in range(2, 10)] + [first[0] + second[1]]
    np.testing.assert_allclose(row["model_probs"], np.exp(np.array([float(e) for e in expected])), atol=1e-5)


def test_unaware_prompts_are_scored_once_for_all_cultures(tiny_model_and_tokenizer, tiny_wvs, monkeypatch):
    model, tok = tiny_model_and_tokenizer
    ev = _evaluator(model, tok, tiny_wvs)
    scored = []
    original = ev.backend.score

    def counting(convs, choices, progress=None):
        scored.extend(convs)
        return original(convs, choices, progress)

    monkeypatch.setattr(ev.backend, "score", counting)
    report = ev.evaluate()
    # 6 distinct unaware prompts (one per item) + aware: USA 6, CHN 5 (Q182 missing), DEU 6.
    assert len(scored) == 6 + 6 + 5 + 6
    usa = _rows(report, "culture-unaware", "USA")
    deu = _rows(report, "culture-unaware", "DEU")
    assert usa["model_probs"] == deu["model_probs"]
    aware_usa = _rows(report, "culture-aware", "USA")
    assert aware_usa["model_probs"] != usa["model_probs"]


def test_missing_cells_are_skipped_and_counted(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    report = _evaluator(model, tok, tiny_wvs, settings=["culture-unaware"]).evaluate()
    chn = report.row("culture-unaware", "CHN")
    assert chn["n_items"] == 5 and chn["skipped_no_human_data"] == 1
    assert "Q182" not in report.items.filter(lambda c: c == "CHN", input_columns="culture")["qid"]


def test_item_selection_and_held_out_items(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    ev = _evaluator(model, tok, tiny_wvs, items=["Q1", "Q27", "Q57"], exclude_items=["Q27"])
    report = ev.evaluate()
    assert set(report.items["qid"]) == {"Q1", "Q57"}
    with pytest.raises(ValueError, match="Q999"):
        _evaluator(model, tok, tiny_wvs, items=["Q1", "Q999"]).evaluate()


def test_unknown_culture_and_culture_without_data(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    with pytest.raises(ValueError, match="Did you mean"):
        _evaluator(model, tok, tiny_wvs, cultures=["USB"])
    with pytest.raises(ValueError, match="no human data for JPN"):
        _evaluator(model, tok, tiny_wvs, cultures=["JPN"]).evaluate()


def test_a_run_that_would_score_nothing_is_refused_before_any_model_call(tiny_model_and_tokenizer, tiny_wvs,
                                                                        monkeypatch):
    from culture_align.evaluation import scored_items

    model, tok = tiny_model_and_tokenizer

    def no_model_call(*args, **kwargs):
        raise AssertionError("the model was called")

    monkeypatch.setattr(OptionScorer, "score", no_model_call)
    monkeypatch.setattr(TransformersBackend, "generate", no_model_call)
    cases = [(dict(cultures=[]), "no culture to evaluate: the culture list is empty"),
             (dict(cultures=","), "no culture to evaluate"),
             (dict(items=[]), "no item to score: the item list is empty"),
             (dict(exclude_items=list(tiny_wvs.questions)), "no item to score: all 6 item"),
             (dict(cultures=["CHN"], items=["Q182"]), "nothing to score: none of the 1 item.* CHN in tests:")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            _evaluator(model, tok, tiny_wvs, **kwargs).evaluate()
        config = EvaluationConfig(**{k: v for k, v in kwargs.items() if k != "cultures"})
        with pytest.raises(ValueError, match=message):  # the same check, with no model at all
            scored_items(tiny_wvs, kwargs.get("cultures"), config)
    empty = tiny_wvs.select(qids=[], cultures=[])
    with pytest.raises(ValueError, match="no culture to evaluate: tests:tiny_wvs has no distribution"):
        scored_items(empty, None, EvaluationConfig())
    for settings in ([], ()):
        with pytest.raises(ValueError, match="no prompt setting"):
            _evaluator(model, tok, tiny_wvs, settings=settings)
    for bad in (dict(n=0), dict(n=-3), dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=float("nan"))):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            GenerationParams(**bad)
    with pytest.raises(ValueError, match="sampling must be GenerationParams"):
        EvaluationConfig(sampling={"n": 3}).validate()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        _evaluator(model, tok, tiny_wvs, batch_size=0)
    assert scored_items(tiny_wvs, ["CHN"], EvaluationConfig(items=["Q1", "Q182"])) == ["Q1", "Q182"]


def test_reference_rows(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    report = _evaluator(model, tok, tiny_wvs, settings=["culture-unaware"]).evaluate()
    metric = load_alignment_metric("distribution")
    usa_uniform = next(r for r in report.references if r["culture"] == "USA" and r["reference"] == "uniform")
    humans = [tiny_wvs.distribution("USA", q) for q in tiny_wvs.questions]
    uniform = [np.full(len(h), 1 / len(h)) for h in humans]
    assert usa_uniform["kl_divergence"] == pytest.approx(metric.compute(predictions=uniform,
                                                                        references=humans)["kl_divergence"])
    assert 0 < usa_uniform["alignment_score"] < 100
    others = next(r for r in report.references if r["culture"] == "USA" and r["reference"].startswith("other"))
    assert {p["other"] for p in others["pairs"]} == {"CHN", "DEU"}
    chn_pair = next(p for p in others["pairs"] if p["other"] == "CHN")
    assert chn_pair["n_items"] == 5  # CHN has no Q182


def test_sampling_mode_aggregates_parsed_answers(tiny_model_and_tokenizer, tiny_wvs, monkeypatch):
    model, tok = tiny_model_and_tokenizer
    ev = _evaluator(model, tok, tiny_wvs, settings=["culture-unaware"], mode="sampling", cultures=["USA"],
                    items=["Q1", "Q57"], sampling=GenerationParams(n=5, temperature=1.0, max_new_tokens=8))
    answers = {"How important": ["1", "1", "2", "refuse", "1."], "Can most people": ["9", "x", "no", "", "?"]}

    def fake_generate(convs, params):
        assert params.n == 5
        return [text for c in convs for text in next(v for k, v in answers.items() if k in c[-1]["content"])]

    monkeypatch.setattr(ev.backend, "generate", fake_generate)
    report = ev.evaluate()
    q1 = report.items.filter(lambda q: q == "Q1", input_columns="qid")[0]
    assert q1["model_probs"] == [0.75, 0.25, 0.0, 0.0]
    assert (q1["n_valid"], q1["n_invalid"]) == (4, 1)
    usa = report.row("culture-unaware", "USA")
    assert usa["n_items"] == 1 and usa["skipped_no_valid_answer"] == 1  # Q57: nothing parsed
    assert usa["sampling_parse_failures"] == 6 and usa["samples"] == 10


def test_sampling_mode_runs_end_to_end(tiny_model_and_tokenizer, tiny_wvs):
    model, tok = tiny_model_and_tokenizer
    ev = _evaluator(model, tok, tiny_wvs, settings=["culture-unaware"], mode="sampling", cultures=["USA"],
                    sampling=GenerationParams(n=4, temperature=1.0, max_new_tokens=3))
    report = ev.evaluate()
    usa = report.row("culture-unaware", "USA")
    assert usa["samples"] == 4 * 6


def _respondent_csv(path, rng):
    cols = ["B_COUNTRY_ALPHA", "Q1", "Q27", "Q57", "Q260", "Q262", "Q273", "Q275", "Q279", "Q287"]
    lines = [",".join(cols)]
    for country in ("USA", "DEU"):
        for _ in range(12):
            lines.append(",".join([country, str(rng.integers(1, 5)), str(rng.integers(1, 5)), str(rng.integers(1, 3)),
                                   str(rng.integers(1, 3)), str(rng.integers(18, 80)), str(rng.integers(1, 7)),
                                   str(rng.integers(0, 9)), str(rng.integers(1, 9)), str(rng.integers(1, 6))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_persona_setting_uses_respondents_and_their_answers(tiny_model_and_tokenizer, tiny_wvs, tmp_path):
    model, tok = tiny_model_and_tokenizer
    csv_path = _respondent_csv(tmp_path / "wvs.csv", np.random.default_rng(1))
    questions = {q: tiny_wvs.questions[q] for q in ("Q1", "Q27", "Q57")}
    wvs = load_wvs_csv(csv_path, questions)
    ev = _evaluator(model, tok, wvs, settings=["persona"], num_personas=5, seed=3)
    seen = []
    original = ev.backend.score

    def spy(convs, choices, progress=None):
        seen.extend(convs)
        return original(convs, choices, progress)

    ev.backend.score = spy
    report = ev.evaluate()
    assert len(seen) == 2 * 5 * 3  # cultures x personas x items
    assert all("World Values Survey" in c[0]["content"] and "years old" in c[0]["content"] or
               "year-old" in c[0]["content"] for c in seen)
    for culture in ("USA", "DEU"):
        acc = report.row("persona", culture)["persona_accuracy"]
        assert 0.0 <= acc <= 1.0
    for row in report.items:
        assert abs(sum(row["model_probs"]) - 1) < 1e-9 and row["persona_accuracy"] is not None
    with pytest.raises(ValueError, match="personas"):
        _evaluator(model, tok, tiny_wvs, settings=["persona"]).evaluate()


def test_custom_template_file(tiny_model_and_tokenizer, tiny_wvs, tmp_path):
    model, tok = tiny_model_and_tokenizer
    path = tmp_path / "elder.yaml"
    path.write_text("name: elder\nsystem: You are an elder of {culture_name}.\n")
    report = _evaluator(model, tok, tiny_wvs, settings=[str(path)], cultures=["DEU"]).evaluate()
    assert report.settings == ["elder"] and report.row("elder", "DEU")["n_items"] == 6
    bad = tmp_path / "bad.json"
    bad.write_text('{"sistem": "x"}')
    with pytest.raises(ValueError, match="bad.json"):
        _evaluator(model, tok, tiny_wvs, settings=[str(bad)])
    assert SurveyPromptTemplate.from_file(path).uses_culture


def test_adapters_are_switched_per_culture(tiny_model_and_tokenizer, tiny_wvs):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model_and_tokenizer
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, cfg, adapter_name="usa")
    peft_model.add_adapter("chn", cfg)
    peft_model.eval()
    config = EvaluationConfig(settings=["culture-unaware"], adapters={"USA": "usa", "CHN": "chn"})
    report = _evaluator(peft_model, tok, tiny_wvs, cultures=["USA", "CHN"], config=config).evaluate()
    usa = report.items.filter(lambda c: c == "USA", input_columns="culture")
    chn = report.items.filter(lambda c: c == "CHN", input_columns="culture")
    assert usa["model_probs"][0] != chn["model_probs"][0]  # same prompt, different adapter
    peft_model.set_adapter("usa")
    alone = _evaluator(peft_model, tok, tiny_wvs, cultures=["USA"], settings=["culture-unaware"]).evaluate()
    np.testing.assert_allclose(alone.items["model_probs"][0], usa["model_probs"][0], atol=1e-6)


def test_report_files_and_plots(tiny_model_and_tokenizer, tiny_wvs, tmp_path):
    model, tok = tiny_model_and_tokenizer
    report = _evaluator(model, tok, tiny_wvs).evaluate(tmp_path / "out", plot_item="Q182")
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["cultures"] == ["USA", "CHN", "DEU"] and len(results["summary"]) == 2 * 3 + 2
    import datasets

    items = datasets.Dataset.from_parquet(str(out / "items.parquet"))
    assert len(items) == len(report.items) == 2 * (6 + 5 + 6)
    md = (out / "summary.md").read_text()
    assert "| USA | culture-aware |" in md and "*uniform*" in md
    for png in ("kl_by_culture.png", "item_Q182.png"):
        data = (out / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_model_answers_without_human_data(tiny_model_and_tokenizer, tiny_wvs):
    from culture_align.wvs import WVSData

    model, tok = tiny_model_and_tokenizer
    data = WVSData(questions=tiny_wvs.questions, distributions={}, source="none")
    answers = _evaluator(model, tok, data, cultures=["JPN", "KEN"]).model_answers()
    assert len(answers) == 2 * 2 * 6
    assert all(abs(sum(p) - 1) < 1e-9 for p in answers["model_probs"])


class _FixedAnswers(GenerationBackend):
    """A backend that cannot score (like a server without logprobs) and always answers "2"."""

    model_id = "fixed-answers"

    def _generate(self, conversations, params):
        return ["2"] * (len(conversations) * params.n)


def test_evaluator_takes_any_backend(tiny_model_and_tokenizer, tiny_wvs):
    """A backend in place of (model, tokenizer): the same numbers through TransformersBackend; sampling mode
    through a backend that only generates; log-prob mode there says why it cannot run; adapters need a model."""
    model, tok = tiny_model_and_tokenizer
    direct = _evaluator(model, tok, tiny_wvs, settings=["culture-unaware"]).evaluate()
    backend = TransformersBackend.from_model(model, tok, model_id="tiny", batch_size=3)
    through = WVSEvaluator(backend, None, tiny_wvs, settings=["culture-unaware"], show_progress=False).evaluate()
    assert through.model_name == "tiny"
    np.testing.assert_allclose(through.items["model_probs"][0], direct.items["model_probs"][0], atol=1e-6)
    assert through.row("culture-unaware")["kl_divergence"] == pytest.approx(
        direct.row("culture-unaware")["kl_divergence"], abs=1e-6)
    fixed = WVSEvaluator(_FixedAnswers(), None, tiny_wvs, settings=["culture-unaware"], cultures=["USA"],
                         mode="sampling", sampling=GenerationParams(n=3, temperature=1.0, max_new_tokens=2),
                         show_progress=False).evaluate()
    assert len(fixed.items) > 0
    for row in fixed.items:
        assert row["model_probs"][tiny_wvs.questions[row["qid"]].index_of(2)] == 1.0 and row["n_valid"] == 3
    with pytest.raises(NotImplementedError, match="_FixedAnswers cannot score choices"):
        WVSEvaluator(_FixedAnswers(), None, tiny_wvs, cultures=["USA"], show_progress=False).evaluate()
    with pytest.raises(ValueError, match="need a local PEFT model"):
        WVSEvaluator(_FixedAnswers(), None, tiny_wvs, adapters={"*": "x"})
    with pytest.raises(TypeError, match="not both"):
        WVSEvaluator(backend, tok, tiny_wvs)


def test_the_removed_sampling_params_name_says_what_replaces_it():
    import culture_align.evaluation as evaluation

    with pytest.raises(AttributeError, match="GenerationParams .*num_samples is now n"):
        evaluation.SamplingParams  # noqa: B018
