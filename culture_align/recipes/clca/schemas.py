"""Schemas of the CLCA pipeline: pydantic models for every LLM answer and ``datasets`` features for every table.

Each stage asks with ``params.json_schema`` set to its answer model's schema and validates the reply with
:func:`~culture_align.recipes.stages.generate_validated` (bounded retries); the generic helpers (parsing,
stable ids, ``StageResult``) live in :mod:`culture_align.recipes.stages` and are re-exported here.
"""

from __future__ import annotations

from typing import Any, Literal

import datasets
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Parsing, validated generation, ids and stage results are shared by every recipe (re-exported here).
from ..provenance import PARAMS_FEATURES
from ..stages import (
    InvalidReply,
    StageResult,
    ValidatedReply,
    attempt_params,
    count_by,
    generate_validated,
    json_schema_for,
    make_rejection,
    params_provenance,
    parse_reply,
    stable_id,
    to_dataset,
)

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
    "dialogue_features",
    "SCENARIO_PROVENANCE",
    "ROLEPLAY_PROVENANCE",
    "JUDGE_PROVENANCE",
    "INTENTS_PROVENANCE",
    "TRAIN_PROVENANCE",
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

_I64 = datasets.Value("int64")

SCENARIO_PROVENANCE = {"stage": _S, "teacher": _S, "params": PARAMS_FEATURES, "prompt_version": _S,
                       "attempts": _I64}
"""How a scenario was adapted: ``stage`` (``"scenarios"``), the ``teacher`` model, its sampling ``params``, the
prompt version and the ``attempts`` the valid answer took."""

ROLEPLAY_PROVENANCE = {"agents": datasets.List(_S), "params": PARAMS_FEATURES, "max_turns": _I64,
                       "prompt_version": _S}
JUDGE_PROVENANCE = {"model": _S, "params": PARAMS_FEATURES, "prompt_version": _S, "drop_rule": _S}
INTENTS_PROVENANCE = {"model": _S, "params": PARAMS_FEATURES, "prompt_version": _S}

SCENARIO_FEATURES = datasets.Features({
    "id": _S, "seed_id": _S, "culture": _S, "social_goal": _S, "setting": _S, "relationship": _S,
    "person1": PERSON_FEATURES, "person2": PERSON_FEATURES, "provenance": SCENARIO_PROVENANCE,
})
"""Scenarios adapted to a culture; ``provenance``: :data:`SCENARIO_PROVENANCE`."""

TURN_FEATURES = {"participant": _I, "speaker": _S, "action": _S, "text": _S, "intent": _S}
"""A turn: ``participant`` 1 or 2, ``speaker`` (name), ``action``, ``text``, ``intent`` (the annotator's; the
field exists from the intents stage on, None where that turn's annotation failed or intents were not made)."""

_VERDICT = {"verdict": _S, "confidence": _S, "rationale": _S}
JUDGE_FEATURES = {"quality": _VERDICT, "alignment": _VERDICT,
                  "meta": {"verdict": _S, "confidence": _S, "critique": _S}}


def dialogue_features(*, judged: bool = True, annotated: bool = True) -> datasets.Features:
    """The dialogue table after the role-play stage, the judge (``judged``) and the intents (``annotated``):
    each stage adds its columns (``judge``), fields (a turn's ``intent``) and provenance key, so no stage leaves
    a placeholder for a later one to fill. ``provenance`` holds ``scenario`` (:data:`SCENARIO_PROVENANCE`, None
    for scenarios without one), ``roleplay`` and, once they ran, ``judge`` and ``intents``."""
    turn = {k: v for k, v in TURN_FEATURES.items() if annotated or k != "intent"}
    provenance = {"scenario": SCENARIO_PROVENANCE, "roleplay": ROLEPLAY_PROVENANCE,
                  **({"judge": JUDGE_PROVENANCE} if judged else {}),
                  **({"intents": INTENTS_PROVENANCE} if annotated else {})}
    return datasets.Features({
        "id": _S, "scenario_id": _S, "seed_id": _S, "culture": _S, "social_goal": _S, "setting": _S,
        "relationship": _S, "person1": PERSON_FEATURES, "person2": PERSON_FEATURES,
        "turns": datasets.List(turn), "num_turns": _I, "end_reason": _S, "end_detail": _S,
        "counts": {"malformed": _I, "impersonation": _I, "retries": _I},
        **({"judge": JUDGE_FEATURES} if judged else {}), "provenance": provenance,
    })


DIALOGUE_FEATURES = dialogue_features()
"""Dialogues as the corpus holds them (judged, with intents; see :func:`dialogue_features`). ``end_reason``:
``leave`` | ``max_turns`` | ``malformed`` | ``impersonation``; ``end_detail``: the error of the failed turn (empty
otherwise); ``counts``: failed turn attempts (malformed), impersonations detected (cleaned or failed), retries. A
run without intents saves its turns' ``intent`` and ``provenance.intents`` as None."""

REJECTION_FEATURES = datasets.Features({"id": _S, "stage": _S, "reason": _S, "culture": _S, "detail": _S})
"""Everything dropped, from every stage: the dropped record's ``id``, ``stage`` (``scenarios`` |
``roleplay`` | ``judge`` | ``intents``), a short ``reason``, ``culture``, ``detail`` (JSON text: errors, raw
answers, verdicts)."""

TRAIN_PROVENANCE = {"models": {"teacher": _S, "agents": datasets.List(_S), "judge": _S, "annotator": _S},
                    "seed": _I64, "prompt_version": _S, "participant": _I64}
"""A training conversation's provenance: the ``models`` of every stage, the role-play ``seed``, the prompt version
and the ``participant`` it plays (None for an intent conversation)."""

TRAIN_FEATURES = datasets.Features({
    "messages": datasets.List({"role": _S, "content": _S}), "task": _S, "culture": _S, "id": _S,
    "dialogue_id": _S, "provenance": TRAIN_PROVENANCE,
})
"""Training conversations: ``task`` is ``dialogue`` or ``intent``; ``provenance``: :data:`TRAIN_PROVENANCE`."""
