"""The dataset card of a built corpus (``templates/dataset_card.md``), rendered from the builder and what it built."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from .rendering import LIBRARY_TAG, render_dataset_card

__all__ = ["corpus_card", "size_category"]

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` value for a dataset of ``num_rows`` rows (largest config)."""
    for limit, name in _SIZE_CATEGORIES:
        if num_rows < limit:
            return name
    return "n>1B"


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


def corpus_card(builder: type, built: Mapping[str, Any], provenance: str = "") -> DatasetCard:
    """The dataset card of a built corpus: YAML metadata (license, language, task categories, size category,
    ``configs`` with their data files, ``dataset_info`` with the features) and a body describing every field,
    how the data was made (``provenance``), its limitations, terms, how to load it and what to cite.

    Args:
        builder: The :class:`~culture_align.builders.CorpusBuilder` class (its ``CARD``, ``BUILDER_CONFIGS`` and
            ``citation()``).
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

    sections = []
    for name, b in built.items():
        config = next(c for c in builder.BUILDER_CONFIGS if c.name == name)
        sections.append({
            "name": name, "description": (config.description or "").strip(), "published": bool(b.files),
            "sizes": ", ".join(f"`{s}`: {b.info.splits[s].num_examples} rows" for s in b.files),
            "empty_splits": list(b.empty_splits),
            "fields": [(path, type_, _cell(_describe(path, card.fields[name]) or ""))
                       for path, type_ in _feature_paths(b.info.features)] if b.files else [],
        })
    rendered = render_dataset_card(data, card=card, configs=sections, provenance=provenance,
                                   first_config=next(iter(published)), published=list(published),
                                   citation=builder.citation())
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
