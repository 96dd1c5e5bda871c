"""Reading prompt templates from files: the one parser of the JSON/YAML template files of every prompt setting.

A template file holds one mapping with the keys ``name`` (optional), ``system`` and ``user`` (optional), as in::

    name: my-setting
    system: You are {culture_phrase} reader.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TEMPLATE_KEYS", "check_placeholders", "read_template_file", "template_fields"]

TEMPLATE_KEYS = ("name", "system", "user")
"""The keys a template may have; ``system`` is required."""


def read_template_file(path: str | Path) -> Any:
    """The parsed content of a ``.yaml``/``.yml`` (YAML) or any other (JSON) template file.

    Raises:
        ValueError: naming the file, when it cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text()
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read prompt template: {err}") from err


def template_fields(data: Any, source: str, *, default_name: str, default_user: str,
                    kind: str = "prompt template") -> dict[str, str]:
    """``{"name", "system", "user"}`` of a template mapping, as strings, with the defaults filled in.

    Args:
        data: The parsed template (a mapping with :data:`TEMPLATE_KEYS` only, ``system`` required).
        source: Where it comes from (a file, a task index entry), named in errors.
        default_name: Name when ``data`` has none (a file's stem, or ``source``).
        default_user: User turn when ``data`` has none (the setting family's default wording).
        kind: What the template is, for errors (``"task prompt template"``).

    Raises:
        ValueError: not a mapping, no ``system``, or unknown keys.
    """
    if not isinstance(data, dict) or "system" not in data:
        raise ValueError(f"{source}: a {kind} needs at least the key 'system' (and optionally 'name', 'user')")
    unknown = set(data) - set(TEMPLATE_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown template keys {sorted(unknown)}")
    return {"name": str(data.get("name", default_name)), "system": str(data["system"]),
            "user": str(data.get("user", default_user))}


def check_placeholders(text: str, allowed: Iterable[str], where: str) -> None:
    """Refuse a template text whose ``{placeholder}`` fields are not all in ``allowed``, before it is formatted.

    ``str.format`` would otherwise fail mid-run with a bare ``KeyError`` (an unknown name), ``IndexError``
    (``{}`` or ``{0}``) or ``AttributeError`` (``{question.text}``). Literal braces are written ``{{`` and ``}}``.

    Args:
        text: The template text (a system prompt or user turn).
        allowed: The placeholder names the text is formatted with.
        where: What the text is, named in the error (``"template 'mine': system"``).

    Raises:
        ValueError: naming the unknown placeholders and the allowed ones, or the malformed brace.
    """
    allowed = sorted(allowed)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as err:  # a single '{' or '}'
        raise ValueError(f"{where}: {err} (write {{{{ and }}}} for literal braces)") from None
    unknown = sorted({field for field in fields if field not in allowed})
    if unknown:
        shown = ", ".join("{" + field + "}" for field in unknown)
        known = ", ".join("{" + name + "}" for name in allowed) or "none"
        raise ValueError(f"{where}: unknown placeholder(s) {shown}; it may use {known} "
                         "(write {{ and }} for literal braces)")
