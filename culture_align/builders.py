"""The dataset builders of the corpora: find them, run them, and write their output in Hub layout.

The builders themselves live in the repository's top-level ``dataset_builders/`` folder, one module per corpus
(``wvs``, ``clca_dialogues``, ``culturespa_qa``, ``culturellm_augmented``, ``answer_distributions``): the corpora a
recipe run folder holds are :class:`RunFolderBuilder` subclasses (``datasets.ArrowBasedBuilder``: the run's typed
tables go to Parquet as Arrow tables, never row by row), the others :class:`CorpusBuilder` subclasses
(``datasets.GeneratorBasedBuilder``); both share :class:`CorpusBase`. The wheel ships the folder as package
data under ``culture_align/_dataset_builders`` (in a checkout that is a symlink to ``../dataset_builders``), so
:func:`load_builder_class` finds them from a checkout or an installed package alike.

``datasets`` 4+ runs no loading scripts: a builder is used from Python, and what goes to the Hub is Parquet plus
a dataset card. :func:`build_corpus` does that::

    from culture_align.builders import build_corpus

    folder = build_corpus("clca_dialogues", source="runs/clca-data", output_dir="hub/clca-dialogues")
    datasets.load_dataset(str(folder), "dialogues")          # the same splits and features as the builder

The output folder holds ``README.md`` (the card: YAML metadata with ``configs`` and ``dataset_info``, then a
description of every field, how the data was made, limitations) and ``<config>/<split>-NNNNN-of-NNNNN.parquet``.
:func:`culture_align.hub.push_dataset` uploads it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers.utils import logging

from .recipes.provenance import upgrade_provenance_column

logger = logging.get_logger(__name__)

__all__ = [
    "BUILDER_NAMES",
    "CorpusCard",
    "CorpusConfig",
    "CorpusBase",
    "CorpusBuilder",
    "RunTable",
    "RunFolderBuilder",
    "CHAT_MESSAGE_FIELDS",
    "PARAMS_PROVENANCE_FIELDS",
    "dataset_builders_path",
    "load_builder_class",
    "build_corpus",
]

BUILDER_NAMES = ("wvs", "clca_dialogues", "culturespa_qa", "culturellm_augmented", "answer_distributions")
"""The corpora with a builder, by module name in ``dataset_builders/``."""

_PACKAGE_DIR = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------------------
# What a builder declares
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusCard:
    """The fixed part of a corpus' dataset card, declared by its builder class.

    Attributes:
        pretty_name: Title of the card.
        summary: One or two paragraphs: what the corpus is and what it is for (markdown).
        license: Hub license id (``"apache-2.0"``, ``"other"``, ...).
        task_categories: Hub task categories (``"text-generation"``, ``"multiple-choice"``, ...).
        fields: ``{config: {field: description}}``: every column of every config, nested fields as dotted
            paths (``"turns.speaker"``); :func:`build_corpus` refuses a card with an undocumented field.
        limitations: Known limitations and biases (markdown).
        source_and_terms: Where the data comes from and its terms of use (markdown; may be empty).
        language: Hub language codes.
        tags: Extra Hub tags (``culture-align`` is always added).
        license_name, license_link: For ``license="other"``: the licence's name and where to read it.
        citation: BibTeX of the data's source (e.g. the survey). A recipe's corpus leaves it empty: its builder's
            ``RECIPE`` names the recipe, whose citation the registry holds (:meth:`CorpusBuilder.citation`).
    """

    pretty_name: str
    summary: str
    license: str
    task_categories: tuple[str, ...]
    fields: Mapping[str, Mapping[str, str]]
    limitations: str
    source_and_terms: str = ""
    language: tuple[str, ...] = ("en",)
    tags: tuple[str, ...] = ()
    license_name: str | None = None
    license_link: str | None = None
    citation: str = ""


@dataclass
class CorpusConfig(datasets.BuilderConfig):
    """A :class:`datasets.BuilderConfig` with the data the corpus is built from.

    Attributes:
        source: The user's input: a recipe run folder (``<run>/dataset`` + ``<run>/stats.json``) or, for
            ``wvs``, any source :func:`culture_align.wvs.load_wvs` reads. Required to build.
    """

    source: str | None = None


class CorpusBase(datasets.DatasetBuilder):
    """What every corpus builder declares for its dataset card and its source; the base of :class:`CorpusBuilder`
    (row generators) and :class:`RunFolderBuilder` (a recipe run's Arrow tables).

    Subclasses set ``BUILDER_CONFIGS`` (one :class:`CorpusConfig` per published table), ``CARD`` (a
    :class:`CorpusCard`) and implement ``_info`` and ``_split_generators`` as any ``datasets`` builder; they may
    override :meth:`card_provenance` (how this copy of the data was made).
    """

    BUILDER_CONFIG_CLASS = CorpusConfig
    CARD: CorpusCard
    PRIVATE_BY_DEFAULT: bool = False
    """Whether :func:`culture_align.hub.push_dataset` creates a private repo unless told otherwise."""
    RECIPE: str = ""
    """The recipe that makes the corpus (a key of :func:`culture_align.hub.recipe_registry`), or empty."""

    @classmethod
    def citation(cls) -> str:
        """BibTeX of the corpus: the card's ``citation`` and the recipe's paper (from the recipe registry)."""
        parts = [cls.CARD.citation.strip()] if cls.CARD.citation.strip() else []
        if cls.RECIPE:
            from .hub.recipes import get_recipe

            parts.append(get_recipe(cls.RECIPE).citation.strip())
        return "\n".join(parts)

    @property
    def source(self) -> Path:
        """The configured source as a path (raises a clear error when none was given)."""
        if not self.config.source:
            raise ValueError(f"the {self.name} builder needs a source: "
                             f"{type(self).__name__}(config_name=..., source=<path>)")
        return Path(self.config.source)

    def card_provenance(self) -> str:
        """Markdown: how this copy of the corpus was made (models, settings, counts). Empty by default."""
        return ""

    @staticmethod
    def keyed(rows: Iterable[Mapping[str, Any]], key_of, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(key, row)`` pairs with ``key = key_of(row)``; a repeated key raises, naming ``where``.

        ``datasets`` 5 no longer checks example keys, so the builders check theirs: a key must identify one
        record, stably across builds.
        """
        seen: set[str] = set()
        for row in rows:
            key = str(key_of(row))
            if key in seen:
                raise ValueError(f"{where}: two records have the key {key!r}")
            seen.add(key)
            yield key, dict(row)


class CorpusBuilder(CorpusBase, datasets.GeneratorBasedBuilder):
    """A corpus made row by row from the user's source (the WVS builders): implement ``_generate_examples`` as any
    :class:`datasets.GeneratorBasedBuilder`, with :meth:`keyed` for stable, checked keys."""


CHAT_MESSAGE_FIELDS: Mapping[str, str] = {
    "messages": "The chat conversation: a list of messages.",
    "messages.role": "`system`, `user` or `assistant`.",
    "messages.content": "The message text.",
}
"""Card descriptions of the ``messages`` column of a training table, for :attr:`CorpusCard.fields`."""

PARAMS_PROVENANCE_FIELDS: Mapping[str, str] = {
    "provenance.*params": "The stage's sampling parameters.",
    "provenance.*params.temperature": "Sampling temperature (0: greedy).",
    "provenance.*params.top_p": "Nucleus sampling threshold.",
    "provenance.*params.max_new_tokens": "Token limit of an answer.",
    "provenance.*params.stop": "Stop strings.",
    "provenance.*params.seed": "Sampling seed.",
    "provenance.*params.n": "Completions per request.",
    "provenance.*prompt_version": "Version of the prompts' wording.",
}
"""Descriptions of the sampling parameters every stage's provenance records (``PARAMS_FEATURES``), as dataset card
field patterns."""


@dataclass(frozen=True)
class RunTable:
    """One table of a recipe run, published as a config of its :class:`RunFolderBuilder`.

    Attributes:
        features: The table's features; the saved table must have exactly them.
        description: The config's description (``BuilderConfig.description``).
    """

    features: datasets.Features
    description: str


class RunFolderBuilder(CorpusBase, datasets.ArrowBasedBuilder):
    """A builder over a recipe run folder: ``<run>/dataset`` (a ``DatasetDict`` saved with ``save_to_disk``)
    and ``<run>/stats.json`` (run statistics with the ``config``, ``models``, ``cultures`` and ``counts``).

    Each config is one split of the saved ``DatasetDict`` (a config per table, since tables differ in columns),
    published as the config's ``train`` split. Subclasses declare ``TABLES`` (``{split: RunTable}``, in config
    order); ``SPLIT_FEATURES`` (``{split: features}``) and ``BUILDER_CONFIGS`` (one :class:`CorpusConfig` per
    table) are derived from it. The default config is ``train``. The saved table goes to Parquet as it is, in
    Arrow record batches of :attr:`BATCH_ROWS` rows (``datasets.ArrowBasedBuilder``): the pipeline's typed columns
    are never re-read row by row.
    """

    TABLES: Mapping[str, RunTable] = {}
    SPLIT_FEATURES: Mapping[str, datasets.Features] = {}
    DEFAULT_CONFIG_NAME = "train"
    BATCH_ROWS = 10_000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TABLES" in vars(cls):
            cls.SPLIT_FEATURES = {name: table.features for name, table in cls.TABLES.items()}
            cls.BUILDER_CONFIGS = [cls.BUILDER_CONFIG_CLASS(name=name, description=table.description)
                                   for name, table in cls.TABLES.items()]

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.config.description or "",
                                    features=self.SPLIT_FEATURES[self.config.name],
                                    citation=self.citation(), license=self.CARD.license)

    def run_stats(self) -> dict[str, Any]:
        """The run's ``stats.json`` (empty when the run has none)."""
        path = self.source / "stats.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None

    def load_table(self) -> datasets.Dataset:
        """The saved table of this config, checked against the declared features."""
        folder = self.source / "dataset"
        if not (folder / "dataset_dict.json").is_file():
            raise FileNotFoundError(f"{self.source}: not a {self.RECIPE} run folder (no dataset/dataset_dict.json; "
                                    "it is written when the pipeline finishes)")
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        if self.config.name not in splits:
            raise ValueError(f"{folder}: no {self.config.name!r} split (has {', '.join(splits)})")
        expected = self.info.features
        split_folder = folder / self.config.name
        state = json.loads((split_folder / "state.json").read_text())
        if not state.get("_data_files"):  # `save_to_disk` of an empty table writes no file `load_from_disk` reads
            saved = datasets.DatasetInfo.from_directory(str(split_folder)).features or expected
            table = datasets.Dataset.from_dict({k: [] for k in saved}, features=saved)
        else:
            table = datasets.load_from_disk(str(split_folder))
        table = upgrade_provenance_column(table, expected, f"{folder}/{self.config.name}")
        if table.features != expected:
            missing = sorted(set(expected) - set(table.features))
            extra = sorted(set(table.features) - set(expected))
            detail = (f"missing columns {missing}, unexpected columns {extra}" if missing or extra
                      else "same columns, different types")
            try:
                table = table.cast(expected)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{folder}/{self.config.name}: the saved table does not have the features of a "
                                 f"{self.RECIPE} {self.config.name} table ({detail}): {err}") from None
        return table

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"table": self.load_table()})]

    def _generate_tables(self, table: datasets.Dataset) -> Iterator[tuple[int, Any]]:
        """The saved table (already in the config's features) in Arrow record batches of :attr:`BATCH_ROWS`."""
        arrow = table.with_format("arrow")
        for index, start in enumerate(range(0, len(table), self.BATCH_ROWS)):
            yield index, arrow[start: start + self.BATCH_ROWS]

    def card_provenance(self) -> str:
        return run_provenance(self.run_stats(), self.RECIPE)


def run_provenance(stats: Mapping[str, Any], recipe: str) -> str:
    """Markdown of a run's ``stats.json``: models per role, cultures, counts, drop reasons, settings."""
    if not stats:
        return f"Made with the culture-align {recipe} pipeline (the run folder had no stats.json)."
    lines = [f"Made with the culture-align `{recipe}` pipeline."]
    models = stats.get("models") or {}
    if models:
        lines += ["", "Models, by role:", ""]
        for role, model in models.items():
            shown = ", ".join(f"`{m}`" for m in model) if isinstance(model, list) else f"`{model}`"
            lines.append(f"- {role}: {shown}")
    if stats.get("cultures"):
        lines += ["", f"Cultures (ISO3): {', '.join(stats['cultures'])}."]
    for title, key in (("Counts", "counts"), ("Reasons records were dropped", "drop_reasons")):
        if stats.get(key):
            lines += ["", f"{title}:", "", "```json", json.dumps(stats[key], indent=2, sort_keys=False), "```"]
    if stats.get("config"):
        lines += ["", "Pipeline settings:", "", "```json", json.dumps(stats["config"], indent=2, default=str), "```"]
    if stats.get("seconds") is not None:
        lines += ["", f"Wall time: {stats['seconds']} s."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# Finding the builders
# ----------------------------------------------------------------------------------------------------------


def dataset_builders_path() -> Path:
    """The folder holding the builder modules, as an absolute path.

    Looks in the installed package data (``culture_align/_dataset_builders``) first, then in the top-level
    ``dataset_builders`` of a source checkout. Raises ``FileNotFoundError`` when neither has them.
    """
    candidates = (_PACKAGE_DIR / "_dataset_builders", _PACKAGE_DIR.parent / "dataset_builders")
    for folder in candidates:
        if (folder / f"{BUILDER_NAMES[0]}.py").is_file():
            return folder.resolve()
    raise FileNotFoundError(f"the dataset builders were not found in any of {[str(c) for c in candidates]}; "
                            "reinstall culture-align")


def load_builder_class(name: str) -> type[CorpusBase]:
    """The builder class of corpus ``name`` (one of :data:`BUILDER_NAMES`; a :class:`CorpusBase` subclass).

    The module is imported from :func:`dataset_builders_path` as ``culture_align_dataset_builders.<name>``.
    """
    if name not in BUILDER_NAMES:
        raise ValueError(f"unknown dataset builder {name!r}; choose one of {', '.join(BUILDER_NAMES)}")
    module_name = f"culture_align_dataset_builders.{name}"
    module = sys.modules.get(module_name)
    if module is None:
        path = dataset_builders_path() / f"{name}.py"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, CorpusBase)
             and obj.__module__ == module_name]
    if len(found) != 1:
        raise ImportError(f"{module.__file__}: expected exactly one corpus builder class, found {len(found)}")
    return found[0]


# ----------------------------------------------------------------------------------------------------------
# Building to Hub layout
# ----------------------------------------------------------------------------------------------------------

@dataclass
class BuiltConfig:
    """One built config: its ``DatasetInfo`` (features, split sizes), its Parquet files per split (paths
    relative to the output folder, ``<config>/<split>-00000-of-00001.parquet``) and the splits left out because
    they had no rows."""

    info: datasets.DatasetInfo
    files: dict[str, list[str]] = field(default_factory=dict)
    empty_splits: list[str] = field(default_factory=list)


def build_corpus(
    builder: str | type[CorpusBase],
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    configs: Sequence[str] | None = None,
    max_shard_size: str | int | None = "500MB",
    overwrite: bool = False,
    **config_kwargs: Any,
) -> Path:
    """Build every config of a corpus from ``source`` into ``output_dir`` in Hub layout: Parquet files and a
    dataset card (validated with ``huggingface_hub``'s card classes).

    Args:
        builder: A name in :data:`BUILDER_NAMES` or a :class:`CorpusBase` subclass.
        source: The run folder (or WVS source) the builder reads.
        output_dir: Folder to write (created when missing). It must be empty or an earlier build (only a
            ``README.md`` card tagged ``culture-align`` and ``<config>/<split>-NNNNN-of-NNNNN.parquet``
            files): the Parquet files of the configs built are then replaced, and ``README.md``.
        configs: Configs to build (default: all of the builder's).
        max_shard_size: Largest Parquet file before a split is sharded.
        overwrite: Also write into a non-empty folder that is not an earlier build: ``README.md`` and the
            built Parquet files are written over files of the same name; no other file is removed.
        **config_kwargs: More fields of the builder's config (e.g. ``questions=`` for ``wvs``).

    Returns:
        ``output_dir`` as a ``Path``. A split with no rows is left out (``datasets`` cannot load an empty
        Parquet split) and named in the card; a config with no rows at all is left out entirely.

    Raises:
        ValueError: ``output_dir`` is a file, or a non-empty folder that is not an earlier build and
            ``overwrite`` is false (checked before anything is built).
    """
    from .cards import corpus_card

    cls = load_builder_class(builder) if isinstance(builder, str) else builder
    known = [c.name for c in cls.BUILDER_CONFIGS]
    names = list(configs) if configs else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{cls.__name__} has no config {unknown}; configs: {', '.join(known)}")
    out = Path(output_dir)
    earlier_build = _check_output_folder(out, names, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, BuiltConfig] = {}
    provenance = ""
    with tempfile.TemporaryDirectory(prefix="culture-align-build-") as tmp:
        for name in names:
            instance = cls(config_name=name, source=str(source), cache_dir=str(Path(tmp) / "cache"),
                           dataset_name=cls.__module__.rsplit(".", 1)[-1], **config_kwargs)
            prepared = Path(tmp) / name
            instance.download_and_prepare(output_dir=str(prepared), file_format="parquet",
                                          max_shard_size=max_shard_size, download_mode="force_redownload")
            if earlier_build:  # only Parquet files of ours there: drop them, so that no stale shard stays
                for stale in _built_files(out / name):
                    stale.unlink()
            built[name] = _move_parquet(instance, prepared, out, name)
            provenance = provenance or instance.card_provenance()
    card = corpus_card(cls, built, provenance=provenance)
    card.save(out / "README.md")
    logger.info(f"built {cls.__name__} ({', '.join(names)}) from {source} into {out}")
    return out


_BUILT_PARQUET = re.compile(r"[\w.-]+-\d{5}-of-\d{5}\.parquet")
"""The name of a Parquet file :func:`build_corpus` writes: ``<split>-NNNNN-of-NNNNN.parquet``."""


def _built_files(folder: Path) -> list[Path]:
    """The Parquet files of an earlier build in a config folder (none when it is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _BUILT_PARQUET.fullmatch(p.name))


def _is_earlier_build(out: Path) -> bool:
    """Whether the non-empty folder ``out`` holds only what :func:`build_corpus` writes: a ``README.md`` whose
    card is tagged ``culture-align``, and config folders of ``<split>-NNNNN-of-NNNNN.parquet`` files."""
    from huggingface_hub import DatasetCard

    from .cards import LIBRARY_TAG

    readme = out / "README.md"
    for entry in out.iterdir():
        if entry == readme:
            continue
        if not entry.is_dir() or entry.is_symlink():
            return False
        if any(not (p.is_file() and _BUILT_PARQUET.fullmatch(p.name)) for p in entry.iterdir()):
            return False
    if not readme.is_file():
        return False
    try:
        tags = DatasetCard.load(readme).data.tags or []
    except Exception:  # any card that does not parse is not one of ours
        return False
    return LIBRARY_TAG in tags


def _check_output_folder(out: Path, configs: Sequence[str], overwrite: bool) -> bool:
    """Check the output folder before building; returns whether it holds an earlier build (see
    :func:`build_corpus`). A non-empty folder of anything else is refused unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: the output folder is a file")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if _is_earlier_build(out):
        return True
    in_the_way = [str(out / name) for name in configs if (out / name).exists() and not (out / name).is_dir()]
    if (out / "README.md").is_dir():
        in_the_way.append(str(out / "README.md"))
    if in_the_way:
        raise ValueError(f"{out}: {', '.join(in_the_way)} would have to be replaced by the build's config "
                         "folders and card; choose another output folder")
    if not overwrite:
        shown = sorted(p.name for p in out.iterdir())
        more = ", ..." if len(shown) > 5 else ""
        raise ValueError(f"{out}: the output folder is not empty ({', '.join(shown[:5])}{more}) and is not "
                         "an earlier build of culture-align; choose a new or empty folder, or pass "
                         "--overwrite (overwrite=True) to write README.md and the Parquet files into it (no "
                         "other file is removed)")
    return False


def _move_parquet(builder: CorpusBase, prepared: Path, out: Path, config: str) -> BuiltConfig:
    """Move the Parquet shards ``download_and_prepare`` wrote to ``out/<config>/<split>-K-of-N.parquet``."""
    result = BuiltConfig(info=builder.info)
    for split, split_info in builder.info.splits.items():
        if not split_info.num_examples:
            result.empty_splits.append(split)
            continue
        shards = sorted(prepared.glob(f"{builder.name}-{split}.parquet")) or sorted(
            prepared.glob(f"{builder.name}-{split}-*.parquet"))
        if not shards:
            raise FileNotFoundError(f"{prepared}: datasets wrote no Parquet file for split {split!r}")
        (out / config).mkdir(parents=True, exist_ok=True)
        result.files[split] = []
        for k, shard in enumerate(shards):
            relative = f"{config}/{split}-{k:05d}-of-{len(shards):05d}.parquet"
            shutil.move(str(shard), out / relative)
            result.files[split].append(relative)
    return result
