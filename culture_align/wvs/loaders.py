"""Loaders: every source of human survey data becomes one :class:`~culture_align.wvs.data.WVSData`.

Supported sources (the user brings the data; none is shipped):

- a question list (:func:`load_questions`): the WVS-7 shape ``{"Q_id", "question", "option_lst"}`` or ours
  ``{"qid", "text", "options", "codes", "topic"}``;
- a distributions file ``{ISO3: {qid: {code: proportion}}}`` (:func:`load_distributions`), with an optional
  ``<name>.counts.json`` sidecar giving the number of valid answers;
- the official respondent-level WVS Wave 7 CSV (:func:`load_wvs_csv`), which also yields personas;
- GlobalOpinionQA (the Hub dataset ``Anthropic/llm_global_opinions``) exported to Parquet, JSON, JSON lines
  or CSV (:func:`load_global_opinions`);
- :func:`load_wvs` picks the right one from a path, or reads a GlobalOpinionQA-shaped Hub dataset named
  explicitly as ``hf://owner/name`` (``load_wvs("hf://Anthropic/llm_global_opinions")``); a source without
  ``hf://`` is always a local path.

Every file is read through :mod:`culture_align.input_files` (strict UTF-8, no repeated JSON key or CSV
column); every answer code is checked with :func:`~culture_align.wvs.questions.answer_code`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..cultures import get_culture, resolve_cultures
from ..input_files import (
    parse_json,
    read_csv,
    read_csv_header,
    read_json,
    read_json_lines,
    read_parquet_records,
)
from .data import WVSData, finite_non_negative, normalised
from .personas import DEMOGRAPHIC_COLUMNS, PERSONA_FIELDS, decode_demographic, persona_rng, sample_indices
from .questions import EXCLUDED_QIDS, SurveyQuestion, answer_code, wvs_codes_for

__all__ = [
    "load_questions",
    "load_distributions",
    "load_wvs_csv",
    "load_global_opinions",
    "load_wvs",
    "bundled_questions",
    "persona_features",
    "HUB_PREFIX",
    "hub_dataset_id",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
Questions = Mapping[str, SurveyQuestion]

_CATALOG = "data/wvs_catalog.json"
_ID_COLUMN = "D_INTERVIEW"


# --------------------------------------------------------------------------------------------- helpers


def _iso3(key: Any, path: Path, where: str | None = None) -> str:
    """Resolve a country key through the registry; the error keeps the registry's 'did you mean' hint."""
    try:
        return get_culture(str(key)).iso3
    except ValueError as err:
        raise ValueError(f"{path}: {where or key}: {err}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_questions(questions: Questions | PathLike | None) -> dict[str, SurveyQuestion]:
    """A question catalog given as a mapping, a path to a question list, or ``None`` (the bundled one)."""
    if questions is None:
        return bundled_questions()
    if isinstance(questions, (str, os.PathLike)):
        return load_questions(questions)
    return dict(questions)


# ------------------------------------------------------------------------------------------- questions


def _question_from_record(item: Any, where: str) -> SurveyQuestion | None:
    """One question list entry (either shape) -> a question, or ``None`` when it has no options."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
    if "Q_id" in item:
        qid, text, options = item["Q_id"], item.get("question"), item.get("option_lst")
        codes, topic = None, ""
    elif "qid" in item:
        qid, text, options = item["qid"], item.get("text"), item.get("options")
        codes, topic = item.get("codes"), item.get("topic") or ""
    else:
        raise ValueError(f"{where}: expected the keys 'Q_id', 'question', 'option_lst' (WVS shape) or "
                         f"'qid', 'text', 'options', 'codes' (culture_align shape); got {sorted(item)}")
    if not isinstance(qid, str) or not qid.strip():
        raise ValueError(f"{where}: the question id must be a non-empty string, got {qid!r}")
    if not isinstance(text, str):
        raise ValueError(f"{where} ({qid}): the question text must be a string, got {type(text).__name__}")
    if options is None:
        options = []
    if codes is not None and not isinstance(codes, list):
        raise ValueError(f"{where} ({qid}): codes must be a list of integers, got {type(codes).__name__}")
    if not isinstance(options, list) or not all(isinstance(o, str) or _is_number(o) for o in options):
        raise ValueError(f"{where} ({qid}): options must be a list of strings")
    if not options:
        return None
    if codes is None:
        codes = wvs_codes_for(qid, len(options))
    try:
        return SurveyQuestion(qid=qid.strip(), text=text, options=tuple(str(o) for o in options),
                              codes=tuple(codes), topic=str(topic))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where} ({qid}): {err}") from None


def _questions_from_list(data: Any, source: str) -> dict[str, SurveyQuestion]:
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON list of questions, got {type(data).__name__}")
    out: dict[str, SurveyQuestion] = {}
    for i, item in enumerate(data):
        question = _question_from_record(item, f"{source}: item {i}")
        if question is None:
            continue
        if question.qid in out:
            raise ValueError(f"{source}: item {i}: question id {question.qid!r} appears twice")
        out[question.qid] = question
    return out


def load_questions(path: PathLike) -> dict[str, SurveyQuestion]:
    """Read a question list from a JSON file.

    Args:
        path: A JSON list (or ``{"questions": [...]}``) of either
            ``{"Q_id", "question", "option_lst"}`` (WVS shape; codes from :func:`wvs_codes_for`) or
            ``{"qid", "text", "options", "codes"?, "topic"?}`` (our shape; codes default likewise).

    Returns:
        Questions by id, in file order. Entries without options (demographics like age) are skipped;
        option labels are kept as given; the topic defaults to the WVS-7 section of the id.

    Raises:
        ValueError: naming the file (and the item) for invalid JSON, a malformed entry or a repeated id.
    """
    path = Path(path)
    return _questions_from_list(read_json(path), str(path))


@functools.lru_cache(maxsize=1)
def _bundled_catalog() -> tuple[SurveyQuestion, ...]:
    resource = resources.files("culture_align").joinpath(_CATALOG)
    source = f"culture_align/{_CATALOG}"
    data = parse_json(resource.read_text(encoding="utf-8"), source)
    return tuple(_questions_from_list(data, source).values())


def bundled_questions() -> dict[str, SurveyQuestion]:
    """The small WVS-7 catalog shipped with the library (our own wording, WVS codes, all 13 topics).

    Returns a new dict on each call; it holds question texts only, no survey answers.
    """
    return {q.qid: q for q in _bundled_catalog()}


# --------------------------------------------------------------------------------------- distributions


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


def _read_csv_header(path: Path) -> tuple[list[str], str]:
    """The column names and the delimiter (comma, or semicolon/tab when the header has no comma).

    The header line must be UTF-8 and name each column once (see :func:`~culture_align.input_files.read_csv_header`).
    """
    return read_csv_header(path, ",;\t")


_INT64_DIGITS = 18  # every integer of at most 18 digits fits in int64


def _first_non_integer(path: Path, delimiter: str, column: str) -> tuple[int, str] | None:
    """(1-based data row, value) of the first cell of ``column`` that is not an integer that fits in int64;
    ``None`` when there is none, or when the file cannot be read as text either (the caller reports that)."""
    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                               convert_options=pacsv.ConvertOptions(include_columns=[column],
                                                                    column_types={column: pa.string()}))
    except pa.ArrowException:
        return None
    for i, value in enumerate(table.column(column).to_pylist()):
        if value is None or not value.strip():
            continue
        match = re.fullmatch(r"\s*[+-]?0*([0-9]+)\s*", value)
        if match is None or len(match.group(1)) > _INT64_DIGITS:
            return i + 1, value
    return None


def _read_csv_columns(path: Path, delimiter: str, types: dict[str, pa.DataType]) -> pa.Table:
    """Read only the columns in ``types``, converted to those types; empty cells become nulls."""
    convert = pacsv.ConvertOptions(include_columns=list(types), column_types=types,
                                   null_values=["", "NA", "NaN", "nan", "NULL"], strings_can_be_null=True)
    try:
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                              convert_options=convert)
    except pa.ArrowException as err:
        for column, kind in types.items():
            if pa.types.is_integer(kind):
                bad = _first_non_integer(path, delimiter, column)
                if bad is not None:
                    row, value = bad
                    raise ValueError(f"{path}: data row {row} (line {row + 1}), column {column}: "
                                     f"{value!r} is not an integer answer code") from None
        raise ValueError(f"{path}: cannot read the CSV: {err}") from None


def _int_column(table: pa.Table, name: str) -> np.ndarray:
    """An integer column as int64 with missing values as -1."""
    return pc.fill_null(table.column(name), -1).to_numpy().astype(np.int64, copy=False)


def _row_cultures(
    values: list[str | None], path: Path, column: str, selected: set[str] | None
) -> tuple[list[str], np.ndarray]:
    """Map each row's country to an index into the returned culture list (-1: skipped), first-seen order.

    Rows of countries the registry lacks are skipped with one logged warning; rows of registered cultures
    outside ``selected`` are skipped silently; a row without a country raises.
    """
    index_of: dict[str, int] = {}
    cultures: list[str] = []
    unregistered: dict[str, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = (value or "").strip()
        if key not in index_of:
            if not key:
                raise ValueError(f"{path}: data row {i + 1} (line {i + 2}), column {column}: no country code")
            try:
                iso3 = get_culture(key).iso3
            except ValueError:
                index_of[key] = -2
            else:
                if selected is not None and iso3 not in selected:
                    index_of[key] = -1
                else:
                    if iso3 not in cultures:
                        cultures.append(iso3)
                    index_of[key] = cultures.index(iso3)
        out[i] = index_of[key]
        if out[i] == -2:
            unregistered[key] = unregistered.get(key, 0) + 1
    if unregistered:
        logger.warning("%s: skipped %d rows of %d countries not in the culture registry: %s", path,
                       sum(unregistered.values()), len(unregistered), ", ".join(sorted(unregistered)))
    return cultures, np.maximum(out, -1)


def _code_positions(values: np.ndarray, question: SurveyQuestion, path: Path) -> np.ndarray:
    """Answer codes -> positions in ``question.codes`` (-1 for negative, i.e. missing, codes).

    A binary search in the sorted codes: memory grows with the number of rows and options only, never with
    the size of a code. Raises ``ValueError`` naming the row and column for a non-negative code the question
    does not have.
    """
    codes = np.asarray(question.codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    slot = np.minimum(np.searchsorted(sorted_codes, values), sorted_codes.size - 1)
    found = sorted_codes[slot] == values
    answered = values >= 0
    positions = np.where(answered & found, order[slot], -1)
    bad = np.flatnonzero(answered & ~found)
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{path}: data row {row + 1} (line {row + 2}), column {question.qid}: code "
                         f"{int(values[row])} is not one of the item's codes {list(question.codes)} "
                         "(negative codes mean missing)")
    return positions


def persona_features(qids: Iterable[str]) -> datasets.Features:
    """The features of a persona table whose ``answers`` struct has one int32 field per item in ``qids``."""
    features = {"culture": datasets.Value("string"), "respondent_id": datasets.Value("string")}
    features.update({name: datasets.Value("string") for name in PERSONA_FIELDS})
    features["answers"] = {qid: datasets.Value("int32") for qid in qids}
    return datasets.Features(features)


def _decode_column(table: pa.Table, field: str, rows: np.ndarray) -> pa.Array:
    column = DEMOGRAPHIC_COLUMNS[field]
    if column not in table.column_names:
        return pa.nulls(rows.size, pa.string())
    values = _int_column(table, column)[rows]
    uniques, inverse = np.unique(values, return_inverse=True)
    labels = np.array([decode_demographic(field, int(u)) for u in uniques], dtype=object)
    return pa.array(labels[inverse], type=pa.string())


def _build_personas(
    table: pa.Table, rows: np.ndarray, row_culture: list[str], answers: dict[str, np.ndarray],
    id_column: str | None,
) -> datasets.Dataset:
    """The persona table of the data rows ``rows`` (0-based), see :mod:`culture_align.wvs.personas`."""
    ids: list[str | None] = [None] * rows.size
    if id_column is not None:
        raw = table.column(id_column).take(rows).to_pylist()
        ids = [None if v is None else str(v).strip() or None for v in raw]
    ids = [rid if rid is not None else f"{c}-{r + 1}" for rid, c, r in zip(ids, row_culture, rows.tolist())]
    columns: dict[str, pa.Array] = {"culture": pa.array(row_culture, type=pa.string()),
                                    "respondent_id": pa.array(ids, type=pa.string())}
    for field in PERSONA_FIELDS:
        columns[field] = _decode_column(table, field, rows)
    answer_arrays = [pa.array(values[rows].astype(np.int32), mask=values[rows] < 0, type=pa.int32())
                     for values in answers.values()]
    columns["answers"] = pa.StructArray.from_arrays(answer_arrays, names=list(answers))
    features = persona_features(answers)
    arrow = pa.table(columns).cast(features.arrow_schema)
    return datasets.Dataset(datasets.table.InMemoryTable(arrow), info=datasets.DatasetInfo(features=features))


def _weights(table: pa.Table, column: str | None, keep: np.ndarray, path: Path) -> np.ndarray:
    """Per-row survey weights (ones without a weight column); errors name the row and the column."""
    if column is None:
        return np.ones(table.num_rows, dtype=np.float64)
    weights = pc.fill_null(table.column(column).cast(pa.float64()), math.nan).to_numpy()
    bad = np.flatnonzero(keep & ~(np.isfinite(weights) & (weights >= 0)))
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{path}: data row {row + 1} (line {row + 2}), column {column}: the weight must be "
                         f"a finite number >= 0, got {weights[row]!r}")
    return weights


def load_wvs_csv(
    path: PathLike,
    questions: Questions | PathLike | None = None,
    *,
    country_column: str = "B_COUNTRY_ALPHA",
    weight_column: str | None = "W_WEIGHT",
    max_personas_per_culture: int | None = None,
    seed: int = 0,
    cultures: Iterable[str] | str | None = None,
) -> WVSData:
    """Read the official respondent-level WVS Wave 7 CSV.

    For each registered culture and each catalog item whose column exists (demographics and party choice,
    :data:`EXCLUDED_QIDS`, are never treated as items), the distribution over the item's codes is the
    share of valid answers, weighted by ``weight_column`` when the file has it. Negative codes (missing,
    don't know, refused, not asked) are left out of numerator and denominator; empty cells count as
    missing. ``counts`` holds the unweighted number of valid answers. Rows of countries that the culture
    registry lacks are skipped with one logged warning.

    Args:
        path: The CSV (comma-separated, or semicolon/tab when the header has no comma).
        questions: The item catalog (mapping or path); default :func:`bundled_questions`.
        country_column: Column with the ISO3 country code of each respondent.
        weight_column: Survey weight column; ignored when absent from the file, ``None`` for unweighted.
        max_personas_per_culture: Keep at most this many respondents per culture in ``personas`` (a
            reproducible sample, see :func:`~culture_align.wvs.personas.sample_personas`); ``None``: all.
            Distributions always use every respondent.
        seed: Seed of that sample.
        cultures: Only load these cultures (codes or a comma-separated string); default: all registered.

    Returns:
        A :class:`WVSData` with ``personas`` (one row per kept respondent, see
        :mod:`culture_align.wvs.personas`) and ``source`` the file path.

    Raises:
        ValueError: naming the file, for a missing country column, no item column at all, a non-integer
            or illegal non-negative code (with its data row and column), or a bad weight.
    """
    path = Path(path)
    catalog = _as_questions(questions)
    header, delimiter = _read_csv_header(path)
    if country_column not in header:
        raise ValueError(f"{path}: no country column {country_column!r} in the CSV header "
                         f"(pass country_column=... to name it)")
    items = [qid for qid in catalog if qid in header and qid not in EXCLUDED_QIDS]
    if not items:
        raise ValueError(f"{path}: none of the {len(catalog)} catalog items has a column in this CSV")
    weight = weight_column if weight_column is not None and weight_column in header else None
    id_column = _ID_COLUMN if _ID_COLUMN in header else None
    types: dict[str, pa.DataType] = {country_column: pa.string()}
    if weight is not None:
        types[weight] = pa.float64()
    if id_column is not None:
        types.setdefault(id_column, pa.string())
    for column in items + [c for c in DEMOGRAPHIC_COLUMNS.values() if c in header]:
        types.setdefault(column, pa.int64())
    table = _read_csv_columns(path, delimiter, types)

    selected = None if cultures is None else {c.iso3 for c in resolve_cultures(cultures)}
    culture_list, row_culture = _row_cultures(table.column(country_column).to_pylist(), path,
                                              country_column, selected)
    if not culture_list:
        among = " among the selected ones" if selected else ""
        raise ValueError(f"{path}: no rows of a registered culture{among}")
    weights = _weights(table, weight, row_culture >= 0, path)
    answers_what = f"answers weighted by column {weight}" if weight is not None else "answer counts"
    distributions: dict[str, dict[str, np.ndarray]] = {c: {} for c in culture_list}
    counts: dict[str, dict[str, float]] = {c: {} for c in culture_list}
    answers: dict[str, np.ndarray] = {}
    for qid in items:
        values = _int_column(table, qid)
        positions = _code_positions(values, catalog[qid], path)
        n_options = catalog[qid].num_options
        mass, n_valid = _tabulate(positions, row_culture, weights, len(culture_list), n_options)
        for c, iso3 in enumerate(culture_list):
            with np.errstate(over="ignore", invalid="ignore"):
                total = mass[c].sum()
            if n_valid[c] > 0 and total != 0:  # weights all 0: no data (an overflowed sum is refused)
                distributions[iso3][qid] = normalised(mass[c], f"{path}: {iso3}/{qid}", what=answers_what)
                counts[iso3][qid] = int(n_valid[c])
        if any(qid in cells for cells in distributions.values()):
            answers[qid] = np.where(positions >= 0, values, -1)

    if not answers:
        shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
        raise ValueError(f"{path}: no valid answer (with a weight > 0) to any of the {len(items)} item "
                         f"column(s) {shown} in {', '.join(culture_list)}")
    rows = _persona_rows(row_culture, culture_list, max_personas_per_culture, seed)
    personas = _build_personas(table, rows, [culture_list[i] for i in row_culture[rows]], answers, id_column)
    return WVSData(questions={qid: catalog[qid] for qid in answers}, distributions=distributions,
                   counts=counts, personas=personas, source=str(path)).validate()


def _tabulate(
    positions: np.ndarray, row_culture: np.ndarray, weights: np.ndarray, n_cultures: int, n_options: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per culture, the weighted answer mass on each option and the number of valid answers.

    Args:
        positions: Per row, the answer's position among the item's options (-1: missing).
        row_culture: Per row, the culture index (-1: skipped row).
        weights: Per row, the survey weight.
        n_cultures: Number of cultures.
        n_options: Number of the item's options.

    Returns:
        ``(mass, n_valid)`` of shapes ``(n_cultures, n_options)`` and ``(n_cultures,)``.
    """
    valid = (row_culture >= 0) & (positions >= 0)
    flat = row_culture[valid] * n_options + positions[valid]
    mass = np.bincount(flat, weights=weights[valid], minlength=n_cultures * n_options)
    return mass.reshape(n_cultures, n_options), np.bincount(row_culture[valid], minlength=n_cultures)


def _persona_rows(
    row_culture: np.ndarray, culture_list: list[str], limit: int | None, seed: int
) -> np.ndarray:
    """0-based data rows kept as personas, in file order (a per-culture sample when ``limit`` is set)."""
    if limit is None:
        return np.flatnonzero(row_culture >= 0)
    chosen = []
    for c, iso3 in enumerate(culture_list):
        positions = np.flatnonzero(row_culture == c)
        chosen.append(positions[sample_indices(positions.size, limit, persona_rng(iso3, seed))])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


# ------------------------------------------------------------------------------------ GlobalOpinionQA

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

_FOLDER_FILES = ("wvs_questions.json", "proportions_group_by_country.json")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

HUB_PREFIX = "hf://"
"""How a Hub dataset is named where a WVS source is expected: ``hf://owner/name``. A source without it is
always a local path, so a mistyped path is reported as missing instead of being downloaded from the Hub."""


def hub_dataset_id(source: PathLike) -> str | None:
    """The Hub dataset id of an explicit Hub source (``"hf://owner/name"`` or the ``huggingface_hub`` form
    ``"hf://datasets/owner/name"`` -> ``"owner/name"``); ``None`` for anything else (a local path).

    Raises:
        ValueError: for an ``hf://`` source that does not name a dataset as ``owner/name``.
    """
    if not isinstance(source, str) or not source.startswith(HUB_PREFIX):
        return None
    repo_id = source[len(HUB_PREFIX):]
    if repo_id.startswith("datasets/") and repo_id.count("/") == 2:
        repo_id = repo_id[len("datasets/"):]
    if not _HUB_ID.fullmatch(repo_id):
        raise ValueError(f"{source}: a Hub dataset is written {HUB_PREFIX}owner/name "
                         f"(e.g. {HUB_PREFIX}Anthropic/llm_global_opinions)")
    return repo_id


def _missing_source(path: Path) -> FileNotFoundError:
    """The error for a source that is neither an existing path nor an explicit Hub dataset."""
    text = str(path)
    hint = (f"; if you meant the Hub dataset {text}, write {HUB_PREFIX}{text}" if _HUB_ID.fullmatch(text)
            else f"; a Hub dataset is written {HUB_PREFIX}owner/name")
    return FileNotFoundError(f"{path}: no such file or folder{hint}")


def load_wvs(source: PathLike, questions: Questions | PathLike | None = None, **kwargs: Any) -> WVSData:
    """Load human survey data from whatever ``source`` is.

    - a folder with ``wvs_questions.json`` and ``proportions_group_by_country.json``: questions (unless
      given) + distributions;
    - a ``.csv``: :func:`load_wvs_csv` (or :func:`load_global_opinions` when the header has ``selections``);
    - a ``.json`` object ``{ISO3: {qid: {code: proportion}}}``: :func:`load_distributions`, with
      ``questions`` or the ``wvs_questions.json`` beside the file; a ``.json`` list of GlobalOpinionQA rows:
      :func:`load_global_opinions`;
    - a ``.parquet`` or ``.jsonl``: :func:`load_global_opinions`;
    - a Hub dataset named explicitly, ``"hf://owner/name"`` (e.g. ``"hf://Anthropic/llm_global_opinions"``):
      read with :func:`datasets.load_dataset` (``split`` defaults to ``"train"``; other ``kwargs`` go to it)
      and loaded as GlobalOpinionQA. Without the ``hf://`` prefix a source is always a local path: a path
      that does not exist is an error, never a download (a mistyped ``shared/wvs`` must not fetch a
      stranger's dataset ``shared/wvs`` and use it as the human figures).

    ``kwargs`` go to the chosen loader.

    Raises:
        FileNotFoundError: for a local path that does not exist (naming it, and how to write a Hub dataset).
        ValueError: naming the file, for anything else it cannot read.
    """
    repo_id = hub_dataset_id(source)
    if repo_id is not None:
        return _load_hub(repo_id, questions, **kwargs)
    path = Path(source)
    if not path.exists():
        raise _missing_source(path)
    if path.is_dir():
        question_file, distribution_file = (path / name for name in _FOLDER_FILES)
        if not (question_file.is_file() and distribution_file.is_file()):
            raise ValueError(f"{path}: a WVS data folder must hold {' and '.join(_FOLDER_FILES)}")
        return load_distributions(distribution_file, questions if questions is not None else question_file,
                                  **kwargs)
    if not path.is_file():
        raise ValueError(f"{path}: neither a file nor a folder")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if "selections" in _read_csv_header(path)[0]:
            return load_global_opinions(path, questions, **kwargs)
        return load_wvs_csv(path, questions, **kwargs)
    if suffix in (".parquet", ".jsonl"):
        return load_global_opinions(path, questions, **kwargs)
    if suffix == ".json":
        return _load_json_source(path, questions, **kwargs)
    raise ValueError(f"{path}: cannot tell what this is; load_wvs reads a WVS data folder, a WVS-7 CSV, a "
                     ".json distributions file, or GlobalOpinionQA as .parquet/.jsonl/.json/.csv")


def _load_json_source(path: Path, questions: Questions | PathLike | None, **kwargs: Any) -> WVSData:
    data = read_json(path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "selections" in data[0]:
        return load_global_opinions(path, questions, **kwargs)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a distributions object {{ISO3: {{qid: {{code: p}}}}}} or "
                         "a list of GlobalOpinionQA rows (a question list goes in questions=...)")
    if questions is None:
        beside = path.parent / _FOLDER_FILES[0]
        if not beside.is_file():
            raise ValueError(f"{path}: a distributions file needs its questions: pass questions=... (a path, "
                             f"a dict, or bundled_questions()) or put {_FOLDER_FILES[0]} beside it")
        questions = beside
    return load_distributions(path, questions, **kwargs)


def _load_hub(repo_id: str, questions: Questions | PathLike | None, split: str = "train",
              **kwargs: Any) -> WVSData:
    """A GlobalOpinionQA-shaped dataset from the Hub (or the local ``datasets`` cache); ``repo_id`` is
    ``owner/name``, without the ``hf://`` of :func:`load_wvs`. The data's ``source`` is ``hf://owner/name[split]``
    (what :func:`hub_dataset_id` reads back, so a local path is never taken for a Hub id)."""
    table = datasets.load_dataset(repo_id, split=split, **kwargs)
    if not set(_GOQA_COLUMNS) <= set(table.column_names):
        raise ValueError(f"{repo_id}: load_wvs reads Hub datasets in the GlobalOpinionQA layout (columns "
                         f"{', '.join(_GOQA_COLUMNS)}); this one has {', '.join(table.column_names)}")
    return _global_opinions(table.to_list(), f"{HUB_PREFIX}{repo_id}[{split}]", questions)
