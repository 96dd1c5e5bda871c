"""CultureLLM semantic augmentation: structural rewrites, then lexical variants, filtered by meaning.

Three small stages over the seed table (:data:`~.seeds.SEED_FEATURES`), each returning a
:class:`StageResult` (kept rows, rejected rows, counts):

1. :func:`paraphrase_seeds`: the teacher writes ``num_rewrites`` (n, default 5) rewrites of every seed with
   a different sentence structure and the same meaning (JSON, validated with pydantic); a rewrite is kept when
   its cosine similarity to the seed is above ``threshold`` (tau, default 0.8). Seeds still short of n are
   asked again, in one batched call per round, up to ``max_retries`` (k, default 10) more times; each retry
   uses ``seed + round`` so it gets new text.
2. :func:`lexical_variants`: for the seed and each kept rewrite, the teacher proposes in-context synonyms for
   its content words (found without a tagger, see :mod:`.lexical`); each substitution gives a variant, kept
   when its similarity to the seed is above tau and it is not a duplicate.
3. :func:`select_augmented`: per seed, the kept rewrites (most similar first) and then the most similar
   lexical variants, up to ``max_samples_per_seed`` (m, default 10).

Similarity is always measured against the seed's text, with a :class:`~culture_align.embeddings.SentenceEmbedder`
(batched, cached per text). Nothing is lost: every rejected text is kept with its step, its similarity
(None when it was never embedded, e.g. a malformed answer) and a reason: ``malformed``, ``same_as_seed``,
``duplicate``, ``below_threshold``, ``surplus`` (step 1: more rewrites above tau than n) or ``over_cap``
(beyond m).

Ids of kept samples are hashes of (seed id, step, normalised text), so the same text of the same seed always
has the same id and duplicates are exact; a rejection's id also hashes its reason and detail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import datasets
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
from tqdm.auto import tqdm

from ...backends.base import GenerationBackend, GenerationParams
from ...prompts.culturellm import PROMPT_VERSION, build_paraphrase_conversation, build_synonym_conversation
from ..provenance import PARAMS_FEATURES
from ..stages import (
    InvalidReply,
    StageResult,
    attempt_params,
    count_by,
    generate_validated,
    params_provenance,
    stable_id,
    to_dataset,
)
from .lexical import content_words, lexical_variants_of, normalize_text
from .seeds import seed_question

if TYPE_CHECKING:
    from ...embeddings import SentenceEmbedder

__all__ = [
    "DEFAULT_PARAPHRASE_PARAMS",
    "DEFAULT_SYNONYM_PARAMS",
    "AUGMENTED_FEATURES",
    "AUGMENT_PROVENANCE",
    "AUGMENT_REJECTION_FEATURES",
    "SynonymReply",
    "paraphrase_reply_model",
    "paraphrase_seeds",
    "lexical_variants",
    "select_augmented",
]

DEFAULT_PARAPHRASE_PARAMS = GenerationParams(temperature=0.7, top_p=0.95, max_new_tokens=384)
"""Rewrites: temperature 0.7 as in the reference (GPT-4 at 0.7)."""

DEFAULT_SYNONYM_PARAMS = GenerationParams(temperature=0.0, max_new_tokens=320)
"""Synonyms: greedy (retries of a malformed answer sample at the retry temperature)."""

_S, _F = datasets.Value("string"), datasets.Value("float64")

AUGMENT_PROVENANCE = {"teacher": _S, "prompt_version": _S, "params": PARAMS_FEATURES,
                      "round": datasets.Value("int64")}
"""How an augmented sample was made: the ``teacher`` model, the prompt version, the sampling ``params`` and, for a
rewrite, the retry ``round`` it was kept in (None for a lexical variant)."""

AUGMENTED_FEATURES = datasets.Features({
    "id": _S, "seed_id": _S, "step": _S, "text": _S, "similarity": _F, "source_id": _S,
    "substitutions": datasets.List({"word": _S, "synonym": _S}), "provenance": AUGMENT_PROVENANCE,
})
"""Kept augmented samples: ``step`` is ``paraphrase`` or ``lexical``; ``similarity`` is the cosine
similarity to the seed's text; ``source_id`` the text it was made from (the seed id for a rewrite, the seed or
rewrite id for a lexical variant); ``substitutions`` the (word, synonym) pairs of a lexical variant;
``provenance``: :data:`AUGMENT_PROVENANCE`."""

AUGMENT_REJECTION_FEATURES = datasets.Features({
    "id": _S, "seed_id": _S, "step": _S, "text": _S, "similarity": _F, "reason": _S, "detail": _S,
})
"""Rejected texts: ``step`` (``paraphrase`` | ``lexical`` | ``select``), the text (the raw answer when
``reason`` is ``malformed``), ``similarity`` to the seed (None when not embedded), ``reason`` and ``detail``
(JSON text)."""

def _at_most_400_characters(text: str) -> str:
    if len(text) > 400:
        raise ValueError(f"a rewrite of {len(text)} characters (at most 400)")
    return text


# The 400-character cap is checked after parsing, not declared as maxLength: a long maxLength makes grammar
# engines unroll the string rule (xgrammar compiles it in seconds instead of milliseconds).
_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_at_most_400_characters)]
_Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


@lru_cache(maxsize=32)
def paraphrase_reply_model(num_rewrites: int) -> type[BaseModel]:
    """The pydantic model of a step-1 answer: ``{"rewrites": [str, ...]}`` with 1..``num_rewrites`` items."""
    return create_model(
        f"ParaphraseReply{num_rewrites}", __config__=ConfigDict(extra="ignore"),
        rewrites=(list[_Text], Field(min_length=1, max_length=num_rewrites)))


class SynonymEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    word: _Word
    synonyms: list[_Word] = Field(max_length=8)


class SynonymReply(BaseModel):
    """A step-2 answer: ``{"words": [{"word": str, "synonyms": [str, ...]}, ...]}``."""

    model_config = ConfigDict(extra="ignore")

    words: list[SynonymEntry] = Field(max_length=16)


@dataclass
class _Candidate:
    seed: int
    text: str
    source_id: str
    round: int = 0
    substitutions: tuple[tuple[str, str], ...] = ()
    similarity: float | None = None


def _clean(text: str) -> str:
    """A rewrite as written, without surrounding quotes, list numbering or extra spaces."""
    text = " ".join(text.split())
    for prefix in ("- ", "* "):
        text = text.removeprefix(prefix)
    head, _, rest = text.partition(". ")
    if head.isdigit() and rest:
        text = rest
    return text.strip().strip('"\u201c\u201d').strip()


def _aug_id(seed_id: str, step: str, text: str) -> str:
    return stable_id("culturellm-aug", seed_id, step, normalize_text(text))


def _rejection(seed_id: str, step: str, text: str, similarity: float | None, reason: str,
               detail: Any = None, record_id: str | None = None) -> dict[str, Any]:
    """A rejections row; its id hashes (seed, step, reason, text, detail) unless ``record_id`` is given (a
    sample dropped by the cap keeps its own id)."""
    detail_text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)
    return {"id": record_id or stable_id("culturellm-rejection", seed_id, step, reason, text, detail_text),
            "seed_id": seed_id, "step": step, "text": text, "similarity": similarity, "reason": reason,
            "detail": detail_text}


def _summary(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "mean": None, "min": None, "max": None}
    return {"count": len(values), "mean": round(sum(values) / len(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def _augmented_row(seed_id: str, step: str, text: str, similarity: float, source_id: str,
                   substitutions: list[dict[str, str]], provenance: dict[str, Any]) -> dict[str, Any]:
    """A kept sample (:data:`AUGMENTED_FEATURES`), its id hashing (seed, step, text)."""
    return {"id": _aug_id(seed_id, step, text), "seed_id": seed_id, "step": step, "text": text,
            "similarity": similarity, "source_id": source_id, "substitutions": substitutions,
            "provenance": provenance}


def _similarity_stats(kept: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summaries of the similarities of the kept samples and of the rejected ones that have one."""
    return {"similarity_kept": _summary([r["similarity"] for r in kept]),
            "similarity_rejected": _summary([r["similarity"] for r in rejected if r["similarity"] is not None])}


def _augment_result(kept: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]],
                    stats: dict[str, Any]) -> StageResult:
    """The :class:`StageResult` of a step: kept samples and rejections as tables, and the step's stats."""
    return StageResult(to_dataset(kept, AUGMENTED_FEATURES), to_dataset(rejected, AUGMENT_REJECTION_FEATURES), stats)


def paraphrase_seeds(
    seeds: datasets.Dataset,
    backend: GenerationBackend,
    embedder: SentenceEmbedder,
    params: GenerationParams = DEFAULT_PARAPHRASE_PARAMS,
    *,
    num_rewrites: int = 5,
    threshold: float = 0.8,
    max_retries: int = 10,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Step 1: ``num_rewrites`` structural rewrites per seed with cosine similarity to the seed above
    ``threshold``, asking again (at most ``max_retries`` more rounds) for seeds still short.

    Args:
        seeds: Seed rows (:data:`~.seeds.SEED_FEATURES`; only ``id``, ``text``, ``options``, ``codes``,
            ``topic`` are read).
        backend: The teacher.
        embedder: Embeds the seeds and the rewrites.
        params: Sampling params of the first round (round r samples with ``seed + r``; a greedy teacher
            samples at ``retry_temperature`` from the first retry on).

    Returns:
        :class:`StageResult`: kept rewrites (:data:`AUGMENTED_FEATURES`, step ``paraphrase``, at most
        ``num_rewrites`` per seed, most similar first), rejections (:data:`AUGMENT_REJECTION_FEATURES`) and
        ``stats`` (rounds, requests per round, replies, malformed, candidates, kept, rejections by reason,
        seeds short of ``num_rewrites`` at the end, similarity summaries).
    """
    if num_rewrites < 1 or max_retries < 0:
        raise ValueError(f"need num_rewrites >= 1 and max_retries >= 0, got {num_rewrites}, {max_retries}")
    rows = seeds.to_list()
    questions = [seed_question(r) for r in rows]
    reply_model = paraphrase_reply_model(num_rewrites)
    kept: list[list[_Candidate]] = [[] for _ in rows]
    seen: list[set[str]] = [{normalize_text(r["text"])} for r in rows]
    rejected: list[dict[str, Any]] = []
    requests_per_round: list[int] = []
    replies = malformed = candidates = 0
    provenance_base = {"teacher": backend.model_id, "prompt_version": prompt_version}
    with tqdm(total=len(rows) * num_rewrites, desc="CultureLLM rewrites", unit="rewrite",
              disable=not show_progress) as bar:
        for round_ in range(max_retries + 1):
            pending = [i for i in range(len(rows)) if len(kept[i]) < num_rewrites]
            if not pending:
                break
            requests_per_round.append(len(pending))
            round_params = attempt_params(params, round_, retry_temperature)
            conversations = [build_paraphrase_conversation(questions[i], num_rewrites) for i in pending]
            answers = generate_validated(backend, conversations, round_params, reply_model, max_attempts=1)
            fresh: list[_Candidate] = []
            for i, answer in zip(pending, answers):
                seed_id = rows[i]["id"]
                if not answer.ok:
                    malformed += 1
                    rejected.append(_rejection(seed_id, "paraphrase", answer.raw[-1], None, "malformed",
                                               {"round": round_, "errors": [m for _, m in answer.errors]}))
                    continue
                replies += 1
                for text in answer.value.rewrites:
                    text = _clean(text)
                    candidates += 1
                    key = normalize_text(text)
                    if key == normalize_text(rows[i]["text"]):
                        rejected.append(_rejection(seed_id, "paraphrase", text, None, "same_as_seed",
                                                   {"round": round_}))
                    elif not key or key in seen[i]:
                        rejected.append(_rejection(seed_id, "paraphrase", text, None, "duplicate",
                                                   {"round": round_}))
                    else:
                        seen[i].add(key)
                        fresh.append(_Candidate(i, text, seed_id, round_))
            similarities = embedder.pairwise([rows[c.seed]["text"] for c in fresh], [c.text for c in fresh])
            for c, s in zip(fresh, similarities):
                c.similarity = float(s)
            before = sum(len(k) for k in kept)
            for c in sorted(fresh, key=lambda c: (c.seed, -c.similarity, c.text)):
                seed_id = rows[c.seed]["id"]
                if c.similarity <= threshold:
                    rejected.append(_rejection(seed_id, "paraphrase", c.text, c.similarity, "below_threshold",
                                               {"round": c.round, "threshold": threshold}))
                elif len(kept[c.seed]) >= num_rewrites:
                    rejected.append(_rejection(seed_id, "paraphrase", c.text, c.similarity, "surplus",
                                               {"round": c.round}))
                else:
                    kept[c.seed].append(c)
            bar.update(sum(len(k) for k in kept) - before)
    out = []
    for i, cands in enumerate(kept):
        for c in sorted(cands, key=lambda c: (-c.similarity, c.text)):
            seed_id = rows[i]["id"]
            provenance = {**provenance_base, "round": c.round,
                          "params": params_provenance(attempt_params(params, c.round, retry_temperature))}
            out.append(_augmented_row(seed_id, "paraphrase", c.text, c.similarity, seed_id, [], provenance))
    stats = {
        "seeds": len(rows), "rounds": len(requests_per_round), "requests_per_round": requests_per_round,
        "requests": sum(requests_per_round), "valid_replies": replies, "malformed_replies": malformed,
        "candidates": candidates, "kept": len(out), "rejected": len(rejected),
        "rejected_by_reason": count_by(r["reason"] for r in rejected),
        "seeds_short": [rows[i]["id"] for i in range(len(rows)) if len(kept[i]) < num_rewrites],
        **_similarity_stats(out, rejected),
    }
    return _augment_result(out, rejected, stats)


def _synonym_check(candidates: list[list[str]], synonyms_per_word: int):
    """Validation of a synonym answer: keep listed words only; synonyms cleaned, distinct, different from the
    word, at most three words each, at most ``synonyms_per_word`` per word."""

    def check(index: int, reply: SynonymReply) -> SynonymReply:
        allowed = set(candidates[index])
        entries: dict[str, list[str]] = {}
        for entry in reply.words:
            word = entry.word.lower()
            if word not in allowed or word in entries:
                continue
            clean: list[str] = []
            for synonym in entry.synonyms:
                synonym = " ".join(synonym.split())
                if (synonym.lower() != word and synonym.lower() not in (s.lower() for s in clean)
                        and len(synonym.split()) <= 3
                        and all(ch.isalpha() or ch in " -'" for ch in synonym)):
                    clean.append(synonym)
            if clean:
                entries[word] = clean[:synonyms_per_word]
        if reply.words and not entries:
            raise InvalidReply("no usable synonym for any of the listed words")
        return SynonymReply(words=[SynonymEntry(word=w, synonyms=s) for w, s in entries.items()])

    return check


def lexical_variants(
    seeds: datasets.Dataset,
    paraphrases: datasets.Dataset,
    backend: GenerationBackend,
    embedder: SentenceEmbedder,
    params: GenerationParams = DEFAULT_SYNONYM_PARAMS,
    *,
    threshold: float = 0.8,
    synonyms_per_word: int = 3,
    max_words_per_sentence: int = 8,
    max_variants_per_sentence: int = 24,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Step 2: synonym substitution in the seeds and their kept rewrites (the *bases*).

    For each base, its content words (at most ``max_words_per_sentence``) go to the teacher, which proposes up
    to ``synonyms_per_word`` in-context synonyms per word (one batched call; malformed answers are asked again
    up to ``max_attempts`` in all). Each base gives at most ``max_variants_per_sentence`` variants
    (:func:`~.lexical.lexical_variants_of`). A variant is dropped as a duplicate of its seed, of a kept
    rewrite or of an earlier variant, otherwise kept when its similarity to the seed is above ``threshold``.

    Returns:
        :class:`StageResult`: every kept variant (:data:`AUGMENTED_FEATURES`, step ``lexical``, not yet capped
        per seed, most similar first within a seed), rejections and ``stats``.
    """
    seed_rows = seeds.to_list()
    seed_index = {r["id"]: i for i, r in enumerate(seed_rows)}
    bases: list[tuple[int, str, str]] = [(i, r["id"], r["text"]) for i, r in enumerate(seed_rows)]
    for row in paraphrases:
        bases.append((seed_index[row["seed_id"]], row["id"], row["text"]))
    words = [content_words(text, max_words_per_sentence) for _, _, text in bases]
    asked = [b for b, w in enumerate(words) if w]
    conversations = [build_synonym_conversation(bases[b][2], words[b], synonyms_per_word) for b in asked]
    check = _synonym_check([words[b] for b in asked], synonyms_per_word)
    with tqdm(total=len(asked), desc="CultureLLM synonyms", unit="sentence", disable=not show_progress) as bar:
        answers = generate_validated(backend, conversations, params, SynonymReply, check=check,
                                     max_attempts=max_attempts, retry_temperature=retry_temperature)
        bar.update(len(asked))
    rejected: list[dict[str, Any]] = []
    seen = [{normalize_text(r["text"])} for r in seed_rows]
    for row in paraphrases:
        seen[seed_index[row["seed_id"]]].add(normalize_text(row["text"]))
    fresh: list[_Candidate] = []
    words_with_synonyms = 0
    for b, answer in zip(asked, answers):
        i, base_id, base_text = bases[b]
        seed_id = seed_rows[i]["id"]
        if not answer.ok:
            rejected.append(_rejection(seed_id, "lexical", answer.raw[-1], None, "malformed",
                                       {"base_id": base_id, "errors": [m for _, m in answer.errors]}))
            continue
        synonyms = {e.word: e.synonyms for e in answer.value.words}
        words_with_synonyms += len(synonyms)
        for text, plan in lexical_variants_of(base_text, synonyms, max_variants_per_sentence):
            key = normalize_text(text)
            if key in seen[i]:
                rejected.append(_rejection(seed_id, "lexical", text, None, "duplicate",
                                           {"base_id": base_id, "substitutions": plan}))
                continue
            seen[i].add(key)
            fresh.append(_Candidate(i, text, base_id, substitutions=tuple(plan)))
    similarities = embedder.pairwise([seed_rows[c.seed]["text"] for c in fresh], [c.text for c in fresh])
    out = []
    provenance = {"teacher": backend.model_id, "prompt_version": prompt_version, "params": params_provenance(params),
                  "round": None}
    for c, s in sorted(zip(fresh, similarities), key=lambda cs: (cs[0].seed, -float(cs[1]), cs[0].text)):
        seed_id = seed_rows[c.seed]["id"]
        c.similarity = float(s)
        if c.similarity <= threshold:
            rejected.append(_rejection(seed_id, "lexical", c.text, c.similarity, "below_threshold",
                                       {"base_id": c.source_id, "threshold": threshold,
                                        "substitutions": list(c.substitutions)}))
            continue
        out.append(_augmented_row(seed_id, "lexical", c.text, c.similarity, c.source_id,
                                  [{"word": w, "synonym": s} for w, s in c.substitutions], provenance))
    stats = {
        "bases": len(bases), "bases_without_content_words": len(bases) - len(asked), "requests": len(asked),
        "attempts": sum(a.attempts for a in answers), "malformed_replies": sum(not a.ok for a in answers),
        "words_with_synonyms": words_with_synonyms, "candidates": len(fresh) + sum(
            r["reason"] == "duplicate" for r in rejected),
        "kept": len(out), "rejected": len(rejected), "rejected_by_reason": count_by(r["reason"] for r in rejected),
        **_similarity_stats(out, rejected),
    }
    return _augment_result(out, rejected, stats)


def select_augmented(paraphrases: datasets.Dataset, variants: datasets.Dataset,
                     max_samples_per_seed: int = 10, seed_ids: Sequence[str] | None = None) -> StageResult:
    """Step 3: per seed, its kept rewrites (most similar first), then its most similar lexical variants, up to
    ``max_samples_per_seed`` in all; the rest is rejected as ``over_cap`` (step ``select``).

    Rewrites come first because they carry the structural variety; lexical variants, nearly always closer to
    the seed, fill the remaining places.

    Args:
        seed_ids: All seed ids, in the order the output follows (default: order of first appearance); seeds
            without any sample count as 0 in the per-seed histogram.

    Returns:
        :class:`StageResult`: the augmented samples (:data:`AUGMENTED_FEATURES`), rejections and ``stats``
        (samples, histogram of samples per seed, samples by step).
    """
    if max_samples_per_seed < 0:
        raise ValueError(f"max_samples_per_seed must be >= 0, got {max_samples_per_seed}")
    by_seed: dict[str, list[dict[str, Any]]] = {seed_id: [] for seed_id in seed_ids or ()}
    for step_rows in (paraphrases, variants):
        ranked = sorted(step_rows.to_list(), key=lambda r: (-r["similarity"], r["text"]))
        for row in ranked:
            by_seed.setdefault(row["seed_id"], []).append(row)
    out, rejected = [], []
    for seed_id, rows in by_seed.items():
        out.extend(rows[:max_samples_per_seed])
        for row in rows[max_samples_per_seed:]:
            rejected.append(_rejection(seed_id, "select", row["text"], row["similarity"], "over_cap",
                                       {"step": row["step"], "cap": max_samples_per_seed}, record_id=row["id"]))
    stats = {"samples": len(out), "by_step": count_by(r["step"] for r in out),
             "per_seed": count_by(min(len(rows), max_samples_per_seed) for rows in by_seed.values()),
             "over_cap": len(rejected), "similarity": _summary([r["similarity"] for r in out])}
    return _augment_result(out, rejected, stats)
