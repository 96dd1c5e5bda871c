"""The model interface: chats in; texts out (``generate``) or log-probabilities of fixed choices out (``score``).

Every recipe stage, the WVS evaluator and the downstream task harness talk to a :class:`GenerationBackend`; they
never know whether a local model, a server or vLLM answers. Backends know nothing of recipes or WVS.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..chat import Conversation, Message

__all__ = [
    "Message",
    "Conversation",
    "GenerationParams",
    "GenerationRequest",
    "OnCompletion",
    "GenerationBackend",
    "GenerationStats",
    "request_key",
    "generate_in_waves",
    "generate_samples",
]



@dataclass(frozen=True)
class GenerationParams:
    """How to generate.

    Attributes:
        temperature: Sampling temperature; 0 means greedy decoding (default 0.7).
        top_p: Nucleus mass kept (default 1.0).
        max_new_tokens: Tokens generated at most per completion (default 256).
        stop: Strings that end a completion; the stop string itself is not returned (default none).
        seed: Base seed. A backend derives each request's randomness from it and the request itself, so a
            request gives the same completion whatever batch it is in (default 0).
        n: Completions per conversation (default 1).
        json_schema: A JSON schema the completion must follow. Backends that can constrain decoding do so
            (a grammar-constrained logits processor locally, ``response_format`` on servers); the caller
            still validates the text.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0
    n: int = 1
    json_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        for name in ("n", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.temperature >= 0:  # NaN included
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationStats:
    """Counters accumulated over a backend's lifetime.

    Attributes:
        requests: Completions produced (a conversation with ``n=3`` counts 3).
        prompt_tokens: Prompt tokens processed (each unique prompt of a batch counted once).
        cached_prompt_tokens: Of ``prompt_tokens``, those whose keys/values were reused from a prefix cache
            instead of being computed (local backends only).
        prefilled_tokens: Prompt tokens actually run through the model, shared prefixes computed once for
            several prompts included (local backends only).
        generated_tokens: Tokens generated, end-of-turn tokens included.
        seconds: Wall-clock seconds spent in :meth:`GenerationBackend.generate`.
        retries: Requests sent again after a transient error (server backends only).
    """

    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall-clock second (0 before any generation)."""
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Share of prompt tokens reused from the prefix cache (0 before any generation)."""
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second,
                "prefix_cache_hit_rate": self.prefix_cache_hit_rate}


@dataclass
class GenerationRequest:
    """One completion to make, for :meth:`GenerationBackend.generate_continuous`.

    Attributes:
        conversation: The chat to answer.
        params: How to generate (``n`` must be 1: one request, one completion).
        tag: Anything the caller needs to recognise the request when its completion arrives.
    """

    conversation: Conversation
    params: GenerationParams
    tag: Any = None

    def __post_init__(self) -> None:
        if self.params.n != 1:
            raise ValueError(f"a GenerationRequest asks one completion (params.n must be 1, got {self.params.n})")


OnCompletion = Callable[[GenerationRequest, str], "Iterable[GenerationRequest] | None"]
"""``on_completion(request, text) -> follow-up requests`` (or None): called once per finished request."""


def request_key(model_id: str, conversation: Conversation, params: GenerationParams, sample_index: int = 0) -> str:
    """Stable id of one completion request: sha256 over (model, messages, params, seed, sample index).

    ``params.n`` is left out: sample k of a conversation is the same request whether 3 or 5 samples are
    asked for, so raising ``n`` later reuses the samples already generated.
    """
    settings = {k: v for k, v in params.to_dict().items() if k != "n"}
    payload = {"model": model_id, "messages": conversation, "params": settings, "sample": sample_index}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationBackend(ABC):
    """A model behind two verbs, as in lm-evaluation-harness: :meth:`generate` (texts) and :meth:`score`
    (log-probabilities of fixed choices).

    Subclasses set :attr:`model_id` (used in cache keys and provenance), implement :meth:`_generate`, and
    override :meth:`score` when they can read log-probabilities.
    """

    model_id: str = ""
    supports_json_schema: bool = False
    """True when the backend constrains decoding to ``params.json_schema`` (not just asks for it)."""
    continuous_batching: bool = False
    """True when :meth:`generate_continuous` starts follow-ups inside a running batch (not in waves)."""

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams | None = None) -> list[str]:
        """Generate ``params.n`` completions per conversation.

        Returns:
            ``len(conversations) * params.n`` texts; those of conversation ``i`` are at
            ``[i * n:(i + 1) * n]``.
        """
        params = params or GenerationParams()
        if not conversations:
            return []
        return self._generate(list(conversations), params)

    def generate_continuous(self, requests: Iterable[GenerationRequest], on_completion: OnCompletion) -> None:
        """Generate ``requests`` and every follow-up request ``on_completion`` returns, until none is left.

        Multi-step work (a role-play, where each finished turn asks for the next one) goes through here: a
        backend that batches continuously (:class:`~culture_align.backends.TransformersBackend`) starts a
        follow-up as soon as its predecessor ends, in the batch that is running, instead of waiting for the
        slowest request of a round. Completions are the same as with :meth:`generate` (each request's
        randomness comes from the request itself); only the order of ``on_completion`` calls differs.

        This default runs in waves: all requests known now, one :meth:`generate` call per distinct params
        (see :func:`generate_in_waves`), then their follow-ups, and so on.
        """
        generate_in_waves(requests, on_completion, lambda request: self)

    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """The answer distribution over fixed choices, as a decoder constrained to write one of them would give it.

        Args:
            conversations: N chats, each ending with the user turn to answer.
            choices: N lists of answer strings (e.g. option codes ``["1", "2", "3"]``).
            progress: Called with the number of conversations finished, as they finish.

        Returns:
            N float64 arrays of log-probabilities (nats), one per choice; ``exp`` of each sums to 1.

        Raises:
            NotImplementedError: this backend cannot read log-probabilities (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score choices (no log-probabilities); use "
                                  "sampling mode, or a backend that reads them (TransformersBackend, VLLMBackend, "
                                  "an OpenAI-compatible server that returns logprobs)")

    def prompt_text(self, conversation: Conversation) -> str:
        """What identifies the prompt of ``conversation`` in caches: the rendered chat template where the backend
        renders it itself, else the messages as JSON (the default)."""
        return json.dumps(conversation, sort_keys=True, ensure_ascii=False)

    @abstractmethod
    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        ...


def generate_samples(backend: GenerationBackend, conversations: Sequence[Conversation], params: GenerationParams,
                     chunk: int, progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """``params.n`` completions per conversation, grouped: ``[[text, ...] per conversation]``, ``chunk``
    conversations per :meth:`GenerationBackend.generate` call (``progress`` gets each call's conversation count)."""
    n, out = params.n, []
    for start in range(0, len(conversations), chunk):
        texts = backend.generate(conversations[start: start + chunk], params)
        out.extend(texts[i: i + n] for i in range(0, len(texts), n))
        if progress is not None:
            progress(len(texts) // n)
    return out


def _params_group(params: GenerationParams) -> tuple[GenerationParams, str]:
    """Requests with equal params (the JSON schema included) share one :meth:`GenerationBackend.generate`."""
    return params, json.dumps(params.json_schema, sort_keys=True)


def generate_in_waves(requests: Iterable[GenerationRequest], on_completion: OnCompletion,
                      backend_of: Callable[[GenerationRequest], GenerationBackend]) -> int:
    """Run requests and their follow-ups in waves: every request known at the start of a wave is sent, one
    :meth:`GenerationBackend.generate` call per (backend, params) group, then ``on_completion`` runs for
    each, in request order, and the follow-ups form the next wave.

    Args:
        backend_of: The backend that answers a request (e.g. participant 1's or 2's agent).

    Returns:
        The number of ``generate`` calls made.
    """
    pending, calls = list(requests), 0
    while pending:
        groups: dict[tuple[int, tuple[GenerationParams, str]], list[int]] = {}
        backends: dict[int, GenerationBackend] = {}
        for i, request in enumerate(pending):
            backend = backend_of(request)
            backends[id(backend)] = backend
            groups.setdefault((id(backend), _params_group(request.params)), []).append(i)
        texts: list[str] = [""] * len(pending)
        for (backend_id, _), members in groups.items():
            params = pending[members[0]].params
            outputs = backends[backend_id].generate([pending[i].conversation for i in members], params)
            calls += 1
            for i, text in zip(members, outputs):
                texts[i] = text
        wave, pending = pending, []
        for request, text in zip(wave, texts):
            pending.extend(on_completion(request, text) or ())
    return calls
