"""`benchmarks/gpu_realistic.py`: the 8B-shaped GPU benchmark refuses without CUDA, and its `--shape tiny`
run on the CPU goes through every section (evaluation, training, `accelerate launch`, role-play) and writes
numbers for each. (The tiny run takes about 30 s on one thread; the 8B run needs the GPU.)"""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def benchmark(import_benchmark):
    return import_benchmark("gpu_realistic.py")


def test_refuses_without_cuda_and_writes_nothing(benchmark, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "results.json"
    assert benchmark.main(["--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == benchmark.NO_GPU
    with pytest.raises(SystemExit):  # the 8B shape never runs on the CPU
        benchmark.main(["--shape", "8b", "--device", "cpu", "--out", str(out)])
    assert "--shape 8b runs on --device cuda only" in capsys.readouterr().err
    assert not out.exists()


def test_reply_steering_token_classes(benchmark):
    """The tokens the role-play's steering favours (they end a JSON string) and blocks (they spell leave)."""
    assert all(benchmark._closes_string(piece) for piece in ('"', '."}', '!"', ' "'))
    assert not any(benchmark._closes_string(piece) for piece in ('",', "a", '\\"', '"x'))
    assert all(benchmark._spells_leave(piece) for piece in (' "le', "l", "leave", 'leave"'))
    assert not benchmark._spells_leave("speak")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_tiny_run_on_cpu_fills_every_section(benchmark, tmp_path):
    out = tmp_path / "gpu_realistic.json"
    argv = ["--shape", "tiny", "--device", "cpu", "--out", str(out), "--eval-items", "6",
            "--train-steps", "1", "--train-warmup-steps", "1"]
    assert benchmark.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["shape"] == "tiny" and report["device"].startswith("CPU")
    assert report["versions"]["torch"] and report["versions"]["transformers"]
    assert "--shape tiny" in report["command"] and report["budgets"]["train_steps"] == 1
    assert report["model"]["config"]["num_hidden_layers"] == 2 and positive(report["model"]["parameters"])
    sections = report["sections"]
    assert list(sections) == list(benchmark.SECTIONS)
    errors = {name: section.get("error") for name, section in sections.items()}
    assert all(section["status"] == "ok" for section in sections.values()), errors

    evaluation = sections["wvs_evaluation"]
    assert evaluation["cells"] == 6 * 2 and evaluation["items"] == 6
    for key in ("logprob_seconds", "logprob_items_per_s", "generate_items_per_s", "speedup_items_per_s"):
        assert positive(evaluation[key]), key

    training = sections["training"]
    assert set(training["runs"]) == set(benchmark.TRAINERS) and "4*N_body*T" in training["flops_formula"]
    for run in [*training["runs"].values(), training["clca_variants"]["batch_x2"]]:
        for key in ("tokens_per_second", "model_flops_per_token", "achieved_tflops", "mfu", "seconds"):
            assert positive(run[key]), (run.get("trainer"), key, run)
        assert run["activation_checkpointing"] is False
    assert training["clca_variants"]["batch_x2"]["batch_size"] == 2 * training["runs"]["clca"]["batch_size"]
    assert training["limits"] and training["base_model_clean_afterwards"] is True

    configs = sections["accelerate"]["configs"]
    assert set(configs) == set(benchmark.ACCELERATE_CONFIGS)
    assert "unverified" in sections["accelerate"]["multi_gpu"]
    ddp = configs["ddp"]
    assert ddp["status"] == "ok" and ddp["adapter_loads"] and ddp["adapter_trained"] and ddp["steps"] == 2
    for name in ("deepspeed_zero2", "deepspeed_zero3", "fsdp"):  # on the CPU only DDP runs
        assert configs[name]["status"] == "skipped" and configs[name]["reason"]

    roleplay = sections["roleplay"]
    assert set(roleplay["runs"]) == {"ours_continuous", "hf_generate_dynamic_cache",
                                     "hf_generate_static_cache"}
    for run in roleplay["runs"].values():
        assert positive(run["tokens_per_second"]) and positive(run["generated_tokens"])
        assert run["turns_played"] > 0
    assert positive(roleplay["speedup_tokens_per_s"]) and roleplay["best_transformers_path"]
