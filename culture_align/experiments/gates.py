"""Training sanity gates: a trained condition counts only if it trained.

- :func:`check_training_length`: fewer than ``min_steps`` (50) optimizer steps is refused unless the experiment
  says ``allow_short_training: true`` (and then the report marks the row).
- :func:`first_step_learning_rate_schedule`: a linear warm-up over ``floor(ratio x steps)`` steps that starts
  above zero (step s of the warm-up runs at (s + 1) / (w + 1) of the peak), then the trainer's decay. The
  transformers warm-up starts *at* zero, so a run with one step and any warm-up never moves.
- :func:`check_adapter_changed`: after training, an adapter that changes no test distribution by more than
  ``tolerance`` (1e-4) fails the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "MIN_OPTIMIZER_STEPS",
    "TrainingGateError",
    "check_adapter_changed",
    "check_training_length",
    "first_step_learning_rate_schedule",
    "optimizer_steps",
]

#: Optimizer steps a trained condition needs unless ``allow_short_training`` is set.
MIN_OPTIMIZER_STEPS = 50


class TrainingGateError(ValueError):
    """A trained condition would not (or did not) train enough to count."""


def optimizer_steps(n_examples: int, per_device_batch_size: int, gradient_accumulation_steps: int = 1,
                    num_train_epochs: float = 1.0, max_steps: int = -1, world_size: int = 1) -> int:
    """The optimizer steps a ``transformers.Trainer`` takes (``max_steps`` wins when > 0)."""
    if max_steps is not None and max_steps > 0:
        return int(max_steps)
    batches = math.ceil(n_examples / (per_device_batch_size * world_size))
    per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1) if batches else 0  # as transformers 5
    return int(math.ceil(per_epoch * num_train_epochs))


def check_training_length(steps: int, what: str, min_steps: int = MIN_OPTIMIZER_STEPS,
                          allow_short_training: bool = False) -> bool:
    """Raise :class:`TrainingGateError` when ``steps < min_steps`` and short training is not allowed.

    Returns:
        True when the run is short (allowed), so the report can mark it.
    """
    if steps >= min_steps:
        return False
    if not allow_short_training:
        raise TrainingGateError(f"{what}: {steps} optimizer step(s) < {min_steps}; train longer (epochs, max_steps) "
                                "or set allow_short_training: true (the report then marks the row)")
    return True


def first_step_learning_rate_schedule(total_steps: int, warmup_ratio: float = 0.0, decay: str = "linear"
                                      ) -> tuple[int, Callable[[int], float]]:
    """(warm-up steps, multiplier of the peak learning rate at optimizer step s = 0, 1, ...).

    The warm-up has ``floor(warmup_ratio * total_steps)`` steps and starts at 1 / (w + 1) of the peak; ``decay``
    is ``"linear"`` (to 1 / (remaining steps) at the last step, never 0) or ``"constant"``. Every step's multiplier
    is > 0.
    """
    if total_steps < 1:
        raise TrainingGateError(f"no optimizer step to schedule ({total_steps})")
    if decay not in ("linear", "constant"):
        raise ValueError(f"decay must be linear or constant, not {decay!r}")
    warmup = min(int(math.floor(warmup_ratio * total_steps)), total_steps - 1)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if decay == "constant":
            return 1.0
        return (total_steps - step) / max(total_steps - warmup, 1)

    return warmup, multiplier


def check_adapter_changed(base: Iterable[np.ndarray | None], adapted: Iterable[np.ndarray | None], what: str,
                          tolerance: float = 1e-4) -> float:
    """Raise :class:`TrainingGateError` unless some distribution moved by more than ``tolerance``; returns
    max |dp| over the paired distributions."""
    largest = 0.0
    for b, a in zip(base, adapted):
        if b is not None and a is not None:
            largest = max(largest, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    if largest <= tolerance:
        raise TrainingGateError(f"{what}: the trained adapter changes no test distribution (max |dp| = {largest:.2e} "
                                f"<= {tolerance:g}); it did not train (learning rate, steps, data)")
    return largest
