"""YAML config + command-line flags -> dataclasses, the TRL way (flags override the file)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["load_config_section", "parse_dataclasses", "dataclass_from_dict", "load_training_dataset"]


def load_config_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """The ``section`` mapping of a YAML file (or the whole file when it has no such top-level key)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    section_data = data.get(section, data if not any(k in data for k in ("generate", "train", "eval")) else {})
    if not isinstance(section_data, dict):
        raise ValueError(f"{path}: section {section!r} must be a mapping")
    return section_data


def parse_dataclasses(types: Sequence[type], argv: Sequence[str] | None, defaults: dict[str, Any]
                      ) -> tuple[Any, ...]:
    """Parse ``argv`` into ``types`` with ``defaults`` (from a config file) applied first.

    Raises ``ValueError`` for config keys that no dataclass has.
    """
    parser = HfArgumentParser(list(types))
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)}")
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=list(argv or []))


def dataclass_from_dict(cls: type, values: dict[str, Any], what: str | None = None) -> Any:
    """An instance of the config dataclass ``cls`` from plain values (a YAML section).

    A field whose default is itself a dataclass (``GenerationParams``, ``SamplingParams``) takes a dict of that
    dataclass's fields, applied over the default. Unknown keys raise ``ValueError`` naming them.
    """
    what = what or cls.__name__
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} settings: {', '.join(unknown)}")
    kwargs = {}
    for key, value in values.items():
        field = names[key]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type) and isinstance(value, dict):
            try:
                value = dataclasses.replace(default, **value)
            except TypeError as err:
                raise ValueError(f"{what} setting {key}: {err}") from None
        kwargs[key] = value
    return cls(**kwargs)


def load_training_dataset(path: str, split: str = "train"):
    """The training split of a recipe run folder (its ``dataset/``), a saved DatasetDict or Dataset folder, a
    Parquet/JSON(L)/CSV file, or a Hub dataset id."""
    import datasets

    p = Path(path)
    if (p / "dataset" / "dataset_dict.json").is_file():
        p = p / "dataset"
    if p.is_dir() and (p / "dataset_dict.json").is_file():
        saved = datasets.load_from_disk(str(p))
        if split not in saved:
            raise ValueError(f"{p}: no split {split!r} (has {', '.join(saved)})")
        return saved[split]
    if p.is_dir() and (p / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(p))
    if p.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(p.suffix)
        if kind is None:
            raise ValueError(f"{p}: unsupported dataset file type {p.suffix!r}")
        return datasets.load_dataset(kind, data_files=str(p), split="train")
    return datasets.load_dataset(path, split=split)
