"""Provenance as data: how each generated record was made, a typed Arrow struct in every corpus table.

Each stage records the models, the sampling parameters (:data:`PARAMS_FEATURES`, the fields of
:class:`~culture_align.backends.GenerationParams` but the JSON schema) and the prompt version it used, as a
``provenance`` struct column whose fields the recipe's schema declares; a later stage adds its own key to the
struct of the records it receives (CLCA: ``scenario`` -> ``roleplay`` -> ``judge`` -> ``intents``), so nothing
is re-parsed and no field waits as a placeholder.

Ids and fingerprints hash a provenance through :func:`provenance_text`, its canonical JSON text (sorted keys),
which is the text corpora written before provenance became a struct held: ids, and the records an experiment
fingerprints, are the same for a corpus of either kind. :func:`upgrade_provenance_column` reads such an older
corpus into the struct form.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import datasets

from ..backends.base import GenerationParams

__all__ = ["PARAMS_FEATURES", "as_provenance", "params_provenance", "provenance_text", "upgrade_provenance_column"]

_ARROW_OF_ANNOTATION = {
    "float": datasets.Value("float64"),
    "int": datasets.Value("int64"),
    "tuple[str, ...]": datasets.List(datasets.Value("string")),
}


def _params_features() -> dict[str, Any]:
    """The struct of :func:`params_provenance`, from :class:`GenerationParams`'s fields (one source of truth: a
    new field must get an Arrow type here, or importing this module fails instead of dropping it silently)."""
    out = {}
    for f in dataclasses.fields(GenerationParams):
        if f.name == "json_schema":
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if annotation not in _ARROW_OF_ANNOTATION:
            raise TypeError(f"GenerationParams.{f.name}: no Arrow type for {annotation!r} in provenance")
        out[f.name] = _ARROW_OF_ANNOTATION[annotation]
    return out


PARAMS_FEATURES: dict[str, Any] = _params_features()
"""Sampling parameters as provenance records them: ``temperature``, ``top_p`` (float64), ``max_new_tokens``,
``seed``, ``n`` (int64) and ``stop`` (list of strings)."""


def params_provenance(params: GenerationParams) -> dict[str, Any]:
    """Sampling params as recorded in provenance and ids (:data:`PARAMS_FEATURES`: without the JSON schema)."""
    out = params.to_dict()
    out.pop("json_schema", None)
    out["stop"] = list(out["stop"])
    return out


def provenance_text(provenance: Mapping[str, Any] | str | None) -> str | None:
    """The canonical JSON text of a provenance (sorted keys), what ids and fingerprints hash; the JSON text of a
    corpus written before provenance was a struct is returned as it is (it is that text); None stays None."""
    if provenance is None or isinstance(provenance, str):
        return provenance
    return json.dumps(provenance, sort_keys=True)


def as_provenance(value: Mapping[str, Any] | str | None, where: str) -> dict[str, Any] | None:
    """A record's provenance as a dict: a mapping as it is, the JSON text of a corpus written before provenance
    was a struct parsed, None (or an empty text) as None.

    Raises:
        ValueError: text that is not a JSON object, naming ``where`` (the record).
    """
    if value is None or isinstance(value, Mapping):
        return None if value is None else dict(value)
    try:
        parsed = json.loads(value) if value else None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: provenance is not JSON ({err.msg})") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise ValueError(f"{where}: provenance must be a JSON object, got {type(parsed).__name__}")
    return parsed


def upgrade_provenance_column(table: datasets.Dataset, features: datasets.Features,
                              where: str = "the table") -> datasets.Dataset:
    """``table`` with its ``provenance`` JSON text (corpora written before provenance was a struct) parsed into
    the struct ``features`` declares; any other table is returned as it is.

    Raises:
        ValueError: a provenance that is not JSON, naming ``where`` and the row.
    """
    if "provenance" not in table.column_names or "provenance" not in features:
        return table
    if table.features["provenance"] != datasets.Value("string") or features["provenance"] == datasets.Value("string"):
        return table
    parsed = [as_provenance(text, f"{where}, row {row}") for row, text in enumerate(table["provenance"])]
    column_features = datasets.Features({"provenance": features["provenance"]})
    column = datasets.Dataset.from_dict({"provenance": parsed}, features=column_features)
    order = table.column_names
    upgraded = table.remove_columns("provenance").add_column("provenance", column["provenance"],
                                                             feature=features["provenance"])
    return upgraded.select_columns(order)
