"""The one reading layer for the files users bring: text, JSON, JSON lines, CSV and Parquet.

Every loader of a user's file (WVS question lists, distributions and their counts, the WVS-7 CSV,
GlobalOpinionQA exports, task files and indexes, culture profiles, culture similarity tables, CLCA seed
scenarios) reads it through these functions, so that all of them refuse the same hostile inputs with a
``ValueError`` naming the file (and the line or key where there is one):

- **Encoding.** Text is decoded as strict UTF-8; a leading UTF-8 byte order mark is dropped. No other
  encoding is guessed: a file in UTF-16 or UTF-32 (recognised by its byte order mark, or by NUL bytes, which
  no UTF-8 text file holds) or in an 8-bit encoding such as Latin-1 / Windows-1252 (bytes that are not
  UTF-8) is refused with the offset and line of the first bad byte and a request to save it as UTF-8.
  Latin-1 decodes any bytes, so a wrong guess never fails: it silently turns "Côte d'Ivoire" into
  "CÃ´te d'Ivoire".
- **JSON.** An object holding the same key twice is refused, naming the key (``json`` keeps the last value
  silently: a country's figures could end up filed under another's name). Nesting too deep and integers
  with more than 4300 digits are refused as well, never surfacing as ``RecursionError``. ``NaN`` and
  ``Infinity`` are parsed: the loaders refuse them where a finite number is required, naming the key.
- **CSV.** A header naming the same column twice is refused (a dict reader keeps the last one), and so is a
  row with more fields than the header (its extra fields would be dropped). For a file too large to decode
  whole (the WVS-7 CSV), :func:`read_csv_header` checks the header line and pyarrow reads the body, checking
  UTF-8 in the text columns it converts.
- **Parquet.** A file that is not Parquet, or that repeats a column name, is refused.

Missing files raise ``FileNotFoundError`` (from the operating system, with the path). YAML files are decoded
here but parsed by PyYAML, which does not check for repeated keys. The append-only caches the library writes
itself are read by :mod:`culture_align.jsonl` instead: it decodes each line as strict UTF-8 too, but skips a
torn line rather than refusing the file (its lines come from ``json.dumps`` of a dict, which cannot repeat a
key).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "check_columns",
    "decode_text",
    "parse_json",
    "read_csv",
    "read_csv_header",
    "read_first_line",
    "read_json",
    "read_json_lines",
    "read_parquet_records",
    "read_text",
]

PathLike = str | os.PathLike

_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class _DuplicateKey(ValueError):
    """A JSON object with a repeated key (raised inside the parser, re-raised naming the file)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# ------------------------------------------------------------------------------------------------ text


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset``."""
    return data.count(b"\n", 0, offset) + 1


def decode_text(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading UTF-8 byte order mark dropped).

    Args:
        data: The file's bytes (or its first bytes).
        source: The file, named in errors.

    Raises:
        ValueError: naming ``source``, for a UTF-16/UTF-32 byte order mark, a NUL byte (UTF-16 without a byte
            order mark, or a binary file) or bytes that are not UTF-8 (Latin-1, Windows-1252, ...), with the
            byte offset and line of the first problem.
    """
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            raise ValueError(f"{source}: the file is in {name} (it starts with a {name} byte order mark); "
                             "save it as UTF-8")
    skipped = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    nul = data.find(b"\0", skipped)
    if nul >= 0:
        raise ValueError(f"{source}: NUL byte at offset {nul} (line {_line_of(data, nul)}): not a UTF-8 text file "
                         "(UTF-16 without a byte order mark, or binary?); save it as UTF-8")
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skipped + err.start
        raise ValueError(f"{source}: not UTF-8: byte 0x{data[offset]:02x} at offset {offset} "
                         f"(line {_line_of(data, offset)}) is {err.reason}; the file may be Latin-1 or "
                         "Windows-1252: save it as UTF-8") from None


def read_text(path: PathLike) -> str:
    """The whole file at ``path`` as text; see :func:`decode_text` for the encoding rules."""
    path = Path(path)
    return decode_text(path.read_bytes(), str(path))


def read_first_line(path: PathLike, max_bytes: int = 1 << 20) -> str:
    """The first line of ``path`` (without its line break), decoded like :func:`decode_text`.

    Reads at most ``max_bytes`` (a header longer than that is cut there, at a character boundary).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(max_bytes)
    end = head.find(b"\n")
    line = head if end < 0 else head[:end]
    if end < 0 and len(head) == max_bytes:  # cut mid-line: do not fail on a character cut in two
        line = line[: len(line) - _partial_tail(line)]
    return decode_text(line, str(path)).rstrip("\r")


def _partial_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` start a UTF-8 character that the cut left unfinished."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last character
            need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return back if need > back else 0
    return 0


# ------------------------------------------------------------------------------------------------ JSON


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`parse_json`: the object, or ``_DuplicateKey`` for a repeated key."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def parse_json(text: str, where: str, *, one_line: bool = False) -> Any:
    """Parse JSON text strictly: no object may hold the same key twice.

    Args:
        text: The JSON document (or one line of a JSON lines file).
        where: The file (``"data.json"``), or the file and line of a JSON lines record
            (``"data.jsonl, line 3"``): the start of every error message.
        one_line: ``text`` is one line of a JSON lines file (``where`` names the line), so a syntax error
            gives the column only.

    Raises:
        ValueError: starting with ``where``, for a syntax error (with its line and column), a key that
            appears twice in one object, nesting too deep to parse, or an integer with too many digits.
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as err:
        at = f"column {err.colno}" if one_line else f"line {err.lineno}, column {err.colno}"
        raise ValueError(f"{where}: invalid JSON ({at}: {err.msg})") from None
    except _DuplicateKey as err:
        raise ValueError(f"{where}: the key {err.key!r} appears twice in one JSON object; keys must be unique "
                         "(JSON readers would keep only one of the values)") from None
    except RecursionError:
        raise ValueError(f"{where}: the JSON is nested too deeply to read") from None
    except ValueError as err:  # e.g. an integer with more than 4300 digits
        raise ValueError(f"{where}: cannot read the JSON: {err}") from None


def read_json(path: PathLike) -> Any:
    """The JSON document in the file at ``path`` (UTF-8, see :func:`decode_text`; keys checked, see
    :func:`parse_json`)."""
    path = Path(path)
    return parse_json(read_text(path), str(path))


def read_json_lines(path: PathLike, where: str = "{path}, line {line}") -> list[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSON lines file, parsed with :func:`parse_json`.

    Args:
        path: The file (UTF-8, see :func:`decode_text`).
        where: How errors name a line, a format string with the fields ``path`` and ``line`` (1-based).

    Lines are split on ``\\n`` only (JSON strings may hold U+2028 and other characters that
    :meth:`str.splitlines` would split on); a trailing ``\\r`` is ignored like other surrounding whitespace.
    """
    path = Path(path)
    rows = []
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if line.strip():
            rows.append((number, parse_json(line, where.format(path=path, line=number), one_line=True)))
    return rows


# ------------------------------------------------------------------------------------------- tables


def check_columns(names: Iterable[str], source: str) -> list[str]:
    """``names`` as a list; ``ValueError`` naming ``source`` and the column when one appears twice."""
    names = list(names)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{source}: the column {name!r} appears twice in the header; which one is meant?")
        seen.add(name)
    return names


def read_csv(path: PathLike, delimiter: str = ",") -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """The header and the rows of a CSV file with a header line.

    Args:
        path: The file (UTF-8, see :func:`decode_text`).
        delimiter: The field separator.

    Returns:
        ``(header, rows)``: each row as ``(line number, {column: value})``, the line number being that of the
        row's last line (a quoted field may span lines). Blank lines are skipped; a row with fewer fields
        than the header has ``None`` for the missing ones. An empty file gives ``([], [])``.

    Raises:
        ValueError: naming the file (and line), for an encoding problem, a column named twice, a row with
            more fields than the header, or a malformed row (``csv.Error``).
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    try:
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str | None]]] = []
        for fields in reader:
            if not fields:
                continue
            if header is None:
                header = check_columns(fields, str(path))
                continue
            if len(fields) > len(header):
                raise ValueError(f"{path}: line {reader.line_num}: {len(fields)} fields but the header has "
                                 f"{len(header)} columns")
            row: dict[str, str | None] = dict.fromkeys(header)
            row.update(zip(header, fields))
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise ValueError(f"{path}: line {reader.line_num}: cannot read the CSV: {err}") from None
    return header or [], rows


def read_csv_header(path: PathLike, delimiters: str = ",;\t") -> tuple[list[str], str]:
    """The column names of a CSV file and its delimiter, reading the first line only (any file size is fine).

    Args:
        path: The file (its first line decoded like :func:`decode_text`).
        delimiters: Candidates in order of preference: the first one the header line holds is the delimiter
            (the first candidate when it holds none).

    Raises:
        ValueError: naming the file, for an empty first line, an encoding problem or a column named twice.
    """
    first = read_first_line(path)
    if not first.strip():
        raise ValueError(f"{path}: the CSV file is empty (no header line)")
    delimiter = next((d for d in delimiters if d in first), delimiters[0])
    try:
        header = next(csv.reader([first], delimiter=delimiter))
    except csv.Error as err:
        raise ValueError(f"{path}: line 1: cannot read the CSV header: {err}") from None
    return check_columns(header, str(path)), delimiter


def read_parquet_records(path: PathLike) -> list[dict[str, Any]]:
    """The rows of a Parquet file as dicts.

    Raises:
        ValueError: naming the file, when it is not a readable Parquet file or repeats a column name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: cannot read the Parquet file: {err}") from None
    check_columns(table.column_names, str(path))
    return table.to_pylist()
