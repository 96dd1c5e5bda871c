"""The version floors in pyproject.toml: at least the first release of each library with what the code calls, met by
the installed versions, which have those symbols.

The floors were found by reading the releases: TRL 1.14 has no `common_prefix_length` and 1.13 neither
`global_then_local_main_first` nor the fused LM head, all in 1.15, whose fused head runs on Triton only (CUDA/XPU)
and fails on the CPU; 1.16 falls back to PyTorch there. Transformers 5.13 has no `get_layer_types_and_kwargs`
(5.14 has); PEFT 0.18's `PeftModel.add_adapter` takes no `autocast_adapter_dtype` (0.19's does).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

#: package -> the first release with every symbol the code uses from it
NEEDED = {"trl": "1.16", "transformers": "5.14", "peft": "0.19"}


def _floors() -> dict[str, Version]:
    """The ``>=`` floor of each dependency in pyproject.toml."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    floors = {}
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if lower:
            floors[requirement.name.lower()] = max(lower)
    return floors


@pytest.mark.parametrize("package", sorted(NEEDED))
def test_floor_is_the_first_release_with_what_the_code_uses(package):
    assert _floors()[package] >= Version(NEEDED[package]), (
        f"pyproject.toml lets {package} {_floors()[package]} in; the code needs {NEEDED[package]}")


def test_installed_versions_meet_the_floors():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name.lower() not in NEEDED:
            continue
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)


def test_the_symbols_the_floors_stand_for_exist():
    from peft import PeftModel
    from transformers import TrainingArguments
    from transformers.cache_utils import get_layer_types_and_kwargs  # noqa: F401  (backends/kv_cache.py)
    from trl.data_utils import common_prefix_length  # noqa: F401  (trainers/clca.py)
    from trl.trainer.utils import FusedCausalLMOutput, add_fused_lm_head, global_then_local_main_first  # noqa: F401

    fused = {f.name for f in dataclasses.fields(FusedCausalLMOutput)}
    assert {"log_probs", "label_mask"} <= fused  # what CLCATrainer.compute_loss reads
    assert "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}
    assert "autocast_adapter_dtype" in inspect.signature(PeftModel.add_adapter).parameters


def test_the_fused_lm_head_runs_on_the_cpu():
    """CLCATrainer's loss reads `log_probs` and `label_mask` of TRL's fused LM head; TRL 1.15's is Triton-only."""
    import torch
    from conftest import build_tiny_llama
    from trl.trainer.utils import add_fused_lm_head

    model = build_tiny_llama(vocab_size=64)
    add_fused_lm_head(model, outputs=("log_probs",))
    input_ids = torch.randint(0, 64, (2, 7))
    labels = input_ids.clone()
    labels[:, :3] = -100
    outputs = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    expected = torch.log_softmax(model(input_ids=input_ids).logits[:, :-1].float(), dim=-1).gather(
        -1, input_ids[:, 1:, None])[..., 0]
    mask = labels[:, 1:] != -100
    assert torch.equal(outputs.label_mask, mask)
    assert torch.allclose(outputs.log_probs[mask], expected[mask], atol=1e-4)
