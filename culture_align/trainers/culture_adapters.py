"""Culture adapters on TRL's `SFTTrainer`: one LoRA adapter for all cultures, or one per culture in one run.

CultureSPA and CultureLLM both fine-tune a chat model on survey-style records (system prompt naming the culture,
user = a question with numbered options, assistant = the chosen option's number) in two ways:

- `mode="joint"`: one LoRA adapter on the records of every culture (the culture lives in the system prompt);
  plain SFT, saved like any PEFT adapter in `output_dir`.
- `mode="specific"`: one LoRA adapter per culture, named by its ISO3 code, trained one after the other on one
  loaded base model (PEFT `add_adapter` / `set_adapter`, never a reload), each by a trainer of its own
  ([`~culture_align.trainers.culture_specific.train_culture_adapters`]), saved side by side as
  `<output_dir>/<ISO3>/`, each with its own checkpoints (`<output_dir>/<ISO3>/checkpoint-N/`).

Both write `culture_adapters.json` (the index: culture -> adapter subfolder, read by
[`~culture_align.models.load_culture_adapters`]) and a `training_info.json` per adapter (recipe, base model, LoRA and
training settings, dataset size and content hash, train metrics): what a model card needs. A rerun of specific mode
skips every culture whose folder is complete (its `training_info.json` is written last), after checking that it was
trained with the same settings and data; `resume_from_checkpoint=True` resumes a culture cut off mid-training.

The loss covers the assistant turns only, for any chat template ([`tokenize_conversation`] builds the masks), so
TRL's template-specific `assistant_only_loss` plays no role.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from datasets import Dataset, IterableDataset
from peft import LoraConfig, PeftModel
from transformers import PreTrainedTokenizerBase, set_seed
from transformers.trainer_utils import TrainOutput
from transformers.utils import logging
from trl import SFTConfig, SFTTrainer
from trl.data_utils import get_dataset_column_names

from ..cards import training_summary, write_trainer_model_card
from ..cultures import get_culture
from ..models import CULTURE_ADAPTERS_INDEX, TRAINING_INFO_NAME
from ..recipes.storage import write_json_atomically
from ..redaction import SecretFreePickleMixin
from .culture_specific import is_complete_adapter, train_culture_adapters
from .utils import (
    content_sha256,
    default_bf16,
    jsonable,
    parse_resume_from_checkpoint,
    tokenize_chat_example,
    trainer_config,
)

logger = logging.get_logger(__name__)

__all__ = ["ADAPTER_MODES", "ALL_CULTURES", "CultureAdapterConfig", "CultureAdapterTrainer", "is_complete_adapter"]

#: Training modes: one adapter for every culture, or one adapter per culture.
ADAPTER_MODES = ("joint", "specific")

#: The index key standing for "every culture" (as in `EvaluationConfig.adapters`).
ALL_CULTURES = "*"

# Settings that change what an adapter learns: a complete culture folder is reused only if they match.
_FINGERPRINT_ARGS = (
    "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_steps", "weight_decay",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "max_length", "truncation_mode",
    "packing", "loss_type",
)


@dataclass
class CultureAdapterConfig(SecretFreePickleMixin, SFTConfig):
    r"""
    Configuration class for the [`CultureAdapterTrainer`]: TRL's [`~trl.SFTConfig`] plus the choice of adapters.

    The loss is always computed on the assistant turns only (the trainer builds the masks itself, for any chat
    template), so `assistant_only_loss`, `completion_only_loss` and `dataset_text_field` play no role. LoRA
    hyper-parameters come, as in TRL, from the trainer's `peft_config`; without one the trainer uses
    [`~CultureAdapterConfig.default_peft_config`], built from the class's `reference_lora` (recipes set it to their
    reference values). Its pickled form (the `training_args.bin` the trainer saves and uploads) leaves `hub_token`
    out ([`SecretFreePickleMixin`]).

    Parameters:
        > Parameters that control the adapters

        mode (`str`, *optional*, defaults to `"joint"`):
            `"joint"`: one LoRA adapter trained on every culture's records, saved in `output_dir`. `"specific"`: one
            LoRA adapter per culture (named by its ISO3 code), trained one after the other on one loaded base model
            and saved as `<output_dir>/<ISO3>/`.
        culture_column (`str`, *optional*, defaults to `"culture"`):
            Dataset column holding each record's culture as an ISO3 code. Required in specific mode; in joint mode it
            is optional and used for `cultures` and the record of what the adapter was trained on.
        cultures (`list[str]` or `None`, *optional*, defaults to `None`):
            Cultures to train on (ISO3 codes); records of other cultures are dropped. `None`: every culture in the
            dataset. In specific mode, one culture per invocation (e.g. one GPU job each) is `cultures=["USA"]`.

        > Parameters whose default differs from TRL's

        bf16 (`bool` or `None`, *optional*, defaults to `None`):
            `None`: bf16 mixed precision (TRL's default, unless `fp16`) where transformers accepts it (a GPU or other
            accelerator with bf16 support, XLA, or `use_cpu=True`), 32-bit otherwise, so that a config without it
            trains on a CPU-only machine. An explicit value is kept.
        resume_from_checkpoint (`str`, `bool` or `None`, *optional*, defaults to `None`):
            As in TRL; the strings `"true"`/`"false"` (from a flag) are read as booleans. In specific mode only a
            boolean is accepted: each culture resumes from the last checkpoint of `<output_dir>/<ISO3>/`.
    """

    #: LoRA values used when the trainer gets no `peft_config` (recipes override them).
    reference_lora: ClassVar[dict[str, Any]] = {
        "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear", "bias": "none",
    }

    mode: str = field(
        default="joint",
        metadata={
            "help": "`joint`: one LoRA adapter trained on every culture's records, saved in `output_dir`. "
            "`specific`: one LoRA adapter per culture (named by its ISO3 code), trained one after the other on one "
            "loaded base model and saved as `<output_dir>/<ISO3>/`.",
            "choices": list(ADAPTER_MODES),
        },
    )
    culture_column: str = field(
        default="culture",
        metadata={"help": "Dataset column holding each record's culture as an ISO3 code (required in specific mode)."},
    )
    cultures: list[str] | None = field(
        default=None,
        metadata={
            "help": "Cultures to train on (ISO3 codes); records of other cultures are dropped. Default: every "
            "culture in the dataset."
        },
    )

    def __post_init__(self):
        if self.mode not in ADAPTER_MODES:
            raise ValueError(f"`mode` must be one of {list(ADAPTER_MODES)}, got {self.mode!r}.")
        self.resume_from_checkpoint = parse_resume_from_checkpoint(self.resume_from_checkpoint)
        if self.mode == "specific" and isinstance(self.resume_from_checkpoint, str):
            raise ValueError("In specific mode `resume_from_checkpoint` is true or false, not a path: each culture "
                             "resumes from the last checkpoint in <output_dir>/<ISO3>/.")
        if self.mode == "specific" and self.load_best_model_at_end:
            raise ValueError("`load_best_model_at_end` is not supported in specific mode (each culture's checkpoints "
                             "hold its adapter under <checkpoint>/<ISO3>/, where Trainer does not look for the best "
                             "model); train the cultures one by one in joint mode with `cultures=[ISO3]` instead.")
        if self.bf16 is None:
            self.bf16 = default_bf16(self.fp16, self.use_cpu)
        if isinstance(self.cultures, str):  # one culture, or a comma-separated list, from a flag or a YAML scalar
            self.cultures = [c for c in self.cultures.split(",") if c.strip()]
        if self.cultures is not None:
            self.cultures = list(dict.fromkeys(get_culture(c).iso3 for c in self.cultures))
            if not self.cultures:
                raise ValueError("`cultures` must name at least one culture (or be None for all of them).")
        if self.assistant_only_loss:
            # The loss is assistant-only by construction. Left on, `SFTTrainer` would try to swap in a training chat
            # template, which TRL ships for a fixed list of models only.
            logger.info(f"{type(self).__name__}: the loss is always on assistant tokens; ignoring "
                        "`assistant_only_loss=True`.")
            self.assistant_only_loss = False
        super().__post_init__()

    @classmethod
    def default_peft_config(cls) -> LoraConfig:
        """The LoRA configuration used when the trainer gets none: `reference_lora` for a causal LM (a classmethod:
        `CultureSPAConfig.default_peft_config()` shows a recipe's defaults without building a config)."""
        return LoraConfig(task_type="CAUSAL_LM", **cls.reference_lora)

    def to_dict(self) -> dict[str, Any]:
        """TRL's `to_dict()` plus `reference_lora`, the LoRA values used without a `peft_config` (so the logged and
        saved configuration shows them; the command line shows them as the `lora_*` defaults)."""
        return {**super().to_dict(), "reference_lora": dict(self.reference_lora)}


class CultureAdapterTrainer(SFTTrainer):
    """
    SFT of LoRA culture adapters: one for all cultures (`mode="joint"`) or one per culture (`mode="specific"`).

    Joint mode is TRL's SFT with an assistant-only loss. In specific mode this trainer coordinates: `train()` runs
    [`~culture_align.trainers.culture_specific.train_culture_adapters`], which trains, for each culture in turn, a
    fresh LoRA adapter named by its ISO3 code with a trainer of its own on that culture's records (same seed, same
    settings, its own optimizer, schedule and checkpoints in `<output_dir>/<ISO3>/`), all on the one base model loaded
    at init; the model ends up holding every culture's adapter, and each is saved as soon as it is trained.

    Example:

    ```python
    >>> from culture_align.trainers import CultureSPAConfig, CultureSPATrainer

    >>> trainer = CultureSPATrainer(model="Qwen/Qwen2.5-0.5B-Instruct",
    ...                             args=CultureSPAConfig("culturespa-adapters", mode="specific"),
    ...                             train_dataset=dataset)  # `messages` + `culture` columns
    >>> trainer.train()  # writes culturespa-adapters/<ISO3>/ per culture, and culture_adapters.json
    >>> model, adapters = load_culture_adapters(base_model, "culturespa-adapters")  # {ISO3: adapter name}
    ```

    Args:
        model (`str`, [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            Model to train, as for [`~trl.SFTTrainer`]. A `PeftModel` is trained as is in joint mode; in specific mode
            its active adapter's configuration is the template of the culture adapters (its own adapters stay
            untouched).
        args ([`CultureAdapterConfig`], *optional*):
            Configuration; a plain [`~trl.SFTConfig`] or `TrainingArguments` is converted with the recipe's defaults.
        train_dataset ([`~datasets.Dataset`]):
            Chat records: a `messages` column (loss on every assistant turn) and a culture column
            (`args.culture_column`, ISO3 codes; required in specific mode). Other columns are dropped. Specific mode
            needs a map-style `Dataset`.
        eval_dataset (*optional*):
            Same format (or a dict of such datasets); in specific mode each culture is evaluated on its own rows.
        processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Tokenizer with a chat template; loaded from the model when not given.
        peft_config ([`~peft.LoraConfig`], *optional*):
            LoRA configuration of the adapter(s); default `args.default_peft_config()` (the recipe's reference).
        culture_adapter (`str`, *optional*):
            Set by specific mode on the trainer of one culture: the named adapter it trains (checkpoints then hold that
            adapter only, as `<checkpoint>/<ISO3>/`).
        **kwargs:
            Passed on to [`~trl.SFTTrainer`] (`data_collator`, `callbacks`, `optimizers`, ...); in specific mode to
            every culture's trainer (with the callbacks and metrics functions the trainer holds when training starts),
            and `optimizers` is refused (each culture builds its own: use `optimizer_cls_and_kwargs`);
            `formatting_func` is not supported.

    Attributes:
        cultures (`list[str]`): The cultures trained on (ISO3, sorted), from the dataset and `args.cultures`.
        culture_counts (`dict[str, int]`): Training records per culture.
        adapter_info (`dict[str, dict]`): Per adapter (ISO3 in specific mode, `"*"` in joint mode), the record
            written to its `training_info.json`, filled in as adapters are trained, loaded or saved.
    """

    config_class: ClassVar[type[CultureAdapterConfig]] = CultureAdapterConfig
    _tag_names = ["trl", "sft", "culture-align"]
    _name = "CultureAdapter"

    def __init__(
        self,
        model,
        args: CultureAdapterConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        *,
        peft_config=None,
        culture_adapter: str | None = None,
        **kwargs,
    ):
        args = trainer_config(model, args, self.config_class, self._name)
        if kwargs.get("formatting_func") is not None:
            raise ValueError(f"{type(self).__name__} does not support `formatting_func`; records are chat messages.")
        if train_dataset is None:
            raise ValueError(f"{type(self).__name__} needs a `train_dataset`.")
        if args.mode == "specific" and kwargs.get("optimizers", (None, None)) != (None, None):
            raise ValueError("Specific mode trains one adapter after the other, each with an optimizer of its own: pass "
                             "`optimizer_cls_and_kwargs` (shared by the cultures) instead of `optimizers`.")
        if args.mode == "specific" and not isinstance(train_dataset, Dataset):
            raise ValueError("Specific mode splits the records by culture and needs a map-style `datasets.Dataset`, "
                             f"got {type(train_dataset).__name__}.")
        column = args.culture_column
        counts: Counter[str] = Counter()
        if isinstance(train_dataset, Dataset) and column in train_dataset.column_names:
            counts = Counter(train_dataset[column])
            if args.cultures is not None:
                counts = Counter({culture: counts[culture] for culture in args.cultures if culture in counts})
        if isinstance(model, PeftModel):
            if peft_config is not None:
                raise ValueError("Pass either a `PeftModel` or a `peft_config`, not both.")
        elif peft_config is None:
            peft_config = args.default_peft_config()

        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            **kwargs,
        )

        peft_model = self.accelerator.unwrap_model(self.model)
        self._adapter_template = peft_model.peft_config[peft_model.active_adapter]
        # The adapter SFTTrainer wrapped the model with is a placeholder in specific mode: removed once a culture
        # adapter exists
        self._placeholder_adapter = peft_model.active_adapter if (
            args.mode == "specific" and not isinstance(model, PeftModel)) else None
        self._culture_adapter = culture_adapter
        self._trainer_kwargs: dict[str, Any] = {"data_collator": data_collator, **kwargs}
        self.adapter_info: dict[str, dict[str, Any]] = {}

        self.culture_counts = dict(sorted(counts.items()))
        self.cultures = list(self.culture_counts) if self.culture_counts else list(args.cultures or [])
        self._num_examples: dict[str, int | None] = {**self.culture_counts, ALL_CULTURES: (
            sum(counts.values()) if counts else len(train_dataset) if isinstance(train_dataset, Dataset) else None)}

        self._culture_train_rows: dict[str, Dataset] = {}  # tokenised, unpacked: each culture's trainer packs
        self._culture_eval_datasets: dict[str, Any] = {}  # packed as evaluate() needs them
        self._data_sha256: dict[str, str] = {}
        if args.mode == "specific":
            eval_packing = args.packing if args.eval_packing is None else args.eval_packing
            for culture in self.cultures:
                subset = self._culture_rows(self.train_dataset, culture)
                self._data_sha256[culture] = content_sha256(subset)
                self._culture_train_rows[culture] = subset
                self._culture_eval_datasets[culture] = self._culture_eval(culture, eval_packing)
        elif isinstance(self.train_dataset, Dataset):
            self._data_sha256[ALL_CULTURES] = content_sha256(self.train_dataset)

    # ------------------------------------------------------------------------------------------- datasets
    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class,
        args: CultureAdapterConfig,
        packing: bool,
        formatting_func,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        column_names = get_dataset_column_names(dataset)
        culture_column = args.culture_column
        if "input_ids" not in column_names:
            needed = {"messages"} | ({culture_column} if args.mode == "specific" else set())
            missing = needed - set(column_names)
            if missing:
                raise ValueError(f"The {dataset_name} dataset needs the column(s) {sorted(needed)}; missing: "
                                 f"{sorted(missing)} (columns: {column_names}).")
            map_kwargs: dict[str, Any] = {}
            if isinstance(dataset, Dataset):  # `IterableDataset.map` does not support `num_proc` nor `desc`
                map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Tokenizing {dataset_name} dataset"}
            tokenizer = getattr(processing_class, "tokenizer", processing_class)
            dataset = dataset.map(tokenize_chat_example, with_indices=True, fn_kwargs={"tokenizer": tokenizer},
                                  remove_columns=[c for c in column_names if c != culture_column], **map_kwargs)
        dataset = self._select_cultures(dataset, args, dataset_name)
        # Specific mode packs (and drops the culture column) per culture, once the records are split
        return super()._prepare_dataset(dataset, processing_class, args, packing and args.mode == "joint",
                                        None, dataset_name)

    @staticmethod
    def _select_cultures(dataset, args: CultureAdapterConfig, dataset_name: str):
        """Check that every culture value is a registered ISO3 code; keep only `args.cultures` when set."""
        column = args.culture_column
        if column not in get_dataset_column_names(dataset):
            return dataset
        if isinstance(dataset, Dataset):
            for value in set(dataset[column]):
                if value is None or get_culture(value).iso3 != value:
                    raise ValueError(f"The {dataset_name} dataset's `{column}` column holds {value!r}, not an ISO3 "
                                     f"code (expected e.g. {get_culture(value).iso3!r})." if value is not None else
                                     f"The {dataset_name} dataset's `{column}` column has empty values.")
        if args.cultures is None:
            return dataset
        keep = set(args.cultures)
        if isinstance(dataset, Dataset):
            absent = sorted(keep - set(dataset[column]))
            if absent:
                raise ValueError(f"No record of the culture(s) {absent} in the {dataset_name} dataset.")
        return dataset.filter(lambda culture: culture in keep, input_columns=column)

    def _culture_rows(self, dataset: Dataset, culture: str) -> Dataset:
        column = self.args.culture_column
        return dataset.filter(lambda value: value == culture, input_columns=column).remove_columns(column)

    def _finish_culture_dataset(self, dataset: Dataset, packing: bool, dataset_name: str) -> Dataset:
        """Pack one culture's tokenised records (their labels are built) as SFTTrainer would."""
        if not packing:
            return dataset
        return SFTTrainer._prepare_dataset(self, dataset, self.processing_class, self.args, True, None, dataset_name)

    def _culture_split(self, split: str, culture: str):
        """`culture`'s tokenised, unpacked rows of the training (`split="train"`) or evaluation data (`None`
        without evaluation data; a dict for a dict of evaluation datasets), for that culture's own trainer."""
        if split == "train":
            return self._culture_train_rows[culture]
        return self._culture_eval(culture, packing=False)

    def _culture_eval(self, culture: str, packing: bool):
        """This culture's rows of the evaluation dataset(s); `None` without evaluation data."""
        if self.eval_dataset is None:
            return None
        if isinstance(self.eval_dataset, dict):
            return {name: self._finish_culture_dataset(self._culture_rows(ds, culture), packing, f"eval {name}")
                    for name, ds in self.eval_dataset.items()}
        return self._finish_culture_dataset(self._culture_rows(self.eval_dataset, culture), packing, "eval")

    # ------------------------------------------------------------------------------------------- adapters
    @property
    def peft_model(self) -> PeftModel:
        """The (unwrapped) PEFT model holding the adapter(s)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def _use_culture_adapter(self, culture: str, load_from: Path | None = None) -> None:
        """Make `culture`'s adapter the active one: added fresh (seeded), or loaded from a finished folder."""
        model = self.peft_model
        if culture not in model.peft_config:
            if load_from is not None:
                model.load_adapter(str(load_from), adapter_name=culture, is_trainable=False)
            else:
                set_seed(self.args.seed)  # each culture starts from the same initialisation, whatever the order
                zero3 = self.args.deepspeed_plugin is not None and self.args.deepspeed_plugin.zero_stage == 3
                model.add_adapter(culture, self._adapter_template, autocast_adapter_dtype=not zero3)
        model.set_adapter(culture)
        if self._placeholder_adapter is not None:
            model.delete_adapter(self._placeholder_adapter)
            self._placeholder_adapter = None
            model.set_adapter(culture)

    def _settings(self, key: str) -> dict[str, Any]:
        """What an adapter's training depends on; a finished culture folder is reused only when it matches."""
        model = self.peft_model
        return jsonable({
            "base_model": model.base_model.model.config._name_or_path,
            "peft_config": self._adapter_template.to_dict(),
            "training_args": {name: getattr(self.args, name) for name in _FINGERPRINT_ARGS},
            "num_examples": self._num_examples.get(key),
            "data_sha256": self._data_sha256.get(key),
        })

    def _training_info(self, key: str, metrics: dict[str, float] | None) -> dict[str, Any]:
        """The `training_info.json` record of one adapter (`key`: ISO3, or `"*"` for the joint adapter)."""
        return {
            "recipe": self._name,
            "mode": self.args.mode,
            "cultures": [key] if key != ALL_CULTURES else self.cultures,
            "culture_counts": {key: self.culture_counts.get(key)} if key != ALL_CULTURES else self.culture_counts,
            "culture_column": self.args.culture_column,
            "settings": self._settings(key),
            "training": jsonable(training_summary(self.args)),
            "train_metrics": jsonable(metrics or {}),
            "paper": dict(self._paper or {}),
        }

    def _check_reusable(self, culture: str, folder: Path) -> dict[str, Any]:
        info = json.loads((folder / TRAINING_INFO_NAME).read_text())
        expected, found = self._settings(culture), info.get("settings", {})
        if found != expected:
            changed = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
            raise ValueError(f"{folder} holds a {culture} adapter trained with other settings or data (differing: "
                             f"{', '.join(changed)}). Delete that folder to retrain it, or use another output_dir.")
        return info

    def _save_culture_adapter(self, culture: str, folder: Path, info: dict[str, Any]) -> None:
        """Write `culture`'s adapter to `folder` (files replaced in place, `training_info.json` last)."""
        if self.args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{culture}.tmp-", dir=folder.parent))
            try:
                self.peft_model.save_pretrained(str(tmp), selected_adapters=[culture])  # writes tmp/<culture>/
                for file in (tmp / culture).iterdir():
                    os.replace(file, folder / file.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            write_json_atomically(info, folder / TRAINING_INFO_NAME)
            self._write_card(output_dir=folder, cultures=[culture], adapter_name=culture)
        self.accelerator.wait_for_everyone()

    def _write_index(self, output_dir: Path, adapters: dict[str, str]) -> None:
        """Write `culture_adapters.json`: culture (or `"*"`) -> adapter subfolder, plus what produced them."""
        if not self.args.should_save:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        index_path = output_dir / CULTURE_ADAPTERS_INDEX
        if self.args.mode == "specific" and index_path.is_file():  # keep cultures trained by other invocations
            previous = json.loads(index_path.read_text()).get("adapters", {})
            adapters = {**{c: s for c, s in previous.items() if is_complete_adapter(output_dir / s)}, **adapters}
        write_json_atomically({
            "recipe": self._name,
            "mode": self.args.mode,
            "base_model": self.peft_model.base_model.model.config._name_or_path,
            "adapters": dict(sorted(adapters.items())),
        }, index_path)

    # ------------------------------------------------------------------------------------------- training
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None,
              ignore_keys_for_eval: list[str] | None = None) -> TrainOutput:
        """
        Train the adapter(s).

        Joint mode: [`~transformers.Trainer.train`]. Specific mode
        ([`~culture_align.trainers.culture_specific.train_culture_adapters`]): for each culture of `self.cultures`
        whose `<output_dir>/<ISO3>/` is not complete, a fresh adapter trained on its records by a trainer of its own
        and saved there; complete ones are loaded instead (so the model ends up holding every culture). `resume_from_checkpoint=True` resumes
        each unfinished culture from its last checkpoint, if it has one (a path is refused: checkpoints are per
        culture). Returns the summed steps and runtime, the step-weighted mean loss, and per-culture
        `train_loss_<ISO3>` metrics.
        """
        resume_from_checkpoint = parse_resume_from_checkpoint(resume_from_checkpoint)  # "true" from a flag
        if self.args.mode == "joint":
            output = super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)
            self.adapter_info[ALL_CULTURES] = self._training_info(ALL_CULTURES, output.metrics)
            return output
        if trial is not None:
            raise ValueError("Hyper-parameter search is not supported in specific mode.")
        if isinstance(resume_from_checkpoint, str):
            raise ValueError("In specific mode pass `resume_from_checkpoint=True`: each culture resumes from the last "
                             "checkpoint in <output_dir>/<ISO3>/.")
        return train_culture_adapters(self, bool(resume_from_checkpoint), ignore_keys_for_eval)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Joint mode (a culture's own trainer included): TRL's. Specific mode: each culture's adapter on its own rows
        of the evaluation data, with metrics prefixed `<metric_key_prefix>_<ISO3>`."""
        if self.args.mode == "joint" or eval_dataset is not None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics: dict[str, float] = {}
        for culture in self.cultures:
            if culture not in self.peft_model.peft_config:
                continue
            self.peft_model.set_adapter(culture)
            culture_eval = self._culture_eval_datasets.get(culture)
            if culture_eval is None:
                continue
            metrics.update(super().evaluate(culture_eval, ignore_keys, f"{metric_key_prefix}_{culture}"))
        return metrics

    # ------------------------------------------------------------------------------------------- saving
    def create_model_card(self, model_name=None, dataset_name=None, tags=None, report=None, **kwargs):
        """
        Write the culture-align model card (base model, data, recipe and LoRA settings and, given a `report` from
        `WVSEvaluator`, the per-culture WVS results as model-index metadata) to `args.output_dir/README.md`, in place
        of TRL's. `trainer.push_to_hub(report=report)` passes the report through. In specific mode every culture's
        folder also gets its own card when its adapter is saved.
        """
        self._write_card(model_name=model_name, dataset_name=dataset_name, tags=tags, report=report,
                         cultures=self.cultures)

    def _write_card(self, **kwargs: Any) -> None:
        """Our card for the trainer's recipe (`_name`, `_paper`); a subclass that declares no paper writes none."""
        if (self._paper or {}).get("citation"):
            write_trainer_model_card(self, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if self.args.mode == "joint" and self._culture_adapter is None:
            return super()._save(output_dir, state_dict)
        # A checkpoint of a culture's trainer holds its adapter only (as `<checkpoint>/<ISO3>/`, the layout `Trainer`
        # resumes from), not every culture's
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.peft_model
        model.save_pretrained(output_dir, state_dict=state_dict, selected_adapters=[model.active_adapter])
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """
        Save the adapter(s) with their `training_info.json` and the `culture_adapters.json` index.

        Joint mode: the adapter (and tokenizer) in `output_dir`, as TRL does. Specific mode: every culture adapter the
        model holds as `<output_dir>/<ISO3>/` (already there after `train()` when `output_dir` is the training one).
        """
        if _internal_call:  # a checkpoint
            return super().save_model(output_dir, _internal_call)
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.mode == "joint":
            super().save_model(str(output_dir), _internal_call)
            info = self.adapter_info.get(ALL_CULTURES) or self._training_info(ALL_CULTURES, None)
            if self.args.should_save:
                write_json_atomically(info, output_dir / TRAINING_INFO_NAME)
            self._write_card(output_dir=output_dir, cultures=self.cultures)
            adapters = {culture: "." for culture in self.cultures}
            self._write_index(output_dir, {**adapters, ALL_CULTURES: "."})
            return
        for culture, info in self.adapter_info.items():
            folder = output_dir / culture
            if is_complete_adapter(folder) and json.loads((folder / TRAINING_INFO_NAME).read_text()) == info:
                continue
            self._save_culture_adapter(culture, folder, info)
        self._write_index(output_dir, {culture: culture for culture in self.adapter_info})
