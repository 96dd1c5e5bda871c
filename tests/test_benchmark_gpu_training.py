"""`benchmarks/gpu_training.py` refuses cleanly without CUDA and skips recipes whose trainer is not importable.
(Its CPU smoke run, `--device cpu --model tiny`, trains for real and is left to the command line.)"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def benchmark(import_benchmark):
    return import_benchmark("gpu_training.py")


def test_refuses_without_cuda(benchmark, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "results.json"
    assert benchmark.main(["--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == "no GPU: nothing measured"
    assert not out.exists()


def test_skips_recipes_whose_trainer_is_missing(benchmark, monkeypatch, tmp_path, capsys):
    def missing(num_examples):
        raise ImportError("No module named 'culture_align.trainers.culturespa'")

    monkeypatch.setitem(benchmark.SETUPS, "culturespa", missing)
    monkeypatch.setattr(benchmark, "measure", lambda *a, **k: pytest.fail("nothing is left to measure"))
    out = tmp_path / "results.json"
    assert benchmark.main(["--device", "cpu", "--recipes", "culturespa", "--model", "unused", "--out",
                           str(out)]) == 1
    assert "culturespa: skipped (trainer not importable" in capsys.readouterr().err
    assert '"culturespa": "trainer not importable' in out.read_text()
    with pytest.raises(SystemExit):
        benchmark.main(["--device", "cpu", "--recipes", "clca,dpo"])
