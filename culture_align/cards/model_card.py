"""Model cards of LoRA adapters: base model, data, recipe and its settings, the WVS evaluation as ``model-index``.

- :class:`RecipeInfo`: a recipe as a card cites it, read from a trainer's ``_name`` and ``_paper``.
- :func:`adapter_model_card` renders a card from data (``templates/adapter_card.md``).
- :func:`write_trainer_model_card` is the one call a trainer's ``create_model_card`` makes.

(:func:`culture_align.hub.adapter_card_from_folder` renders the card of a saved adapter folder from what it holds.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..cultures import get_culture
from ..wvs.loaders import hub_dataset_id
from .rendering import LIBRARY_TAG, render_model_card

__all__ = ["EVALUATION_FILE", "RecipeInfo", "adapter_model_card", "card_evaluation", "eval_results_from_report",
           "recipe_key", "report_dict", "training_summary", "write_trainer_model_card"]

EVALUATION_FILE = "wvs_evaluation.json"
"""Where an adapter folder keeps the evaluation its card shows (the report's model, data source and per-culture
summary), so that the card re-rendered later still shows it."""

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_EVAL_METRICS = (("kl_divergence", "KL(human ‖ model), nats (lower is better)"),
                 ("similarity", "1 - JSD (higher is better)"),
                 ("alignment_score", "CultureSPA alignment score, 0-100 (higher is better)"))

Report = Any
"""A ``WVSReport``, its ``to_dict()``, its ``results.json`` or that file's folder."""


# ---------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class RecipeInfo:
    """A recipe as cards cite it.

    Attributes:
        key: Tag and command-line name (``_name`` lower-cased).
        name: The trainer's ``_name``.
        paper_title, arxiv_id, citation: The trainer's ``_paper`` (``title``, ``id``, ``citation``: BibTeX).
        trainer: The trainer class it was read from.
    """

    key: str
    name: str
    paper_title: str
    arxiv_id: str
    citation: str
    trainer: type | None = None

    @classmethod
    def from_trainer(cls, trainer: Any) -> RecipeInfo:
        """The recipe of a trainer class or instance (its ``_name`` and ``_paper``).

        Raises:
            ValueError: the trainer declares no paper (TRL's default ``_paper = {}``).
        """
        trainer_class = trainer if isinstance(trainer, type) else type(trainer)
        paper = getattr(trainer_class, "_paper", None) or {}
        if not paper.get("title") or not paper.get("citation"):
            raise ValueError(f"{trainer_class.__name__} declares no paper (`_paper` with title, id and citation), "
                             "so no recipe card can cite it")
        name = str(trainer_class._name)
        return cls(key=recipe_key(trainer_class), name=name, paper_title=paper["title"],
                   arxiv_id=str(paper.get("id") or ""), citation=paper["citation"], trainer=trainer_class)


def recipe_key(trainer: Any) -> str:
    """The registry key of a trainer class or instance: its ``_name`` lower-cased."""
    trainer_class = trainer if isinstance(trainer, type) else type(trainer)
    return str(trainer_class._name).lower()


# ---------------------------------------------------------------------------------------------- evaluation
def report_dict(report: Report | None) -> dict[str, Any] | None:
    """A report as the dict of ``WVSReport.to_dict()``: from a report, a dict, ``results.json`` or its folder."""
    if report is None:
        return None
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if isinstance(report, Mapping):
        return dict(report)
    path = Path(report)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no evaluation results (WVSReport.save writes results.json)")
    loaded = read_json(path)
    if "summary" not in loaded:
        raise ValueError(f"{path}: not a WVSReport results file (no `summary`)")
    return loaded


def card_evaluation(report: Report | None) -> dict[str, Any] | None:
    """What a card shows of a report (and :data:`EVALUATION_FILE` keeps): the model, data source and summary."""
    data = report_dict(report)
    return None if data is None else {key: data.get(key) for key in ("model", "data_source", "summary")}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def eval_results_from_report(
    report: Report,
    *,
    cultures: Sequence[str] | None = None,
    dataset_id: str | None = None,
    dataset_name: str = "World Values Survey wave 7",
) -> list[EvalResult]:
    """The per-culture results of a WVS evaluation as ``EvalResult`` entries for a card's ``model-index``.

    One entry per (culture, prompt setting, metric) among KL(human‖model), 1-JSD and the alignment score;
    the culture is the dataset config (ISO3) and the setting the metric config. NaN values are left out.

    Args:
        report: A ``WVSReport``, its ``to_dict()``, or the ``results.json`` it saved (or that folder).
        cultures: Keep only these cultures (default: all in the report).
        dataset_id: Hub id of the human data (default: the report's data source when it is a Hub id, else
            ``"wvs"``).
        dataset_name: Display name of the human data.
    """
    data = report_dict(report)
    keep = None if cultures is None else {get_culture(c).iso3 for c in cultures}
    source = str(data.get("data_source") or "")
    dataset_type = dataset_id or hub_dataset_id(source.split("[")[0]) or "wvs"  # hf://owner/name: a Hub load
    results = []
    for row in data["summary"]:
        culture = row.get("culture")
        if culture == "mean" or (keep is not None and culture not in keep):
            continue
        for metric, label in _EVAL_METRICS:
            value = row.get(metric)
            if not _is_number(value):
                continue
            results.append(EvalResult(
                task_type="text-generation", task_name="WVS survey answering", dataset_type=dataset_type,
                dataset_name=f"{dataset_name} ({culture})", dataset_config=culture, metric_type=metric,
                metric_value=round(float(value), 4), metric_name=f"{label}, {row['setting']} prompt",
                metric_config=row["setting"]))
    return results


def _report_table(report: Mapping[str, Any], cultures: Sequence[str]) -> str:
    keep = set(cultures) if cultures else None
    lines = ["| culture | prompt setting | items | KL ↓ | 1-JSD ↑ | alignment score ↑ |", "|---|---|---|---|---|---|"]
    for row in report["summary"]:
        if keep is not None and row["culture"] not in keep:  # the mean row averages other cultures too
            continue
        cells = [f"{row[m]:.4f}" if _is_number(row.get(m)) else "–" for m, _ in _EVAL_METRICS]
        lines.append(f"| {row['culture']} | {row['setting']} | {row.get('n_items', '')} | " + " | ".join(cells) + " |")
    model = report.get("model") or ""
    return f"Evaluated model: `{model}`.\n\n" + "\n".join(lines) if model else "\n".join(lines)


# ---------------------------------------------------------------------------------------------- base model
_HF_CACHE_REPO = re.compile(r"^models--(?P<owner>[^/\\]+?)--(?P<name>[^/\\]+)$")


def _cached_hub_id(name_or_path: str) -> str | None:
    """The Hub id of a folder of a local model cache, also when that folder is not on this machine: a
    ``huggingface_hub`` cache folder (``.../models--<owner>--<name>/snapshots/<revision>``) or an embedded model
    converted into the culture-align cache (``.../models/<alias>-<version>``). None for any other path."""
    from ..embedded_models import EMBEDDED_MODELS

    parts = Path(name_or_path).parts
    for part in parts:
        match = _HF_CACHE_REPO.match(part)
        if match:
            return f"{match['owner']}/{match['name']}"
    if len(parts) >= 2 and parts[-2] == "models":
        for model in EMBEDDED_MODELS.values():
            if parts[-1] == f"{model.alias}-{model.version}":
                return model.hub_id
    return None


def _hub_base_model(name_or_path: str | None) -> str | None:
    """A Hub id for the base model: the id itself, the id a converted embedded model came from (its
    ``EMBEDDED_SOURCE.txt``), the id of a local model cache folder, else None."""
    if not name_or_path:
        return None
    cached = _cached_hub_id(name_or_path)
    if cached is not None:
        return cached
    path = Path(name_or_path)
    if path.is_dir():
        marker = path / "EMBEDDED_SOURCE.txt"
        return marker.read_text().split("\n", 1)[0].strip() or None if marker.is_file() else None
    return name_or_path if HUB_ID.match(name_or_path) else None


# ---------------------------------------------------------------------------------------------- the card
_ADAPTER_KEYS = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_dora",
                 "use_rslora", "task_type")


def _adapter_summary(adapter_config: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key in _ADAPTER_KEYS:
        value = adapter_config.get(key)
        if isinstance(value, (set, frozenset, tuple)):
            value = sorted(value)
        if value not in (None, False, [], ""):
            out[key] = value
    return out


def _cultures_phrase(cultures: Sequence[str]) -> str:
    names = [f"{get_culture(c).name} ({get_culture(c).iso3})" for c in cultures]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def adapter_model_card(
    *,
    recipe: RecipeInfo,
    base_model: str | None,
    cultures: Sequence[str] = (),
    datasets_used: Sequence[str] = (),
    training_config: Mapping[str, Any] | None = None,
    adapter_config: Mapping[str, Any] | None = None,
    report: Report | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    subfolder: str | None = None,
    subfolders: Sequence[str] = (),
    tags: Sequence[str] = (),
    license: str | None = None,
) -> ModelCard:
    """The model card of a culture-align LoRA adapter.

    Args:
        recipe: The recipe (:meth:`RecipeInfo.from_trainer`, or a key of
            :func:`culture_align.hub.recipe_registry` through :func:`culture_align.hub.get_recipe`).
        base_model: Hub id or local path of the base model. A folder of a local model cache (the Hub cache, a
            converted embedded model) is shown as its Hub id; another local path is named in the text, not the
            YAML.
        cultures: ISO3 codes the adapter was trained for.
        datasets_used: Hub ids of the training data.
        training_config: The recipe's training settings (hyper-parameters), shown as JSON.
        adapter_config: The PEFT config (``adapter_config.json``), summarised.
        report: WVS evaluation results (``WVSReport``, its dict, or ``results.json``): per-culture KL, 1-JSD and
            alignment score go into ``model-index`` and the full table into the text.
        model_name: Name in the title and ``model-index`` (default: the repo name, else ``<recipe>-adapter``).
        repo_id: Where it is (or will be) pushed, for the loading snippet.
        subfolder: The adapter's subfolder in the repo (specific mode), for the loading snippet.
        subfolders: For the root card of a repo with one adapter per culture: those cultures' subfolders (listed;
            the loading snippet loads the first).
        tags: More tags; ``culture-align``, the recipe, ``lora`` and ``peft`` are always there.
        license: License id (default: none stated; the base model's license applies).
    """
    info = recipe
    cultures = [get_culture(c).iso3 for c in cultures]
    hub_base = _hub_base_model(base_model)
    base_label = hub_base or base_model or None  # never the path of a local model cache
    name = model_name or (repo_id.split("/")[-1] if repo_id else f"{info.key}-adapter") + (
        f"-{subfolder}" if subfolder and not model_name else "")
    report_data = report_dict(report)
    results = eval_results_from_report(report_data, cultures=cultures or None) if report_data else None
    data = ModelCardData(
        base_model=hub_base, datasets=list(dict.fromkeys(datasets_used)) or None, library_name="peft",
        license=license, tags=list(dict.fromkeys([LIBRARY_TAG, info.key, "lora", "peft", *tags])),
        pipeline_tag="text-generation", model_name=name, eval_results=results or None,
    )
    load_subfolder = subfolder or (subfolders[0] if subfolders else None)
    load_args = f'"{repo_id or "<repo_id>"}"' + (f', subfolder="{load_subfolder}"' if load_subfolder else "")
    training_data = ", ".join(f"[{d}](https://huggingface.co/datasets/{d})" if HUB_ID.match(d) else f"`{d}`"
                              for d in dict.fromkeys(datasets_used))
    return render_model_card(
        data, title=name, recipe=info, base_label=base_label,
        cultures_phrase=_cultures_phrase(cultures) if cultures else "", cultures=cultures,
        subfolders=[(c, get_culture(c).name) for c in subfolders], load_args=load_args, training_data=training_data,
        adapter_json=json.dumps(_adapter_summary(adapter_config), indent=2) if adapter_config else "",
        training_json=json.dumps(dict(training_config), indent=2, default=str) if training_config else "",
        report_table=_report_table(report_data, cultures) if report_data else "",
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


# ---------------------------------------------------------------------------------------------- trainers
_TRAINING_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                  "gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay",
                  "max_length", "packing", "seed", "bf16", "fp16")


def training_summary(args: Any) -> dict[str, Any]:
    """The training settings worth a card from a ``TrainingArguments`` subclass: the usual hyper-parameters,
    the effective batch size, and every field the recipe's config adds to TRL's ``SFTConfig``."""
    from trl import SFTConfig

    out: dict[str, Any] = {key: getattr(args, key) for key in _TRAINING_KEYS if hasattr(args, key)}
    if out.get("max_steps", -1) <= 0:
        out.pop("max_steps", None)
    out["effective_batch_size"] = (getattr(args, "per_device_train_batch_size", 1)
                                   * getattr(args, "gradient_accumulation_steps", 1) * getattr(args, "world_size", 1))
    base = {f.name for f in fields(SFTConfig)}
    for f in fields(type(args)):
        if f.name not in base:
            out[f.name] = getattr(args, f.name)
    out["config_class"] = type(args).__name__
    return out


def write_trainer_model_card(
    trainer: Any,
    *,
    output_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    report: Report | None = None,
    cultures: Sequence[str] | None = None,
    adapter_name: str | None = None,
) -> Path | None:
    """Write the culture-align card of a trainer's adapter to ``<output_dir>/README.md`` (rank 0 only).

    The recipe is the trainer's own (``_name`` and ``_paper``, :meth:`RecipeInfo.from_trainer`), so a subclass
    with its own ``_name`` and ``_paper`` gets its own card. The call a trainer's ``create_model_card`` override
    makes (TRL calls ``create_model_card`` on every checkpoint save and in ``push_to_hub``, whose extra keyword
    arguments reach it: ``trainer.push_to_hub(report=wvs_report)`` puts the evaluation into the card, and keeps it
    in :data:`EVALUATION_FILE` beside the card)::

        def create_model_card(self, model_name=None, dataset_name=None, tags=None, report=None, **kwargs):
            write_trainer_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags,
                                     report=report, cultures=self.cultures)

    Args:
        trainer: A ``transformers.Trainer`` (its ``model``, ``args``, ``hub_model_id``) with ``_name``/``_paper``.
        output_dir: Where to write (default: ``trainer.args.output_dir``).
        model_name, dataset_name, tags: As TRL's ``create_model_card`` takes them.
        report: WVS evaluation results for the card's ``model-index``.
        cultures: ISO3 codes the adapter is for.
        adapter_name: The PEFT adapter to describe when the model holds several (e.g. one per culture; default:
            the active one).

    Returns:
        The README path, or None on processes other than the main one.
    """
    if not trainer.is_world_process_zero():
        return None
    model = trainer.model
    adapter_config: dict[str, Any] = {}
    peft_configs = getattr(model, "peft_config", None)
    if peft_configs:
        active = adapter_name or getattr(model, "active_adapter", None)
        if adapter_name is not None and adapter_name not in peft_configs:
            raise ValueError(f"the model has no adapter {adapter_name!r} (has {', '.join(peft_configs)})")
        active = active if isinstance(active, str) and active in peft_configs else next(iter(peft_configs))
        adapter_config = peft_configs[active].to_dict()
    base_model = adapter_config.get("base_model_name_or_path") or getattr(model.config, "_name_or_path", None)
    datasets_used = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name or [])
    extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
    card = adapter_model_card(
        recipe=RecipeInfo.from_trainer(trainer), base_model=base_model, cultures=cultures or (),
        datasets_used=datasets_used, training_config=training_summary(trainer.args), adapter_config=adapter_config,
        report=report, model_name=model_name, repo_id=getattr(trainer, "hub_model_id", None), tags=extra_tags,
    )
    folder = Path(output_dir or trainer.args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if report is not None:
        (folder / EVALUATION_FILE).write_text(json.dumps(card_evaluation(report), indent=1, default=str) + "\n")
    card.save(folder / "README.md")
    return folder / "README.md"
