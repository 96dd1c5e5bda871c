"""Stage 3: the judge. Three verdicts per dialogue, then the drop rule.

- quality: good / bad + confidence (repetitive dialogues are bad) - :class:`QualityVerdict`;
- culture alignment: aligned / not aligned + confidence - :class:`AlignmentVerdict`;
- meta-critique of those two verdicts: good / bad + confidence + a short critique - :class:`MetaVerdict`.

Three batched calls over all dialogues (quality, alignment, then meta, which sees the first two), plus one
per retry round. A dialogue whose verdicts stay invalid is rejected (reason ``judge_invalid``); a judged
dialogue is dropped when the drop rule says so (default :class:`DropRule`: the reference's rule, quality bad
with "very confident" or meta bad with "very confident").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
from tqdm.auto import tqdm

from ...backends.base import GenerationBackend, GenerationParams
from ...culture_profiles import CultureProfile, get_culture_profile
from ...prompts.clca import (
    PROMPT_VERSION,
    build_alignment_conversation,
    build_meta_conversation,
    build_quality_conversation,
)
from ..provenance import as_provenance
from .schemas import (
    REJECTION_FEATURES,
    AlignmentVerdict,
    MetaVerdict,
    QualityVerdict,
    StageResult,
    dialogue_features,
    generate_validated,
    make_rejection,
    params_provenance,
    to_dataset,
)

__all__ = ["DEFAULT_JUDGE_PARAMS", "DropRule", "DropRuleLike", "judge_dialogues"]

DEFAULT_JUDGE_PARAMS = GenerationParams(temperature=0.0, max_new_tokens=200)
"""The reference's judge settings: greedy, 200 new tokens per verdict."""


@dataclass(frozen=True)
class DropRule:
    """Which judged dialogues to drop. Each field lists the confidences at which that negative verdict drops
    the dialogue; the default is the reference's rule.

    Attributes:
        quality_bad: Drop when quality is ``bad`` at one of these confidences (default ``("very confident",)``).
        meta_bad: Drop when the meta-critique is ``bad`` at one of these (default ``("very confident",)``).
        not_aligned: Drop when alignment is ``not aligned`` at one of these (default none: the reference
            keeps them).
    """

    quality_bad: tuple[str, ...] = ("very confident",)
    meta_bad: tuple[str, ...] = ("very confident",)
    not_aligned: tuple[str, ...] = ()

    def __call__(self, dialogue: Mapping[str, Any]) -> str | None:
        """The drop reason for a judged dialogue record (``quality_bad``, ``meta_bad``, ``not_aligned``), or
        None to keep it."""
        judge = dialogue["judge"]
        if judge["quality"]["verdict"] == "bad" and judge["quality"]["confidence"] in self.quality_bad:
            return "quality_bad"
        if judge["meta"]["verdict"] == "bad" and judge["meta"]["confidence"] in self.meta_bad:
            return "meta_bad"
        if judge["alignment"]["verdict"] == "not aligned" and judge["alignment"]["confidence"] in self.not_aligned:
            return "not_aligned"
        return None


DropRuleLike = DropRule | Callable[[Mapping[str, Any]], str | bool | None]
"""A :class:`DropRule` or any callable taking a judged dialogue record and returning a reason (str) or
True to drop it, None/False to keep it."""


def judge_dialogues(
    dialogues: datasets.Dataset,
    backend: GenerationBackend,
    params: GenerationParams = DEFAULT_JUDGE_PARAMS,
    *,
    drop_rule: DropRuleLike | None = None,
    profiles: dict[str, CultureProfile] | None = None,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Judge every dialogue and apply the drop rule.

    Args:
        dialogues: Role-played dialogues (``dialogue_features(judged=False, annotated=False)``).
        backend: The judge.
        params: Sampling params (default :data:`DEFAULT_JUDGE_PARAMS`); greedy retries sample at
            ``retry_temperature``.
        drop_rule: Default ``DropRule()`` (the reference's).

    Returns:
        :class:`StageResult`: the kept dialogues with ``judge`` filled in (``{"quality": {verdict,
        confidence, rationale}, "alignment": {...}, "meta": {verdict, confidence, critique}}``), rejections
        with stage ``"judge"`` (reasons ``judge_invalid`` and the drop rule's), ``stats``.
    """
    drop_rule = DropRule() if drop_rule is None else drop_rule
    rows = dialogues.to_list()
    culture_profiles = {iso3: get_culture_profile(iso3, profiles) for iso3 in {r["culture"] for r in rows}}
    ask = dict(max_attempts=max_attempts, retry_temperature=retry_temperature)
    with tqdm(total=3, desc="CLCA judge", unit="verdict", disable=not show_progress) as bar:
        quality = generate_validated(
            backend, [build_quality_conversation(r, culture_profiles[r["culture"]]) for r in rows], params,
            QualityVerdict, **ask)
        bar.update(1)
        alignment = generate_validated(
            backend, [build_alignment_conversation(r, culture_profiles[r["culture"]]) for r in rows], params,
            AlignmentVerdict, **ask)
        bar.update(1)
        both = [i for i in range(len(rows)) if quality[i].ok and alignment[i].ok]
        metas = generate_validated(
            backend, [build_meta_conversation(rows[i], culture_profiles[rows[i]["culture"]],
                                              quality[i].value.model_dump(), alignment[i].value.model_dump())
                      for i in both], params, MetaVerdict, **ask)
        bar.update(1)
    meta_of = dict(zip(both, metas))

    base = params_provenance(params)
    kept, rejected, verdicts = [], [], {"quality": {}, "alignment": {}, "meta": {}}
    for i, row in enumerate(rows):
        meta = meta_of.get(i)
        if meta is None or not meta.ok:
            failures = {name: reply.failure() for name, reply in
                        (("quality", quality[i]), ("alignment", alignment[i]), ("meta", meta)) if reply and not reply.ok}
            rejected.append(make_rejection(row["id"], "judge", "judge_invalid", row["culture"], failures))
            continue
        judge = {"quality": quality[i].value.model_dump(), "alignment": alignment[i].value.model_dump(),
                 "meta": meta.value.model_dump()}
        for name, verdict in judge.items():
            key = f"{verdict['verdict']} ({verdict['confidence']})"
            verdicts[name][key] = verdicts[name].get(key, 0) + 1
        provenance = {**(as_provenance(row.get("provenance"), f"dialogue {row['id']}") or {}),
                      "judge": {"model": backend.model_id, "params": base, "prompt_version": prompt_version,
                                "drop_rule": repr(drop_rule)}}
        record = {**row, "judge": judge, "provenance": provenance}
        reason = drop_rule(record)
        if reason:
            reason = reason if isinstance(reason, str) else "dropped_by_rule"
            rejected.append(make_rejection(row["id"], "judge", reason, row["culture"],
                                           {"judge": judge, "turns": row["turns"]}))
        else:
            kept.append(record)
    stats = {"judged": len(rows), "kept": len(kept), "rejected": len(rejected),
             "invalid": sum(r["reason"] == "judge_invalid" for r in rejected),
             "attempts": sum(r.attempts for r in (*quality, *alignment, *metas)),
             "invalid_attempts": sum(len(r.errors) for r in (*quality, *alignment, *metas)),
             "verdicts": verdicts}
    return StageResult(to_dataset(kept, dialogue_features(judged=True, annotated=False)),
                       to_dataset(rejected, REJECTION_FEATURES), stats)
