"""`culture-align generate clca` and `culture-align train clca` (also `examples/generate_clca.py`,
`examples/train_clca.py`).

Each command reads one flat YAML file (``--config``; the TRL convention) whose keys are its options, and flags
override the file (``--help`` lists them all, with their help). ``generate clca``: :class:`CLCAGenerateArguments`
(the backends and the output folder) and every field of :class:`~culture_align.recipes.clca.CLCAPipelineConfig`::

    teacher: {backend: transformers, model: smollm2-135m-instruct}   # or {backend: openai, base_url: ..., model: ...}
    output_dir: runs/clca-data
    cultures: [GBR, CHN]
    num_scenarios: 4
    max_turns: 4
    roleplay_params: {max_new_tokens: 160}   # applied over the recipe's default params

``train clca``: the fields of TRL's ``ModelConfig`` (model, LoRA), of :class:`~culture_align.trainers.CLCAConfig` (all
of ``SFTConfig`` plus ``intent_loss_weight``, ``dialogue_loss_weight``, ``tasks``) and :class:`TrainScriptArguments`
(``dataset_path``, ``eval_fraction``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..embedded_models import DEFAULT_MODEL
from .checks import check_backend_spec, check_output_dir, check_training_args
from .config import hold_out_split, load_training_dataset, parse_command

__all__ = ["generate_main", "train_main", "CLCAGenerateArguments", "TrainScriptArguments",
           "backend_spec"]

BACKEND_HELP = ("a model for a local transformers backend (a Hub id, folder or embedded alias), or a backend "
                "mapping {backend: transformers | openai | vllm, ...} (e.g. {backend: openai, base_url: "
                "http://127.0.0.1:8000/v1, model: ...})")


def backend_spec(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A backend option as ``backend_from_config`` takes it: a model name becomes a local transformers backend."""
    if value is None or isinstance(value, dict):
        return value
    return {"backend": "transformers", "model": value}


@dataclass
class CLCAGenerateArguments:
    """The backends and the output folder of ``culture-align generate clca``."""

    teacher: Any = field(default=DEFAULT_MODEL, metadata={"json": True, "help": f"The teacher: {BACKEND_HELP}."})
    roleplay: Any = field(default=None, metadata={"json": True, "help": "The role-play agents (default: the "
                                                                        "teacher)."})
    judge: Any = field(default=None, metadata={"json": True, "help": "The judge (default: the teacher)."})
    annotator: Any = field(default=None, metadata={"json": True, "help": "The intent annotator (default: the "
                                                                          "teacher)."})
    output_dir: str = field(default="runs/clca-data", metadata={
        "help": "Output folder (resumes when it exists). With num_shards > 1, each worker runs in "
                "<output_dir>/shard-<index>-of-<N>, both numbers zero-padded to five digits (index 1 of 4: "
                "shard-00001-of-00004; join them with `culture-align merge-shards`)."})


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CLCA data pipeline from a flat YAML config; flags override it."""
    from ..backends.factory import backend_from_config
    from ..recipes.clca import CLCAPipeline, CLCAPipelineConfig

    args, config = parse_command((CLCAGenerateArguments, CLCAPipelineConfig), argv,
                                 prog="culture-align generate clca", description=__doc__)
    specs = {role: backend_spec(getattr(args, role)) for role in ("teacher", "roleplay", "judge", "annotator")}
    for role, spec in specs.items():
        check_backend_spec(role, spec)
    run_dir = Path(args.output_dir)
    if config.num_shards > 1:
        from ..recipes.sharding import shard_folder_name

        run_dir = run_dir / shard_folder_name(config.shard_index, config.num_shards)
    check_output_dir(run_dir, "output_dir")
    built = {role: backend_from_config(spec) if spec else None for role, spec in specs.items()}
    corpus = CLCAPipeline(built["teacher"], roleplay=built["roleplay"], judge=built["judge"],
                          annotator=built["annotator"], config=config).run(run_dir)
    stats = json.loads((run_dir / "stats.json").read_text())
    print(json.dumps(stats.get("counts", {}), indent=2))
    print(f"{len(corpus['dialogues'])} dialogues, {len(corpus['train'])} training conversations, "
          f"{len(corpus['rejections'])} rejections -> {run_dir / 'dataset'}")
    if config.num_shards > 1:
        print(f"shard {config.shard_index} of {config.num_shards} done; once all are: culture-align merge-shards "
              f"{Path(args.output_dir) / 'shard-*'} --out {args.output_dir}")
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
    """Train a CLCA adapter with :class:`CLCATrainer` from a flat YAML config and flags."""
    from trl import ModelConfig, get_peft_config

    from ..models import resolve_model_path
    from ..trainers import CLCAConfig, CLCATrainer, end_distributed_run

    script_args, training_args, model_args = parse_command(
        (TrainScriptArguments, CLCAConfig, ModelConfig), argv, prog="culture-align train clca", description=__doc__)
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
