"""What every recipe stage shares: validated LLM answers with bounded retries, stable ids, tables and results.

LLM answers are JSON. A stage asks with ``params.json_schema`` set to the answer model's schema (backends that
can constrain decoding do), then validates the text here: the first JSON object in the text is taken (code
fences and chatter around it are tolerated), and its content must satisfy the pydantic model. An invalid answer
is asked again, up to ``max_attempts`` times in all, each time with ``seed + attempt``; a greedy stage
(temperature 0) retries at ``retry_temperature``, since a new seed alone would give the same greedy text again.
Used by the CLCA, CultureSPA and CultureLLM recipes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import datasets
from pydantic import BaseModel, ValidationError

from ..backends.base import Conversation, GenerationBackend, GenerationParams
from .provenance import params_provenance  # re-exported: the stages record it

__all__ = [
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
    "config_to_dict",
    "split_commas",
    "to_dataset",
]


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

    def add_attempt(self, text: str, model: type[T], check: Callable[[T], T] | None = None) -> bool:
        """Record one attempt's answer: parse it as ``model``, apply ``check`` (which may clean the value or
        raise :class:`InvalidReply`), and keep the value or the error. Returns True when the answer is valid."""
        self.raw.append(text)
        try:
            value = parse_reply(text, model)
            if check is not None:
                value = check(value)
        except InvalidReply as err:
            self.errors.append((err.kind, str(err)))
            return False
        self.value = value
        return True

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
            if not results[i].add_attempt(text, model, None if check is None else (lambda v, i=i: check(i, v))):
                failed.append(i)
        pending = failed
    return results


# ----------------------------------------------------------------------------------------------------------
# Ids, provenance, rejections, results
# ----------------------------------------------------------------------------------------------------------


def stable_id(*parts: Any) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``parts``: the same inputs give the same id."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def config_to_dict(config: Any) -> dict[str, Any]:
    """A pipeline config dataclass as a JSON-serialisable dict, field by field (the ``config`` of ``stats.json``).

    :class:`GenerationParams` become :func:`params_provenance` dicts (no JSON schema), other dataclasses (a drop
    rule, ...) ``dataclasses.asdict`` dicts, tuples lists; other values are kept as they are.
    """
    return {f.name: _plain_value(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain_value(value: Any) -> Any:
    if isinstance(value, GenerationParams):
        return params_provenance(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def split_commas(value: Any) -> Any:
    """A comma-separated string (from a CLI flag or a YAML scalar), or a list of such strings (``--cultures GBR,CHN
    JPN``), as a tuple of the stripped, non-empty parts: ``"GBR, CHN"`` -> ``("GBR", "CHN")``. Any other value is
    returned as it is; in a list, items that are not strings (a prompt template) are kept as they are."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, str) for v in value):
        return tuple(part for v in value for part in (split_commas(v) if isinstance(v, str) else (v,)))
    return value


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
    """A rejections-table row (the recipe's ``REJECTION_FEATURES``); ``detail`` is stored as JSON text."""
    return {"id": record_id, "stage": stage, "reason": reason, "culture": culture,
            "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)}


@dataclass
class StageResult:
    """Output of a pipeline stage.

    Attributes:
        dataset: The records that went through (features of the stage's output table).
        rejections: The records dropped, with stage and reason (the recipe's ``REJECTION_FEATURES``).
        stats: Counts of the stage (JSON-serialisable).
    """

    dataset: datasets.Dataset
    rejections: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)
