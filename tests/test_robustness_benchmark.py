"""benchmarks/robustness.py: its classifier tells each outcome apart, and the library passes its cases (loaders,
torn caches, the metric, the CLI) with no traceback, silent wrong result or lost data."""

from __future__ import annotations


def test_the_classifier_catches_each_kind_of_failure(import_benchmark, tmp_path):
    robustness = import_benchmark("robustness.py")
    Case, classify = robustness.Case, robustness.classify
    kept = tmp_path / "user.txt"
    kept.write_text("mine")

    def raises(error):
        def run():
            raise error
        return run

    assert classify(Case("x", "named", raises(ValueError(f"{kept}: bad")), "error", names=(str(kept),)))[0] \
        == "clear_error"
    assert classify(Case("x", "unnamed", raises(ValueError("bad")), "error", names=(str(kept),)))[0] \
        == "unclear_error"
    assert classify(Case("x", "type", raises(TypeError("oops")), "error"))[0] == "traceback"
    assert classify(Case("x", "accepted", lambda: 1, "error"))[0] == "silent_wrong"
    assert classify(Case("x", "wrong", lambda: 1, lambda v: v == 2))[0] == "silent_wrong"
    assert classify(Case("x", "right", lambda: 2, lambda v: v == 2))[0] == "correct"
    assert classify(Case("x", "lost", lambda: kept.write_text("gone"), "error", protected=(kept,)))[0] == "data_lost"


def test_the_library_passes_the_hostile_cases(import_benchmark, tmp_path):
    robustness = import_benchmark("robustness.py")
    cases = (robustness.loader_cases(tmp_path) + robustness.metric_cases() + robustness.cli_cases(tmp_path)
             + robustness.cache_cases(tmp_path)[::17])
    result = robustness.run_cases(cases)
    assert result["inputs_tried"] == len(cases) > 100
    assert result["not_clear_or_correct"] == []
    assert result["traceback"] == result["silent_wrong"] == result["data_lost"] == 0
