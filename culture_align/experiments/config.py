"""`ExperimentConfig`: one YAML file declares an experiment (data, split, baselines, trained conditions, statistics).

```yaml
name: baselines
model: smollm2-135m-instruct
dtype: bfloat16
wvs: ../shared/data/wvs            # any source culture_align.wvs.load_wvs reads
split: {protocol: held_out_items, test_share: 0.3, seed: 0}
conditions:                        # trained conditions (optional)
  - name: wvs_mode_joint
    data: {source: wvs_answers, label: mode, setting: culture-aware}
    recipe: culturellm
    mode: joint
    seeds: [0, 1, 2]
    training: {learning_rate: 2.0e-4, num_train_epochs: 2, per_device_train_batch_size: 16}
```
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..embedded_models import DEFAULT_MODEL
from .baselines import HUMAN_BASELINES
from .gates import MIN_OPTIMIZER_STEPS
from .splits import PROTOCOLS

__all__ = ["ALL_BASELINES", "DATA_SOURCES", "MODEL_SETTINGS", "PIPELINE_SOURCES", "RECIPES", "ExperimentConfig",
           "SplitConfig", "TrainedCondition", "untrained_row"]

#: Baselines an experiment can report (all by default), in report order.
ALL_BASELINES: tuple[str, ...] = HUMAN_BASELINES + ("base", "culture_prompt", "calibrated_base")
#: Prompt setting of each model baseline (the untrained model asked culture-unaware and culture-aware).
MODEL_SETTINGS: dict[str, str] = {"base": "culture-unaware", "culture_prompt": "culture-aware"}


def untrained_row(setting: str) -> str:
    """The result row of the untrained model under ``setting``: ``base`` or ``culture_prompt`` for the built-in
    settings, ``prompt_<template name>`` for a condition's own template file."""
    for name, built_in in MODEL_SETTINGS.items():
        if setting == built_in:
            return name
    from ..prompts.wvs import get_setting

    return f"prompt_{get_setting(setting).name}"


#: Where a trained condition's records come from.
DATA_SOURCES: tuple[str, ...] = ("wvs_answers", "dataset", "culturellm", "culturespa", "clca")
#: Sources whose pipeline the experiment runs (the experiment's model as teacher) on the training cells.
PIPELINE_SOURCES: tuple[str, ...] = ("culturellm", "culturespa", "clca")
#: Trainers a trained condition can use (culture-adapter trainers, joint or specific; ``answer_distribution`` trains
#: on whole answer distributions with a forward-KL loss; ``clca`` is :class:`~culture_align.trainers.CLCATrainer`'s
#: joint dialogue + intent loss on a CLCA corpus, one joint adapter).
RECIPES: tuple[str, ...] = ("culturellm", "culturespa", "answer_distribution", "clca")


@dataclass
class SplitConfig:
    """How cells are split (see :func:`culture_align.experiments.make_split`).

    Attributes:
        protocol: ``held_out_items`` (default), ``held_out_topics``, ``held_out_cultures`` or ``items_file``.
        seed: Seed of the item draw (default 0).
        test_share: Share of items held out per topic (``held_out_items``: default 0.3).
        test_topics: Topic ids held out (``held_out_topics``; optional for ``held_out_cultures``).
        test_cultures: ISO3 codes held out (``held_out_cultures``).
        items_file: JSON file with explicit lists (``items_file``).
    """

    protocol: str = "held_out_items"
    seed: int = 0
    test_share: float | None = None
    test_topics: list[str] | None = None
    test_cultures: list[str] | None = None
    items_file: str | None = None


@dataclass
class TrainedCondition:
    """A condition trained per seed (and, by default, its shuffled-label control).

    Attributes:
        name: Condition name in the report.
        data: Records: ``{source: wvs_answers, label: mode | sampled, samples_per_cell: 5, setting: culture-aware}``
            (survey answers of the split's training cells, culture in the prompt) or ``{source: dataset, path:
            PATH}`` (a recipe corpus on disk with ``messages`` and ``culture``; its ``qid`` column, if any, is
            checked against the test items) or ``{source: culturellm | culturespa, pipeline: {...}}`` (the
            recipe's data pipeline run by the experiment's model on the training cells, its config fields in
            ``pipeline``; written once under ``<run>/data/<source>-<hash>/`` and shared by every seed, control and
            condition with the same source, pipeline settings and cultures) or
            ``{source: clca, pipeline: {...}}`` (a CLCA corpus: role-played dialogues on the bundled social
            scenarios, which are not survey items, so no item of the split can leak into it). Any source takes
            ``cultures: [ISO3, ...]``: the training cultures the records are made for (default: every training
            culture of the split); the shuffled-label control then permutes labels among these.
        recipe: Trainer: ``culturellm`` (default), ``culturespa`` (SFT on one answer per prompt), ``clca``
            (:class:`~culture_align.trainers.CLCATrainer`, joint mode, ``clca`` or ``dataset`` source) or
            ``answer_distribution`` (forward KL on the whole distribution: the training cells' human distributions
            with ``wvs_answers``, or a soft-label CultureSPA / CultureLLM corpus with those sources).
        mode: ``joint`` (one adapter, culture in the prompt) or ``specific`` (one adapter per culture).
        setting: Prompt setting the adapters are scored with (default ``culture-aware``), or a prompt template file
            (``.json``/``.yaml``, see :class:`~culture_align.prompts.wvs.SurveyPromptTemplate`) that names the
            culture; the untrained model is then scored with it too (row ``prompt_<template name>``).
        seeds: Training seeds (data order, LoRA init, sampling); at least 3 unless ``allow_short_training``.
        shuffled_control: Also train the same data with culture labels permuted among cultures (default true).
        training: Overrides of the recipe's config (``learning_rate``, ``num_train_epochs``, ``max_steps``,
            ``per_device_train_batch_size``, ``gradient_accumulation_steps``, ...); ``warmup_ratio`` (default 0)
            and ``lr_scheduler_type`` (``linear`` default, or ``constant``) shape the gated schedule, whose first
            step always has a learning rate > 0.
        lora: LoRA overrides (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``).
    """

    name: str
    data: dict[str, Any]
    recipe: str = "culturellm"
    mode: str = "joint"
    setting: str = "culture-aware"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    shuffled_control: bool = True
    training: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """An experiment: what is loaded, how it is split, what is compared and how it is summarised.

    Attributes:
        name: Experiment name (report title).
        wvs: Human data: a path ``culture_align.wvs.load_wvs`` reads (folder, CSV, JSON, Parquet).
        questions: Questions JSON for a bare distributions file (default: beside it, or the bundled catalog).
        cultures: ISO3 codes taking part (default: every culture of the data).
        items: Item ids taking part (default: every WVS alignment item of the data).
        model: Model id, path or embedded alias (default: the embedded SmolLM2-135M-Instruct).
        dtype: ``bfloat16`` | ``float32`` | ``float16`` (default: bfloat16 on GPU, float32 on CPU).
        split: :class:`SplitConfig`.
        baselines: Which of :data:`ALL_BASELINES` to report (default: all).
        conditions: Trained conditions (:class:`TrainedCondition`).
        batch_size: Prompts per forward pass when scoring (default 16).
        bootstrap_resamples: Draws of the paired cluster bootstrap (default 2000).
        bootstrap_unit: ``topic`` (default), ``item`` or ``cell``.
        bootstrap_seed: Seed of the draws (default 0).
        min_steps: Optimizer steps a trained condition needs (default 50).
        allow_short_training: Accept fewer steps (and fewer than 3 seeds); the report marks those rows.
        output_dir: Run folder (default ``runs/experiments/<name>``; ``--out`` overrides).
    """

    name: str = "experiment"
    wvs: str | None = None
    questions: str | None = None
    cultures: list[str] | None = None
    items: list[str] | None = None
    model: str = DEFAULT_MODEL
    dtype: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    baselines: list[str] = field(default_factory=lambda: list(ALL_BASELINES))
    conditions: list[TrainedCondition] = field(default_factory=list)
    batch_size: int = 16
    bootstrap_resamples: int = 2000
    bootstrap_unit: str = "topic"
    bootstrap_seed: int = 0
    min_steps: int = MIN_OPTIMIZER_STEPS
    allow_short_training: bool = False
    output_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "experiment config") -> None:
        """Raise ``ValueError`` naming ``source`` and the field for any value that cannot work."""
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"{source}: `{key}` {why}")

        if self.split.protocol not in PROTOCOLS:
            raise bad("split.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {self.split.protocol!r}")
        unknown = [b for b in self.baselines if b not in ALL_BASELINES]
        if unknown:
            raise bad("baselines", f"has unknown name(s) {', '.join(map(str, unknown))}; known: {', '.join(ALL_BASELINES)}")
        if self.dtype not in (None, "bfloat16", "float32", "float16"):
            raise bad("dtype", f"must be bfloat16, float32 or float16, got {self.dtype!r}")
        for key in ("batch_size", "bootstrap_resamples", "min_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, f"must be a positive integer, got {value!r}")
        if self.bootstrap_unit not in ("topic", "item", "cell"):
            raise bad("bootstrap_unit", f"must be topic, item or cell, got {self.bootstrap_unit!r}")
        names = [c.name for c in self.conditions]
        clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(ALL_BASELINES)))
        if clash:
            raise bad("conditions", f"names must be unique and differ from the baselines: {', '.join(clash)}")
        for i, c in enumerate(self.conditions):
            where = f"conditions[{i}] ({c.name})"
            if c.recipe not in RECIPES:
                raise bad(f"{where}.recipe", f"must be one of {', '.join(RECIPES)}, got {c.recipe!r}")
            if c.mode not in ("joint", "specific"):
                raise bad(f"{where}.mode", f"must be joint or specific, got {c.mode!r}")
            if c.data.get("source") not in DATA_SOURCES:
                raise bad(f"{where}.data.source", f"must be one of {', '.join(DATA_SOURCES)}, got "
                          f"{c.data.get('source')!r}")
            if c.recipe == "answer_distribution" and c.data.get("label", "distribution") != "distribution":
                raise bad(f"{where}.data.label", "does not apply to recipe answer_distribution (it trains on the whole "
                          "distribution)")
            if (c.recipe == "clca") != (c.data["source"] == "clca") and c.data["source"] != "dataset":
                raise bad(f"{where}.recipe", "clca trains on a CLCA corpus (data.source clca or dataset), and a clca "
                          "corpus trains with recipe clca")
            if c.recipe == "clca" and c.mode != "joint":
                raise bad(f"{where}.mode", "recipe clca trains one joint adapter (mode: joint)")
            chosen = c.data.get("cultures")
            if chosen is not None and (not isinstance(chosen, list) or len(chosen) < 2
                                       or not all(isinstance(x, str) for x in chosen)):
                raise bad(f"{where}.data.cultures", f"must be a list of at least 2 ISO3 codes, got {chosen!r}")
            if c.data["source"] == "dataset" and not c.data.get("path"):
                raise bad(f"{where}.data.path", "is required for source: dataset")
            if c.setting not in MODEL_SETTINGS.values():
                from ..prompts.wvs import get_setting

                try:  # a template file (.json/.yaml): read now, so a bad one fails before any training
                    template = get_setting(c.setting)
                except (ValueError, OSError) as err:
                    raise bad(f"{where}.setting", f"must be culture-aware, culture-unaware or a prompt template file "
                                                  f"(.json/.yaml): {err}") from None
                if not template.uses_culture:
                    raise bad(f"{where}.setting", f"template {c.setting} does not name the culture (use "
                                                  "{culture_name} or {culture_phrase} in its system turn)")
            if not c.seeds or len(set(c.seeds)) != len(c.seeds):
                raise bad(f"{where}.seeds", f"must be distinct integers, got {c.seeds!r}")
            if len(c.seeds) < 3 and not self.allow_short_training:
                raise bad(f"{where}.seeds", f"has {len(c.seeds)} seed(s): a trained condition needs at least 3 "
                          "(or allow_short_training: true, and the report marks the row)")

    def only_conditions(self, names: list[str]) -> ExperimentConfig:
        """This experiment with only the trained conditions ``names`` (in config order).

        Raises:
            ValueError: a name that is no condition of the config.
        """
        known = [c.name for c in self.conditions]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"no condition named {', '.join(unknown)} in the config (it has: "
                             f"{', '.join(known) or 'none'})")
        return dataclasses.replace(self, conditions=[c for c in self.conditions if c.name in names])

    # ---------------------------------------------------------------------------------------- files
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "experiment config") -> ExperimentConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: an experiment config is a mapping, got {type(data).__name__}")
        # Top-level keys starting with ``x-`` hold YAML anchors (shared budgets, cultures) and are not read.
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        try:
            split = data.pop("split", None) or {}
            split_known = {f.name for f in dataclasses.fields(SplitConfig)}
            if not isinstance(split, dict) or set(split) - split_known:
                raise ValueError(f"`split` takes {', '.join(sorted(split_known))}, got {split!r}")
            conditions = []
            cond_known = {f.name for f in dataclasses.fields(TrainedCondition)}
            for i, c in enumerate(data.pop("conditions", None) or []):
                if not isinstance(c, dict) or "name" not in c or "data" not in c or set(c) - cond_known:
                    raise ValueError(f"`conditions[{i}]` must be a mapping with name and data, and keys among "
                                     f"{', '.join(sorted(cond_known))}; got {c!r}")
                conditions.append(TrainedCondition(**copy.deepcopy(c)))  # anchors share one dict in YAML
            return cls(split=SplitConfig(**split), conditions=conditions, **data)
        except TypeError as err:
            raise ValueError(f"{source}: {err}") from None
        except ValueError as err:
            message = str(err)
            if message.startswith("experiment config: "):
                message = message[len("experiment config: "):]
            raise ValueError(f"{source}: {message}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ValueError(f"{path}: cannot read the experiment config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from None
        return cls.from_dict(data or {}, str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
