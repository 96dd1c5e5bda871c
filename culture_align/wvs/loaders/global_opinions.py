"""GlobalOpinionQA (``Anthropic/llm_global_opinions``) exported to Parquet, JSON, JSON lines or CSV, or read from
the Hub (:func:`load_global_opinions`)."""

from __future__ import annotations

import ast
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...cultures import get_culture
from ...input_files import (
    read_csv,
    read_json,
    read_json_lines,
    read_parquet_records,
)
from ..data import WVSData, finite_non_negative, normalised
from ..questions import SurveyQuestion
from .question_files import PathLike, Questions, _as_questions

logger = logging.getLogger(__name__)

_GOQA_COLUMNS = ("question", "options", "selections", "source")
_DEFAULTDICT = re.compile(r"^defaultdict\(\s*<class '[A-Za-z_.]+'>\s*,\s*(?P<body>.*)\)\s*$", re.DOTALL)


def _unique_pairs(pairs: Iterable[tuple[Any, Any]], what: str, where: str) -> dict:
    """Key-value pairs as a dict; ``ValueError`` naming ``where`` and the key when a key comes twice."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{where}: {what} has the key {key!r} twice; which value is meant?")
        out[key] = value
    return out


def _literal_dict_keys(text: str) -> list[Any] | None:
    """The keys of the dict literal ``text``, in order and with repeats (``None`` when it is no dict literal).

    :func:`ast.literal_eval` keeps the last of two equal keys silently; this finds the repeats.
    """
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(node, ast.Dict) or any(k is None for k in node.keys):
        return None
    try:
        return [ast.literal_eval(k) for k in node.keys]
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _parse_literal(value: Any, expected: type, what: str, where: str) -> Any:
    """A Python literal held in a string (``"['a', 'b']"``, ``"defaultdict(<class 'list'>, {...})"``).

    Uses :func:`ast.literal_eval` on the text without the ``defaultdict(...)`` wrapper: nothing is executed.
    Values that are already of the ``expected`` type (a Parquet list column) pass through. A dict (literal or
    Parquet map column) with a key twice is refused.
    """
    if isinstance(value, expected):
        return value
    is_pairs = isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value)
    if expected is dict and is_pairs:
        return _unique_pairs(value, what, where)  # a Parquet map column
    if expected is list and isinstance(value, tuple):
        return list(value)
    if not isinstance(value, str):
        raise ValueError(f"{where}: cannot parse {what}: expected a string, got {type(value).__name__}")
    text = value.strip()
    match = _DEFAULTDICT.match(text)
    if match:
        text = match.group("body")
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"{where}: cannot parse {what} {_clip(value)}: not a Python literal") from None
    if expected is list and isinstance(parsed, tuple):
        parsed = list(parsed)
    if not isinstance(parsed, expected):
        raise ValueError(f"{where}: {what} must be a {expected.__name__}, got {type(parsed).__name__}")
    if expected is dict:
        keys = _literal_dict_keys(text)
        if keys is not None and len(keys) != len(parsed):
            _unique_pairs(((k, None) for k in keys), what, where)
    return parsed


def _clip(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _read_records(path: Path) -> list[dict]:
    """Rows of a table file (.parquet, .json list, .jsonl, .csv) as dicts, read by
    :mod:`culture_align.input_files`."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet_records(path)
    if suffix == ".jsonl":
        return [record for _, record in read_json_lines(path)]
    if suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        return data
    if suffix == ".csv":
        return [record for _, record in read_csv(path)[1]]
    raise ValueError(f"{path}: unsupported file type {suffix!r} (use .parquet, .json, .jsonl or .csv)")


def _goqa_culture(name: str) -> str | None:
    try:
        return get_culture(name).iso3
    except ValueError:
        return None


def _goqa_question(
    text: str, options: list[str], catalog: Mapping[str, SurveyQuestion], by_text: Mapping[str, str],
    loaded: Mapping[str, SurveyQuestion], where: str,
) -> SurveyQuestion:
    """The question of one GOQA row: a catalog item with the same text and option count, or a new one."""
    match = by_text.get(_normalise(text))
    if match is not None and catalog[match].num_options == len(options):
        return catalog[match]
    qid = "goqa-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    if qid in loaded and loaded[qid].options != tuple(options):
        key = text + "\n" + "\n".join(options)
        qid = "goqa-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    try:
        return SurveyQuestion(qid=qid, text=text, options=tuple(options),
                              codes=tuple(range(1, len(options) + 1)), topic="")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _goqa_probabilities(values: Any, n_options: int, where: str) -> np.ndarray | None:
    """One country's list of option shares -> normalised probabilities (``None`` when all are 0)."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{where}: expected a list of proportions, got {type(values).__name__}")
    if len(values) != n_options:
        raise ValueError(f"{where}: {len(values)} proportions for {n_options} options")
    if not all(finite_non_negative(v) for v in values):
        raise ValueError(f"{where}: proportions must be finite numbers >= 0, got {list(values)}")
    probs = np.asarray(values, dtype=np.float64)
    return normalised(probs, where) if np.any(probs > 0) else None


def load_global_opinions(path: PathLike, questions: Questions | PathLike | None = None) -> WVSData:
    """Read GlobalOpinionQA (``Anthropic/llm_global_opinions``) from a local file; keeps the WVS rows only.

    (To read it from the Hub instead: ``load_wvs("hf://Anthropic/llm_global_opinions")``.)

    Args:
        path: ``.parquet``, ``.json`` (list of rows), ``.jsonl`` or ``.csv`` with the columns ``question``,
            ``options`` (a list, or a string holding a Python list), ``selections`` (a mapping from country
            name to one share per option, or a string holding it, possibly wrapped in
            ``defaultdict(<class 'list'>, ...)``; parsed with :func:`ast.literal_eval`, never evaluated) and
            ``source`` (rows whose source is not ``"WVS"`` are dropped).
        questions: Optional catalog: a row whose text matches an item (case and spacing ignored) with the
            same number of options takes that item's id, codes and topic. Other rows get the id
            ``goqa-<first 8 hex digits of sha1(question text)>``, codes ``1..n`` and topic ``""``.

    Returns:
        A :class:`WVSData` (shares renormalised per country; countries the registry lacks are skipped with
        one logged warning, as are all-zero rows); ``source`` is the file path.

    Raises:
        ValueError: naming the file and the 1-based row for a missing column, unparsable options or
            selections, a negative or NaN share, or a share list whose length differs from the options.
    """
    path = Path(path)
    return _global_opinions(_read_records(path), str(path), questions)


def _global_opinions(records: Iterable[Any], source: str, questions: Questions | PathLike | None) -> WVSData:
    """GlobalOpinionQA rows (dicts) -> :class:`WVSData`; see :func:`load_global_opinions`."""
    catalog = {} if questions is None else _as_questions(questions)
    by_text = {_normalise(q.text): qid for qid, q in catalog.items()}
    loaded: dict[str, SurveyQuestion] = {}
    distributions: dict[str, dict[str, np.ndarray]] = {}
    unknown: set[str] = set()
    all_zero = rows = wvs_rows = 0
    for row_number, record in enumerate(records, 1):
        rows = row_number
        where = f"{source}: row {row_number}"
        if not isinstance(record, dict) or any(c not in record for c in _GOQA_COLUMNS):
            raise ValueError(f"{where}: expected the columns {', '.join(_GOQA_COLUMNS)}")
        if str(record["source"]).strip() != "WVS":
            continue
        wvs_rows += 1
        options = [str(o) for o in _parse_literal(record["options"], list, "options", where)]
        selections = _parse_literal(record["selections"], dict, "selections", where)
        question = _goqa_question(str(record["question"]).strip(), options, catalog, by_text, loaded, where)
        loaded.setdefault(question.qid, question)
        named: dict[str, str] = {}  # ISO3 -> the country name that gave it in this row
        for country, values in selections.items():
            probs = _goqa_probabilities(values, question.num_options,
                                        f"{where} ({question.qid}): selections[{country!r}]")
            iso3 = _goqa_culture(str(country))
            if iso3 is None:
                unknown.add(str(country))
                continue
            if iso3 in named:
                raise ValueError(f"{where} ({question.qid}): selections name the culture {iso3} twice, as "
                                 f"{named[iso3]!r} and {country!r}; which shares are meant?")
            named[iso3] = str(country)
            if probs is None:
                all_zero += 1
            else:
                distributions.setdefault(iso3, {})[question.qid] = probs
    if unknown:
        logger.warning("%s: skipped %d country names not in the culture registry: %s",
                       source, len(unknown), ", ".join(sorted(unknown)))
    if all_zero:
        logger.warning("%s: skipped %d country rows whose shares are all 0", source, all_zero)
    if not distributions:
        why = ("no row has the source 'WVS'" if not wvs_rows else
               f"none of its {wvs_rows} WVS row(s) has the shares of a registered culture that are not all 0")
        raise ValueError(f"{source}: no GlobalOpinionQA data to load from {rows} row(s): {why}")
    return WVSData(questions=loaded, distributions=distributions, source=source).validate()


# --------------------------------------------------------------------------------------------- dispatch
