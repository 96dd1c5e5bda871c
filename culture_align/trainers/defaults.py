"""Defaults the recipe configs resolve the way a user expects on the machine at hand.

- `bf16`: TRL defaults it to `True` (unless `fp16`), which `TrainingArguments` then refuses on a machine without a
  bf16-capable accelerator: a minimal config fails on a CPU-only machine. The recipe configs keep TRL's default
  where transformers accepts bf16 and fall back to 32-bit elsewhere; an explicit value is kept as given.
- `resume_from_checkpoint`: a `str` field in `TrainingArguments`, so `--resume_from_checkpoint true` arrives as the
  string `"true"`; it is read as a boolean the way `HfArgumentParser` reads boolean flags.
"""

from __future__ import annotations

import os

from transformers.hf_argparser import string_to_bool
from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

__all__ = ["default_bf16", "parse_resume_from_checkpoint"]

_TRUTH_WORDS = {"yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"}


def default_bf16(fp16: bool, use_cpu: bool) -> bool:
    """The `bf16` a config gets when none is given: TRL's default (bf16 unless `fp16`) where transformers accepts
    bf16 (training on the CPU with `use_cpu`, a GPU/XPU/NPU/... that supports bf16, or XLA), else `False`."""
    if fp16:
        return False
    return bool(use_cpu or is_torch_bf16_gpu_available() or is_torch_xla_available())


def parse_resume_from_checkpoint(value: str | bool | None) -> str | bool | None:
    """`resume_from_checkpoint` as `Trainer.train` takes it: `"true"`/`"false"` (and the other words
    `HfArgumentParser` reads as booleans: yes/no, t/f, y/n, 1/0) become `True`/`False`, unless a folder of that
    name exists; a checkpoint path stays a string."""
    if isinstance(value, str) and value.strip().lower() in _TRUTH_WORDS and not os.path.isdir(value):
        return string_to_bool(value.strip())
    return value
