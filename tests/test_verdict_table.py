"""benchmarks/verdict_table.py: the README's verdict words follow the CIs of results.json, nothing else."""

from __future__ import annotations

import json


def _kl(mean, lo, hi):
    return {"kl_divergence": mean, "kl_divergence_ci95": [lo, hi]}


def test_verdict_words_follow_the_confidence_intervals(import_benchmark, tmp_path):
    table = import_benchmark("verdict_table.py")
    conditions = {name: {"kind": "baseline", "mean": _kl(m, m - 0.05, m + 0.05)} for name, m in
                  [("uniform", 0.35), ("position_prior", 0.30), ("other_culture_humans", 0.25),
                   ("loo_human_mean", 0.11), ("calibrated_base", 0.35), ("culture_prompt", 0.80)]}
    run = {"kind": "trained", "seeds": [0, 1, 2], "mean": _kl(0.24, 0.20, 0.30),
           "info": {"recipe": "answer_distribution", "runs": [{"optimizer_steps": 60}] * 3, "shuffled_labels": False}}
    conditions["ad"] = run
    conditions["ad_shuffled_labels"] = {**run, "info": {**run["info"], "shuffled_labels": True}}

    def diff(baseline, d, lo, hi):
        return {"condition": "ad", "baseline": baseline, "kl_divergence": {"difference": d, "ci95": [lo, hi]}}

    payload = {"conditions": conditions, "protocol": {"split_protocol": "held_out_items", "n_test_cells": 10,
                                                      "n_clusters": 3},
               "split": {"test_items": ["Q1"], "test_cultures": ["USA"]},
               "comparisons": [diff("calibrated_base", -0.11, -0.2, -0.03), diff("position_prior", -0.05, -0.1, 0.01),
                               diff("other_culture_humans", 0.02, 0.01, 0.05), diff("culture_prompt", -0.5, -0.7, -0.3),
                               diff("ad_shuffled_labels", 0.003, -0.01, 0.02)],
               "specificity": {"ad": {"specificity_index": 0.0004, "specificity_index_ci95": [-0.0001, 0.001]},
                               "humans": {"specificity_index": 0.25}}}
    (tmp_path / "results.json").write_text(json.dumps(payload))
    [row] = table.verdict_rows(tmp_path)
    assert "**beats** calibrated base: -0.110" in row
    assert "no different from position prior" in row  # its CI crosses 0
    assert "worse than other_culture_humans" in row  # the strongest no-model baseline here (lowest KL)
    assert "no different from its shuffled labels" in row and "ad_shuffled_labels`" not in row  # no control row
    assert "0.0004 [-0.0001, 0.0010]" in row
    assert "loo_human_mean 0.110" in table.baseline_line(tmp_path)


def test_the_readme_block_is_replaced_between_its_markers(import_benchmark, tmp_path):
    table = import_benchmark("verdict_table.py")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- verdicts:start -->\nold table\n<!-- verdicts:end -->\noutro\n")
    table.replace_block(readme, "new table")
    assert readme.read_text() == "intro\n<!-- verdicts:start -->\nnew table\n<!-- verdicts:end -->\noutro\n"
    readme.write_text("no markers")
    import pytest

    with pytest.raises(ValueError, match="markers"):
        table.replace_block(readme, "x")
