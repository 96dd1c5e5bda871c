"""Question lists: a user's file (:func:`load_questions`) or the bundled WVS-7 catalogue (:func:`bundled_questions`),
and the helpers every loader shares."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ...cultures import get_culture
from ...input_files import (
    parse_json,
    read_json,
)
from ..questions import SurveyQuestion, wvs_codes_for

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
