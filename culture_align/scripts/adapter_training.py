"""`culture-align train culturespa`, `culture-align train culturellm` and `culture-align train distribution` (also
`examples/train_culturespa.py`, `examples/train_culturellm.py`, `examples/train_distribution.py`): culture adapters,
joint or one per culture, from a flat YAML config (the TRL convention) and flags.

Each reads one flat YAML file (``--config``) whose keys are its options (``--help`` lists them): the fields of TRL's
``ModelConfig`` (model, LoRA: the recipe's
reference values by default), of the recipe's config (:class:`~culture_align.trainers.CultureSPAConfig` or
:class:`~culture_align.trainers.CultureLLMConfig`: all of ``SFTConfig`` plus ``mode``, ``culture_column``,
``cultures``) and ``dataset_path``. Command-line flags override the file::

    culture-align train culturespa --config examples/configs/culturespa_train.yaml --mode specific
    culture-align train distribution --config examples/configs/distribution_train.yaml --split runs/x/split.json
    accelerate launch examples/train_culturellm.py --config examples/configs/culturellm_train.yaml --mode joint

``dataset_path`` is a recipe run's output folder (its ``dataset/`` is read), a dataset saved with
``save_to_disk``, a Parquet/JSON(L)/CSV file or a Hub dataset id, with ``messages`` and ``culture`` columns. In
specific mode the adapters land in ``<output_dir>/<ISO3>/``; a rerun skips the cultures already finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..embedded_models import DEFAULT_MODEL
from .checks import check_training_args
from .config import hold_out_split, load_training_dataset, parse_command

__all__ = ["AdapterTrainScriptArguments", "DistributionTrainScriptArguments", "train_culturellm_main",
           "train_culturespa_main", "train_distribution_main"]


@dataclass
class AdapterTrainScriptArguments:
    """What to train on."""

    dataset_path: str | None = field(default=None, metadata={
        "help": "A recipe run's output folder (its `dataset/` is read), a dataset saved with save_to_disk, a "
                "Parquet/JSON(L)/CSV file or a Hub dataset id, with `messages` and `culture` columns."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_fraction: float = field(default=0.0, metadata={
        "help": "Share of the records held out for evaluation (0 = none), stratified by culture."})


@dataclass
class DistributionTrainScriptArguments(AdapterTrainScriptArguments):
    """What `train distribution` trains on: distribution rows from WVS data, from a recipe corpus, or as given."""

    dataset_path: str | None = field(default=None, metadata={
        "help": "Rows with `prompt`, `choices`, `target` (and `culture`), or, with `corpus_recipe`, a CultureSPA / "
                "CultureLLM run folder whose corpus becomes soft-label rows."})
    corpus_recipe: str | None = field(default=None, metadata={
        "help": "`culturespa` (target: the culture-aware answer distribution) or `culturellm` (target: the seed's "
                "human distribution): read `dataset_path` as that recipe's corpus.", "choices": ["culturespa",
                                                                                               "culturellm"]})
    wvs: str | None = field(default=None, metadata={
        "help": "WVS data (any source `load_wvs` reads): train on its human distributions instead of `dataset_path`."})
    split: str | None = field(default=None, metadata={
        "help": "With `wvs`: an experiment's split.json; only its training cells are read."})
    setting: str = field(default="culture-aware", metadata={
        "help": "With `wvs`: the evaluator's prompt setting of the rows (culture-aware names the culture)."})


def _distribution_rows(script_args: DistributionTrainScriptArguments):
    import datasets

    from ..recipes.distribution import (
        culturellm_distribution_rows,
        culturespa_distribution_rows,
        wvs_distribution_rows,
    )

    if script_args.wvs:
        if script_args.dataset_path:
            raise ValueError("give either `wvs` (human distributions) or `dataset_path`, not both")
        from ..wvs import load_wvs

        wvs = load_wvs(script_args.wvs)
        if script_args.split:
            from ..experiments import ExperimentSplit

            wvs = ExperimentSplit.load(script_args.split).training_view(wvs)
        return wvs_distribution_rows(wvs, setting=script_args.setting)
    if script_args.dataset_path is None:
        raise ValueError("set `wvs` (WVS data) or `dataset_path` (rows, or a recipe run with `corpus_recipe`)")
    if script_args.corpus_recipe:
        from pathlib import Path

        folder = Path(script_args.dataset_path)
        folder = folder / "dataset" if (folder / "dataset" / "dataset_dict.json").is_file() else folder
        corpus = datasets.load_from_disk(str(folder))
        build = {"culturespa": culturespa_distribution_rows, "culturellm": culturellm_distribution_rows}
        return build[script_args.corpus_recipe](corpus)
    return load_training_dataset(script_args.dataset_path, script_args.dataset_split)


def _train_main(recipe: str, argv: Sequence[str] | None) -> int:
    from trl import ModelConfig, get_peft_config

    from ..models import resolve_model_path
    from ..trainers import ADAPTER_TRAINERS, end_distributed_run

    config_class, trainer_class = ADAPTER_TRAINERS["answer_distribution" if recipe == "distribution" else recipe]
    script_class = DistributionTrainScriptArguments if recipe == "distribution" else AdapterTrainScriptArguments
    lora = config_class.reference_lora
    defaults = {"use_peft": True, "lora_r": lora["r"], "lora_alpha": lora["lora_alpha"],
                "lora_dropout": lora["lora_dropout"], "lora_target_modules": [lora["target_modules"]],
                "output_dir": f"runs/{recipe}-adapters"}  # the recipe's: the config file and the flags come over them
    script_args, training_args, model_args = parse_command(
        (script_class, config_class, ModelConfig), argv, prog=f"culture-align train {recipe}", defaults=defaults)
    if not model_args.use_peft:
        raise ValueError("culture adapters are LoRA adapters: `use_peft` cannot be false")
    model_name = model_args.model_name_or_path or DEFAULT_MODEL
    check_training_args(training_args, script_args, model_name)
    if recipe == "distribution":
        dataset = _distribution_rows(script_args)
    else:
        if script_args.dataset_path is None:
            raise ValueError("set `dataset_path` (a recipe run folder or a saved dataset) in the config or as a flag")
        dataset = load_training_dataset(script_args.dataset_path, script_args.dataset_split,
                                        required_columns=("messages",) + ((training_args.culture_column,)
                                                                          if training_args.mode == "specific" else ()))
    eval_dataset = None
    if script_args.eval_fraction > 0:
        dataset, eval_dataset = hold_out_split(dataset, script_args.eval_fraction, training_args.seed,
                                               stratify_column=training_args.culture_column)
    if model_args.dtype and model_args.dtype != "auto":
        training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "dtype": model_args.dtype}
    model_path = resolve_model_path(model_name)
    trainer = trainer_class(model=model_path, args=training_args, train_dataset=dataset, eval_dataset=eval_dataset,
                            peft_config=get_peft_config(model_args))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    where = (f"{training_args.output_dir}/<ISO3>/ for {', '.join(trainer.cultures)}"
             if training_args.mode == "specific" else training_args.output_dir)
    print(f"{trainer._name} {training_args.mode} adapter(s) saved to {where}")
    accelerator = trainer.accelerator
    del trainer
    end_distributed_run(accelerator)  # under `accelerate launch` / torchrun: a clean exit on every rank
    return 0


def train_culturespa_main(argv: Sequence[str] | None = None) -> int:
    """Train CultureSPA adapters (:class:`~culture_align.trainers.CultureSPATrainer`) from a config and flags."""
    return _train_main("culturespa", argv)


def train_distribution_main(argv: Sequence[str] | None = None) -> int:
    """Train answer-distribution adapters (:class:`~culture_align.trainers.AnswerDistributionTrainer`) from a config
    and flags."""
    return _train_main("distribution", argv)


def train_culturellm_main(argv: Sequence[str] | None = None) -> int:
    """Train CultureLLM adapters (:class:`~culture_align.trainers.CultureLLMTrainer`) from a config and flags."""
    return _train_main("culturellm", argv)
