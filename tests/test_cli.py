"""The culture-align command line, end to end on the tiny model and data written by the test."""

from __future__ import annotations

import json
import re

import numpy as np

from culture_align.cli import build_parser, main


def _write_data(tmp_path, tiny_wvs):
    questions = [q.to_dict() for q in tiny_wvs.questions.values()]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    dists = {c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
                 for q, probs in cells.items()} for c, cells in tiny_wvs.distributions.items()}
    dists["CHN"]["Q182"] = {}  # an empty cell
    (tmp_path / "dists.json").write_text(json.dumps(dists))


def test_eval_writes_report(tmp_path, tiny_model_dir, tiny_wvs, capsys):
    _write_data(tmp_path, tiny_wvs)
    out = tmp_path / "out"
    code = main(["eval", "--model", str(tiny_model_dir), "--distributions", str(tmp_path / "dists.json"),
                 "--questions", str(tmp_path / "questions.json"), "--cultures", "USA,CHN",
                 "--setting", "culture-unaware,culture-aware", "--exclude-items", "Q27", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| USA | culture-aware |" in printed and "*uniform*" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["cultures"] == ["USA", "CHN"]
    usa = next(r for r in results["summary"] if r["culture"] == "USA" and r["setting"] == "culture-aware")
    chn = next(r for r in results["summary"] if r["culture"] == "CHN" and r["setting"] == "culture-aware")
    assert usa["n_items"] == 5 and chn["n_items"] == 4  # Q27 held out; CHN's Q182 cell is empty
    assert np.isfinite(usa["kl_divergence"])
    assert (out / "plots" / "kl_by_culture.png").is_file()


def test_eval_sampling_mode_and_items_file(tmp_path, tiny_model_dir, tiny_wvs):
    _write_data(tmp_path, tiny_wvs)
    (tmp_path / "items.txt").write_text("Q1\nQ57\n")
    out = tmp_path / "out"
    code = main(["eval", "--model", str(tiny_model_dir), "--distributions", str(tmp_path / "dists.json"),
                 "--questions", str(tmp_path / "questions.json"), "--cultures", "DEU", "--mode", "sampling",
                 "--samples", "3", "--max-new-tokens", "2", "--items", str(tmp_path / "items.txt"),
                 "--setting", "culture-unaware", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    row = results["summary"][0]
    assert row["samples"] == 6 and results["config"]["mode"] == "sampling"


def test_eval_errors_are_reported_not_raised(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "dists.json"
    bad.write_text('{"USA": {"Q1": {"1": -0.5, "2": 1.0}}}')
    code = main(["eval", "--model", str(tiny_model_dir), "--distributions", str(bad), "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "dists.json" in err and "USA/Q1" in err


def test_eval_that_would_score_nothing_exits_2_before_loading_the_model(tmp_path, tiny_wvs, capsys,
                                                                         monkeypatch):
    import culture_align.models

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(culture_align.models, "load_model_and_tokenizer", no_model)
    _write_data(tmp_path, tiny_wvs)
    (tmp_path / "goqa.json").write_text(json.dumps([
        {"question": "A Pew question", "options": "['A', 'B']", "selections": "{'Germany': [0.5, 0.5]}",
         "source": "GAS"}]))
    data = ["--distributions", str(tmp_path / "dists.json"), "--questions", str(tmp_path / "questions.json")]
    cases = [
        ([*data, "--cultures", ","], "--cultures lists nothing"),
        ([*data, "--cultures", " , "], "--cultures lists nothing"),
        ([*data, "--setting", ","], "--setting lists nothing"),
        ([*data, "--items", ","], "--items lists nothing"),
        ([*data, "--samples", "0"], "--samples must be >= 1"),
        ([*data, "--mode", "sampling", "--samples", "0"], "--samples must be >= 1"),
        ([*data, "--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
        ([*data, "--exclude-items", ",".join(tiny_wvs.questions)], "no item to score"),
        ([*data, "--cultures", "CHN", "--items", "Q182"], "nothing to score: none of the 1 item"),
        (["--wvs", str(tmp_path / "goqa.json")], "goqa.json: no GlobalOpinionQA data .* no row has the"),
    ]
    for flags, message in cases:
        code = main(["eval", "--model", "no-such-model", *flags, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2, flags
        assert err.startswith("culture-align eval: error: ") and err.count("\n") == 1, (flags, err)
        assert re.search(message, err), (flags, err)
    assert not (tmp_path / "out").exists()


def test_parser_defaults():
    from culture_align.scripts.demo import parse_demo_args
    from culture_align.scripts.evaluation import parse_eval_args

    args, _ = parse_demo_args([])
    assert args.model == "smollm2-135m-instruct" and args.cultures == ["USA", "CHN", "DEU"]
    args, data, config = parse_eval_args(["--wvs", "x", "--cultures", "gbr, chn"])
    assert args.cultures == ["gbr", "chn"] and config.mode == "logprob" and data.wvs == "x"
    assert build_parser().parse_args(["train", "clca"]).recipe == "clca"
