"""Real data-parallel training: ``torchrun --nproc_per_node 2`` (DDP over gloo, on CPU) runs CLCATrainer with
LoRA on the tiny Llama, and a single process runs it on the same global batches (2 processes x batch 1 vs. 1
process x batch 2). The per-task losses of every step, the joint loss, the gradient norm and the trained adapter
must match, and only rank 0 may write (adapter, tokenizer, model card).

The worker is ``tests/distributed_worker.py``; both runs go as subprocesses, at the same time, with a bound on
their wall time. (accelerate's CPU launcher starts a single process; torchrun is the way to get two.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 240
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:  # the child keeps its own handle
        return subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=WORKER.parent.parent)


def _wait(process: subprocess.Popen, log: Path, what: str) -> None:
    try:
        code = process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the process group: torchrun and its workers
        process.wait()
        pytest.fail(f"{what} did not finish in {TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
    assert code == 0, f"{what} failed ({code}):\n{log.read_text()[-4000:]}"


def _steps(log_file: Path) -> list[dict]:
    history = json.loads(log_file.read_text())["log_history"]
    return [entry for entry in history if "loss" in entry]  # one entry per optimizer step (logging_steps=1)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    python = sys.executable
    ddp_cmd = [python, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tiny_model_dir),
               str(root / "ddp"), "--per-device-batch-size", "1"]
    single_cmd = [python, str(WORKER), str(tiny_model_dir), str(root / "single"), "--per-device-batch-size", "2"]
    ddp = _start(ddp_cmd, root / "ddp.log")
    single = _start(single_cmd, root / "single.log")
    _wait(ddp, root / "ddp.log", "torchrun --nproc_per_node 2")
    _wait(single, root / "single.log", "the single-process run")
    return root


def test_two_processes_log_the_single_process_losses(runs):
    single = _steps(runs / "single" / "log-rank-0.json")
    rank0, rank1 = _steps(runs / "ddp" / "log-rank-0.json"), _steps(runs / "ddp" / "log-rank-1.json")
    assert json.loads((runs / "ddp" / "log-rank-1.json").read_text())["world_size"] == 2
    assert len(single) == len(rank0) == len(rank1) == 4
    # the worker's batches: (dialogue, intent), (intent, dialogue), (dialogue, dialogue), (intent, intent)
    tasks = [{k for k in ("loss_dialogue", "loss_intent") if k in step} for step in single]
    assert tasks == [{"loss_dialogue", "loss_intent"}] * 2 + [{"loss_dialogue"}, {"loss_intent"}]
    for step, (one, first, second) in enumerate(zip(single, rank0, rank1)):
        assert set(one) == set(first) == set(second)
        for key in ("loss", "loss_dialogue", "loss_intent", "grad_norm"):
            if key in one:
                assert first[key] == pytest.approx(one[key], rel=TOLERANCE), (step, key)
                assert second[key] == first[key], (step, key)  # every rank logs the global value
        joint = one.get("loss_dialogue", 0.0) + 0.5 * one.get("loss_intent", 0.0)  # intent_loss_weight=0.5
        assert one["loss"] == pytest.approx(joint, rel=TOLERANCE)
        assert first["num_tokens"] == one["num_tokens"]  # tokens counted over both processes
    assert len({round(step["loss"], 3) for step in single}) == 4  # the steps differ: a real comparison


def test_two_processes_train_the_single_process_adapter(runs):
    single = load_file(runs / "single" / "rank-0" / "adapter_model.safetensors")
    ddp = load_file(runs / "ddp" / "rank-0" / "adapter_model.safetensors")
    assert single.keys() == ddp.keys() and len(single) == 2 * 2 * 3  # A and B of 3 modules x 2 layers
    for name, weight in single.items():
        torch.testing.assert_close(ddp[name], weight, rtol=1e-4, atol=1e-6, msg=name)
    assert any(name.endswith("lora_B.weight") and weight.abs().max() > 0 for name, weight in single.items())


def test_only_rank_zero_writes(runs):
    written = _files(runs / "ddp" / "rank-0")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(written)
    assert _files(runs / "ddp" / "rank-1") == []
    assert "clca" in (runs / "ddp" / "rank-0" / "README.md").read_text()
