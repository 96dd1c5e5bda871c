"""The CultureSPA data pipeline: self-instructed questions -> culture-unaware and culture-aware answers ->
CRQPC pairs -> training conversations.

```python
from culture_align.recipes.culturespa import CultureSPAPipeline, CultureSPAPipelineConfig

config = CultureSPAPipelineConfig(wvs_path="path/to/wvs", questions_per_topic=50)
corpus = CultureSPAPipeline("smollm2-135m-instruct", cultures=["USA", "CHN"], config=config).run("spa-data")
corpus["train"]        # id, messages, culture, task ("survey"), question_id, answer, both distributions
```

Questions are generated through any :class:`~culture_align.backends.base.GenerationBackend` (default: a
``TransformersBackend`` over the answering model itself, as in the reference, where the model writes its own
questions); answers need the local model (log-probabilities).

Resuming: the question backend is wrapped in a :class:`CachedBackend` over ``<output_dir>/cache.jsonl`` and
every round of generation is a deterministic function of the earlier rounds, so a killed run replays from
the cache and asks the backend only for what is missing; answers are cached in
``<output_dir>/answers_cache.jsonl``, so a rerun scores nothing again. Re-running a finished pipeline makes no
backend call and no forward pass.

Outputs in ``output_dir``: ``dataset/`` (``DatasetDict.save_to_disk``: ``questions``, ``answers``, ``train``,
``rejections``; replaced atomically), ``stats.json`` (counts per stage and filter, changed share per culture,
cache hits, seconds), ``cache.jsonl`` and ``answers_cache.jsonl``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ...backends.base import GenerationBackend, GenerationParams
from ...backends.cache import CachedBackend, CompletionCache
from ...backends.transformers import TransformersBackend
from ...cultures import Culture, resolve_cultures
from ...embeddings import SentenceEmbedder
from ...models import DEFAULT_MODEL, load_model_and_tokenizer
from ...prompts.culturespa import PROMPT_VERSION
from ...wvs import bundled_questions, load_wvs
from ...wvs.data import WVSData
from ...wvs.questions import SurveyQuestion
from ..stages import config_to_dict, split_commas
from ..storage import save_dataset_atomically, write_json_atomically
from .answering import DEFAULT_ANSWER_SAMPLING, AnswerCache, SurveyAnswerer, answer_questions
from .crqpc import collect_pairs
from .questions import DEFAULT_QUESTION_PARAMS, generate_questions, seed_questions_by_topic
from .schemas import count_by
from .similarity import culture_similarity, load_culture_similarity

logger = logging.get_logger(__name__)

__all__ = ["CultureSPAPipelineConfig", "CultureSPAPipeline", "PAPER_CULTURES"]

PAPER_CULTURES = ("AUS", "BOL", "BRA", "CAN", "CHN", "DEU", "ETH", "GBR", "IND", "KEN", "NGA", "NLD", "NZL",
                  "RUS", "THA", "UKR", "USA", "ZWE")
"""The 18 countries of the CultureSPA paper."""


@dataclass
class CultureSPAPipelineConfig:
    """Configuration of :class:`CultureSPAPipeline` (defaults follow the CultureSPA reference where it has one)."""

    cultures: Sequence[str] = field(default=PAPER_CULTURES, metadata={
        "help": "ISO3 codes of the target cultures. The `cultures` argument of CultureSPAPipeline overrides it."})
    wvs_path: str | None = field(default=None, metadata={
        "help": "WVS source (folder, CSV, JSON, Parquet, or hf://owner/name for a Hub dataset) for the seed "
                "items, the contamination guard and (variants) culture similarity and self-alignment examples. "
                "None: the bundled catalog (questions only).", "aliases": ["--wvs"]})
    topics: Sequence[str] | None = field(default=None, metadata={
        "help": "WVS topic ids to generate for (None: all 13 that have seed items)."})
    questions_per_topic: int = field(default=1000, metadata={
        "help": "Generated questions kept per topic (reference: 1,000)."})
    requests_per_round: int = field(default=64, metadata={
        "help": "Generation requests per topic and round; all topics of a round go in one backend call."})
    max_requests_per_topic: int | None = field(default=None, metadata={
        "help": "A topic stops after this many requests even when short (None: 3 x questions_per_topic)."})
    num_examples: int = field(default=5, metadata={"help": "Examples per generation request (reference: 5)."})
    num_seed_examples: int = field(default=3, metadata={
        "help": "Of which seed items (reference: 3); the others are questions generated before."})
    question_params: GenerationParams = field(default=DEFAULT_QUESTION_PARAMS, metadata={
        "help": "Question sampling (reference: temperature 0.9, top_p 0.95, 256 new tokens)."})
    embedding_model: str | None = field(default=None, metadata={
        "help": "Sentence-transformers model of the similarity filters (None: offline all-MiniLM-L6-v2)."})
    near_duplicate_threshold: float | None = field(default=0.9, metadata={
        "help": "Cosine similarity from which a question is a near duplicate of a kept one (None: off)."})
    contamination_threshold: float | None = field(default=0.85, metadata={
        "help": "Cosine similarity to a WVS item from which a question is dropped (None: exact copies only)."})
    answer_mode: str = field(default="logprob", metadata={
        "help": "'logprob' (exact answer distributions, one forward pass) or 'sampling' (the reference)."})
    answer_sampling: GenerationParams = field(default=DEFAULT_ANSWER_SAMPLING, metadata={
        "help": "Sampling mode's params (reference: n=1 sample, temperature 0.6, top_p 0.9)."})
    answer_variant: str = field(default="plain", metadata={
        "help": "Culture-aware prompt: 'plain', 'cross_culture' (names the 3 most / 3 least similar cultures) "
                "or 'self_alignment' (k answered WVS examples of the culture first)."})
    similarity_file: str | None = field(default=None, metadata={
        "help": "cross_culture: a JSON file {ISO3: {ISO3: score}} (None: computed from the WVS modal answers)."})
    self_alignment_examples: int = field(default=5, metadata={"help": "self_alignment: k (reference: 5)."})
    crqpc_criterion: str = field(default="argmax", metadata={
        "help": "'argmax' (the aware answer code differs; reference) or 'js' (JS distance >= js_threshold)."})
    js_threshold: float = field(default=0.1, metadata={"help": "JS distance threshold of the 'js' criterion."})
    batch_size: int = field(default=16, metadata={
        "help": "Prompts per forward pass when answering (and per batch of the default question backend)."})
    dtype: str | None = field(default=None, metadata={
        "help": "Weights dtype when the pipeline loads the model by name (None: bfloat16 on GPU, float32 on CPU)."})
    cache_answers: bool = field(default=True, metadata={
        "help": "Cache answers in answers_cache.jsonl so that a rerun scores nothing again."})
    seed: int = field(default=0, metadata={"help": "Seed of example draws and of question sampling."})
    prompt_version: str = field(default=PROMPT_VERSION, metadata={
        "help": "Recorded in ids and provenance; bump it when changing prompts."})
    cache_chunk_size: int = field(default=256, metadata={
        "help": "Cache misses go to the question backend in chunks of this many requests."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar per stage."})

    def __post_init__(self) -> None:
        self.cultures = split_commas(self.cultures)
        self.topics = split_commas(self.topics)
        if self.answer_mode not in ("logprob", "sampling"):
            raise ValueError(f"answer_mode must be 'logprob' or 'sampling', got {self.answer_mode!r}")
        if self.answer_variant not in ("plain", "cross_culture", "self_alignment"):
            raise ValueError(f"answer_variant must be plain, cross_culture or self_alignment, got "
                             f"{self.answer_variant!r}")
        if self.crqpc_criterion not in ("argmax", "js"):
            raise ValueError(f"crqpc_criterion must be 'argmax' or 'js', got {self.crqpc_criterion!r}")
        if self.questions_per_topic < 1 or self.requests_per_round < 1 or self.batch_size < 1:
            raise ValueError("questions_per_topic, requests_per_round and batch_size must be >= 1")
        for name in ("num_examples", "cache_chunk_size"):  # a chunk size below 1 would send nothing, silently
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (:func:`~culture_align.recipes.stages.config_to_dict`: params as dicts)."""
        return config_to_dict(self)


ModelLike = str | os.PathLike | PreTrainedModel | GenerationBackend


class CultureSPAPipeline:
    """Generate a CultureSPA training corpus with a model.

    Args:
        model: The model that answers (and, by default, writes the questions): a Hub id, folder or embedded
            alias (loaded with ``config.dtype``), a loaded ``PreTrainedModel`` (give ``tokenizer``), or any
            :class:`~culture_align.backends.GenerationBackend` (a local one, vLLM, a server; log-prob answering
            needs its ``score``), which then answers and writes the questions.
        cultures: ISO3 codes (overrides ``config.cultures``).
        config: :class:`CultureSPAPipelineConfig` (default: its defaults).
        tokenizer: The tokenizer of a loaded ``model``.
        question_backend: Any backend that writes the questions (default: the answering model).
        wvs: Human data to use instead of ``config.wvs_path`` (an experiment passes its split's training view, so
            seeds, similarity and self-alignment examples come from training cells only).
        guard_questions: Items the generated questions must stay away from (the contamination guard; default:
            ``wvs.questions``). An experiment passes every item, held-out ones included.
        embedder: Sentence embedder of the similarity filters (default: from ``config.embedding_model``).
    """

    def __init__(self, model: ModelLike = DEFAULT_MODEL, cultures: Sequence[str | Culture] | str | None = None,
                 config: CultureSPAPipelineConfig | None = None, *, tokenizer: PreTrainedTokenizerBase | None = None,
                 question_backend: GenerationBackend | None = None, wvs: WVSData | None = None,
                 guard_questions: Mapping[str, SurveyQuestion] | None = None,
                 embedder: SentenceEmbedder | None = None) -> None:
        self.config = cfg = config or CultureSPAPipelineConfig()
        self.cultures = resolve_cultures(cultures if cultures is not None else cfg.cultures)
        if not self.cultures:
            raise ValueError("no cultures given")
        self._owns_backend = not isinstance(model, GenerationBackend)
        if isinstance(model, GenerationBackend):
            self.backend = model
        elif isinstance(model, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer: CultureSPAPipeline(model, tokenizer=...)")
            self.backend = TransformersBackend.from_model(model, tokenizer, batch_size=cfg.batch_size)
        else:
            loaded, loaded_tokenizer = load_model_and_tokenizer(model, dtype=cfg.dtype)
            self.backend = TransformersBackend.from_model(loaded, loaded_tokenizer, model_id=str(model),
                                                          batch_size=cfg.batch_size)
        self.model_id = self.backend.model_id or type(model).__name__
        self.question_backend = question_backend or self.backend
        if wvs is None:
            wvs = (load_wvs(cfg.wvs_path) if cfg.wvs_path else
                   WVSData(questions=bundled_questions(), distributions={}, source="bundled catalog"))
        self.wvs = wvs
        self.guard_questions = dict(guard_questions) if guard_questions is not None else wvs.questions
        self.seeds = seed_questions_by_topic(wvs.questions, cfg.topics)  # fails early on unknown topics
        self.embedder = embedder
        self.stats: dict[str, Any] = {}

    def _similarity(self):
        cfg = self.config
        if cfg.answer_variant != "cross_culture":
            return None
        if cfg.similarity_file:
            return load_culture_similarity(cfg.similarity_file)
        if not self.wvs.cultures:
            raise ValueError("cross_culture needs a similarity_file or WVS data with distributions (wvs_path)")
        return culture_similarity(self.wvs)

    def run(self, output_dir: str | os.PathLike) -> datasets.DatasetDict:
        """Run (or resume) every stage; write ``dataset/``, ``stats.json`` and the caches in ``output_dir``.

        Returns:
            ``DatasetDict`` with ``questions`` (kept generated questions), ``answers`` (per question and
            culture), ``train`` (CRQPC training conversations) and ``rejections``.
        """
        cfg = self.config
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        run_start = time.perf_counter()
        cache = CompletionCache(out / "cache.jsonl")
        backend = CachedBackend(self.question_backend, cache, chunk_size=cfg.cache_chunk_size)
        if self.embedder is None and (cfg.near_duplicate_threshold is not None
                                      or cfg.contamination_threshold is not None):
            self.embedder = SentenceEmbedder(cfg.embedding_model)
        stats: dict[str, Any] = {"config": cfg.to_dict(), "cultures": [c.iso3 for c in self.cultures],
                                 "models": {"answers": self.model_id, "questions": backend.model_id},
                                 "wvs_source": self.wvs.source, "stages": {}}

        # 1. questions
        start = time.perf_counter()
        evaluation = [q for qs in seed_questions_by_topic(self.guard_questions).values() for q in qs]
        questions = generate_questions(
            self.seeds, backend, replace(cfg.question_params, seed=cfg.seed),
            questions_per_topic=cfg.questions_per_topic, requests_per_round=cfg.requests_per_round,
            max_requests_per_topic=cfg.max_requests_per_topic, num_examples=cfg.num_examples,
            num_seed_examples=cfg.num_seed_examples, evaluation_questions=evaluation, embedder=self.embedder,
            near_duplicate_threshold=cfg.near_duplicate_threshold,
            contamination_threshold=cfg.contamination_threshold, seed=cfg.seed, prompt_version=cfg.prompt_version,
            show_progress=cfg.show_progress)
        stats["stages"]["questions"] = {**questions.stats, "seconds": round(time.perf_counter() - start, 3),
                                        "cache_hits": cache.hits, "backend_requests": cache.misses}
        logger.info(f"CultureSPA questions: {questions.stats['kept']} kept, {questions.stats['rejected']} rejected")

        # 2. answers
        start = time.perf_counter()
        answer_cache = AnswerCache(out / "answers_cache.jsonl") if cfg.cache_answers else None
        answer_backend = self.backend
        if self._owns_backend and cfg.answer_mode == "sampling" and cfg.answer_sampling.n > 1:
            # as the evaluator does: batch_size prompts' samples decoded together (batch_size x n rows)
            answer_backend = TransformersBackend.from_model(
                self.backend.model, self.backend.tokenizer, model_id=self.model_id,
                batch_size=cfg.batch_size * cfg.answer_sampling.n)
        answerer = SurveyAnswerer(answer_backend, mode=cfg.answer_mode, sampling=cfg.answer_sampling,
                                  batch_size=cfg.batch_size, cache=answer_cache, model_id=self.model_id)
        answers = answer_questions(questions.dataset, self.cultures, answerer, variant=cfg.answer_variant,
                                   similarity=self._similarity(), wvs=self.wvs,
                                   num_self_alignment_examples=cfg.self_alignment_examples, seed=cfg.seed,
                                   show_progress=cfg.show_progress)
        stats["stages"]["answers"] = {**answers.stats, "seconds": round(time.perf_counter() - start, 3)}

        # 3. CRQPC
        start = time.perf_counter()
        pairs = collect_pairs(answers.dataset, questions.dataset, criterion=cfg.crqpc_criterion,
                              js_threshold=cfg.js_threshold, cultures=[c.iso3 for c in self.cultures])
        stats["stages"]["crqpc"] = {**pairs.stats, "seconds": round(time.perf_counter() - start, 3)}

        rejections = datasets.concatenate_datasets([questions.rejections, answers.rejections])
        corpus = datasets.DatasetDict({"questions": questions.dataset, "answers": pairs.answers,
                                       "train": pairs.train, "rejections": rejections})
        stats["counts"] = {
            "questions": len(questions.dataset), "answers": len(pairs.answers), "train": len(pairs.train),
            "rejections": len(rejections), "rejections_by_reason": count_by(rejections["reason"]),
            "questions_by_topic": count_by(questions.dataset["topic"])}
        stats["changed_share"] = {c: v["changed_share"] for c, v in pairs.stats["per_culture"].items()}
        stats["seconds"] = round(time.perf_counter() - run_start, 3)
        save_dataset_atomically(corpus, out / "dataset")
        write_json_atomically(stats, out / "stats.json")
        self.stats = stats
        return corpus
