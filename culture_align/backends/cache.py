"""A persistent completion cache beneath any backend: append-only JSON Lines, safe to kill at any point.

Each completion is one line ``{"key", "model", "text"}`` appended with a single ``write`` on a file opened
in append mode, then flushed and fsynced after every backend call. A process killed mid-write leaves at
most one truncated last line, cut at any byte (inside a multi-byte character too); it is skipped and counted
when the file is read (:func:`read_completions`, through :func:`culture_align.jsonl.iter_append_only_jsonl`),
and the next append starts on a fresh line (the file is only appended to). Re-running a stage asks the cache
first, so finished completions are never generated again and never stored twice.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from transformers.utils import logging

from ..jsonl import iter_append_only_jsonl
from ..redaction import redact_url
from .base import (
    Conversation,
    GenerationBackend,
    GenerationParams,
    GenerationRequest,
    OnCompletion,
    generate_in_waves,
    request_key,
)

logger = logging.get_logger(__name__)

__all__ = ["CompletionCache", "CachedBackend", "read_completions"]


def read_completions(path: str | os.PathLike) -> tuple[list[tuple[str, str, str]], int]:
    """The completions of a cache file as ``(key, model_id, text)`` rows, and the number of lines skipped.

    A line is a completion when it is a JSON object whose ``key`` and ``text`` are strings (``model`` is kept
    when it is a string, else ``""``). Torn lines (a kill or a full disk cut the last line at any byte, inside
    a multi-byte UTF-8 character too), damaged lines and lines of any other shape are skipped and counted,
    never fatal. A missing file has no completions.
    """
    rows: list[tuple[str, str, str]] = []
    skipped = 0
    if not Path(path).is_file():
        return rows, skipped
    for row in iter_append_only_jsonl(path):
        if row is None or not isinstance(row.get("key"), str) or not isinstance(row.get("text"), str):
            skipped += 1
            continue
        model = row.get("model")
        rows.append((row["key"], model if isinstance(model, str) else "", row["text"]))
    return rows, skipped


def _line(key: str, model_id: str, text: str) -> bytes:
    """One cache line as UTF-8 bytes; a text UTF-8 cannot encode (a lone surrogate) is written escaped."""
    row = {"key": key, "model": model_id, "text": text}
    try:
        return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(row) + "\n").encode("ascii")


class CompletionCache:
    """Completions by request key, persisted to ``path`` (JSON Lines).

    Args:
        path: The cache file; created with its folder when missing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.skipped = 0
        """Lines of the file that were not completions when it was read (torn by a kill, or damaged)."""
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        rows, self.skipped = read_completions(self.path)
        for key, _, text in rows:
            self._entries[key] = text
        if self.skipped:
            logger.warning(f"{self.path}: ignored {self.skipped} incomplete or damaged cache line(s) "
                           "(from an interrupted run)")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def put_many(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Append ``(key, model_id, text)`` rows durably (one write, flush, fsync); known keys are skipped."""
        with self._lock:
            fresh, seen = [], set()
            for k, m, t in rows:  # skip known keys, and repeats of one key within ``rows``
                if k not in self._entries and k not in seen:
                    seen.add(k)
                    fresh.append((k, m, t))
            if not fresh:
                return
            payload = b"".join(_line(k, m, t) for k, m, t in fresh)
            # A file that ended in a partial line (killed run): start on a fresh line.
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
            with open(self.path, "ab") as f:
                f.write((b"\n" if needs_newline else b"") + payload)
                f.flush()
                os.fsync(f.fileno())
            for k, _, t in fresh:
                self._entries[k] = t

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


class CachedBackend(GenerationBackend):
    """Wrap a backend with a :class:`CompletionCache`: only requests not in the cache reach the backend.

    The model id in keys and cache lines is the backend's with any URL credentials replaced by ``***``
    (:func:`culture_align.redaction.redact_url`; backends of this library already give it so).

    Args:
        backend: The backend that generates on a miss.
        cache: A :class:`CompletionCache` or the path of its file.
        chunk_size: Misses are sent to the backend (and persisted) in chunks of this many conversations,
            so a killed run loses at most one chunk of work (default 64).
    """

    def __init__(self, backend: GenerationBackend, cache: CompletionCache | str | os.PathLike,
                 chunk_size: int = 64) -> None:
        self.backend = backend
        self.cache = cache if isinstance(cache, CompletionCache) else CompletionCache(cache)
        self.chunk_size = chunk_size
        self.model_id = redact_url(backend.model_id)  # keys and cache lines never hold a URL's credentials
        self.supports_json_schema = backend.supports_json_schema
        self.continuous_batching = backend.continuous_batching

    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """The wrapped backend's :meth:`~GenerationBackend.score` (scores are not cached here: the evaluator and
        CultureSPA answering keep their own answer caches)."""
        return self.backend.score(conversations, choices, progress=progress)

    def prompt_text(self, conversation: Conversation) -> str:
        return self.backend.prompt_text(conversation)

    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        n = params.n
        keys = [[request_key(self.model_id, c, params, k) for k in range(n)] for c in conversations]
        todo, queued = [], set()
        for i, ks in enumerate(keys):  # a conversation repeated within the call is generated once
            if any(k not in self.cache for k in ks) and tuple(ks) not in queued:
                queued.add(tuple(ks))
                todo.append(i)
        self.cache.hits += len(conversations) - len(todo)
        self.cache.misses += len(todo)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start: start + self.chunk_size]
            texts = self.backend.generate([conversations[i] for i in chunk], params)
            rows = [(keys[i][k], self.model_id, texts[j * n + k]) for j, i in enumerate(chunk) for k in range(n)]
            self.cache.put_many(rows)
        return [self.cache.get(k) for ks in keys for k in ks]  # type: ignore[misc]

    def generate_continuous(self, requests: Iterable[GenerationRequest], on_completion: OnCompletion) -> None:
        """As :meth:`GenerationBackend.generate_continuous`, answering from the cache first.

        A cached request completes at once (its follow-ups are looked up in turn); the others go to the wrapped
        backend, continuously when it batches continuously, and each completion is persisted as soon as it
        arrives. Over a backend without continuous batching, waves of :meth:`generate` (chunked and persisted
        as usual).
        """
        if not self.continuous_batching:
            generate_in_waves(requests, on_completion, lambda request: self)
            return

        def resolve(queue: Iterable[GenerationRequest]) -> list[GenerationRequest]:
            """Complete the cached requests of ``queue`` (and of their follow-ups); return the misses."""
            todo, misses = deque(queue), []
            while todo:
                request = todo.popleft()
                text = self.cache.get(request_key(self.model_id, request.conversation, request.params))
                if text is None:
                    self.cache.misses += 1
                    misses.append(request)
                else:
                    self.cache.hits += 1
                    todo.extend(on_completion(request, text) or ())
            return misses

        def completed(request: GenerationRequest, text: str) -> list[GenerationRequest]:
            key = request_key(self.model_id, request.conversation, request.params)
            self.cache.put_many([(key, self.model_id, text)])
            return resolve(on_completion(request, text) or ())

        misses = resolve(requests)
        if misses:
            self.backend.generate_continuous(misses, completed)
