"""Distributions files ``{ISO3: {qid: {code: proportion}}}`` with an optional ``<name>.counts.json`` sidecar
(:func:`load_distributions`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...input_files import (
    read_json,
)
from ..data import WVSData, finite_non_negative, normalised
from ..questions import SurveyQuestion, answer_code
from .question_files import PathLike, Questions, _as_questions, _iso3

logger = logging.getLogger(__name__)

def _cell_probabilities(cell: Any, question: SurveyQuestion, path: Path, key: str) -> np.ndarray | None:
    """``{code: proportion}`` -> probabilities aligned with ``question.codes``; ``None`` for an empty cell."""
    if not isinstance(cell, dict):
        raise ValueError(f"{path}: {key}: expected an object {{code: proportion}}, got {type(cell).__name__}")
    if not cell:
        return None
    probs = np.zeros(question.num_options, dtype=np.float64)
    seen: set[int] = set()
    for code_key, value in cell.items():
        where = f"{key}/code {code_key}"
        code = answer_code(code_key, f"{path}: {where}")
        if code not in question.codes:
            raise ValueError(f"{path}: {where}: not one of {question.qid}'s codes {list(question.codes)}")
        if code in seen:
            raise ValueError(f"{path}: {where}: code {code} is listed twice")
        seen.add(code)
        if not finite_non_negative(value):
            raise ValueError(f"{path}: {where}: the proportion must be a finite number >= 0, got {value!r}")
        probs[question.index_of(code)] = float(value)
    return normalised(probs, f"{path}: {key}")


def _read_counts(
    path: Path, distributions: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """Counts sidecar -> ``{ISO3: {qid: n}}`` for the loaded cells.

    Accepts ``{ISO3: {"n_valid": {qid: n}, ...}}`` (other per-country fields ignored) or ``{ISO3: {qid: n}}``.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{ISO3: {{qid: count}}}}, got {type(data).__name__}")
    counts: dict[str, dict[str, float]] = {}
    for country_key, entry in data.items():
        iso3 = _iso3(country_key, path)
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: {country_key}: expected an object, got {type(entry).__name__}")
        prefix = f"{country_key}/n_valid" if "n_valid" in entry else country_key
        table = entry.get("n_valid", entry)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: {prefix}: expected an object {{qid: count}}")
        cells = distributions.get(iso3, {})
        for qid, n in table.items():
            if qid not in cells:
                continue
            if not finite_non_negative(n):
                raise ValueError(f"{path}: {prefix}/{qid}: the count must be a finite number >= 0, got {n!r}")
            counts.setdefault(iso3, {})[qid] = n
    return counts


def _counts_sidecar(distributions_path: PathLike) -> Path:
    """``x/name.json`` -> ``x/name.counts.json``: where :func:`load_distributions` looks for counts."""
    return Path(distributions_path).with_suffix(".counts.json")


def load_distributions(
    distributions_path: PathLike,
    questions: Questions | PathLike,
    *,
    counts_path: PathLike | None = None,
) -> WVSData:
    """Read per-country answer distributions ``{ISO3: {qid: {code: proportion}}}``.

    Each cell is renormalised over its listed codes (listed proportions may sum to less than 1 when missing
    answers stayed in the denominator); unlisted codes get probability 0. An empty cell ``{}`` means "no
    data" and is left out, never filled with a uniform guess. Item ids missing from ``questions`` are
    skipped with one logged warning (a file may cover more items than a catalog).

    Args:
        distributions_path: The JSON file.
        questions: The question catalog (a mapping or a path for :func:`load_questions`); codes are read
            as strings and matched against each question's ``codes``.
        counts_path: Valid-answer counts; default: ``<name>.counts.json`` beside the file when it exists.

    Returns:
        A :class:`WVSData` whose ``questions`` are the catalog items with data in at least one country (in
        catalog order), ``counts`` filled from the sidecar where available, ``source`` the file path.

    Raises:
        ValueError: naming the file and the key path (``USA/Q27/code 9``) for invalid JSON, an unknown
            country, an illegal code, a negative, NaN or infinite proportion, or a cell summing to 0.
    """
    path = Path(distributions_path)
    catalog = _as_questions(questions)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{ISO3: {{qid: {{code: proportion}}}}}}, "
                         f"got {type(data).__name__}")
    distributions: dict[str, dict[str, np.ndarray]] = {}
    unknown: set[str] = set()
    for country_key, cells in data.items():
        iso3 = _iso3(country_key, path)
        if iso3 in distributions:
            raise ValueError(f"{path}: {country_key}: culture {iso3} appears twice")
        if not isinstance(cells, dict):
            raise ValueError(f"{path}: {country_key}: expected an object {{qid: {{code: proportion}}}}")
        loaded: dict[str, np.ndarray] = {}
        for qid, cell in cells.items():
            if qid not in catalog:
                unknown.add(qid)
                continue
            probs = _cell_probabilities(cell, catalog[qid], path, f"{country_key}/{qid}")
            if probs is not None:
                loaded[qid] = probs
        distributions[iso3] = loaded
    if unknown:
        logger.warning("%s: skipped %d item ids that are not in the question catalog (e.g. %s)",
                       path, len(unknown), ", ".join(sorted(unknown)[:5]))
    used = {qid for cells in distributions.values() for qid in cells}
    if not used:
        raise ValueError(f"{path}: no distribution to load: {len(data)} culture(s), and no non-empty cell of "
                         f"an item of the question catalog ({len(catalog)} items)")
    sidecar = Path(counts_path) if counts_path is not None else _counts_sidecar(path)
    counts = _read_counts(sidecar, distributions) if counts_path is not None or sidecar.is_file() else {}
    return WVSData(questions={qid: q for qid, q in catalog.items() if qid in used},
                   distributions=distributions, counts=counts, source=str(path)).validate()


# ---------------------------------------------------------------------------------------- WVS-7 CSV
