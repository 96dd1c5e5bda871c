"""`culture-align generate clca` and `culture-align train clca` (also `examples/train_clca.py`).

``generate`` reads the ``generate:`` section of a YAML config::

    generate:
      teacher: {backend: transformers, model: smollm2-135m-instruct}   # or {backend: openai, base_url: ..., model: ...}
      roleplay: null          # default: the teacher; judge / annotator likewise
      output_dir: runs/clca-data
      cultures: [GBR, CHN]
      num_scenarios: 4
      max_turns: 4
      roleplay_params: {max_new_tokens: 160}

``train`` reads the ``train:`` section: the fields of TRL's ``ModelConfig`` (model, LoRA), of
:class:`~culture_align.trainers.CLCAConfig` (all of ``SFTConfig`` plus ``intent_loss_weight``, ``dialogue_loss_weight``, ``tasks``) and
``dataset_path``. Command-line flags override the file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..embedded_models import DEFAULT_MODEL
from .checks import check_backend_spec, check_output_dir, check_training_args
from .config import (
    dataclass_from_dict,
    hold_out_split,
    load_config_section,
    load_training_dataset,
    parse_dataclasses,
    pop_config_flag,
)

__all__ = ["generate_main", "train_main", "TrainScriptArguments", "pipeline_config_from_dict"]


def pipeline_config_from_dict(values: dict[str, Any]):
    """A :class:`CLCAPipelineConfig` from plain values (``*_params`` given as dicts of GenerationParams fields)."""
    from ..recipes.clca import CLCAPipelineConfig

    return dataclass_from_dict(CLCAPipelineConfig, values, "CLCA pipeline")


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CLCA data pipeline from a YAML config; flags override it."""
    parser = argparse.ArgumentParser(prog="culture-align generate clca", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with a `generate:` section")
    parser.add_argument("--teacher", help="model for a transformers teacher (overrides the config)")
    parser.add_argument("--output-dir", help="output folder (resumes when it exists)")
    parser.add_argument("--cultures", help="comma-separated ISO3 codes")
    parser.add_argument("--num-scenarios", type=int)
    parser.add_argument("--max-turns", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-shards", type=int, help="split the seed scenarios over N workers (default 1)")
    parser.add_argument("--shard-index", type=int, help="the shard this worker generates, in [0, N); it runs in "
                        "<output-dir>/shard-<index>-of-<N>, both numbers zero-padded to five digits (index 1 of 4: "
                        "shard-00001-of-00004; join them with `culture-align merge-shards`)")
    args = parser.parse_args(argv)

    from ..backends.factory import backend_from_config
    from ..recipes.clca import CLCAPipeline

    section = load_config_section(args.config, "generate")
    teacher_spec = {"backend": "transformers", "model": args.teacher} if args.teacher else section.pop(
        "teacher", {"backend": "transformers", "model": DEFAULT_MODEL})
    section.pop("teacher", None)
    output_dir = args.output_dir or section.pop("output_dir", "runs/clca-data")
    section.pop("output_dir", None)
    specs = {role: section.pop(role, None) for role in ("roleplay", "judge", "annotator")}
    for flag, key in (("cultures", "cultures"), ("num_scenarios", "num_scenarios"), ("max_turns", "max_turns"),
                      ("seed", "seed"), ("num_shards", "num_shards"), ("shard_index", "shard_index")):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    config = pipeline_config_from_dict(section)
    for role, spec in {"teacher": teacher_spec, **specs}.items():
        check_backend_spec(role, spec)
    run_dir = Path(output_dir)
    if config.num_shards > 1:
        from ..recipes.sharding import shard_folder_name

        run_dir = run_dir / shard_folder_name(config.shard_index, config.num_shards)
    check_output_dir(run_dir, "output_dir")
    teacher = backend_from_config(teacher_spec)
    built = {role: backend_from_config(spec) if spec else None for role, spec in specs.items()}
    corpus = CLCAPipeline(teacher, roleplay=built["roleplay"], judge=built["judge"],
                          annotator=built["annotator"], config=config).run(run_dir)
    stats = json.loads((run_dir / "stats.json").read_text())
    print(json.dumps(stats.get("counts", {}), indent=2))
    print(f"{len(corpus['dialogues'])} dialogues, {len(corpus['train'])} training conversations, "
          f"{len(corpus['rejections'])} rejections -> {run_dir / 'dataset'}")
    if config.num_shards > 1:
        print(f"shard {config.shard_index} of {config.num_shards} done; once all are: culture-align merge-shards "
              f"{Path(output_dir) / 'shard-*'} --out {output_dir}")
    return 0


@dataclass
class TrainScriptArguments:
    """What to train on."""

    dataset_path: str = field(default="runs/clca-data/dataset", metadata={
        "help": "A DatasetDict saved by the pipeline (save_to_disk folder), a Hub dataset id, or a "
                "local Parquet/JSON(L) file with `messages` and `task` columns."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_fraction: float = field(default=0.0, metadata={
        "help": "Share of the dialogues held out for evaluation (0 = none): every row of a dialogue (both "
                "perspectives, dialogue and intent) on one side, by `dialogue_id` (single rows without it)."})


def train_main(argv: Sequence[str] | None = None) -> int:
    """Train a CLCA adapter with :class:`CLCATrainer` from a YAML config (``train:`` section) and flags."""
    from trl import ModelConfig, get_peft_config

    from ..models import resolve_model_path
    from ..trainers import CLCAConfig, CLCATrainer, end_distributed_run

    argv, config_path = pop_config_flag(argv)
    defaults = load_config_section(config_path, "train")
    script_args, training_args, model_args = parse_dataclasses(
        (TrainScriptArguments, CLCAConfig, ModelConfig), argv, defaults)
    model_name = model_args.model_name_or_path or DEFAULT_MODEL
    check_training_args(training_args, script_args, model_name)
    model_path = resolve_model_path(model_name)
    dataset = load_training_dataset(script_args.dataset_path, script_args.dataset_split,
                                    required_columns=("messages",))
    eval_dataset = None
    if script_args.eval_fraction > 0:
        dataset, eval_dataset = hold_out_split(dataset, script_args.eval_fraction, training_args.seed,
                                               group_column="dialogue_id")
    if model_args.dtype and model_args.dtype != "auto":
        training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "dtype": model_args.dtype}
    trainer = CLCATrainer(model=model_path, args=training_args, train_dataset=dataset, eval_dataset=eval_dataset,
                          peft_config=get_peft_config(model_args))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub()
    print(f"adapter saved to {training_args.output_dir}")
    accelerator = trainer.accelerator
    del trainer
    end_distributed_run(accelerator)  # under `accelerate launch` / torchrun: a clean exit on every rank
    return 0
