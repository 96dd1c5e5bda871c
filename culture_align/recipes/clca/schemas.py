"""Schemas of the CLCA pipeline: pydantic models for every LLM answer, ``datasets`` features for every table,
stable ids, and validated generation with bounded retries.

LLM answers are JSON. Each stage asks with ``params.json_schema`` set to the answer model's schema (backends
that can constrain decoding do), then validates the text here: the first JSON object in the text is taken
(code fences and chatter around it are tolerated), and its content must satisfy the pydantic model (strict
enums, non-empty strings where needed). An invalid answer is asked again, up to ``max_attempts`` times in all,
each time with ``seed + attempt``; a greedy stage (temperature 0) retries at ``retry_temperature``, since a new
seed alone would give the same greedy text again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

import datasets
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ...backends.base import Conversation, GenerationBackend, GenerationParams

__all__ = [
    "Participant",
    "SeedParticipant",
    "SeedScenario",
    "AdaptedScenario",
    "TurnReply",
    "QualityVerdict",
    "AlignmentVerdict",
    "MetaVerdict",
    "IntentAnnotation",
    "Confidence",
    "InvalidReply",
    "ValidatedReply",
    "StageResult",
    "json_schema_for",
    "parse_reply",
    "generate_validated",
    "attempt_params",
    "stable_id",
    "params_provenance",
    "make_rejection",
    "count_by",
    "to_dataset",
    "PERSON_FEATURES",
    "SEED_FEATURES",
    "SCENARIO_FEATURES",
    "TURN_FEATURES",
    "JUDGE_FEATURES",
    "DIALOGUE_FEATURES",
    "REJECTION_FEATURES",
    "TRAIN_FEATURES",
]

Confidence = Literal["very confident", "confident", "not sure"]


def _bounded(max_chars: int) -> Any:
    """A text field whose JSON schema carries ``maxLength``, as a decoding hint only (not validated).

    Grammar-constrained decoding then closes the string within the token budget, so a rambling model still
    yields parseable JSON; servers that ignore the schema are not penalised for a longer text.
    """
    return Field(json_schema_extra={"maxLength": max_chars})


def _non_empty(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


# ----------------------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------------------


class Participant(BaseModel):
    """One participant of a scenario. Every field is a non-empty string (surrounding spaces stripped)."""

    model_config = ConfigDict(extra="ignore")

    name: str = _bounded(80)
    occupation: str = _bounded(100)
    background: str = _bounded(400)
    goal: str = _bounded(250)
    secrets: str = _bounded(250)

    @field_validator("name", "occupation", "background", "goal", "secrets")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        return _non_empty(value)


class SeedParticipant(Participant):
    """A participant as written in a seed file: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


class _TwoParticipants(BaseModel):
    setting: str = _bounded(500)
    relationship: str = _bounded(200)
    person1: Participant
    person2: Participant

    @field_validator("setting", "relationship")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        return _non_empty(value)

    @model_validator(mode="after")
    def _distinct_names(self):
        if self.person1.name.casefold() == self.person2.name.casefold():
            raise ValueError(f"both participants are called {self.person1.name!r}")
        return self


class SeedScenario(_TwoParticipants):
    """A seed scenario (Sotopia style) as written in a seed file: ``id``, ``social_goal`` (the kind of
    situation, e.g. ``"negotiation"``), ``setting``, ``relationship``, ``person1``, ``person2``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    social_goal: str
    person1: SeedParticipant
    person2: SeedParticipant

    @field_validator("id", "social_goal")
    @classmethod
    def _id_not_empty(cls, value: str) -> str:
        return _non_empty(value)


class AdaptedScenario(_TwoParticipants):
    """The teacher's answer when adapting a seed scenario to a culture."""

    model_config = ConfigDict(extra="ignore")


# ----------------------------------------------------------------------------------------------------------
# Role-play, judge, intents
# ----------------------------------------------------------------------------------------------------------


class TurnReply(BaseModel):
    """One role-play turn: ``{"action": "none" | "non-verbal" | "speak" | "leave", "output": str}``.

    ``speak`` and ``non-verbal`` need a non-empty output; ``none`` keeps none.
    """

    model_config = ConfigDict(extra="ignore")

    action: Literal["none", "non-verbal", "speak", "leave"]
    output: str = _bounded(1000)

    @model_validator(mode="after")
    def _output_fits_action(self):
        self.output = self.output.strip()
        if self.action in ("speak", "non-verbal") and not self.output:
            raise ValueError(f"action {self.action!r} needs a non-empty output")
        if self.action == "none":
            self.output = ""
        return self


class QualityVerdict(BaseModel):
    """Judge verdict on dialogue quality."""

    model_config = ConfigDict(extra="ignore")

    rationale: str = _bounded(400)
    verdict: Literal["good", "bad"]
    confidence: Confidence


class AlignmentVerdict(BaseModel):
    """Judge verdict on culture alignment."""

    model_config = ConfigDict(extra="ignore")

    rationale: str = _bounded(400)
    verdict: Literal["aligned", "not aligned"]
    confidence: Confidence


class MetaVerdict(BaseModel):
    """Judge critique of the quality and alignment verdicts."""

    model_config = ConfigDict(extra="ignore")

    critique: str = _bounded(400)
    verdict: Literal["good", "bad"]
    confidence: Confidence


class IntentAnnotation(BaseModel):
    """The annotator's answer: the speaker's intent in one short sentence."""

    model_config = ConfigDict(extra="ignore")

    intent: str = _bounded(250)

    @field_validator("intent")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        return _non_empty(value)


# ----------------------------------------------------------------------------------------------------------
# Parsing and validated generation
# ----------------------------------------------------------------------------------------------------------


class InvalidReply(ValueError):
    """An answer that cannot be used. ``kind`` is ``"malformed"`` (not JSON / fails the schema) or a
    stage-specific kind (``"impersonation"``)."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


T = TypeVar("T", bound=BaseModel)


def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with ``$ref``s inlined and ``additionalProperties: false`` on every object:
    the plain form grammar engines and OpenAI-style ``response_format`` accept best."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            out = {k: inline(v) for k, v in node.items()}
            if out.get("type") == "object":
                out.setdefault("additionalProperties", False)
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    def tidy(node: Any, top: bool = False) -> Any:  # drop docstrings and titles (not property names)
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "description" or (key == "title" and not top):
                    continue
                out[key] = ({name: tidy(sub) for name, sub in value.items()} if key == "properties"
                            else tidy(value))
            return out
        if isinstance(node, list):
            return [tidy(v) for v in node]
        return node

    return tidy(inline(schema), top=True)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_reply(text: str, model: type[T]) -> T:
    """Validate an LLM answer: the first JSON object in ``text`` must satisfy ``model``.

    Raises:
        InvalidReply: (kind ``"malformed"``) with the reason.
    """
    stripped = _FENCE.sub("", text.strip())
    start = stripped.find("{")
    if start < 0:
        raise InvalidReply("no JSON object in the answer")
    try:
        obj, _ = json.JSONDecoder().raw_decode(stripped[start:])
    except json.JSONDecodeError as err:
        raise InvalidReply(f"invalid JSON: {err.msg} at char {err.pos}") from None
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in err.errors())
        raise InvalidReply(f"does not match {model.__name__}: {problems}") from None


def attempt_params(params: GenerationParams, attempt: int, retry_temperature: float = 0.7) -> GenerationParams:
    """Params of attempt ``attempt`` (0-based): ``seed + attempt``; a greedy stage samples at
    ``retry_temperature`` from the first retry on."""
    if attempt == 0:
        return params
    temperature = retry_temperature if params.temperature == 0 else params.temperature
    return replace(params, seed=params.seed + attempt, temperature=temperature)


@dataclass
class ValidatedReply(Generic[T]):
    """What became of one request: the validated ``value`` (None when every attempt failed), the raw text
    of each attempt and ``(kind, message)`` of each failed one."""

    value: T | None = None
    raw: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def attempts(self) -> int:
        return len(self.raw)

    def failure(self) -> dict[str, Any]:
        """Detail for a rejection row: the errors and raw texts of all attempts."""
        return {"errors": [f"{k}: {m}" for k, m in self.errors], "raw": self.raw}


def generate_validated(
    backend: GenerationBackend,
    conversations: Sequence[Conversation],
    params: GenerationParams,
    model: type[T],
    *,
    check: Callable[[int, T], T] | None = None,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
) -> list[ValidatedReply[T]]:
    """Ask every conversation for a ``model`` answer in one batched call, then re-ask the failures (one
    batched call per attempt) until all are valid or ``max_attempts`` is reached.

    Args:
        check: Optional extra validation ``check(index, value) -> value``: may return a cleaned value or
            raise :class:`InvalidReply` (with its own ``kind``), which counts as a failed attempt.

    Returns:
        One :class:`ValidatedReply` per conversation, in order.
    """
    if params.n != 1:
        raise ValueError("generate_validated asks one completion per conversation (params.n must be 1)")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    params = replace(params, json_schema=json_schema_for(model))
    results: list[ValidatedReply[T]] = [ValidatedReply() for _ in conversations]
    pending = list(range(len(conversations)))
    for attempt in range(max_attempts):
        if not pending:
            break
        texts = backend.generate([conversations[i] for i in pending], attempt_params(params, attempt,
                                                                                     retry_temperature))
        failed = []
        for i, text in zip(pending, texts):
            results[i].raw.append(text)
            try:
                value = parse_reply(text, model)
                if check is not None:
                    value = check(i, value)
            except InvalidReply as err:
                results[i].errors.append((err.kind, str(err)))
                failed.append(i)
                continue
            results[i].value = value
        pending = failed
    return results


# ----------------------------------------------------------------------------------------------------------
# Ids, provenance, rejections, results
# ----------------------------------------------------------------------------------------------------------


def stable_id(*parts: Any) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``parts``: the same inputs give the same id."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def params_provenance(params: GenerationParams) -> dict[str, Any]:
    """Sampling params as recorded in provenance and ids (without the JSON schema)."""
    out = params.to_dict()
    out.pop("json_schema", None)
    out["stop"] = list(out["stop"])
    return out


def to_dataset(rows: Sequence[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    """Rows as a ``Dataset`` with ``features``, columns in the features' order (also when empty)."""
    if not rows:  # from_list([]) would give a table without columns
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.Dataset.from_list([{k: row[k] for k in features} for row in rows], features=features)


def count_by(values: Any) -> dict[str, int]:
    """``{str(value): count}``, numbers in numeric order (``"2"`` before ``"10"``), then text."""
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (not kv[0].isdigit(), len(kv[0]) if kv[0].isdigit() else 0,
                                                      kv[0])))


def make_rejection(record_id: str, stage: str, reason: str, culture: str, detail: Any) -> dict[str, str]:
    """A rejections-table row (:data:`REJECTION_FEATURES`); ``detail`` is stored as JSON text."""
    return {"id": record_id, "stage": stage, "reason": reason, "culture": culture,
            "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)}


@dataclass
class StageResult:
    """Output of a pipeline stage.

    Attributes:
        dataset: The records that went through (features of the stage's output table).
        rejections: The records dropped, with stage and reason (:data:`REJECTION_FEATURES`).
        stats: Counts of the stage (JSON-serialisable).
    """

    dataset: datasets.Dataset
    rejections: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Table features
# ----------------------------------------------------------------------------------------------------------

_S = datasets.Value("string")
_I = datasets.Value("int32")

PERSON_FEATURES = {"name": _S, "occupation": _S, "background": _S, "goal": _S, "secrets": _S}

SEED_FEATURES = datasets.Features({
    "id": _S, "social_goal": _S, "setting": _S, "relationship": _S,
    "person1": PERSON_FEATURES, "person2": PERSON_FEATURES,
})
"""Seed scenarios, as read from the seed file."""

SCENARIO_FEATURES = datasets.Features({
    "id": _S, "seed_id": _S, "culture": _S, "social_goal": _S, "setting": _S, "relationship": _S,
    "person1": PERSON_FEATURES, "person2": PERSON_FEATURES, "provenance": _S,
})
"""Scenarios adapted to a culture. ``provenance`` is JSON text (teacher model, params, prompt version)."""

TURN_FEATURES = {"participant": _I, "speaker": _S, "action": _S, "text": _S, "intent": _S}
"""A turn: ``participant`` 1 or 2, ``speaker`` (name), ``action``, ``text``, ``intent`` (None until annotated)."""

_VERDICT = {"verdict": _S, "confidence": _S, "rationale": _S}
JUDGE_FEATURES = {"quality": _VERDICT, "alignment": _VERDICT,
                  "meta": {"verdict": _S, "confidence": _S, "critique": _S}}

DIALOGUE_FEATURES = datasets.Features({
    "id": _S, "scenario_id": _S, "seed_id": _S, "culture": _S, "social_goal": _S, "setting": _S,
    "relationship": _S, "person1": PERSON_FEATURES, "person2": PERSON_FEATURES,
    "turns": datasets.List(TURN_FEATURES), "num_turns": _I, "end_reason": _S, "end_detail": _S,
    "counts": {"malformed": _I, "impersonation": _I, "retries": _I},
    "judge": JUDGE_FEATURES, "provenance": _S,
})
"""Dialogues. ``end_reason``: ``leave`` | ``max_turns`` | ``malformed`` | ``impersonation``; ``end_detail``:
the error of the failed turn (empty otherwise); ``counts``: failed turn attempts (malformed), impersonations
detected (cleaned or failed), retries; ``judge`` is None until judged; ``provenance`` JSON text."""

REJECTION_FEATURES = datasets.Features({"id": _S, "stage": _S, "reason": _S, "culture": _S, "detail": _S})
"""Everything dropped, from every stage: the dropped record's ``id``, ``stage`` (``scenarios`` |
``roleplay`` | ``judge`` | ``intents``), a short ``reason``, ``culture``, ``detail`` (JSON text: errors, raw
answers, verdicts)."""

TRAIN_FEATURES = datasets.Features({
    "messages": datasets.List({"role": _S, "content": _S}), "task": _S, "culture": _S, "id": _S,
    "dialogue_id": _S, "provenance": _S,
})
"""Training conversations: ``task`` is ``dialogue`` or ``intent``; ``provenance`` JSON text."""
