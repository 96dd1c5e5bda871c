"""Ending a data-parallel run cleanly (``accelerate launch`` / ``torchrun``, DDP over gloo or NCCL)."""

from __future__ import annotations

import gc

from accelerate import Accelerator

__all__ = ["end_distributed_run"]


def end_distributed_run(accelerator: Accelerator) -> None:
    """Wait for every process, free the models the run holds, then destroy the process group.

    Call it after the last collective (training, saving) and after dropping your own references to the trainer
    (``accelerator = trainer.accelerator; del trainer``). The order matters: a DDP model freed after its process
    group is gone can hang in its destructor, and a process group left to the interpreter's exit can abort the
    process (``terminate called without an active exception``) after its work is done; ``torchrun`` then fails the
    whole run. In a single process it only releases memory.
    """
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # the accelerator's own references to the (DDP-wrapped) model and optimizer
    gc.collect()  # the trainer's reference cycles, so the DDP reducer goes while the process group is alive
    accelerator.end_training()  # trackers, then the process group
