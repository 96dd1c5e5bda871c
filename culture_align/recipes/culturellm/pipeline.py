"""The CultureLLM data pipeline: WVS seeds -> structural rewrites -> lexical variants -> training records.

```python
from culture_align.recipes.culturellm import CultureLLMPipeline
from culture_align.wvs import load_wvs

wvs = load_wvs("distributions.json")                                   # the user's WVS data
corpus = CultureLLMPipeline(teacher, wvs, cultures=["USA", "DEU"]).run("culturellm-data")
corpus["train"]       # id, messages, culture, task="survey", seed_id, text_id, source, answer
```

Resuming: the teacher is wrapped in a :class:`CachedBackend` over ``<output_dir>/cache.jsonl``. Every stage is
a deterministic function of its inputs, of the completions and of the (deterministic) embeddings, so a run
killed at any point and started again asks the cache first: nothing generated is lost or generated twice.
Re-running a finished pipeline makes no backend call at all.

Outputs in ``output_dir``: ``dataset/`` (``DatasetDict.save_to_disk``: ``seeds``, ``augmented``, ``train``,
``rejections``; replaced atomically), ``stats.json`` (per-step counts, rejection reasons, similarity
summaries, seconds per step, embedding throughput, cache hits and misses, and ``train_items``: the seed ids
the training data covers, for ``EvaluationConfig(exclude_items=...)``), ``similarity_histogram.png`` and
``cache.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from transformers.utils import logging

from ...backends.base import GenerationBackend, GenerationParams
from ...backends.cache import CachedBackend, CompletionCache
from ...cultures import Culture, resolve_cultures
from ...prompts.culturellm import PROMPT_VERSION
from ...wvs.data import WVSData
from ..stages import StageResult, config_to_dict, count_by, split_commas
from ..storage import save_dataset_atomically, write_json_atomically
from .augment import (
    DEFAULT_PARAPHRASE_PARAMS,
    DEFAULT_SYNONYM_PARAMS,
    lexical_variants,
    paraphrase_seeds,
    select_augmented,
)
from .report import plot_similarity_histogram, similarity_summary
from .seeds import CULTURELLM_SEED_ITEMS, build_seeds, seed_label_stats, train_item_ids
from .training_data import build_training_set

if TYPE_CHECKING:
    from ...embeddings import SentenceEmbedder

logger = logging.get_logger(__name__)

__all__ = ["CultureLLMPipelineConfig", "CultureLLMPipeline"]


@dataclass
class CultureLLMPipelineConfig:
    """Configuration of :class:`CultureLLMPipeline` (defaults follow the CultureLLM reference)."""

    cultures: Sequence[str] | None = field(default=None, metadata={
        "help": "ISO3 codes of the cultures to label (None: every culture of the WVS data). The `cultures` "
                "argument of CultureLLMPipeline overrides it."})
    items: Sequence[str] = field(default=CULTURELLM_SEED_ITEMS, metadata={
        "help": "Seed item ids (default: the reference's 50 WVS-7 items Q27-Q41, Q122-Q129, Q132-Q138, "
                "Q158-Q162, Q169-Q170, Q196-Q198, Q224-Q233)."})
    num_seeds: int | None = field(default=None, metadata={
        "help": "Use the first N of `items` (None: all)."})
    num_rewrites: int = field(default=5, metadata={
        "help": "Step 1: structural rewrites wanted per seed (n; reference: 5)."})
    similarity_threshold: float = field(default=0.8, metadata={
        "help": "Keep a text when its cosine similarity to the seed is above this (tau; reference: 0.8)."})
    paraphrase_retries: int = field(default=10, metadata={
        "help": "Step 1: extra rounds for seeds still short of n rewrites (k; reference: 10)."})
    max_samples_per_seed: int = field(default=10, metadata={
        "help": "Augmented samples kept per seed, rewrites first, then the most similar lexical variants "
                "(m; reference: 10)."})
    synonyms_per_word: int = field(default=3, metadata={"help": "Step 2: synonyms asked per content word."})
    max_words_per_sentence: int = field(default=8, metadata={
        "help": "Step 2: content words per sentence offered for substitution."})
    max_variants_per_sentence: int = field(default=24, metadata={
        "help": "Step 2: lexical variants made per sentence (seed or rewrite) at most."})
    include_lexical: bool = field(default=True, metadata={"help": "Run step 2 (lexical variants)."})
    include_seeds: bool = field(default=True, metadata={"help": "Seeds themselves are training records too."})
    embedding_model: str | None = field(default=None, metadata={
        "help": "sentence-transformers model id or folder for the similarity filter (None: the offline "
                "all-MiniLM-L6-v2). Ignored when an embedder is passed to the pipeline."})
    embedding_batch_size: int = field(default=64, metadata={"help": "Texts per embedding forward pass."})
    paraphrase_params: GenerationParams = field(default=DEFAULT_PARAPHRASE_PARAMS, metadata={
        "help": "Teacher sampling for step 1 (reference: temperature 0.7)."})
    synonym_params: GenerationParams = field(default=DEFAULT_SYNONYM_PARAMS, metadata={
        "help": "Teacher sampling for step 2 (greedy)."})
    max_attempts: int = field(default=3, metadata={
        "help": "Step 2: attempts per synonym answer before it counts as malformed."})
    retry_temperature: float = field(default=0.7, metadata={
        "help": "Temperature of the retries of a greedy stage (a new seed alone would repeat the greedy text)."})
    seed: int = field(default=0, metadata={"help": "Base seed of every stage (replaces each params' seed)."})
    prompt_version: str = field(default=PROMPT_VERSION, metadata={
        "help": "Recorded in ids and provenance; bump it when changing prompts."})
    cache_chunk_size: int = field(default=256, metadata={
        "help": "Cache misses go to the teacher in chunks of this many requests (a kill loses at most one)."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar per stage."})

    def __post_init__(self) -> None:
        self.cultures = split_commas(self.cultures)
        self.items = tuple(split_commas(self.items))
        if not 0 <= self.similarity_threshold < 1:
            raise ValueError(f"similarity_threshold must be in [0, 1), got {self.similarity_threshold}")
        for name in ("num_rewrites", "synonyms_per_word", "max_words_per_sentence", "max_attempts",
                     "embedding_batch_size", "cache_chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("paraphrase_retries", "max_samples_per_seed", "max_variants_per_sentence"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_seeds is not None and self.num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1 or None, got {self.num_seeds}")

    @property
    def seed_items(self) -> tuple[str, ...]:
        """The seed ids used: ``items``, cut to ``num_seeds``."""
        return tuple(self.items[: self.num_seeds] if self.num_seeds is not None else self.items)

    def stage_params(self, params: GenerationParams) -> GenerationParams:
        return replace(params, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (:func:`~culture_align.recipes.stages.config_to_dict`: params as dicts without
        their JSON schema)."""
        return config_to_dict(self)


class CultureLLMPipeline:
    """Build a CultureLLM training corpus from the user's WVS data with a teacher.

    Args:
        teacher: Writes the rewrites and proposes the synonyms (any :class:`GenerationBackend`).
        wvs: The survey data giving the seed items and the per-culture target answers.
        cultures: ISO3 codes (overrides ``config.cultures``; default: every culture of ``wvs``).
        config: :class:`CultureLLMPipelineConfig` (default: its defaults).
        embedder: The similarity filter's :class:`~culture_align.embeddings.SentenceEmbedder` (default: one
            built from ``config.embedding_model`` when the run needs it).
    """

    def __init__(self, teacher: GenerationBackend, wvs: WVSData,
                 cultures: Sequence[str | Culture] | str | None = None,
                 config: CultureLLMPipelineConfig | None = None, embedder: SentenceEmbedder | None = None) -> None:
        self.config = config or CultureLLMPipelineConfig()
        self.teacher = teacher
        self.wvs = wvs
        chosen = cultures if cultures is not None else self.config.cultures
        self.cultures = resolve_cultures(chosen if chosen is not None else wvs.cultures)
        if not self.cultures:
            raise ValueError("no cultures given (and the WVS data has none)")
        self.embedder = embedder
        self.stats: dict[str, Any] = {}

    def _embedder(self) -> SentenceEmbedder:
        if self.embedder is None:
            from ...embeddings import SentenceEmbedder

            self.embedder = SentenceEmbedder(self.config.embedding_model,
                                             batch_size=self.config.embedding_batch_size)
        return self.embedder

    def run(self, output_dir: str | Path) -> datasets.DatasetDict:
        """Run (or resume) every step; write ``dataset/``, ``stats.json``, ``similarity_histogram.png`` and
        ``cache.jsonl`` in ``output_dir``.

        Returns:
            ``DatasetDict`` with ``seeds`` (items, options, per-culture targets and distributions),
            ``augmented`` (kept samples: id, seed_id, step, text, similarity, ...), ``train`` (training
            conversations of every culture) and ``rejections`` (every rejected text with its similarity and
            reason).
        """
        cfg = self.config
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        cache = CompletionCache(out / "cache.jsonl")
        teacher = CachedBackend(self.teacher, cache, chunk_size=cfg.cache_chunk_size)
        stats: dict[str, Any] = {"config": cfg.to_dict(), "cultures": [c.iso3 for c in self.cultures],
                                 "models": {"teacher": teacher.model_id}, "wvs_source": self.wvs.source,
                                 "steps": {}}
        run_start = time.perf_counter()

        def step(name: str, fn, *args, **kwargs) -> StageResult:
            hits, misses = cache.hits, cache.misses
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            stats["steps"][name] = {**result.stats, "seconds": round(time.perf_counter() - start, 3),
                                    "cache_hits": cache.hits - hits, "backend_requests": cache.misses - misses}
            logger.info(f"CultureLLM {name}: {result.stats}")
            return result

        start = time.perf_counter()
        seeds = build_seeds(self.wvs, self.cultures, cfg.seed_items)
        stats["steps"]["seeds"] = {**seed_label_stats(seeds), "seconds": round(time.perf_counter() - start, 3)}
        labelled = seeds.select([i for i, targets in enumerate(seeds["targets"]) if targets])
        common = dict(threshold=cfg.similarity_threshold, retry_temperature=cfg.retry_temperature,
                      prompt_version=cfg.prompt_version, show_progress=cfg.show_progress)
        embedder = self._embedder() if len(labelled) else None
        paraphrases = step("paraphrase", paraphrase_seeds, labelled, teacher, embedder,
                           cfg.stage_params(cfg.paraphrase_params), num_rewrites=cfg.num_rewrites,
                           max_retries=cfg.paraphrase_retries, **common)
        results = [paraphrases]
        if cfg.include_lexical:
            variants = step("lexical", lexical_variants, labelled, paraphrases.dataset, teacher, embedder,
                            cfg.stage_params(cfg.synonym_params), synonyms_per_word=cfg.synonyms_per_word,
                            max_words_per_sentence=cfg.max_words_per_sentence,
                            max_variants_per_sentence=cfg.max_variants_per_sentence,
                            max_attempts=cfg.max_attempts, **common)
            results.append(variants)
            variant_rows = variants.dataset
        else:
            variant_rows = paraphrases.dataset.select([])
        selected = step("select", select_augmented, paraphrases.dataset, variant_rows, cfg.max_samples_per_seed,
                        labelled["id"])
        results.append(selected)
        start = time.perf_counter()
        train = build_training_set(seeds, selected.dataset, [c.iso3 for c in self.cultures],
                                   include_seeds=cfg.include_seeds, prompt_version=cfg.prompt_version)
        stats["steps"]["training_data"] = {
            "records": len(train), "by_culture": count_by(train["culture"]), "by_source": count_by(train["source"]),
            "seconds": round(time.perf_counter() - start, 3)}

        rejections = datasets.concatenate_datasets([r.rejections for r in results])
        corpus = datasets.DatasetDict({"seeds": seeds, "augmented": selected.dataset, "train": train,
                                       "rejections": rejections})
        stats["train_items"] = train_item_ids(seeds)
        stats["counts"] = {
            "seeds": len(seeds), "seeds_labelled": len(labelled), "augmented": len(selected.dataset),
            "augmented_by_step": count_by(selected.dataset["step"]), "train": len(train),
            "rejections": len(rejections), "rejections_by_step": count_by(rejections["step"]),
            "rejection_reasons": count_by(f"{s}:{r}" for s, r in zip(rejections["step"], rejections["reason"])),
        }
        stats["similarity"] = similarity_summary(selected.dataset, rejections)
        if embedder is not None:
            stats["embedding"] = {"model": embedder.model_name, **embedder.stats.to_dict()}
        stats["cache"] = {"hits": cache.hits, "misses": cache.misses, "entries": len(cache)}
        stats["seconds"] = round(time.perf_counter() - run_start, 3)
        save_dataset_atomically(corpus, out / "dataset")
        plot_similarity_histogram(selected.dataset, rejections, cfg.similarity_threshold,
                                  out / "similarity_histogram.png")
        write_json_atomically(stats, out / "stats.json")
        self.stats = stats
        return corpus
