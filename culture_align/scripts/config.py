"""YAML config + command-line flags -> dataclasses, the TRL way (flags override the file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["load_config_section", "parse_dataclasses"]


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
