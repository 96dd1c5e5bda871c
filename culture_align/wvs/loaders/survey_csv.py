"""The official respondent-level WVS Wave 7 CSV (:func:`load_wvs_csv`): weighted distributions and personas."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...cultures import get_culture, resolve_cultures
from ...input_files import (
    read_csv_header,
)
from ..data import WVSData, normalised
from ..personas import DEMOGRAPHIC_COLUMNS, PERSONA_FIELDS, decode_demographic, persona_rng, sample_indices
from ..questions import EXCLUDED_QIDS, SurveyQuestion
from .question_files import _ID_COLUMN, PathLike, Questions, _as_questions

logger = logging.getLogger(__name__)

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
