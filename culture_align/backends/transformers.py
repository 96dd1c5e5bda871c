"""`TransformersBackend`: generation and exact option scoring with a local transformers model.

Loading (any Hub id or folder, or the embedded default), the chat template, stop tokens, JSON-schema grammars and
exact option scoring (:meth:`TransformersBackend.score`, :mod:`.option_scoring`) live here; the decode loop
(continuous batching, the prefix KV cache, per-request seeds, grammar-constrained rows) is :mod:`.decoder`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from .base import (
    Conversation,
    GenerationBackend,
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    OnCompletion,
)
from .decoder import (
    ContinuousBatchingDecoder,
    _Job,
    check_transformers_version,
    eval_mode,
    request_seed,
    xgrammar,
)
from .kv_cache import PrefixKVCache, kv_layout, supports_kv_reuse
from .option_scoring import OptionScorer

logger = logging.get_logger(__name__)

__all__ = ["TransformersBackend", "request_seed"]

DEFAULT_PREFIX_CACHE_BYTES = 2 << 30
"""Memory budget of the prefix cache when ``prefix_cache_tokens`` is not given (2 GiB), capped at
:data:`MAX_DEFAULT_PREFIX_CACHE_TOKENS` tokens."""

MAX_DEFAULT_PREFIX_CACHE_TOKENS = 65536


def _as_list(ids: int | Sequence[int] | None) -> list[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]



class TransformersBackend(ContinuousBatchingDecoder, GenerationBackend):
    """Generate with a local causal LM (any Hub id or folder, or the embedded default model).

    Args:
        model_name_or_path: A Hub id, a local folder or an embedded alias (e.g. ``"smollm2-135m-instruct"``),
            loaded with :func:`culture_align.models.load_model_and_tokenizer`.
        model_id: Name used in cache keys and provenance (default: ``model_name_or_path`` as given).
            Give a different one when the weights differ under the same name (e.g. with an adapter).
        batch_size: Completions decoded in parallel (default 16).
        device: Default: CUDA when available, else CPU.
        dtype: Weights dtype (default: bfloat16 on CUDA, float32 on CPU).
        adapter: Optional PEFT adapter folder loaded on top of the model.
        show_progress: Show a tqdm bar over completions (default False).
        admit_ratio: Continuous batching: waiting requests join a running batch once the group that can join
            is at least this many times the running rows (default 0.5; 0: as soon as a row is free).
        max_waiting_steps: ... or once the oldest has waited this many decoding steps (default 8).
        prefix_cache_tokens: Token budget of the cross-call prefix KV cache; 0 turns it off. Default (None):
            as many tokens as fit in :data:`DEFAULT_PREFIX_CACHE_BYTES` (2 GiB), at most 65536 (SmolLM2-135M
            in float32 takes 46 KiB per token: 45k tokens). For multi-turn work, give it room for the live
            contexts (e.g. role-play: dialogues x context length), or least-recently-used eviction cycles
            through them and nothing is reused. Ignored (off) for models with sliding-window or other
            non-full-attention layers.
        **load_kwargs: Passed to :func:`~culture_align.models.load_model_and_tokenizer`.

    Use :meth:`from_model` for an already loaded ``(model, tokenizer)`` pair.
    """

    def __init__(self, model_name_or_path: str | os.PathLike, *, model_id: str | None = None,
                 batch_size: int = 16, device: str | torch.device | None = None,
                 dtype: torch.dtype | str | None = None, adapter: str | os.PathLike | None = None,
                 show_progress: bool = False, prefix_cache_tokens: int | None = None, admit_ratio: float = 0.5,
                 max_waiting_steps: int = 8, **load_kwargs: Any) -> None:
        from ..models import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(model_name_or_path, dtype=dtype, device=device,
                                                    adapter=adapter, **load_kwargs)
        self._setup(model, tokenizer, model_id or str(model_name_or_path), batch_size, show_progress,
                    prefix_cache_tokens, admit_ratio, max_waiting_steps)

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, model_id: str | None = None,
                   batch_size: int = 16, show_progress: bool = False,
                   prefix_cache_tokens: int | None = None, admit_ratio: float = 0.5,
                   max_waiting_steps: int = 8) -> TransformersBackend:
        """Wrap an already loaded model (a PEFT model works: the active adapter is used).

        Args:
            model_id: Name used in cache keys (default: ``model.config.name_or_path``).
            prefix_cache_tokens: As in the constructor (0: off; None: the default budget).
            admit_ratio, max_waiting_steps: As in the constructor.

        The prefix cache holds KV of the weights in use when it was filled. It empties itself when the
        parameters change (training steps, new modules, loaded weights) or the active adapters do; call
        :meth:`clear_prefix_cache` after any other change (e.g. inside PEFT's ``disable_adapter()``).
        """
        self = cls.__new__(cls)
        name = model_id or getattr(model.config, "name_or_path", None) or type(model).__name__
        self._setup(model, tokenizer, name, batch_size, show_progress, prefix_cache_tokens, admit_ratio,
                    max_waiting_steps)
        return self

    def _setup(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str, batch_size: int,
               show_progress: bool, prefix_cache_tokens: int | None, admit_ratio: float = 0.5,
               max_waiting_steps: int = 8) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template: set tokenizer.chat_template first")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if admit_ratio < 0 or max_waiting_steps < 0:
            raise ValueError(f"admit_ratio and max_waiting_steps must be >= 0, got {admit_ratio}, {max_waiting_steps}")
        self.admit_ratio = float(admit_ratio)
        self.max_waiting_steps = int(max_waiting_steps)
        self.model = model  # put in eval mode for each call only (eval_mode): the caller's model keeps its mode
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.stats = GenerationStats()
        self.supports_json_schema = xgrammar is not None
        self.continuous_batching = True
        if xgrammar is None:
            logger.warning("xgrammar is not importable: JSON schemas will not constrain decoding")
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}
        self._stop_ids: list[int] | None = None
        self._kv_reuse = supports_kv_reuse(model.config)
        self._kv_layout = kv_layout(model.config) if self._kv_reuse else None
        if prefix_cache_tokens is None:
            layers, kv_heads, head_dim = self._kv_layout or (1, 1, 1)
            per_token = 2 * layers * kv_heads * head_dim * next(model.parameters()).element_size()
            prefix_cache_tokens = min(MAX_DEFAULT_PREFIX_CACHE_TOKENS, DEFAULT_PREFIX_CACHE_BYTES // per_token)
        if prefix_cache_tokens < 0:
            raise ValueError(f"prefix_cache_tokens must be >= 0 (0: off), got {prefix_cache_tokens}")
        self.prefix_cache: PrefixKVCache | None = None
        """The cross-call prefix KV cache (None when off or unsupported by the model)."""
        if prefix_cache_tokens and self._kv_reuse:
            self.prefix_cache = PrefixKVCache(prefix_cache_tokens)
        self._weights_seen = self._weights_fingerprint()
        self._option_scorer: OptionScorer | None = None
        check_transformers_version()

    def clear_prefix_cache(self) -> None:
        """Forget every cached prompt KV."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def _weights_fingerprint(self) -> int:
        """Changes when a parameter is replaced or modified in place (tensor version counters), or when the
        active adapters change."""
        params = tuple((id(p), p._version) for p in self.model.parameters())
        adapters = getattr(self.model, "active_adapters", None)  # a property on PEFT models, a method on others
        if callable(adapters):
            try:
                adapters = adapters()
            except Exception:  # no adapter loaded
                adapters = None
        return hash((params, repr(adapters)))

    def _invalidate_stale_prefixes(self) -> None:
        if self.prefix_cache is not None:
            fingerprint = self._weights_fingerprint()
            if fingerprint != self._weights_seen:
                self.prefix_cache.clear()
                self._weights_seen = fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, batch_size={self.batch_size})"

    # ------------------------------------------------------------------------------------------ encoding
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Size of the logits vector (may exceed ``len(tokenizer)`` when the embedding matrix is padded)."""
        head = self.model.get_output_embeddings()
        if head is not None and getattr(head, "weight", None) is not None:
            return int(head.weight.shape[0])
        return int(self.model.config.get_text_config().vocab_size)

    def render(self, conversation: Conversation) -> str:
        """The prompt text: the chat template applied with the generation prompt."""
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def encode(self, conversation: Conversation) -> list[int]:
        """Prompt token ids (the template writes any special tokens itself)."""
        return self.tokenizer(self.render(conversation), add_special_tokens=False)["input_ids"]

    def prompt_text(self, conversation: Conversation) -> str:
        """The rendered prompt (:meth:`render`)."""
        return self.render(conversation)

    # ------------------------------------------------------------------------------------------- scoring
    @property
    def option_scorer(self) -> OptionScorer:
        """The exact option scorer over this backend's model (made once; ``batch_size`` prompts per pass)."""
        if self._option_scorer is None:
            self._option_scorer = OptionScorer(self.model, self.tokenizer, batch_size=self.batch_size)
        return self._option_scorer

    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Exact constrained option log-probabilities in batched forward passes
        (:meth:`OptionScorer.score <culture_align.backends.option_scoring.OptionScorer.score>`): the model is
        consulted only where legal answers branch; the prompts' shared prefix is computed once."""
        with eval_mode(self.model):
            return self.option_scorer.score(conversations, choices, progress=progress)

    def stop_token_ids(self) -> list[int]:
        """Tokens that end a completion: EOS of tokenizer and generation config, and the template's end of turn."""
        if self._stop_ids is None:
            ids = set(_as_list(self.tokenizer.eos_token_id))
            gen_config = getattr(self.model, "generation_config", None)
            ids.update(_as_list(getattr(gen_config, "eos_token_id", None)))
            ids.update(self._end_of_turn_ids())
            self._stop_ids = sorted(ids)
        return self._stop_ids

    def _end_of_turn_ids(self) -> list[int]:
        """The first token the chat template writes after an assistant answer, if any."""
        probe = [{"role": "user", "content": "Hi"}]
        try:
            prompt = self.render(probe)
            full = self.tokenizer.apply_chat_template(probe + [{"role": "assistant", "content": "7"}], tokenize=False)
        except Exception:  # templates that refuse this probe: rely on EOS
            return []
        if not full.startswith(prompt + "7"):
            return []
        tail = full[len(prompt) + 1:]
        ids = self.tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        return ids[:1] if ids and ids[0] in self.tokenizer.all_special_ids else []

    # -------------------------------------------------------------------------------------------- grammar
    def _compiled_grammar(self, schema: dict[str, Any]) -> Any:
        """The xgrammar grammar of a JSON schema, compiled once per schema."""
        text = json.dumps(schema)  # property order matters: the grammar writes properties in schema order
        if text not in self._grammars:
            if self._grammar_compiler is None:
                info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                               stop_token_ids=self.stop_token_ids())
                self._grammar_compiler = xgrammar.GrammarCompiler(info)
            self._grammars[text] = self._grammar_compiler.compile_json_schema(text, any_whitespace=False)
        return self._grammars[text]

    # ---------------------------------------------------------------------------------------- generation
    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        start = time.perf_counter()
        if params.temperature == 0 and params.n > 1:
            # Greedy completions are identical: decode each conversation once.
            once = self._generate_rows(conversations, replace(params, n=1))
            texts = [t for t in once for _ in range(params.n)]
        else:
            texts = self._generate_rows(conversations, params)
        self.stats.requests += len(texts)
        self.stats.seconds += time.perf_counter() - start
        return texts

    def _generate_rows(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        n = params.n
        encoded = [self.encode(c) for c in conversations]
        # Longest prompts first: the first batch holds prompts of similar length (little padding), and the
        # short ones that join later fill the places of finished rows.
        order = sorted(range(len(conversations)), key=lambda i: -len(encoded[i]))
        jobs = [_Job(conversations[i], encoded[i], params, k, i * n + k) for i in order for k in range(n)]
        results: list[str | None] = [None] * (len(conversations) * n)
        with tqdm(total=len(jobs), desc="generate", disable=not self.show_progress, leave=False) as bar:
            def finished(job: _Job, text: str) -> list[_Job]:
                results[job.handle] = text
                bar.update(1)
                return []

            self._schedule(jobs, finished)
        return results  # type: ignore[return-value]

    def generate_continuous(self, requests: Iterable[GenerationRequest], on_completion: OnCompletion) -> None:
        """Continuous batching: a follow-up request joins the running batch as soon as rows have finished,
        instead of waiting for the slowest request of a round (see
        :meth:`GenerationBackend.generate_continuous`).

        The joining rows are prefilled on their own (reusing cached prefixes), then their KV and that of the
        rows still running are packed into one new batch cache; rows never wait for each other. A request's
        completion is the same as through :meth:`generate` (same seed, same constraint), up to float rounding.
        """
        start = time.perf_counter()

        def jobs_of(requests: Iterable[GenerationRequest]) -> list[_Job]:
            return [_Job(r.conversation, self.encode(r.conversation), r.params, 0, r) for r in requests]

        def finished(job: _Job, text: str) -> list[_Job]:
            self.stats.requests += 1
            return jobs_of(on_completion(job.handle, text) or ())

        try:
            self._schedule(jobs_of(requests), finished)
        finally:
            self.stats.seconds += time.perf_counter() - start
