"""Schemas of the CultureSPA pipeline: the generated question (validated with pydantic) and the tables.

The generic helpers of the recipes (JSON reply parsing, stable ids, typed tables, counts, ``StageResult``)
come from :mod:`culture_align.recipes.stages`, the one place that defines them.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...wvs.questions import SurveyQuestion
from ..provenance import PARAMS_FEATURES
from ..stages import StageResult, count_by, parse_reply, stable_id, to_dataset

__all__ = [
    "GeneratedQuestion",
    "MIN_OPTIONS",
    "MAX_OPTIONS",
    "QUESTION_FEATURES",
    "QUESTION_PROVENANCE",
    "ANSWER_FEATURES",
    "TRAIN_FEATURES",
    "REJECTION_FEATURES",
    "StageResult",
    "count_by",
    "parse_reply",
    "stable_id",
    "to_dataset",
    "make_rejection",
    "survey_question",
]

MIN_OPTIONS = 2
MAX_OPTIONS = 11
"""Options per generated question: 2..11 (the range of the WVS items, 0..10 scales included)."""


class GeneratedQuestion(BaseModel):
    """The model's answer when asked for a new question: ``{"question": str, "options": [str, ...]}``.

    The text and every option are stripped and must not be empty; 2..11 options.
    """

    model_config = ConfigDict(extra="ignore")

    # The 600-character cap is checked by the validator, not declared as maxLength: grammar engines expand a
    # long maxLength into one state per character (seconds to compile with xgrammar).
    question: str
    options: list[str] = Field(min_length=MIN_OPTIONS, max_length=MAX_OPTIONS)

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the question is empty")
        if len(value) > 600:
            raise ValueError(f"the question is longer than 600 characters ({len(value)})")
        return value

    @field_validator("options")
    @classmethod
    def _options_not_empty(cls, values: list[str]) -> list[str]:
        cleaned = [" ".join(str(v).split()) for v in values]
        empty = [i + 1 for i, v in enumerate(cleaned) if not v]
        if empty:
            raise ValueError(f"empty option(s) at position {empty}")
        too_long = [i + 1 for i, v in enumerate(cleaned) if len(v) > 200]
        if too_long:
            raise ValueError(f"option(s) longer than 200 characters at position {too_long}")
        return cleaned


_S = datasets.Value("string")
_I = datasets.Value("int32")
_F = datasets.Value("float64")

QUESTION_PROVENANCE = {"stage": _S, "model": _S, "params": PARAMS_FEATURES, "round": datasets.Value("int64"),
                       "prompt_version": _S}
"""How a question was generated: ``stage`` (``"questions"``), the ``model``, its sampling ``params`` (the round's
seed), the generation ``round`` and the prompt version."""

QUESTION_FEATURES = datasets.Features({
    "id": _S, "topic": _S, "text": _S, "options": datasets.List(_S), "codes": datasets.List(_I),
    "example_ids": datasets.List(_S), "provenance": QUESTION_PROVENANCE,
})
"""Kept generated questions. ``id`` is ``gen-<topic>-<hash>``; ``codes`` are 1..n (a pure-number scale keeps
its own numbers, e.g. 0..10); ``example_ids`` are the ids shown in the generating prompt (WVS qids for seeds);
``provenance``: :data:`QUESTION_PROVENANCE`."""

ANSWER_FEATURES = datasets.Features({
    "id": _S, "question_id": _S, "topic": _S, "culture": _S, "codes": datasets.List(_I),
    "unaware_probs": datasets.List(_F), "aware_probs": datasets.List(_F),
    "unaware_answer": _I, "aware_answer": _I, "js_distance": _F, "changed": datasets.Value("bool"),
    "mode": _S, "variant": _S, "unaware_invalid": _I, "aware_invalid": _I,
})
"""One row per (generated question, culture): the culture-unaware and culture-aware answer distributions
over ``codes`` (log-prob mode: exact; sampling mode: the share of valid samples per code, None when no
sample parsed), their argmax codes (None when invalid), the Jensen-Shannon distance between them (natural
log; None when one is missing), ``changed`` (set by CRQPC: the pair counts as a cultural difference),
``mode`` (``logprob`` | ``sampling``), ``variant`` of the aware prompt (``plain`` | ``cross_culture`` |
``self_alignment``) and the number of unparsable samples of each answer (0 in log-prob mode)."""

TRAIN_FEATURES = datasets.Features({
    "id": _S, "messages": datasets.List({"role": _S, "content": _S}), "task": _S, "culture": _S,
    "question_id": _S, "topic": _S, "answer": _I, "unaware_answer": _I,
    "aware_probs": datasets.List(_F), "unaware_probs": datasets.List(_F), "js_distance": _F,
})
"""Training conversations (CRQPC pairs): system = the culture-aware prompt, user = the question with its
numbered options, assistant = ``answer`` (the culture-aware answer's code); ``task`` is ``"survey"``; both
distributions are kept for analysis."""

REJECTION_FEATURES = datasets.Features({
    "id": _S, "stage": _S, "reason": _S, "topic": _S, "culture": _S, "text": _S, "detail": _S,
})
"""Everything dropped: ``stage`` (``questions``), a short ``reason`` (``invalid_json``, ``invalid_schema``,
``numeric_options_without_scale``, ``exact_duplicate``, ``near_duplicate``, ``contaminated``, ...), the
``topic``, ``culture`` (empty for questions), the generated ``text`` (raw answer when unparsable) and
``detail`` (JSON text: the error, the nearest kept or evaluation item and its similarity, ...)."""


def make_rejection(record_id: str, stage: str, reason: str, text: str, detail: Any, *, topic: str = "",
                   culture: str = "") -> dict[str, str]:
    """A rejections-table row (:data:`REJECTION_FEATURES`); ``detail`` is stored as JSON text."""
    return {"id": record_id, "stage": stage, "reason": reason, "topic": topic, "culture": culture, "text": text,
            "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)}


def survey_question(row: dict[str, Any]) -> SurveyQuestion:
    """A questions-table row (:data:`QUESTION_FEATURES`) as a :class:`SurveyQuestion`, so that the survey
    prompts (``format_options``, ``build_conversation``) apply to it."""
    return SurveyQuestion(qid=row["id"], text=row["text"], options=tuple(row["options"]), codes=tuple(row["codes"]),
                          topic=row["topic"])
