"""Stage 5: training conversations from the judged, annotated dialogues.

Per dialogue (``task="dialogue"``), two conversations:

- the model plays participant 1: system = participant 1's persona (scenario, own profile, goal and secret,
  the other's public profile, the culture's profile); a short user opening (participant 1 speaks first);
  participant 1's turns are assistant turns, participant 2's are user turns;
- the model plays participant 2: system = participant 2's persona; participant 1's turns are user turns.

The system persona is always that of the participant being trained (the reference used the other's).
Trailing user turns (after the trained participant's last turn) are dropped; a perspective with no
assistant turn is skipped. Actions are rendered as chat text (words as they are, actions between asterisks).

Per dialogue whose every turn has an intent (``task="intent"``), one conversation: system = the annotator's
culture-expert prompt (backgrounds and occupations, no goals), then for each turn a user message with the turn
and an assistant message ``"Intent: ..."``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets

from ...culture_profiles import CultureProfile, get_culture_profile
from ...prompts.clca import (
    PROMPT_VERSION,
    build_intent_system,
    build_training_persona,
    render_intent_answer,
    render_intent_question,
    render_turn_for_training,
    training_opening,
)
from ..provenance import as_provenance, provenance_text
from .schemas import TRAIN_FEATURES, stable_id, to_dataset

__all__ = ["dialogue_conversation", "intent_conversation", "build_training_set"]


def dialogue_conversation(dialogue: Mapping[str, Any], participant: int,
                          profile: CultureProfile) -> list[dict[str, str]] | None:
    """The dialogue from ``participant``'s side (1 or 2), or None when that participant never acts."""
    messages = [{"role": "system", "content": build_training_persona(dialogue, participant, profile)}]
    turns = dialogue["turns"]
    if turns and turns[0]["participant"] == participant:
        messages.append({"role": "user", "content": training_opening(dialogue, participant)})
    for turn in turns:
        role = "assistant" if turn["participant"] == participant else "user"
        content = render_turn_for_training(turn)
        if messages[-1]["role"] == role:  # never happens with strict alternation; kept safe for custom data
            messages[-1]["content"] += "\n" + content
        else:
            messages.append({"role": role, "content": content})
    while messages[-1]["role"] == "user":
        messages.pop()
    return messages if messages[-1]["role"] == "assistant" else None


def intent_conversation(dialogue: Mapping[str, Any], profile: CultureProfile) -> list[dict[str, str]] | None:
    """The intent conversation of a dialogue, or None when a turn lacks its intent."""
    turns = dialogue["turns"]
    if not turns or any(not t.get("intent") for t in turns):
        return None
    messages = [{"role": "system", "content": build_intent_system(dialogue, profile)}]
    for k, turn in enumerate(turns, start=1):
        messages.append({"role": "user", "content": render_intent_question(turn, k)})
        messages.append({"role": "assistant", "content": render_intent_answer(turn["intent"])})
    return messages


def _summary(provenance: dict[str, Any] | None, prompt_version: str) -> dict[str, Any]:
    """Provenance of a training row (:data:`TRAIN_PROVENANCE` but ``participant``): the models of every stage, the
    seed and the prompt version."""
    p = provenance or {}
    scenario, roleplay = p.get("scenario") or {}, p.get("roleplay") or {}
    return {
        "models": {"teacher": scenario.get("teacher"), "agents": roleplay.get("agents"),
                   "judge": (p.get("judge") or {}).get("model"), "annotator": (p.get("intents") or {}).get("model")},
        "seed": (roleplay.get("params") or {}).get("seed"),
        "prompt_version": prompt_version,
    }


def build_training_set(
    dialogues: datasets.Dataset,
    *,
    profiles: dict[str, CultureProfile] | None = None,
    include_intents: bool = True,
    prompt_version: str = PROMPT_VERSION,
) -> datasets.Dataset:
    """Training conversations (:data:`TRAIN_FEATURES`): per dialogue, participant 1's and participant 2's
    ``dialogue`` conversations, then its ``intent`` conversation (when ``include_intents`` and every turn has
    an intent). ``id`` = hash of (dialogue id, its provenance (every stage's models and params), task,
    perspective, prompt version)."""
    rows = []
    for dialogue in dialogues:
        profile = get_culture_profile(dialogue["culture"], profiles)
        dialogue_provenance = as_provenance(dialogue.get("provenance"), f"dialogue {dialogue['id']}")
        provenance = _summary(dialogue_provenance, prompt_version)
        items: list[tuple[str, int, list[dict[str, str]] | None]] = [
            ("dialogue", p, dialogue_conversation(dialogue, p, profile)) for p in (1, 2)]
        if include_intents:
            items.append(("intent", 0, intent_conversation(dialogue, profile)))
        for task, participant, messages in items:
            if messages is None:
                continue
            rows.append({
                "messages": messages, "task": task, "culture": dialogue["culture"],
                "id": stable_id("clca-train", dialogue["id"], provenance_text(dialogue_provenance), task,
                                participant, prompt_version),
                "dialogue_id": dialogue["id"],
                "provenance": {**provenance, "participant": participant or None},
            })
    return to_dataset(rows, TRAIN_FEATURES)
