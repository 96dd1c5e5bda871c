"""Stage 1: self-instructed survey questions per WVS topic, validated and filtered.

Steps:

- :func:`seed_questions_by_topic` - WVS items (any loaded source) -> ``{topic: [SurveyQuestion]}``.
- :func:`generate_questions` - seeds -> ``StageResult`` whose dataset has :data:`QUESTION_FEATURES` and whose
  rejections keep every dropped answer with its reason.

Generation runs in rounds. In each round every topic still short of its target asks for up to
``requests_per_round`` new questions, all topics' requests going to the backend in one call. Each request
shows ``num_examples`` examples: ``num_seed_examples`` seed items of the topic and questions the model
already wrote for it (drawn from those kept in earlier rounds; seeds fill in while there are too few). Each
answer then passes, in this order (every rejection is counted and kept with its reason):

1. **schema** (pydantic :class:`GeneratedQuestion`): JSON with a non-empty question and 2-11 non-empty
   options (``invalid_json``, ``invalid_schema``);
2. **format**: list numbering (``"1. "``, ``"2) "``) is stripped from the labels and the question
   (``"Question 6: "`` too); repeated options are
   rejected (``duplicate_options``); options that are all plain numbers must be a run of consecutive
   numbers (``numeric_options_not_a_scale``) whose lowest and highest numbers the question explains
   (``numeric_options_without_scale``);
3. **exact duplicate** of a question kept before (case, spacing and punctuation ignored;
   ``exact_duplicate``);
4. **contamination guard**: the same text as an evaluation item, or an embedding cosine similarity to one of
   at least ``contamination_threshold`` (``contaminated``);
5. **near duplicate**: cosine similarity of at least ``near_duplicate_threshold`` to a question kept before,
   in any topic, or earlier in the same round (``near_duplicate``).

The similarities use unit-norm sentence embeddings and chunked matrix products
(:func:`culture_align.embeddings.max_similarity`): checking a round against 13,000 kept questions is one
``[m, 13000]`` product, a few milliseconds.

Resuming: the examples of every request are drawn from a generator seeded by ``(seed, topic, round)`` and
depend only on the questions kept in earlier rounds, and round ``r`` samples with ``params.seed + r``; with
a :class:`~culture_align.backends.cache.CachedBackend` a rerun replays the same rounds from the cache.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm
from transformers.utils import logging

from ...backends.base import GenerationBackend, GenerationParams
from ...embeddings import SentenceEmbedder, max_similarity
from ...prompts.culturespa import PROMPT_VERSION, build_question_generation_conversation
from ...wvs.questions import TOPICS, SurveyQuestion, is_evaluation_item, qid_number
from ..stages import InvalidReply, json_schema_for, params_provenance
from .schemas import (
    QUESTION_FEATURES,
    REJECTION_FEATURES,
    GeneratedQuestion,
    StageResult,
    count_by,
    make_rejection,
    parse_reply,
    stable_id,
    to_dataset,
)

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_QUESTION_PARAMS",
    "TOPIC_NAMES",
    "QuestionRejected",
    "seed_questions_by_topic",
    "normalise_options",
    "question_key",
    "generated_question_id",
    "parse_generated_question",
    "generate_questions",
]

DEFAULT_QUESTION_PARAMS = GenerationParams(temperature=0.9, top_p=0.95, max_new_tokens=256)
"""Sampling for question generation (the reference: temperature 0.9, top_p 0.95, 256 new tokens)."""

TOPIC_NAMES: dict[str, str] = {t.id: t.name for t in TOPICS}
"""Topic id -> the WVS section's name shown in the prompt."""


class QuestionRejected(ValueError):
    """A generated question that fails a check; ``reason`` is the short rejection reason, ``detail`` extra
    JSON-serialisable facts."""

    def __init__(self, reason: str, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = dict(detail or {})


# ----------------------------------------------------------------------------------------------------------
# Seeds
# ----------------------------------------------------------------------------------------------------------


def seed_questions_by_topic(questions: Mapping[str, SurveyQuestion] | Iterable[SurveyQuestion],
                            topics: Sequence[str] | None = None) -> dict[str, list[SurveyQuestion]]:
    """Group the evaluation items of a WVS source by topic, in :data:`TOPICS` order.

    Args:
        questions: ``WVSData.questions`` or any SurveyQuestions; WVS demographics and party choice are left
            out (:func:`~culture_align.wvs.questions.is_evaluation_item`).
        topics: Topic ids to keep (default: all 13).

    Raises:
        ValueError: for an unknown topic id, or a requested topic without any seed item.
    """
    items = list(questions.values()) if isinstance(questions, Mapping) else list(questions)
    wanted = list(topics) if topics is not None else [t.id for t in TOPICS]
    unknown = [t for t in wanted if t not in TOPIC_NAMES]
    if unknown:
        raise ValueError(f"unknown topic(s) {unknown}: use ids from {sorted(TOPIC_NAMES)}")
    grouped: dict[str, list[SurveyQuestion]] = {t: [] for t in wanted}
    for q in items:
        try:
            qid_number(q.qid)
            evaluation = is_evaluation_item(q.qid)
        except ValueError:  # not a WVS id: keep it when its topic is one of the 13
            evaluation = True
        if evaluation and q.topic in grouped:
            grouped[q.topic].append(q)
    empty = [t for t, qs in grouped.items() if not qs]
    if topics is not None and empty:
        raise ValueError(f"no seed item for topic(s) {empty} in the given questions")
    return {t: qs for t, qs in grouped.items() if qs}


# ----------------------------------------------------------------------------------------------------------
# Checks on one question
# ----------------------------------------------------------------------------------------------------------

_NUMBERING = re.compile(r"^(?:\(\d{1,2}\)|\d{1,2}[.):])\s+(?=\S)")
_QUESTION_NUMBERING = re.compile(r"^(?:question\s*\d{1,3}\s*[:.)]\s*|(?:\(\d{1,3}\)|\d{1,3}[.):])\s+)(?=\S)",
                                 re.IGNORECASE)
_PURE_NUMBER = re.compile(r"^[+-]?\d+\.?$")
_NON_WORD = re.compile(r"[^\w]+")


def normalise_options(options: Sequence[str]) -> list[str]:
    """Option labels without list numbering: ``"1. Agree"`` / ``"2) Agree"`` / ``"(3) Agree"`` -> ``"Agree"``.

    A bare number (``"7"``) or a range (``"1-2 hours"``) is a label, not numbering, and stays.
    """
    return [_NUMBERING.sub("", label.strip(), count=1).strip() for label in options]


def question_key(text: str) -> str:
    """The exact-duplicate key of a question: case-folded words, punctuation and spacing ignored."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def generated_question_id(topic: str, text: str) -> str:
    """``gen-<topic>-<12 hex>``: namespaced, so never a WVS id, and stable for the same question text."""
    return f"gen-{topic}-{stable_id('culturespa-question', topic, question_key(text))[:12]}"


class _AnyJSONObject(BaseModel):
    model_config = ConfigDict(extra="allow")


def parse_generated_question(text: str) -> tuple[str, list[str], list[int]]:
    """Parse, validate and normalise one answer of the generator.

    Returns:
        ``(question, options, codes)``: codes are 1..n, except for a pure-number scale (labels ``"0"`` ..
        ``"10"``), whose codes are its numbers.

    Raises:
        QuestionRejected: with the reason (``invalid_json``, ``invalid_schema``, ``duplicate_options``,
            ``numeric_options_not_a_scale``, ``numeric_options_without_scale``).
    """
    try:
        obj = parse_reply(text, _AnyJSONObject)
    except InvalidReply as err:
        raise QuestionRejected("invalid_json", str(err)) from None
    try:
        parsed = GeneratedQuestion.model_validate(obj.model_dump())
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in err.errors())
        raise QuestionRejected("invalid_schema", problems) from None
    text = _QUESTION_NUMBERING.sub("", parsed.question, count=1)
    options = normalise_options(parsed.options)
    folded = [o.casefold() for o in options]
    if len(set(folded)) != len(folded):
        repeated = sorted({o for o in folded if folded.count(o) > 1})
        raise QuestionRejected("duplicate_options", f"repeated option(s) {repeated}", {"options": options})
    codes = list(range(1, len(options) + 1))
    if all(_PURE_NUMBER.match(o) for o in options):
        numbers = [int(o.rstrip(".")) for o in options]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise QuestionRejected("numeric_options_not_a_scale",
                                   f"numeric options {numbers} are not consecutive ascending numbers",
                                   {"options": options})
        low, high = numbers[0], numbers[-1]
        mentioned = [n for n in (low, high) if re.search(rf"(?<![\d.]){n}(?![\d])", text)]
        if len(mentioned) < 2:
            raise QuestionRejected("numeric_options_without_scale",
                                   f"options are the numbers {low}..{high} but the question does not say what "
                                   f"{low} and {high} mean", {"options": options})
        options, codes = [str(n) for n in numbers], numbers
    return text, options, codes


# ----------------------------------------------------------------------------------------------------------
# Filters over many questions
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    topic: str
    round: int
    request: int
    raw: str
    example_ids: list[str]
    text: str = ""
    options: list[str] | None = None
    codes: list[int] | None = None


class _DuplicateFilter:
    """Exact duplicates, contamination and near duplicates, incrementally over rounds.

    Keeps the keys and unit embeddings of every kept question; each round is checked with chunked matrix
    products against them (and against the evaluation items).
    """

    def __init__(self, evaluation: Sequence[SurveyQuestion], embedder: SentenceEmbedder | None,
                 near_duplicate_threshold: float | None, contamination_threshold: float | None,
                 chunk_size: int = 4096) -> None:
        self.embedder = embedder
        self.near = near_duplicate_threshold
        self.contamination = contamination_threshold
        self.chunk_size = chunk_size
        self.keys: dict[str, str] = {}  # key -> id of the kept question
        self.ids: list[str] = []  # kept ids, in embedding order
        self.eval_ids = [q.qid for q in evaluation]
        self.eval_keys = {question_key(q.text): q.qid for q in evaluation}
        self.eval_vectors = (embedder.encode([q.text for q in evaluation])
                             if embedder is not None and contamination_threshold is not None and evaluation
                             else None)
        dim = embedder.dimension if embedder is not None else 0
        self.kept_vectors = np.zeros((0, dim), dtype=np.float32)

    def check(self, candidates: list[_Candidate]) -> list[tuple[str, dict[str, Any]] | None]:
        """Per candidate (in order): None when kept (and remembered), else ``(reason, detail)``."""
        verdicts: list[tuple[str, dict[str, Any]] | None] = [None] * len(candidates)
        vectors = (self.embedder.encode([c.text for c in candidates])
                   if self.embedder is not None and candidates else None)
        if vectors is not None and self.eval_vectors is not None:
            eval_score, eval_index = max_similarity(vectors, self.eval_vectors, self.chunk_size)
        if vectors is not None and self.near is not None:
            kept_score, kept_index = max_similarity(vectors, self.kept_vectors, self.chunk_size)
            within = vectors @ vectors.T
        accepted_now: list[int] = []
        for i, cand in enumerate(candidates):
            key = question_key(cand.text)
            if key in self.keys:
                verdicts[i] = ("exact_duplicate", {"duplicate_of": self.keys[key]})
                continue
            if key in self.eval_keys:
                verdicts[i] = ("contaminated", {"evaluation_item": self.eval_keys[key], "similarity": 1.0})
                continue
            if vectors is not None and self.eval_vectors is not None and eval_score[i] >= self.contamination:
                verdicts[i] = ("contaminated", {"evaluation_item": self.eval_ids[int(eval_index[i])],
                                                "similarity": round(float(eval_score[i]), 4)})
                continue
            if vectors is not None and self.near is not None:
                best, best_id = float(kept_score[i]), self.ids[int(kept_index[i])] if kept_index[i] >= 0 else ""
                for j in accepted_now:
                    if within[i, j] > best:
                        best, best_id = float(within[i, j]), generated_question_id(candidates[j].topic,
                                                                                   candidates[j].text)
                if best >= self.near:
                    verdicts[i] = ("near_duplicate", {"duplicate_of": best_id, "similarity": round(best, 4)})
                    continue
            accepted_now.append(i)
            self.keys[key] = generated_question_id(cand.topic, cand.text)
            self.ids.append(self.keys[key])
        if vectors is not None and accepted_now:
            self.kept_vectors = np.concatenate([self.kept_vectors, vectors[accepted_now]])
        return verdicts


# ----------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------


def _draw_examples(rng: random.Random, seeds: Sequence[SurveyQuestion], generated: Sequence[dict[str, Any]],
                   num_examples: int, num_seed_examples: int) -> list[dict[str, Any]]:
    """``num_seed_examples`` seeds + generated questions; seeds fill in while fewer are generated."""
    n_gen = min(max(num_examples - num_seed_examples, 0), len(generated))
    n_seed = min(num_examples - n_gen, len(seeds))
    picked = [{"id": q.qid, "text": q.text, "options": list(q.options)} for q in rng.sample(list(seeds), n_seed)]
    picked += [{"id": g["id"], "text": g["text"], "options": g["options"]} for g in rng.sample(list(generated), n_gen)]
    return picked


def generate_questions(
    seeds: Mapping[str, Sequence[SurveyQuestion]],
    backend: GenerationBackend,
    params: GenerationParams = DEFAULT_QUESTION_PARAMS,
    *,
    questions_per_topic: int = 1000,
    requests_per_round: int = 64,
    max_requests_per_topic: int | None = None,
    num_examples: int = 5,
    num_seed_examples: int = 3,
    evaluation_questions: Sequence[SurveyQuestion] | None = None,
    embedder: SentenceEmbedder | None = None,
    near_duplicate_threshold: float | None = 0.9,
    contamination_threshold: float | None = 0.85,
    seed: int = 0,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Self-instruct new survey questions for every topic of ``seeds``.

    Args:
        seeds: ``{topic id: seed items}`` (see :func:`seed_questions_by_topic`).
        backend: Any generation backend (wrap it in a ``CachedBackend`` to resume).
        params: Sampling params (default :data:`DEFAULT_QUESTION_PARAMS`); round ``r`` uses ``seed + r`` and
            the JSON schema of :class:`GeneratedQuestion`.
        questions_per_topic: Kept questions wanted per topic (reference: 1,000).
        requests_per_round: Requests per topic and round, at most (all topics go in one backend call).
        max_requests_per_topic: A topic stops after this many requests even when short (default:
            ``3 * questions_per_topic``); the shortfall is logged and reported in ``stats``.
        num_examples: Examples per request (reference: 5).
        num_seed_examples: Of which seed items (reference: 3); the rest are questions kept before.
        evaluation_questions: Items the contamination guard protects (default: every seed).
        embedder: Sentence embedder of the near-duplicate and contamination filters (default: a
            :class:`~culture_align.embeddings.SentenceEmbedder` of the offline all-MiniLM-L6-v2, created when
            a threshold is set).
        near_duplicate_threshold: Cosine similarity from which a question is a near duplicate of a kept one
            (default 0.9; None: only exact duplicates are removed).
        contamination_threshold: Cosine similarity to an evaluation item from which a question is dropped
            (default 0.85; None: only exact copies are dropped).
        seed: Seed of the example draws.

    Returns:
        :class:`StageResult`: ``dataset`` with :data:`QUESTION_FEATURES` (topic order, then generation
        order), ``rejections`` (stage ``"questions"``) and ``stats`` (requests, kept, rejections by reason
        and per topic, rounds, short topics).
    """
    if questions_per_topic < 1 or requests_per_round < 1:
        raise ValueError("questions_per_topic and requests_per_round must be >= 1")
    if not 1 <= num_seed_examples <= num_examples:
        raise ValueError(f"need 1 <= num_seed_examples <= num_examples, got {num_seed_examples}, {num_examples}")
    unknown = [t for t in seeds if t not in TOPIC_NAMES]
    if unknown:
        raise ValueError(f"unknown topic(s) {unknown}: use ids from {sorted(TOPIC_NAMES)}")
    max_requests = max_requests_per_topic or 3 * questions_per_topic
    evaluation = list(evaluation_questions) if evaluation_questions is not None else [
        q for qs in seeds.values() for q in qs]
    if embedder is None and (near_duplicate_threshold is not None or contamination_threshold is not None):
        embedder = SentenceEmbedder()
    dedup = _DuplicateFilter(evaluation, embedder, near_duplicate_threshold, contamination_threshold)
    params = replace(params, json_schema=json_schema_for(GeneratedQuestion), n=1)
    base = params_provenance(params)

    kept: dict[str, list[dict[str, Any]]] = {t: [] for t in seeds}
    requested = {t: 0 for t in seeds}
    rejected: list[dict[str, str]] = []
    rounds = 0
    bar = tqdm(total=questions_per_topic * len(seeds), desc="CultureSPA questions", unit="question",
               disable=not show_progress)
    while True:
        active = [t for t in seeds if len(kept[t]) < questions_per_topic and requested[t] < max_requests]
        if not active:
            break
        jobs: list[tuple[str, list[dict[str, Any]]]] = []
        for topic in active:
            rng = random.Random(stable_id("culturespa-examples", seed, topic, rounds))
            wanted = min(requests_per_round, questions_per_topic - len(kept[topic]), max_requests - requested[topic])
            seen: set[str] = set()
            for _ in range(wanted):
                for _attempt in range(8):  # a repeated prompt would only repeat an answer: redraw
                    examples = _draw_examples(rng, seeds[topic], kept[topic], num_examples, num_seed_examples)
                    signature = json.dumps([e["id"] for e in examples])
                    if signature not in seen:
                        break
                seen.add(signature)
                jobs.append((topic, examples))
            requested[topic] += wanted
        round_params = replace(params, seed=params.seed + rounds)
        conversations = [build_question_generation_conversation(TOPIC_NAMES[t], ex) for t, ex in jobs]
        texts = backend.generate(conversations, round_params)

        candidates: list[_Candidate] = []
        for request, ((topic, examples), text) in enumerate(zip(jobs, texts)):
            cand = _Candidate(topic, rounds, request, text, [e["id"] for e in examples])
            try:
                cand.text, cand.options, cand.codes = parse_generated_question(text)
            except QuestionRejected as err:
                rejected.append(_rejection(cand, err.reason, {"error": str(err), **err.detail}))
                continue
            candidates.append(cand)
        for cand, verdict in zip(candidates, dedup.check(candidates)):
            if verdict is not None:
                rejected.append(_rejection(cand, verdict[0], verdict[1]))
                continue
            provenance = {"stage": "questions", "model": backend.model_id, "params": {**base, "seed": round_params.seed},
                          "round": rounds, "prompt_version": prompt_version}
            kept[cand.topic].append({
                "id": generated_question_id(cand.topic, cand.text), "topic": cand.topic, "text": cand.text,
                "options": cand.options, "codes": cand.codes, "example_ids": cand.example_ids,
                "provenance": provenance})
            bar.update(1)
        rounds += 1
    bar.close()

    rows = [q for t in seeds for q in kept[t]]  # a round never asks for more than a topic still needs
    short = {t: len(kept[t]) for t in seeds if len(kept[t]) < questions_per_topic}
    if short:
        logger.warning(f"CultureSPA questions: {len(short)} topic(s) short of {questions_per_topic} after "
                       f"{max_requests} requests each: {short}")
    stats = {
        "topics": len(seeds), "requests": sum(requested.values()), "rounds": rounds, "kept": len(rows),
        "rejected": len(rejected), "rejections_by_reason": count_by(r["reason"] for r in rejected),
        "per_topic": {t: {"requests": requested[t], "kept": len(kept[t]),
                          "rejected": sum(r["topic"] == t for r in rejected)} for t in seeds},
        "short_topics": short,
        "filters": {"near_duplicate_threshold": near_duplicate_threshold,
                    "contamination_threshold": contamination_threshold,
                    "evaluation_items": len(evaluation),
                    "embedding_model": getattr(embedder, "model_name", None)},
    }
    if embedder is not None:
        stats["embedding_stats"] = embedder.stats.to_dict()
    return StageResult(to_dataset(rows, QUESTION_FEATURES), to_dataset(rejected, REJECTION_FEATURES), stats)


def _rejection(cand: _Candidate, reason: str, detail: dict[str, Any]) -> dict[str, str]:
    record_id = stable_id("culturespa-question-rejection", cand.topic, cand.round, cand.request, cand.raw)
    text = cand.text or cand.raw
    detail = {**detail, "round": cand.round, "example_ids": cand.example_ids}
    if cand.options is not None:
        detail["options"] = cand.options
    return make_rejection(record_id, "questions", reason, text, detail, topic=cand.topic)
