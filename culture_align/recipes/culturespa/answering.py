"""Stage 2: answer every generated question culture-unaware and culture-aware, per target culture.

Answers come from the model interface the evaluator uses (a :class:`~culture_align.backends.GenerationBackend`:
a local model, a vLLM engine or a server):

- ``logprob`` mode (default): the exact answer distribution over the legal codes (the backend's ``score``; one
  batched forward pass per prompt batch locally). Each answer is a full distribution, deterministic, with
  nothing to parse.
- ``sampling`` mode (parity with the reference): ``n`` answers drawn (the backend's ``generate``) at temperature 0.6, top_p
  0.9, parsed strictly with :func:`~culture_align.evaluation.scoring.parse_answer_code`; the distribution is
  the share of valid samples per code (None when none parses) and unparsable samples are counted.

The culture-unaware answer of a question is the same for every culture and computed once. The culture-aware
answer uses the evaluator's ``culture-aware`` prompt (variant ``plain``), or one of CultureSPA's variants:
``cross_culture`` (the system prompt names the 3 most and 3 least similar cultures of a similarity table)
or ``self_alignment`` (k WVS items of the target culture, answered with its modal answer, come first).

Answers can be cached (:class:`AnswerCache`, JSON Lines keyed by model, mode, rendered prompt and choices),
so a rerun scores nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import datasets
import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ...backends.base import GenerationBackend, GenerationParams, generate_samples
from ...backends.cache import CompletionCache
from ...backends.factory import as_backend
from ...cultures import Culture, resolve_cultures
from ...evaluation.scoring import parse_answer_code
from ...metric import alignment_math
from ...prompts.culturespa import (
    UNAWARE_SETTING,
    build_answer_conversation,
    build_self_alignment_conversation,
    cross_culture_setting,
)
from ...wvs.data import WVSData
from ...wvs.questions import SurveyQuestion
from .schemas import ANSWER_FEATURES, REJECTION_FEATURES, StageResult, stable_id, survey_question, to_dataset
from .similarity import CultureSimilarity, most_and_least_similar

__all__ = [
    "AnswerMode",
    "AnswerVariant",
    "DEFAULT_ANSWER_SAMPLING",
    "Answer",
    "AnswerCache",
    "SurveyAnswerer",
    "self_alignment_examples",
    "answer_questions",
]

AnswerMode = Literal["logprob", "sampling"]
AnswerVariant = Literal["plain", "cross_culture", "self_alignment"]

DEFAULT_ANSWER_SAMPLING = GenerationParams(n=1, temperature=0.6, top_p=0.9, max_new_tokens=8, seed=0)
"""The reference's answering: one sample at temperature 0.6, top_p 0.9 (8 new tokens are plenty for a code)."""

Answer = tuple[np.ndarray | None, int]
"""``(distribution over the question's codes or None, number of unparsable samples)``."""


class AnswerCache:
    """Answers by request, persisted as JSON Lines through a :class:`CompletionCache` (kill-safe: a torn or
    damaged line is skipped and counted in ``store.skipped``, see
    :func:`culture_align.jsonl.iter_append_only_jsonl`).

    The key hashes the model id, the mode (with the sampling params), the rendered prompt and the choices;
    the value is the list of log-probabilities (log-prob mode) or of sampled texts (sampling mode).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.store = CompletionCache(path)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, mode: str, prompt: str, choices: Sequence[str], sampling: GenerationParams | None) -> str:
        payload = {"model": model_id, "mode": mode, "prompt": prompt, "choices": list(choices),
                   "sampling": asdict(sampling) if sampling is not None else None}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> list | None:
        """The cached value of ``key``; None when missing or when the stored text is not a JSON list."""
        text = self.store.get(key)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) else None

    def put_many(self, rows: Sequence[tuple[str, str, list]]) -> None:
        self.store.put_many([(k, m, json.dumps(v)) for k, m, v in rows])


class SurveyAnswerer:
    """Answer survey questions with a model, in log-prob or sampling mode, optionally cached.

    Args:
        model: A causal LM (a PEFT model works: its active adapter answers), or any
            :class:`~culture_align.backends.GenerationBackend` (log-prob mode needs its ``score``); then
            ``tokenizer`` is None.
        tokenizer: The model's tokenizer (with a chat template); None with a backend.
        mode: ``"logprob"`` (default) or ``"sampling"``.
        sampling: Sampling params of sampling mode (default :data:`DEFAULT_ANSWER_SAMPLING`).
        batch_size: Prompts per forward pass of a local model (default 16); conversations per ``generate`` call.
        cache: An :class:`AnswerCache` (or its path); None: no cache.
        model_id: Name of the model in cache keys (default: the backend's ``model_id``, for a local model its
            ``config.name_or_path``).
    """

    def __init__(self, model: PreTrainedModel | GenerationBackend, tokenizer: PreTrainedTokenizerBase | None = None,
                 *, mode: AnswerMode = "logprob", sampling: GenerationParams = DEFAULT_ANSWER_SAMPLING,
                 batch_size: int = 16,
                 cache: AnswerCache | str | os.PathLike | None = None, model_id: str | None = None) -> None:
        if mode not in ("logprob", "sampling"):
            raise ValueError(f"answer mode must be 'logprob' or 'sampling', got {mode!r}")
        # A local backend decodes `batch_size` prompts' samples together in sampling mode (batch_size x n rows)
        self.backend = as_backend(model, tokenizer, batch_size=batch_size * (sampling.n if mode == "sampling" else 1))
        self.batch_size = int(batch_size)
        self.mode = mode
        self.sampling = sampling
        self.cache = AnswerCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.model_id = model_id or self.backend.model_id or type(model).__name__

    def answer(self, conversations: Sequence[list[dict[str, str]]], questions: Sequence[SurveyQuestion],
               progress=None) -> list[Answer]:
        """One answer per (conversation, question): the distribution over ``question.codes`` and the number
        of unparsable samples (always 0 in log-prob mode)."""
        if len(conversations) != len(questions):
            raise ValueError(f"{len(conversations)} conversations but {len(questions)} questions")
        choices = [[str(c) for c in q.codes] for q in questions]
        sampling = self.sampling if self.mode == "sampling" else None
        keys = [AnswerCache.key(self.model_id, self.mode, self.backend.prompt_text(c), ch, sampling)
                for c, ch in zip(conversations, choices)]
        raw: dict[str, list] = {}
        if self.cache is not None:
            for k in keys:
                value = self.cache.get(k)
                if value is not None:
                    raw[k] = value
        todo, queued = [], set()
        for i, k in enumerate(keys):  # one request per distinct prompt not in the cache
            if k not in raw and k not in queued:
                queued.add(k)
                todo.append(i)
        if self.cache is not None:
            self.cache.hits += len(keys) - len(todo)
            self.cache.misses += len(todo)
        if progress is not None and len(keys) > len(todo):
            progress(len(keys) - len(todo))
        if todo:
            convs = [conversations[i] for i in todo]
            if self.mode == "logprob":
                results = [s.tolist() for s in self.backend.score(convs, [choices[i] for i in todo], progress=progress)]
            else:
                results = generate_samples(self.backend, convs, self.sampling, self.batch_size, progress)
            for i, value in zip(todo, results):
                raw[keys[i]] = value
            if self.cache is not None:
                self.cache.put_many([(keys[i], self.model_id, raw[keys[i]]) for i in todo])
        return [self._distribution(raw[k], q) for k, q in zip(keys, questions)]

    def _distribution(self, value: list, question: SurveyQuestion) -> Answer:
        if self.mode == "logprob":
            logp = np.asarray(value, dtype=np.float64)
            p = np.exp(logp - logp.max())
            return p / p.sum(), 0
        parsed = [parse_answer_code(text, question.codes) for text in value]
        valid = [c for c in parsed if c is not None]
        if not valid:
            return None, len(parsed)
        counts = np.zeros(question.num_options)
        for code in valid:
            counts[question.index_of(code)] += 1
        return counts / counts.sum(), len(parsed) - len(valid)


def self_alignment_examples(wvs: WVSData, culture: str | Culture, k: int = 5, seed: int = 0
                            ) -> list[tuple[SurveyQuestion, int]]:
    """``k`` WVS items of ``culture`` with its modal answer, drawn reproducibly from the items it answered.

    Raises:
        ValueError: when the culture has fewer than ``k`` items with data.
    """
    iso3 = resolve_cultures([culture])[0].iso3
    qids = [q for q in wvs.questions if wvs.distribution(iso3, q) is not None]
    if len(qids) < k:
        raise ValueError(f"self-alignment needs {k} WVS items answered in {iso3}, {wvs.source or 'the data'} has "
                         f"{len(qids)}")
    picked = random.Random(stable_id("culturespa-self-alignment", iso3, seed)).sample(qids, k)
    return [(wvs.questions[q], int(wvs.modal_code(iso3, q))) for q in picked]


def _argmax_code(probs: np.ndarray | None, codes: Sequence[int]) -> int | None:
    return None if probs is None else int(codes[int(np.argmax(probs))])


def answer_questions(
    questions: datasets.Dataset,
    cultures: Sequence[str | Culture],
    answerer: SurveyAnswerer,
    *,
    variant: AnswerVariant = "plain",
    similarity: CultureSimilarity | None = None,
    wvs: WVSData | None = None,
    num_self_alignment_examples: int = 5,
    seed: int = 0,
    show_progress: bool = True,
) -> StageResult:
    """Answer every question culture-unaware once and culture-aware for each culture.

    Args:
        questions: Generated questions (:data:`~culture_align.recipes.culturespa.schemas.QUESTION_FEATURES`).
        cultures: ISO3 codes of the target cultures.
        answerer: The local model and answer mode.
        variant: Prompt of the culture-aware answer: ``plain`` | ``cross_culture`` (needs ``similarity``) |
            ``self_alignment`` (needs ``wvs`` with distributions).
        num_self_alignment_examples: k of the self-alignment variant (reference: 5).
        seed: Seed of the self-alignment example draw.

    Returns:
        :class:`StageResult`: ``dataset`` with :data:`ANSWER_FEATURES` (question order, then culture order;
        ``changed`` False until CRQPC sets it), no rejections (invalid sampled answers stay in the table with
        None), ``stats`` (answers, invalid answers and unparsable samples per culture).
    """
    if variant not in ("plain", "cross_culture", "self_alignment"):
        raise ValueError(f"unknown answer variant {variant!r}: use plain, cross_culture or self_alignment")
    if variant == "cross_culture" and similarity is None:
        raise ValueError("the cross_culture variant needs a culture similarity table")
    if variant == "self_alignment" and wvs is None:
        raise ValueError("the self_alignment variant needs WVS data with distributions")
    resolved = resolve_cultures(cultures)
    rows = questions.to_list()
    items = [survey_question(r) for r in rows]
    total = len(items) * (1 + len(resolved))
    with tqdm(total=total, desc="CultureSPA answers", unit="answer", disable=not show_progress) as bar:
        unaware = answerer.answer([build_answer_conversation(q, None, UNAWARE_SETTING) for q in items], items,
                                  progress=bar.update)
        aware: dict[str, list[Answer]] = {}
        prompts: dict[str, Any] = {}
        for culture in resolved:
            if variant == "cross_culture":
                most, least = most_and_least_similar(similarity, culture)
                template = cross_culture_setting(most, least)
                convs = [build_answer_conversation(q, culture, template) for q in items]
                prompts[culture.iso3] = {"most_similar": [c.iso3 for c in most],
                                         "least_similar": [c.iso3 for c in least]}
            elif variant == "self_alignment":
                examples = self_alignment_examples(wvs, culture, num_self_alignment_examples, seed)
                convs = [build_self_alignment_conversation(q, culture, examples) for q in items]
                prompts[culture.iso3] = {"examples": [[q.qid, c] for q, c in examples]}
            else:
                convs = [build_answer_conversation(q, culture) for q in items]
            aware[culture.iso3] = answerer.answer(convs, items, progress=bar.update)

    js = alignment_math().js_distance
    out: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"questions": len(items), "cultures": len(resolved), "mode": answerer.mode,
                             "variant": variant, "per_culture": {}}
    for culture in resolved:
        invalid = unparsable = 0
        for row, q, (p_u, bad_u), (p_a, bad_a) in zip(rows, items, unaware, aware[culture.iso3]):
            invalid += p_a is None
            unparsable += bad_a
            out.append({
                "id": stable_id("culturespa-answer", row["id"], culture.iso3, answerer.mode, variant),
                "question_id": row["id"], "topic": row["topic"], "culture": culture.iso3, "codes": list(q.codes),
                "unaware_probs": None if p_u is None else p_u.tolist(),
                "aware_probs": None if p_a is None else p_a.tolist(),
                "unaware_answer": _argmax_code(p_u, q.codes), "aware_answer": _argmax_code(p_a, q.codes),
                "js_distance": None if p_u is None or p_a is None else float(js(p_u, p_a)),
                "changed": False, "mode": answerer.mode, "variant": variant,
                "unaware_invalid": bad_u, "aware_invalid": bad_a})
        stats["per_culture"][culture.iso3] = {"invalid_answers": invalid, "unparsable_samples": unparsable,
                                              **prompts.get(culture.iso3, {})}
    stats["unaware_invalid_answers"] = sum(p is None for p, _ in unaware)
    stats["unaware_unparsable_samples"] = sum(b for _, b in unaware)
    if answerer.cache is not None:
        stats["answer_cache"] = {"hits": answerer.cache.hits, "misses": answerer.cache.misses}
    return StageResult(to_dataset(out, ANSWER_FEATURES), to_dataset([], REJECTION_FEATURES), stats)
