"""Stage 2: role-play. Two agents act out each adapted scenario, alternating turns (participant 1 first).

Many dialogues advance together, and no dialogue waits for another. When one backend plays both participants
(the usual case), the whole stage is one :meth:`~culture_align.backends.GenerationBackend.generate_continuous`
run: each finished turn asks for the next one (or for a retry), and a continuously batching backend
(:class:`~culture_align.backends.TransformersBackend`) starts it at once, in the batch that is running, so a
dialogue with short replies never waits for the longest reply of a round. With two backends (or
``continuous=False``), the stage runs in waves: every request known at that moment, one batched call per
backend and params (:func:`~culture_align.backends.base.generate_in_waves`). One-dialogue-at-a-time
role-play, as in the reference, makes ``dialogues x turns`` calls instead.

Each agent's system prompt holds the scenario, its own profile, goal and secret, the other participant's
public profile (name, occupation, background: never their goal or secret) and the culture's profile; the
user turn holds the history and the turn number. The answer is JSON ``{"action", "output"}``
(:class:`TurnReply`).

A dialogue ends when an agent leaves, at ``max_turns``, or when a turn stays invalid after ``max_attempts``
(each retry with ``seed + attempt``): end reason ``malformed`` (not JSON / not the schema) or
``impersonation``. Every request is seeded from itself, so the dialogues are the same whatever the
scheduling (continuous, waves, one dialogue at a time), up to float rounding of differently shaped batches.

Impersonation (an agent writing the other participant's lines) is handled thus, and counted each time:

- a line (or a sentence) starting with the other's name and a colon (``"Emma: ..."``, ``"**Emma**:"``,
  ``"Emma (smiling): ..."``) cuts the reply there: the turn keeps only what the agent said as itself;
- a reply that starts as the other participant (nothing left once cut) is an invalid attempt of kind
  ``impersonation``: it is retried like a malformed one, and ends the dialogue when no attempt is left.

A leading ``"<own name>:"`` is stripped silently (not an impersonation).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import datasets
from tqdm.auto import tqdm

from ...backends.base import GenerationBackend, GenerationParams, GenerationRequest, generate_in_waves
from ...culture_profiles import CultureProfile, get_culture_profile
from ...prompts.clca import PROMPT_VERSION, build_roleplay_conversation
from ..provenance import as_provenance
from .schemas import (
    REJECTION_FEATURES,
    InvalidReply,
    StageResult,
    TurnReply,
    ValidatedReply,
    attempt_params,
    count_by,
    dialogue_features,
    json_schema_for,
    make_rejection,
    params_provenance,
    stable_id,
    to_dataset,
)

__all__ = ["DEFAULT_ROLEPLAY_PARAMS", "run_roleplay", "strip_impersonation", "name_variants"]

DEFAULT_ROLEPLAY_PARAMS = GenerationParams(temperature=0.7, top_p=0.7, max_new_tokens=500)
"""The reference's role-play sampling: top_p 0.7, up to 500 new tokens (temperature 0.7)."""

_TITLES = {"dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "prof", "prof.", "professor", "sir",
           "madam", "mx", "mx."}


def name_variants(name: str) -> list[str]:
    """Ways a participant may be addressed in a speaker label: the full name, the name without a title,
    the first name, title + last name (``"Dr. Helen Cooper"`` -> ``Dr. Helen Cooper``, ``Helen Cooper``,
    ``Helen``, ``Dr. Cooper``), longest first."""
    words = name.split()
    core = [w for w in words if w.lower() not in _TITLES] or words
    titles = [w for w in words if w.lower() in _TITLES]
    variants = {name.strip(), " ".join(core), core[0]}
    if titles and len(core) > 1:
        variants.add(f"{titles[0]} {core[-1]}")
    return sorted((v for v in variants if v), key=len, reverse=True)


def _label_pattern(name: str) -> str:
    """A speaker label: optional markup, the name, an optional parenthesis, a colon."""
    names = "|".join(re.escape(v) for v in name_variants(name))
    return rf"[\s*_\"'\[]*(?:{names})[*_\"'\]]*\s*(?:\([^)\n]*\))?\s*[*_]*:"


def strip_impersonation(text: str, own_name: str, other_name: str) -> tuple[str, bool]:
    """Clean one reply. Returns ``(kept text, impersonated)``: the text before the first line or sentence
    written as ``other_name``, with a leading ``"<own_name>:"`` label removed."""
    text = re.sub(rf"^{_label_pattern(own_name)}", "", text.strip(), flags=re.IGNORECASE).strip()
    other = _label_pattern(other_name)
    # A line starting with the other's label, or a sentence ending right before it.
    match = re.search(rf"(?:^|\n|(?<=[.!?\"')*]))\s*{other}", text, flags=re.IGNORECASE)
    if match is None:
        return text, False
    return text[: match.start()].strip(), True


@dataclass
class _Dialogue:
    scenario: dict[str, Any]
    profile: CultureProfile
    turns: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"malformed": 0, "impersonation": 0, "retries": 0})
    end_reason: str | None = None
    end_detail: str = ""
    reply: ValidatedReply = field(default_factory=ValidatedReply)
    """The attempts at the turn in progress."""

    @property
    def participant(self) -> int:
        """Who speaks next: 1 on odd turns, 2 on even ones."""
        return 1 if len(self.turns) % 2 == 0 else 2


def run_roleplay(
    scenarios: datasets.Dataset,
    agent1: GenerationBackend,
    agent2: GenerationBackend | None = None,
    params: GenerationParams = DEFAULT_ROLEPLAY_PARAMS,
    *,
    max_turns: int = 10,
    min_turns: int = 2,
    profiles: dict[str, CultureProfile] | None = None,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
    continuous: bool = True,
) -> StageResult:
    """Role-play every scenario, all dialogues advancing together.

    Args:
        scenarios: Adapted scenarios (:data:`SCENARIO_FEATURES`; ``provenance`` may be absent).
        agent1: Backend playing participant 1 (who speaks first).
        agent2: Backend playing participant 2 (default: ``agent1``).
        params: Sampling params (default :data:`DEFAULT_ROLEPLAY_PARAMS`); the JSON schema is set here.
        max_turns: Turns at most per dialogue (default 10).
        min_turns: Dialogues with fewer turns are rejected (reason ``too_short``; default 2, so both
            participants have spoken and both training perspectives exist).
        max_attempts: Attempts per turn before the dialogue ends as ``malformed``/``impersonation``.
        continuous: When one backend plays both participants and it batches continuously
            (``backend.continuous_batching``), hand the whole stage to its ``generate_continuous`` (default
            True); otherwise, or with False, waves of batched calls.

    Returns:
        :class:`StageResult`: ``dataset`` with ``dialogue_features(judged=False, annotated=False)``,
        in scenario order; ``rejections`` with stage ``"roleplay"``; ``stats`` (``scheduling`` is
        ``"continuous"`` or ``"waves"``; ``backend_calls`` counts the batched calls of the waves).
    """
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    agent2 = agent2 or agent1
    rows = scenarios.to_list()
    culture_profiles = {iso3: get_culture_profile(iso3, profiles) for iso3 in {r["culture"] for r in rows}}
    dialogues = [_Dialogue(row, culture_profiles[row["culture"]]) for row in rows]
    turn_params = replace(params, json_schema=json_schema_for(TurnReply))
    attempts = 0

    def next_request(d: _Dialogue) -> GenerationRequest:
        conversation = build_roleplay_conversation(d.scenario, d.participant, d.profile, d.turns, max_turns)
        return GenerationRequest(conversation, attempt_params(turn_params, d.reply.attempts, retry_temperature), d)

    with tqdm(total=len(dialogues), desc="CLCA role-play", unit="dialogue", disable=not show_progress) as bar:
        def on_completion(request: GenerationRequest, text: str) -> list[GenerationRequest]:
            nonlocal attempts
            d: _Dialogue = request.tag
            participant = d.participant
            if not d.reply.add_attempt(text, TurnReply, lambda v: _check_turn(d, participant, v)) \
                    and d.reply.attempts < max_attempts:
                return [next_request(d)]  # retry the turn
            attempts += d.reply.attempts
            _advance(d, participant, d.reply)
            d.reply = ValidatedReply()
            if d.end_reason is None and len(d.turns) >= max_turns:
                d.end_reason = "max_turns"
            if d.end_reason is not None:
                bar.update(1)
                bar.set_postfix(turns=sum(len(x.turns) for x in dialogues))
                return []
            return [next_request(d)]

        first = [next_request(d) for d in dialogues]
        if continuous and agent1 is agent2 and agent1.continuous_batching:
            scheduling, calls = "continuous", 1
            agent1.generate_continuous(first, on_completion)
        else:
            scheduling = "waves"
            calls = generate_in_waves(first, on_completion,
                                      lambda r: agent1 if r.tag.participant == 1 else agent2)

    base = params_provenance(params)
    models = [agent1.model_id, agent2.model_id]
    kept, rejected = [], []
    for d in dialogues:
        s = d.scenario
        dialogue_id = stable_id("clca-dialogue", s["id"], models, base, max_turns, max_attempts, retry_temperature,
                                prompt_version)
        provenance = {"scenario": as_provenance(s.get("provenance"), f"scenario {s['id']}"),
                      "roleplay": {"agents": models, "params": base, "max_turns": max_turns,
                                   "prompt_version": prompt_version}}
        record = {
            "id": dialogue_id, "scenario_id": s["id"], "seed_id": s.get("seed_id") or s["id"],
            "culture": s["culture"], "social_goal": s.get("social_goal") or "", "setting": s["setting"],
            "relationship": s["relationship"], "person1": s["person1"], "person2": s["person2"],
            "turns": d.turns, "num_turns": len(d.turns), "end_reason": d.end_reason, "end_detail": d.end_detail,
            "counts": d.counts, "provenance": provenance,
        }
        if len(d.turns) < min_turns:
            rejected.append(make_rejection(dialogue_id, "roleplay", "too_short", s["culture"], {
                "num_turns": len(d.turns), "min_turns": min_turns, "end_reason": d.end_reason,
                "end_detail": d.end_detail, "turns": d.turns}))
        else:
            kept.append(record)
    stats = {
        "dialogues": len(dialogues), "kept": len(kept), "rejected_too_short": len(rejected),
        "scheduling": scheduling, "backend_calls": calls, "attempts": attempts,
        "invalid_attempts": attempts - sum(len(d.turns) for d in dialogues),
        "end_reasons": count_by(d.end_reason for d in dialogues),
        "turns_histogram": count_by(len(d.turns) for d in dialogues),
        "malformed_attempts": sum(d.counts["malformed"] for d in dialogues),
        "impersonations": sum(d.counts["impersonation"] for d in dialogues),
        "retries": sum(d.counts["retries"] for d in dialogues),
    }
    return StageResult(to_dataset(kept, dialogue_features(judged=False, annotated=False)),
                       to_dataset(rejected, REJECTION_FEATURES), stats)


def _check_turn(d: _Dialogue, participant: int, reply: TurnReply) -> TurnReply:
    """Cut what the agent wrote as the other participant (counted); raise :class:`InvalidReply` when nothing
    of its own is left."""
    me, other = d.scenario[f"person{participant}"], d.scenario[f"person{3 - participant}"]
    if reply.action == "none":
        return reply
    kept, impersonated = strip_impersonation(reply.output, me["name"], other["name"])
    if impersonated:
        d.counts["impersonation"] += 1
    if not kept and reply.action in ("speak", "non-verbal"):
        reason = f"the reply is written as {other['name']}" if impersonated else "empty output once cleaned"
        raise InvalidReply(reason, kind="impersonation" if impersonated else "malformed")
    return reply.model_copy(update={"output": kept})


def _advance(d: _Dialogue, participant: int, reply) -> None:
    d.counts["malformed"] += sum(kind == "malformed" for kind, _ in reply.errors)
    d.counts["retries"] += reply.attempts - 1
    if not reply.ok:
        kind, message = reply.errors[-1]
        d.end_reason = "impersonation" if kind == "impersonation" else "malformed"
        d.end_detail = json.dumps({"turn": len(d.turns) + 1, "error": message, "raw": reply.raw[-1][:2000]},
                                  ensure_ascii=False)
        return
    speaker = d.scenario[f"person{participant}"]["name"]
    d.turns.append({"participant": participant, "speaker": speaker, "action": reply.value.action,
                    "text": reply.value.output})
    if reply.value.action == "leave":
        d.end_reason = "leave"

