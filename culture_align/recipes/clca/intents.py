"""Stage 4: intent annotation. For every turn of every dialogue, an annotator prompted as an expert in the
culture states the speaker's intent in one short sentence, from the culture's social expectations.

The annotator sees the setting, the relationship, both participants' names, occupations and backgrounds (not
their goals or secrets) and the dialogue up to the annotated turn. Its answer is JSON ``{"intent": str}``
(:class:`IntentAnnotation`). All turns of all dialogues go in one batched call (plus one per retry round).

A dialogue with a turn whose intent stays invalid keeps its turns (intent None there) and is reported in the
rejections (stage ``"intents"``, reason ``intent_invalid``): it still yields dialogue training
conversations, but no intent conversation.
"""

from __future__ import annotations

import datasets
from tqdm.auto import tqdm

from ...backends.base import GenerationBackend, GenerationParams
from ...culture_profiles import CultureProfile, get_culture_profile
from ...prompts.clca import PROMPT_VERSION, build_intent_conversation
from ..provenance import as_provenance
from .schemas import (
    REJECTION_FEATURES,
    IntentAnnotation,
    StageResult,
    dialogue_features,
    generate_validated,
    make_rejection,
    params_provenance,
    to_dataset,
)

__all__ = ["DEFAULT_INTENT_PARAMS", "annotate_intents"]

DEFAULT_INTENT_PARAMS = GenerationParams(temperature=0.0, max_new_tokens=96)
"""Greedy annotation, one short sentence."""


def annotate_intents(
    dialogues: datasets.Dataset,
    backend: GenerationBackend,
    params: GenerationParams = DEFAULT_INTENT_PARAMS,
    *,
    profiles: dict[str, CultureProfile] | None = None,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Annotate the intent of every turn.

    Args:
        dialogues: Judged dialogues (``dialogue_features(judged=True, annotated=False)``).
        backend: The annotator.
        params: Sampling params (default :data:`DEFAULT_INTENT_PARAMS`).

    Returns:
        :class:`StageResult`: every dialogue, with ``turns[k]["intent"]`` filled in (None where the
        annotation failed); rejections with stage ``"intents"`` for dialogues with a failed turn; ``stats``.
    """
    rows = dialogues.to_list()
    culture_profiles = {iso3: get_culture_profile(iso3, profiles) for iso3 in {r["culture"] for r in rows}}
    jobs = [(d, k) for d, row in enumerate(rows) for k in range(len(row["turns"]))]
    conversations = [build_intent_conversation(rows[d], culture_profiles[rows[d]["culture"]], k) for d, k in jobs]
    with tqdm(total=len(jobs), desc="CLCA intents", unit="turn", disable=not show_progress) as bar:
        replies = generate_validated(backend, conversations, params, IntentAnnotation, max_attempts=max_attempts,
                                     retry_temperature=retry_temperature)
        bar.update(len(jobs))
    failures: dict[int, list] = {}
    for (d, k), reply in zip(jobs, replies):
        if reply.ok:
            rows[d]["turns"][k]["intent"] = reply.value.intent
        else:
            failures.setdefault(d, []).append({"turn": k + 1, **reply.failure()})
    base = params_provenance(params)
    rejected = []
    for d, row in enumerate(rows):
        for turn in row["turns"]:
            turn.setdefault("intent", None)  # its annotation failed (the dialogue is rejected below)
        row["provenance"] = {**(as_provenance(row.get("provenance"), f"dialogue {row['id']}") or {}),
                             "intents": {"model": backend.model_id, "params": base, "prompt_version": prompt_version}}
        if d in failures:
            rejected.append(make_rejection(row["id"], "intents", "intent_invalid", row["culture"],
                                           {"failed_turns": failures[d]}))
    stats = {"turns": len(jobs), "annotated": sum(r.ok for r in replies), "failed": sum(not r.ok for r in replies),
             "dialogues_with_failures": len(failures), "attempts": sum(r.attempts for r in replies),
             "invalid_attempts": sum(len(r.errors) for r in replies)}
    return StageResult(to_dataset(rows, dialogue_features(judged=True, annotated=True)),
                       to_dataset(rejected, REJECTION_FEATURES), stats)
