"""Specific mode of the culture-adapter trainers: one trainer per culture, all on one `PeftModel`.

[`train_culture_adapters`] is what `CultureAdapterTrainer.train()` runs in `mode="specific"`. For each culture of the
coordinating trainer, in order:

- a complete `<output_dir>/<ISO3>/` (its `training_info.json` is written last) is checked against the settings and
  data it was trained with and loaded as the named adapter `<ISO3>` (nothing retrained);
- otherwise a fresh LoRA adapter named `<ISO3>` is added to the one `PeftModel` (same seed, same template for every
  culture), and a new trainer of the same class, in joint mode over that adapter, trains it on the culture's rows
  with its own optimizer, schedule and checkpoints in `<output_dir>/<ISO3>/` (`resume_from_checkpoint=True` resumes
  from the last one there); the adapter is saved there with its card and `training_info.json`, and the index
  `culture_adapters.json` gains the culture at once, so a killed run keeps every finished culture.

The coordinating trainer never swaps its own datasets, optimizer or output folder: each culture is a plain TRL
training run of its own.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.trainer_utils import TrainOutput, get_last_checkpoint
from transformers.utils import logging

from ..models import TRAINING_INFO_NAME

if TYPE_CHECKING:
    from .culture_adapters import CultureAdapterTrainer

logger = logging.get_logger(__name__)

__all__ = ["train_culture_adapters", "culture_trainer", "is_complete_adapter"]

# Set on each culture's trainer from the coordinator as it is when training starts (not as it was constructed)
_FROM_COORDINATOR = ("callbacks", "compute_metrics", "preprocess_logits_for_metrics", "optimizers")


def is_complete_adapter(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a finished culture adapter: its `training_info.json`, written last, exists."""
    folder = Path(folder)
    return (folder / TRAINING_INFO_NAME).is_file() and (folder / "adapter_config.json").is_file()


def culture_trainer(coordinator: CultureAdapterTrainer, culture: str) -> CultureAdapterTrainer:
    """A new trainer of the coordinator's class that trains the (active) adapter `culture` of its `PeftModel`.

    It gets the culture's tokenised rows (training and, when given, evaluation), the coordinator's arguments with
    `output_dir=<output_dir>/<ISO3>`, joint mode and no Hub push (the coordinator pushes the whole folder), its
    tokenizer, collator, `optimizer_cls_and_kwargs`, and the callbacks and metrics functions the coordinator holds
    now (callbacks added with `add_callback` included; transformers adds its default and reporting callbacks
    itself); packing happens in the new trainer, as TRL does it.
    """
    from transformers.integrations import get_reporting_integration_callbacks
    from transformers.trainer_callback import DefaultFlowCallback, PrinterCallback, ProgressCallback

    args = copy.copy(coordinator.args)
    args.output_dir = str(Path(coordinator.args.output_dir) / culture)
    args.mode, args.cultures, args.resume_from_checkpoint, args.push_to_hub = "joint", None, None, False
    defaults = (DefaultFlowCallback, PrinterCallback, ProgressCallback,
                *get_reporting_integration_callbacks(coordinator.args.report_to))
    callbacks = [c for c in coordinator.callback_handler.callbacks if not isinstance(c, defaults)]
    kwargs = {k: v for k, v in coordinator._trainer_kwargs.items() if k not in _FROM_COORDINATOR}
    return type(coordinator)(coordinator.peft_model, args=args, train_dataset=coordinator._culture_split("train", culture),
                             eval_dataset=coordinator._culture_split("eval", culture),
                             processing_class=coordinator.processing_class, culture_adapter=culture,
                             callbacks=callbacks, compute_metrics=coordinator.compute_metrics,
                             preprocess_logits_for_metrics=coordinator.preprocess_logits_for_metrics, **kwargs)


def train_culture_adapters(coordinator: CultureAdapterTrainer, resume_from_checkpoint: bool = False,
                           ignore_keys_for_eval: list[str] | None = None) -> TrainOutput:
    """Train (or load) one adapter per culture of `coordinator.cultures` on the coordinator's `PeftModel`.

    Returns:
        The summed optimizer steps and runtime, the step-weighted mean loss, and `train_loss_<ISO3>` for every culture
        trained now. The coordinator's `state` then holds the summed steps and every culture's log history (each entry
        with its `culture`), and `adapter_info` the `training_info.json` record of every culture.
    """
    output_dir = Path(coordinator.args.output_dir)
    outputs: dict[str, TrainOutput] = {}
    for culture in coordinator.cultures:
        folder = output_dir / culture
        if is_complete_adapter(folder):
            coordinator.adapter_info[culture] = coordinator._check_reusable(culture, folder)
            logger.info(f"{culture}: adapter already trained in {folder}; loading it (delete the folder to retrain).")
            coordinator._use_culture_adapter(culture, load_from=folder)
            continue
        coordinator._use_culture_adapter(culture)
        trainer = culture_trainer(coordinator, culture)
        checkpoint = get_last_checkpoint(str(folder)) if resume_from_checkpoint and folder.is_dir() else None
        logger.info(f"{culture}: training adapter {culture!r} on {len(trainer.train_dataset)} rows"
                    + (f", resuming from {checkpoint}" if checkpoint else ""))
        outputs[culture] = trainer.train(checkpoint, None, ignore_keys_for_eval)
        coordinator.state.log_history.extend({**entry, "culture": culture} for entry in trainer.state.log_history)
        coordinator.adapter_info[culture] = coordinator._training_info(culture, outputs[culture].metrics)
        coordinator._save_culture_adapter(culture, folder, coordinator.adapter_info[culture])
        coordinator._write_index(output_dir, {culture: culture})
    coordinator._write_index(output_dir, {culture: culture for culture in coordinator.adapter_info})

    steps = sum(o.global_step for o in outputs.values())
    coordinator.state.global_step = steps
    metrics: dict[str, Any] = {"train_runtime": sum(o.metrics.get("train_runtime", 0.0) for o in outputs.values())}
    for culture, o in outputs.items():
        metrics[f"train_loss_{culture}"] = o.training_loss
    loss = sum(o.training_loss * o.global_step for o in outputs.values()) / steps if steps else 0.0
    metrics["train_loss"] = loss
    return TrainOutput(steps, loss, metrics)
