"""Integration: the embedded SmolLM2-135M-Instruct, converted from its GGUF once and cached."""

from __future__ import annotations

import numpy as np
import pytest

from culture_align.models import DEFAULT_MODEL, EMBEDDED_MODELS, load_model_and_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    try:
        EMBEDDED_MODELS[DEFAULT_MODEL].package_dir()
    except ImportError as err:  # pragma: no cover - the Makefile installs it
        pytest.fail(f"the embedded model package is missing: {err}")
    return load_model_and_tokenizer(DEFAULT_MODEL, device="cpu")


def test_embedded_model_is_smollm2(embedded):
    model, tok = embedded
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_embedded_model_answers_the_family_item_sensibly(embedded):
    """Family is 'very important' to most people everywhere: the model's top answer must say so."""
    from culture_align.evaluation import WVSEvaluator
    from culture_align.wvs import WVSData, bundled_questions

    model, tok = embedded
    catalog = bundled_questions()
    data = WVSData(questions={"Q1": catalog["Q1"], "Q46": catalog["Q46"], "Q49": catalog["Q49"]},
                   distributions={}, source="catalog")
    answers = WVSEvaluator(model, tok, data, cultures=["USA"], settings=["culture-aware"],
                           show_progress=False).model_answers()
    by_qid = {r["qid"]: r for r in answers}
    assert by_qid["Q1"]["model_code"] == 1
    for row in answers:
        assert abs(sum(row["model_probs"]) - 1) < 1e-9 and max(row["model_probs"]) < 1.0
    assert len(by_qid["Q49"]["model_probs"]) == 10  # a 1..10 scale, multi-token "10" included


def test_demo_runs_on_the_embedded_model(tmp_path, capsys):
    from culture_align.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--cultures", "USA,JPN", "--skip-clca"]) == 0
    printed = capsys.readouterr().out
    assert "| USA | 4" in printed and "| JPN |" in printed
    assert (tmp_path / "demo" / "answer_shift.md").is_file()
    import datasets

    answers = datasets.Dataset.from_parquet(str(tmp_path / "demo" / "answers.parquet"))
    assert set(answers["setting"]) == {"culture-unaware", "culture-aware"}
    assert np.isclose(sum(answers[0]["model_probs"]), 1.0)


def test_clca_demo_generates_trains_and_compares(embedded, tmp_path):
    """The CLCA miniature on the real model: corpus -> CLCATrainer LoRA -> base vs. adapter answers."""
    from culture_align.demo import run_clca_demo
    from culture_align.wvs import WVSData, bundled_questions

    model, tok = embedded
    catalog = bundled_questions()
    data = WVSData(questions={q: catalog[q] for q in ("Q1", "Q27", "Q57")}, distributions={}, source="catalog")
    result = run_clca_demo(tmp_path, model, tok, "smollm2-135m-instruct", data, cultures=("GBR",),
                           num_scenarios=1, max_turns=2, train_epochs=1)
    corpus = result["corpus"]
    stats = (tmp_path / "clca-data" / "stats.json").read_text()
    assert '"scenarios"' in stats and len(corpus["dialogues"]) + len(corpus["rejections"]) >= 1
    if result["adapter"] is not None:
        assert (tmp_path / "adapter" / "adapter_config.json").is_file()
        table = (tmp_path / "comparison.md").read_text()
        assert "| GBR | 3 |" in table
