"""Cards and Hub uploads: dataset cards of the corpora, model cards of adapters, and the push helpers.

- :func:`corpus_card` renders the dataset card of a built corpus (used by
  :func:`culture_align.builders.build_corpus`); :func:`push_dataset` uploads a built folder.
- :func:`adapter_model_card` renders the model card of a LoRA adapter: base model, datasets, recipe and its
  config, the WVS evaluation as ``model-index`` metadata, how to load it. :func:`write_trainer_model_card` is the
  one call a trainer's ``create_model_card`` makes; :func:`push_adapter` uploads an adapter folder (specific-mode
  folders with one ``<ISO3>/`` adapter per culture go to one repo with a subfolder each, or one repo each).
- :func:`push_metric` publishes the ``wvs_alignment`` metric folder as an ``evaluate`` Space.

Every upload goes through ``huggingface_hub.HfApi`` (``create_repo`` then one ``create_commit`` that lists the
exact files), so tests check it against a mocked ``HfApi``. Nothing here imports the recipes or trainers.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    DatasetCardData,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
)
from transformers.utils import logging

from .cultures import get_culture
from .redaction import pickled_secrets
from .wvs.loaders import hub_dataset_id

if TYPE_CHECKING:
    from .builders import BuiltConfig, CorpusBuilder
    from .evaluation.report import WVSReport

logger = logging.get_logger(__name__)

__all__ = [
    "RECIPES",
    "RecipeInfo",
    "LIBRARY_TAG",
    "corpus_card",
    "push_dataset",
    "eval_results_from_report",
    "adapter_model_card",
    "adapter_card_from_folder",
    "update_adapter_card",
    "write_trainer_model_card",
    "push_adapter",
    "push_metric",
]

LIBRARY_TAG = "culture-align"
"""Tag of every card this library writes; a README without it is not ours and gets replaced."""


@dataclass(frozen=True)
class RecipeInfo:
    """A recipe as model cards cite it."""

    name: str
    paper_title: str
    arxiv_id: str
    citation: str


RECIPES: dict[str, RecipeInfo] = {
    "clca": RecipeInfo(
        "CLCA", "Cultural Learning-Based Culture Adaptation of Language Models", "2504.02953",
        "@inproceedings{liu2025clca,\n  title     = {Cultural Learning-Based Culture Adaptation of Language Models},\n"
        "  author    = {Chen Cecilia Liu and Anna Korhonen and Iryna Gurevych},\n"
        "  booktitle = {Proceedings of the 63rd Annual Meeting of the Association for Computational Linguistics},\n"
        "  year      = {2025}\n}"),
    "culturespa": RecipeInfo(
        "CultureSPA", "Self-Pluralising Culture Alignment for Large Language Models", "2410.12971",
        "@article{xu2024culturespa,\n  title   = {Self-Pluralising Culture Alignment for Large Language Models},\n"
        "  author  = {Shaoyang Xu and Yongqi Leng and Linhao Yu and Deyi Xiong},\n"
        "  journal = {arXiv preprint arXiv:2410.12971},\n  year    = {2024}\n}"),
    "culturellm": RecipeInfo(
        "CultureLLM", "CultureLLM: Incorporating Cultural Differences into Large Language Models", "2402.10946",
        "@inproceedings{li2024culturellm,\n  title     = {CultureLLM: Incorporating Cultural Differences into Large "
        "Language Models},\n  author    = {Cheng Li and Mengzhou Chen and Jindong Wang and Sunayana Sitaram and "
        "Xing Xie},\n  booktitle = {Advances in Neural Information Processing Systems},\n  year      = {2024}\n}"),
    "answer_distribution": RecipeInfo(
        "Answer distributions (forward KL)",
        "Specializing Large Language Models to Simulate Survey Response Distributions for Global Populations",
        "2502.07068",
        "@inproceedings{cao2025specializing,\n  title     = {Specializing Large Language Models to Simulate Survey "
        "Response Distributions for Global Populations},\n  author    = {Yong Cao and Haijiang Liu and Arnav Arora "
        "and Isabelle Augenstein and Paul R{\\\"o}ttger and Daniel Hershcovich},\n  booktitle = {Proceedings of the "
        "2025 Conference of the Nations of the Americas Chapter of the Association for Computational Linguistics},\n"
        "  year      = {2025}\n}\n@inproceedings{suh2025subpop,\n  title     = {Language Model Fine-Tuning on Scaled "
        "Survey Data for Predicting Distributions of Public Opinions},\n  author    = {Joseph Suh and Erfan Jahanparast "
        "and Suhong Moon and Minwoo Kang and Serina Chang},\n  booktitle = {Proceedings of the 63rd Annual Meeting "
        "of the Association for Computational Linguistics},\n  year      = {2025}\n}"),
}
"""The recipes by CLI name."""

_ISO3 = re.compile(r"^[A-Z]{3}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _api(api: HfApi | None, token: str | None) -> HfApi:
    return api if api is not None else HfApi(token=token)


# ----------------------------------------------------------------------------------------------------------
# Dataset cards
# ----------------------------------------------------------------------------------------------------------


def _feature_paths(features: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted path, type)`` of every field, nested struct fields after their parent."""
    rows: list[tuple[str, str]] = []

    def type_of(feature: Any) -> str:
        if isinstance(feature, datasets.Value):
            return feature.dtype
        if isinstance(feature, datasets.ClassLabel):
            return f"class label ({', '.join(feature.names)})"
        if isinstance(feature, (datasets.List, datasets.LargeList, list)):
            inner = feature[0] if isinstance(feature, list) else feature.feature
            return f"list of {type_of(inner)}"
        if isinstance(feature, dict):
            return "struct"
        return type(feature).__name__

    def children(feature: Any) -> Mapping[str, Any] | None:
        if isinstance(feature, dict):
            return feature
        if isinstance(feature, (datasets.List, datasets.LargeList)):
            return children(feature.feature)
        if isinstance(feature, list):
            return children(feature[0])
        return None

    for name, feature in features.items():
        path = f"{prefix}{name}"
        rows.append((path, type_of(feature)))
        sub = children(feature)
        if sub is not None:
            rows += _feature_paths(sub, prefix=f"{path}.")
    return rows


def _describe(path: str, descriptions: Mapping[str, str]) -> str | None:
    if path in descriptions:
        return descriptions[path]
    for pattern, text in descriptions.items():
        if fnmatch.fnmatchcase(path, pattern):
            return text
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def corpus_card(builder: type[CorpusBuilder], built: Mapping[str, BuiltConfig], provenance: str = "") -> DatasetCard:
    """The dataset card of a built corpus: YAML metadata (license, language, task categories, size category,
    ``configs`` with their data files, ``dataset_info`` with the features) and a body describing every field,
    how the data was made (``provenance``), its limitations, terms and how to load it.

    Args:
        builder: The builder class (its ``CARD`` and ``BUILDER_CONFIGS``).
        built: ``{config: BuiltConfig}`` from :func:`culture_align.builders.build_corpus`.
        provenance: Markdown from the builder's ``card_provenance()``.

    Raises:
        ValueError: a field without a description in ``builder.CARD.fields``, or a card that does not parse back.
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    card = builder.CARD
    undocumented = [f"{config}: {path}" for config, b in built.items() for path, _ in _feature_paths(b.info.features)
                    if _describe(path, card.fields.get(config, {})) is None]
    if undocumented:
        raise ValueError(f"{builder.__name__}.CARD.fields does not describe: {', '.join(undocumented)}")
    published = {name: b for name, b in built.items() if b.files}
    if not published:
        raise ValueError(f"{builder.__name__}: every config is empty; nothing to publish")
    largest = max(sum(b.info.splits[s].num_examples for s in b.files) for b in published.values())

    from .builders import size_category

    data = DatasetCardData(
        license=card.license, language=list(card.language), task_categories=list(card.task_categories),
        size_categories=[size_category(largest)], pretty_name=card.pretty_name,
        tags=[LIBRARY_TAG, *card.tags],
        **({"license_name": card.license_name} if card.license_name else {}),
        **({"license_link": card.license_link} if card.license_link else {}),
    )
    configs = {}
    for k, (name, b) in enumerate(published.items()):
        configs[name] = {"data_files": [{"split": split, "path": files} for split, files in b.files.items()]}
        if k == 0:
            configs[name]["default"] = True
    MetadataConfigs(configs).to_dataset_card_data(data)
    infos = {}
    for name, b in published.items():
        info = b.info.copy()
        info.splits = datasets.SplitDict({s: info.splits[s] for s in b.files}, dataset_name=info.splits.dataset_name)
        info.config_name = name
        infos[name] = info
    DatasetInfosDict(infos).to_dataset_card_data(data)

    body = [f"# {card.pretty_name}", "", card.summary.strip(), ""]
    if card.source_and_terms:
        body += ["## Source and terms of use", "", card.source_and_terms.strip(), ""]
    body += ["## Configurations and fields", ""]
    first = next(iter(published))
    for name, b in built.items():
        config = next(c for c in builder.BUILDER_CONFIGS if c.name == name)
        body += [f"### `{name}`", "", (config.description or "").strip(), ""]
        if not b.files:
            body += ["Empty in this build, so not published.", ""]
            continue
        sizes = ", ".join(f"`{s}`: {b.info.splits[s].num_examples} rows" for s in b.files)
        body += [f"Splits: {sizes}." + (f" Empty (left out): {', '.join(b.empty_splits)}." if b.empty_splits else ""),
                 "", "| field | type | description |", "|---|---|---|"]
        body += [f"| `{path}` | {type_} | {_cell(_describe(path, card.fields[name]) or '')} |"
                 for path, type_ in _feature_paths(b.info.features)]
        body.append("")
    body += ["## How it was made", "", provenance.strip() or "No provenance was recorded.", "",
             "## Limitations", "", card.limitations.strip(), "",
             "## How to load", "", "```python", "from datasets import load_dataset", "",
             f'ds = load_dataset("<repo_id or local folder>", "{first}")   # configs: {", ".join(published)}',
             "```", "", "The data is plain Parquet with this card's `configs`: no loading script is involved.", ""]
    if card.citation:
        body += ["## Citation", "", "```bibtex", card.citation.strip(), "```", ""]
    body += ["Built with culture-align."]

    rendered = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    _check_dataset_card(rendered, published)
    return rendered


def _check_dataset_card(card: DatasetCard, published: Mapping[str, Any]) -> None:
    """Parse the card back with ``huggingface_hub`` and ``datasets``: the YAML must give the same configs."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    reparsed = DatasetCard(str(card))
    configs = MetadataConfigs.from_dataset_card_data(reparsed.data)
    infos = DatasetInfosDict.from_dataset_card_data(reparsed.data)
    if set(configs) != set(published) or set(infos) != set(published):
        raise ValueError(f"the dataset card does not parse back to its configs: {sorted(configs)} / {sorted(infos)}")
    for key in ("license", "language", "task_categories", "size_categories"):
        if not getattr(reparsed.data, key, None):
            raise ValueError(f"the dataset card lacks `{key}`")


def _card_data_files(folder: Path, card: DatasetCard) -> dict[str, Path]:
    """``{path in repo: local file}`` of the data files the card's ``configs`` list (glob patterns expanded; a
    config without ``data_files``: its folder's Parquet files). No other file of the folder is uploaded."""
    files: dict[str, Path] = {}
    for entry in card.data.get("configs") or []:
        patterns = [p for d in entry.get("data_files") or [] for p in
                    ([d["path"]] if isinstance(d.get("path"), str) else d.get("path") or [])]
        for pattern in patterns or [f"{entry['config_name']}/*.parquet"]:
            if any(c in pattern for c in "*?["):
                matches = sorted(p for p in folder.glob(pattern) if p.is_file())
            elif (folder / pattern).is_file():
                matches = [folder / pattern]
            else:
                raise FileNotFoundError(f"{folder}: the card lists {pattern}, which is not there; build the "
                                        "corpus again")
            files.update({p.relative_to(folder).as_posix(): p for p in matches})
    return files


def push_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    api: HfApi | None = None,
) -> Any:
    """Upload a corpus built by :func:`culture_align.builders.build_corpus` (``README.md`` + the Parquet files
    its card lists, nothing else of the folder) to a dataset repo, in one commit; Parquet files of an earlier
    push that this build no longer has are deleted.

    Args:
        folder: The built folder.
        repo_id: ``"user/name"``; created when missing.
        private: Visibility of a new repo (None: the Hub's default).
        token: Hub token (default: the logged-in one).
        commit_message: Default ``"Upload <pretty name> (configs ...) built with culture-align"``.
        revision: Branch to commit to.
        api: An ``HfApi`` to use (tests pass a mock).

    Returns:
        The ``CommitInfo`` of the commit.
    """
    folder = Path(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        raise FileNotFoundError(f"{folder}: no README.md; build it first (culture-align build-dataset)")
    card = DatasetCard.load(readme)
    configs = [c["config_name"] for c in (card.data.get("configs") or [])]
    files = {"README.md": readme, **_card_data_files(folder, card)}
    if len(files) == 1:
        raise ValueError(f"{folder}: the card lists no config with Parquet files")
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    existing = api.list_repo_files(repo_id, repo_type="dataset", revision=revision, token=token)
    stale = sorted(f for f in existing if f.endswith(".parquet") and f not in files)
    name = card.data.get("pretty_name") or folder.name
    message = commit_message or f"Upload {name} (configs: {', '.join(configs)}) built with culture-align"
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local)) for p, local in files.items()]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    return api.create_commit(repo_id, operations=operations, commit_message=message, repo_type="dataset",
                             revision=revision, token=token)


# ----------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------

_EVAL_METRICS = (("kl_divergence", "KL(human ‖ model), nats (lower is better)"),
                 ("similarity", "1 - JSD (higher is better)"),
                 ("alignment_score", "CultureSPA alignment score, 0-100 (higher is better)"))


def _report_dict(report: WVSReport | Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any] | None:
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
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if "summary" not in loaded:
        raise ValueError(f"{path}: not a WVSReport results file (no `summary`)")
    return loaded


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def eval_results_from_report(
    report: WVSReport | Mapping[str, Any] | str | os.PathLike,
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
    data = _report_dict(report)
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


_HF_CACHE_REPO = re.compile(r"^models--(?P<owner>[^/\\]+?)--(?P<name>[^/\\]+)$")


def _cached_hub_id(name_or_path: str) -> str | None:
    """The Hub id of a folder of a local model cache, also when that folder is not on this machine: a
    ``huggingface_hub`` cache folder (``.../models--<owner>--<name>/snapshots/<revision>``) or an embedded model
    converted into the culture-align cache (``.../models/<alias>-<version>``). None for any other path."""
    from .embedded_models import EMBEDDED_MODELS

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
    return name_or_path if _HUB_ID.match(name_or_path) else None


def _base_model_label(name_or_path: str | None) -> str | None:
    """How a card names the base model: its Hub id when there is one (never the path of a local model cache,
    which means nothing on another machine), else the name or folder the user gave."""
    return _hub_base_model(name_or_path) or name_or_path or None


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
    recipe: str,
    base_model: str | None,
    cultures: Sequence[str] = (),
    datasets_used: Sequence[str] = (),
    training_config: Mapping[str, Any] | None = None,
    adapter_config: Mapping[str, Any] | None = None,
    report: WVSReport | Mapping[str, Any] | str | os.PathLike | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    subfolder: str | None = None,
    tags: Sequence[str] = (),
    license: str | None = None,
) -> ModelCard:
    """The model card of a culture-align LoRA adapter.

    Args:
        recipe: ``"clca"``, ``"culturespa"`` or ``"culturellm"`` (see :data:`RECIPES`).
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
        tags: More tags; ``culture-align``, the recipe, ``lora`` and ``peft`` are always there.
        license: License id (default: none stated; the base model's license applies).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    info = RECIPES[recipe]
    cultures = [get_culture(c).iso3 for c in cultures]
    hub_base = _hub_base_model(base_model)
    base_label = _base_model_label(base_model)
    name = model_name or (repo_id.split("/")[-1] if repo_id else f"{recipe}-adapter") + (
        f"-{subfolder}" if subfolder and not model_name else "")
    report_data = _report_dict(report)
    results = eval_results_from_report(report_data, cultures=cultures or None) if report_data else None
    all_tags = list(dict.fromkeys([LIBRARY_TAG, recipe, "lora", "peft", *tags]))
    data = ModelCardData(
        base_model=hub_base, datasets=list(datasets_used) or None, library_name="peft", license=license,
        tags=all_tags, pipeline_tag="text-generation", model_name=name, eval_results=results or None,
    )
    target = repo_id or "<repo_id>"
    load_args = f'"{target}"' + (f', subfolder="{subfolder}"' if subfolder else "")
    body = [
        f"# {name}", "",
        f"A LoRA adapter for `{base_label or 'the base model'}` trained with the {info.name} recipe "
        f"([{info.paper_title}](https://arxiv.org/abs/{info.arxiv_id})) of culture-align"
        + (f", to reflect the values of {_cultures_phrase(cultures)}." if cultures else "."), "",
        "## How to load", "", "```python", "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_label or "<base model>"}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{base_label or "<base model>"}")',
        f"model = PeftModel.from_pretrained(base, {load_args})", "```", "",
        "or with culture-align: `load_model_and_tokenizer(base, adapter=...)`.", "",
        "## Training", "", f"- Recipe: {info.name} (`{recipe}`)",
        f"- Base model: `{base_label}`" if base_label else "- Base model: not recorded",
    ]
    if datasets_used:
        body.append("- Training data: " + ", ".join(f"[{d}](https://huggingface.co/datasets/{d})"
                                                    if _HUB_ID.match(d) else f"`{d}`" for d in datasets_used))
    if cultures:
        body.append(f"- Cultures: {', '.join(cultures)}")
    if adapter_config:
        body += ["", "Adapter:", "", "```json", json.dumps(_adapter_summary(adapter_config), indent=2), "```"]
    if training_config:
        body += ["", "Training settings:", "", "```json", json.dumps(dict(training_config), indent=2, default=str),
                 "```"]
    body += ["", _evaluation_section(report_data, cultures), "", "## Citation", "", "```bibtex", info.citation, "```", "",
             "Made with culture-align."]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    ModelCard(str(card))  # parses back (raises on invalid metadata)
    return card


def _evaluation_section(report: Mapping[str, Any] | None, cultures: Sequence[str]) -> str:
    """The card's ``## Evaluation`` section (up to, not including, the next section)."""
    if not report:
        return ("## Evaluation\n\nNot evaluated yet: run `culture-align eval --adapter ...` and push again with "
                "`--report`.")
    return ("## Evaluation\n\n" + _report_table(report, cultures) + "\n\nKL(human ‖ model) in nats (lower is "
            "better), 1-JSD and the alignment score (0-100; higher is better) from the `wvs_alignment` metric: the "
            "model's answer distribution over each WVS item's options against the culture's human answers.")


_LOAD_CALL = re.compile(r"PeftModel\.from_pretrained\(base, [^)\n]*\)")
_EVAL_SECTION = re.compile(r"## Evaluation\n.*?(?=\n## )", re.DOTALL)


def update_adapter_card(
    card: ModelCard,
    *,
    repo_id: str | None = None,
    subfolder: str | None = None,
    report: WVSReport | Mapping[str, Any] | str | os.PathLike | None = None,
    datasets_used: Sequence[str] = (),
    base_model: str | None = None,
) -> ModelCard:
    """An existing culture-align adapter card with what only the push knows: the repo (and subfolder) in the
    loading snippet, the training datasets, and the evaluation (``model-index`` and the Evaluation section).
    Everything else, e.g. the training settings a trainer recorded, is kept.

    ``base_model`` (``base_model_name_or_path`` of the adapter's config): when it is a folder of a local model
    cache, a card written before cards named its Hub id has that path replaced by the id (text and YAML)."""
    data = card.data
    text = card.text
    hub_base = _cached_hub_id(base_model) if base_model else None
    if hub_base is not None:
        text = text.replace(base_model, hub_base)
        data.base_model = data.base_model or hub_base
    if repo_id is not None:
        args = f'"{repo_id}"' + (f', subfolder="{subfolder}"' if subfolder else "")
        text = _LOAD_CALL.sub(lambda _: f"PeftModel.from_pretrained(base, {args})", text, count=1)
    if datasets_used:
        data.datasets = list(dict.fromkeys([*(data.datasets or []), *datasets_used]))
    if report is not None:
        report_data = _report_dict(report)
        listed = re.search(r"^- Cultures: (.*)$", text, re.MULTILINE)  # written by adapter_model_card
        cultures = [c.strip() for c in listed.group(1).split(",") if c.strip()] if listed else []
        data.eval_results = eval_results_from_report(report_data, cultures=cultures or None) or None
        data.model_name = data.model_name or (repo_id.split("/")[-1] if repo_id else None)
        text = _EVAL_SECTION.sub(lambda _: _evaluation_section(report_data, cultures), text, count=1)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def _card_recipe(card: ModelCard) -> str | None:
    """The recipe of a culture-align card (its recipe tag), None for any other card."""
    tags = card.data.get("tags") or []
    return next((t for t in tags if t in RECIPES), None) if LIBRARY_TAG in tags else None


def _recipe_of_card(readme: Path) -> str | None:
    """The recipe of the culture-align card at ``readme``; None when there is none or it is not ours."""
    return _card_recipe(ModelCard.load(readme)) if readme.is_file() else None


def adapter_card_from_folder(
    folder: str | os.PathLike,
    *,
    recipe: str | None = None,
    report: WVSReport | Mapping[str, Any] | str | os.PathLike | None = None,
    cultures: Sequence[str] | None = None,
    repo_id: str | None = None,
    subfolder: str | None = None,
    datasets_used: Sequence[str] = (),
) -> ModelCard:
    """:func:`adapter_model_card` for a saved adapter folder.

    The base model and the adapter settings come from its ``adapter_config.json``; the recipe, the cultures and
    the training settings from its ``training_info.json`` when the trainer wrote one (``CultureAdapterTrainer``
    does), else the recipe from the folder's culture-align card and the culture from a folder named by its ISO3
    code (``.../CHN``). Arguments given here win."""
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    adapter_config = _read_json(config_file)
    info = _read_json(folder / "training_info.json") if (folder / "training_info.json").is_file() else {}
    recorded = str(info.get("recipe", "")).lower()
    recipe = recipe or _recipe_of_card(folder / "README.md") or (recorded if recorded in RECIPES else None)
    if recipe is None:
        raise ValueError(f"{folder}: which recipe trained this adapter? Pass recipe= (--recipe): "
                         f"{', '.join(RECIPES)}")
    if cultures is None:
        cultures = info.get("cultures") or ([folder.name] if _ISO3.match(folder.name) else [])
    training_config = {**info.get("settings", {}), **({"mode": info["mode"]} if info.get("mode") else {}),
                       **({"train_metrics": info["train_metrics"]} if info.get("train_metrics") else {})}
    return adapter_model_card(recipe=recipe, base_model=adapter_config.get("base_model_name_or_path"),
                              cultures=cultures, datasets_used=datasets_used, training_config=training_config or None,
                              adapter_config=adapter_config, report=report, repo_id=repo_id, subfolder=subfolder)


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
    recipe: str,
    output_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    report: WVSReport | Mapping[str, Any] | str | os.PathLike | None = None,
    cultures: Sequence[str] | None = None,
    adapter_name: str | None = None,
) -> Path | None:
    """Write the culture-align card of a trainer's adapter to ``<output_dir>/README.md`` (rank 0 only).

    The call a trainer's ``create_model_card`` override makes (TRL calls ``create_model_card`` on every
    checkpoint save and in ``push_to_hub``, whose extra keyword arguments reach it: ``trainer.push_to_hub(
    report=wvs_report)`` puts the evaluation into the card)::

        def create_model_card(self, model_name=None, dataset_name=None, tags=None, report=None, **kwargs):
            write_trainer_model_card(self, recipe="culturespa", model_name=model_name, dataset_name=dataset_name,
                                     tags=tags, report=report, cultures=self.cultures)

    Args:
        trainer: A ``transformers.Trainer`` (its ``model``, ``args``, ``hub_model_id``).
        recipe: Key of :data:`RECIPES`.
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
        recipe=recipe, base_model=base_model, cultures=cultures or (), datasets_used=datasets_used,
        training_config=training_summary(trainer.args), adapter_config=adapter_config, report=report,
        model_name=model_name, repo_id=getattr(trainer, "hub_model_id", None), tags=extra_tags,
    )
    path = Path(output_dir or trainer.args.output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


_SKIP_UPLOAD = ("checkpoint-*", "runs", "_*", ".*", "__pycache__", "*.pyc")
_TRAINING_ARGS = "training_args.bin"


def _free_of_secrets(path: Path) -> bool:
    """False (with a warning naming the file) for a ``training_args.bin`` that holds a Hub token or cannot be
    checked for one; True for it when clean, and for every other file."""
    if path.name != _TRAINING_ARGS:
        return True
    try:
        secrets = pickled_secrets(path)
    except (ValueError, OSError) as err:
        logger.warning(f"{path}: not uploaded, since it cannot be checked for a Hub token ({err})")
        return False
    if secrets:
        logger.warning(f"{path}: not uploaded, since it holds {', '.join(secrets)} (a run that saved its "
                       "TrainingArguments with a token). Delete the file, and revoke the token if it was shared.")
        return False
    return True


def _adapter_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    """``{path in repo: local path}`` of an adapter folder, without checkpoints, logs, hidden files and any
    ``training_args.bin`` holding a token."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(fnmatch.fnmatchcase(part, pattern) for part in rel.parts
                                      for pattern in _SKIP_UPLOAD) and _free_of_secrets(path):
            files[f"{prefix}{rel.as_posix()}"] = path
    return files


def _culture_adapters(folder: Path) -> dict[str, Path]:
    """``{ISO3: subfolder}`` of a specific-mode folder (one adapter per culture subfolder)."""
    return {sub.name: sub for sub in sorted(folder.iterdir())
            if sub.is_dir() and _ISO3.match(sub.name) and (sub / "adapter_config.json").is_file()}


def _upload_with_cards(folder: Path, cards: Mapping[str, ModelCard]) -> dict[str, Path | bytes]:
    """What to upload from ``folder``: its files (:func:`_adapter_files`), with the cards to push (``{path in
    repo: card}``) as bytes in place of (or besides) the README files on disk, which are left as they are."""
    files: dict[str, Path | bytes] = dict(_adapter_files(folder))
    files.update({rel: str(card).encode("utf-8") for rel, card in cards.items()})
    return dict(sorted(files.items()))


def push_adapter(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    per_culture_repos: bool = False,
    recipe: str | None = None,
    report: WVSReport | Mapping[str, Any] | str | os.PathLike | None = None,
    datasets_used: Sequence[str] = (),
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> list[str]:
    """Upload an adapter folder with its model card.

    ``folder`` is one adapter (``adapter_config.json``) or a specific-mode folder with one adapter per culture in
    ``<ISO3>/`` subfolders. Specific mode goes to one repo with a subfolder per culture (each with its card, plus
    an overview card at the root), or with ``per_culture_repos=True`` to one repo per culture: ``repo_id`` with
    ``{culture}`` replaced by the ISO3 code, or ``<repo_id>-<iso3 lowercase>``.

    The card is (re)written when the folder has no culture-align card or when a ``report`` is given. Cards are
    uploaded from memory and written to the folder only once their commit succeeded: a failed push leaves the
    local files as they were. A ``training_args.bin`` holding a Hub token is left out (with a warning).

    Returns:
        The repo ids pushed to.
    """
    folder = Path(folder)
    api = _api(api, token)
    single = (folder / "adapter_config.json").is_file()
    adapters = {} if single else _culture_adapters(folder)
    if not single and not adapters:
        raise FileNotFoundError(f"{folder}: neither an adapter (adapter_config.json) nor a folder of per-culture "
                                "adapters (<ISO3>/adapter_config.json)")

    def card_for(adapter: Path, target: str, subfolder: str | None = None) -> tuple[str, ModelCard]:
        """The recipe and the card to push for ``adapter`` (nothing is written)."""
        readme = adapter / "README.md"
        ours = _recipe_of_card(readme)
        if ours is None:  # no card, or PEFT's generic one
            card = adapter_card_from_folder(adapter, recipe=recipe, report=report, repo_id=target,
                                            subfolder=subfolder, datasets_used=datasets_used)
            return _card_recipe(card), card
        base = _read_json(adapter / "adapter_config.json").get("base_model_name_or_path")
        return ours, update_adapter_card(ModelCard.load(readme), repo_id=target, subfolder=subfolder,
                                         report=report, datasets_used=datasets_used, base_model=base)

    def commit(target: str, root: Path, cards: dict[str, ModelCard], message: str) -> None:
        """Upload ``root`` with ``cards`` in one commit; then (only then) write the cards into ``root``."""
        api.create_repo(target, repo_type="model", private=private, exist_ok=True, token=token)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=local if isinstance(local, bytes)
                                         else str(local)) for p, local in _upload_with_cards(root, cards).items()]
        api.create_commit(target, operations=operations, commit_message=message, repo_type="model", token=token)
        for rel, card in cards.items():
            card.save(root / rel)

    if single:
        used, card = card_for(folder, repo_id)
        commit(repo_id, folder, {"README.md": card}, commit_message or f"Upload culture-align {used} adapter")
        return [repo_id]
    if per_culture_repos:
        from .prompts.templates import check_placeholders

        check_placeholders(repo_id, ("culture",), "repo_id")  # before the first upload, not in the middle
        pushed = []
        for culture, sub in adapters.items():
            target = repo_id.format(culture=culture) if "{culture}" in repo_id else f"{repo_id}-{culture.lower()}"
            used, card = card_for(sub, target)
            commit(target, sub, {"README.md": card},
                   commit_message or f"Upload culture-align {used} adapter for {culture}")
            pushed.append(target)
        return pushed
    used, cards = None, {}
    for culture, sub in adapters.items():
        used, cards[f"{culture}/README.md"] = card_for(sub, repo_id, subfolder=culture)
    cards["README.md"] = _overview_card(folder, adapters, used, repo_id, report)
    # the culture subfolders, the overview card and any index file beside them
    commit(repo_id, folder, cards, commit_message or f"Upload culture-align {used} adapters for "
                                                      f"{', '.join(adapters)} (one subfolder per culture)")
    return [repo_id]


def _overview_card(folder: Path, adapters: Mapping[str, Path], recipe: str, repo_id: str,
                   report: WVSReport | Mapping[str, Any] | str | os.PathLike | None) -> ModelCard:
    """The root card of a repo holding one adapter per culture in subfolders."""
    first = _read_json(next(iter(adapters.values())) / "adapter_config.json")
    card = adapter_model_card(recipe=recipe, base_model=first.get("base_model_name_or_path"),
                              cultures=list(adapters), adapter_config=first, report=report, repo_id=repo_id,
                              model_name=repo_id.split("/")[-1])
    listing = "\n".join(f"- `{c}/`: {get_culture(c).name}" for c in adapters)
    text = str(card).replace(
        "## How to load",
        f"One adapter per culture, each in its own subfolder:\n\n{listing}\n\n## How to load", 1).replace(
        f'PeftModel.from_pretrained(base, "{repo_id}")',
        f'PeftModel.from_pretrained(base, "{repo_id}", subfolder="{next(iter(adapters))}")', 1)
    return ModelCard(text)


# ----------------------------------------------------------------------------------------------------------
# The metric as an evaluate Space
# ----------------------------------------------------------------------------------------------------------

_METRIC_FILES = ("README.md", "app.py", "requirements.txt")


def push_metric(
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> Any:
    """Publish the ``wvs_alignment`` metric as an ``evaluate`` Space (Gradio SDK): the module, its card (with the
    Space YAML header), ``requirements.txt`` and ``app.py``. Afterwards ``evaluate.load(repo_id)`` works.

    Returns:
        The ``CommitInfo`` of the commit.
    """
    from huggingface_hub import SpaceCard

    from .metric import METRIC_NAME, alignment_metric_path

    folder = alignment_metric_path()
    names = (f"{METRIC_NAME}.py", *_METRIC_FILES)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: the metric Space needs {', '.join(missing)}")
    space = SpaceCard.load(folder / "README.md").data
    if space.get("sdk") != "gradio" or space.get("app_file") != "app.py":
        raise ValueError(f"{folder / 'README.md'}: the Space header must say sdk: gradio and app_file: app.py")
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, token=token)
    operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(folder / n)) for n in names]
    return api.create_commit(repo_id, operations=operations, repo_type="space", token=token,
                             commit_message=commit_message or f"Upload the {METRIC_NAME} evaluate metric "
                                                              "(culture-align)")
