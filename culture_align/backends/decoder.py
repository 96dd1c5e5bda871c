"""The decoding engine of :class:`~culture_align.backends.TransformersBackend`: a KV-cached decoder with
continuous batching, a cross-call prefix KV cache and per-request seeds, written here because transformers'
own engines do not do the recipes' work as fast (``benchmarks/engine_comparison.py``: on the CLCA role-play,
JSON-constrained and multi-turn, it generates several times the tokens per second of ``model.generate``; transformers'
continuous batching, ``generate_batch``, cannot constrain decoding to a JSON schema).

It reaches into transformers' cache internals (``DynamicCache`` layers, see :mod:`.kv_cache`), so it is verified
against the transformers versions in :data:`VERIFIED_TRANSFORMERS` (the test suite runs it on the installed one);
outside them a warning says so once.

The loop is a plain KV-cached decoder (``DynamicCache``) over left-padded batches, written so that every
completion depends only on its own request:

* each completion ``(conversation, sample index k)`` draws its randomness from a private
  ``torch.Generator`` seeded with ``int(request_key(model_id, conversation, params, k)[:16], 16) ^ seed``,
  and draws exactly one vector of noise per generated token (exponential-race sampling, equivalent to
  sampling from the warped softmax), so a request gives the same text whatever batch it lands in; a run
  that is killed and resumed regenerates its missing requests in other batches and still gets the same
  texts as an uninterrupted run (up to float rounding of differently shaped batches, which only matters
  for near-ties);
* position ids come from each row's own prompt length, so left padding does not shift positions;
* continuous batching: waiting requests (the rest of a large ``generate`` call, or the follow-ups that
  :meth:`TransformersBackend.generate_continuous` callers ask for) join the running batch as rows finish, in
  groups (``admit_ratio``, ``max_waiting_steps``); the joining rows are prefilled apart and the batch cache is
  repacked once, so long completions do not make short ones pay and a follow-up never waits for a round.

Prompt KV reuse (models whose layers all use full attention: Llama, Qwen2, SmolLM2, ...):

* a :class:`~culture_align.backends.kv_cache.PrefixKVCache` keeps the KV of recent prompts across calls
  (``prefix_cache_tokens``); a prompt only prefills what follows its longest cached token prefix, like
  vLLM's automatic prefix caching. Multi-turn callers gain most: a role-play agent's prompt at turn t
  extends its prompt at turn t-2, and both agents of a dialogue share the instructions and the scenario;
* prompts of one batch that share a prefix beyond what is cached (the same instructions, the same
  scenario) prefill it once, in an extra pass, before their own tokens;
* a batch then joins, per row, its cached segments (left-padded to the longest cached part) and its new
  tokens (left-padded to the longest new part): the attention mask may have a hole between the two, and
  position ids are the running count of real tokens, so every row sees exactly its unpadded prompt;
* the batch cache is preallocated for the prompts and the new tokens (no per-step concatenation).

Reused KV equals recomputed KV up to float rounding (the same as batching differently): greedy outputs with
and without the prefix cache agree, and seeded sampling stays per request.

Structured output: with ``params.json_schema`` set, decoding is constrained by an ``xgrammar`` grammar
compiled from the schema (once per schema), with one ``GrammarMatcher`` per row.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import transformers
from packaging.version import Version
from transformers.cache_utils import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging
from trl.data_utils import common_prefix_length

from .base import Conversation, GenerationParams, request_key
from .kv_cache import PreallocatedKVCache, PrefixMatch

try:  # optional at runtime: without it, JSON schemas are not enforced (a warning says so)
    import xgrammar
except Exception:  # pragma: no cover - depends on the environment
    xgrammar = None

logger = logging.get_logger(__name__)

__all__ = ["ContinuousBatchingDecoder", "VERIFIED_TRANSFORMERS", "eval_mode", "request_seed"]

VERIFIED_TRANSFORMERS = ("5.14", "5.24")
"""The oldest and newest transformers minor versions this engine was verified against (its tests and
``benchmarks/engine_comparison.py``)."""

_MASK64 = (1 << 64) - 1

MIN_SHARED_PREFIX_TOKENS = 32
"""Prompts of a batch sharing at least this many uncached tokens prefill them once, in an extra pass."""


def check_transformers_version() -> bool:
    """True when the installed transformers is within :data:`VERIFIED_TRANSFORMERS`; else a warning (once)."""
    installed = Version(transformers.__version__)
    low, high = (Version(v) for v in VERIFIED_TRANSFORMERS)
    if low <= Version(f"{installed.major}.{installed.minor}") <= high:
        return True
    logger.warning_once(f"culture-align's decoder was verified with transformers {low}-{high}.x, not "
                        f"{installed}: check `pytest tests/test_backend_transformers.py` before relying on it")
    return False


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block (no dropout), its own mode restored after: a model that is being
    trained and is evaluated or sampled from in between (a callback) goes on training in training mode."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        if training:
            model.train()


def request_seed(model_id: str, conversation: Conversation, params: GenerationParams, sample_index: int) -> int:
    """The 64-bit seed of one completion: the first 16 hex digits of its request key, XOR ``params.seed``."""
    key = request_key(model_id, conversation, params, sample_index)
    return (int(key[:16], 16) ^ params.seed) & _MASK64


class _Job:
    """One completion to make: a prompt, its params, its sample index (for the seed) and the caller's handle."""

    __slots__ = ("conversation", "prompt", "params", "sample", "handle")

    def __init__(self, conversation: Conversation, prompt: list[int], params: GenerationParams, sample: int,
                 handle: Any) -> None:
        self.conversation = conversation
        self.prompt = prompt
        self.params = params
        self.sample = sample
        self.handle = handle


class _Row:
    """Decoding state of one job in the running batch."""

    __slots__ = ("job", "generator", "matcher", "tokens", "done")

    def __init__(self, job: _Job, generator: torch.Generator | None, matcher: Any) -> None:
        self.job = job
        self.generator = generator
        self.matcher = matcher
        self.tokens: list[int] = []
        self.done = False


class _LiveBatch:
    """The rows being decoded together and their KV.

    Invariant between steps: every live row has a pending token (``row.tokens[-1]``: sampled, not yet run
    through the model); ``cache`` holds the KV of the row's prompt and of its other tokens; ``mask`` ``[R, W]``
    marks the cache columns that are real for each row and ``positions`` ``[R]`` is the position of each
    row's pending token (its count of real tokens). A finished row (``row.done``) may stay in its slot for a
    while (its outputs are ignored): dropping it costs a copy of the whole cache, which the next repacking
    (:meth:`TransformersBackend._merge`) or compaction does anyway.
    """

    __slots__ = ("rows", "cache", "mask", "positions")

    def __init__(self, rows: list[_Row], cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor) -> None:
        self.rows = rows
        self.cache = cache
        self.mask = mask
        self.positions = positions

    def alive(self) -> list[int]:
        """Slots of the rows still decoding."""
        return [j for j, row in enumerate(self.rows) if not row.done]

    def compact(self) -> None:
        """Drop the finished rows (a copy of the cache, as ``reorder_cache`` does)."""
        indices = self.alive()
        if len(indices) == len(self.rows):
            return
        if not indices:
            self.rows = []
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.mask.device)
        self.cache.reorder_cache(index)
        self.mask, self.positions = self.mask.index_select(0, index), self.positions.index_select(0, index)
        self.rows = [self.rows[j] for j in indices]


def _real_runs(mask_row: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` column runs where ``mask_row`` is 1."""
    runs, start = [], None
    for column, value in enumerate(mask_row + [0]):
        if value and start is None:
            start = column
        elif not value and start is not None:
            runs.append((start, column))
            start = None
    return runs


class ContinuousBatchingDecoder:
    """The decode loop, mixed into :class:`~culture_align.backends.TransformersBackend`.

    The host class provides: ``model``, ``tokenizer``, ``model_id``, ``batch_size``, ``admit_ratio``,
    ``max_waiting_steps``, ``prefix_cache`` (a :class:`~culture_align.backends.kv_cache.PrefixKVCache` or None),
    ``stats`` (:class:`~culture_align.backends.base.GenerationStats`), ``_kv_reuse``, ``_kv_layout``, ``device``,
    ``vocab_size``, ``stop_token_ids()``, ``_compiled_grammar(schema)`` and ``_invalidate_stale_prefixes()``.
    Entry point: :meth:`_schedule`.
    """

    @torch.inference_mode()
    def _schedule(self, jobs: list[_Job], finished: Callable[[_Job, str], list[_Job]]) -> None:
        """Decode every job (and every follow-up job ``finished`` returns) with at most ``batch_size`` rows
        at a time. Waiting jobs join a running batch when the group that can join (waiting jobs, at most the
        free rows) is at least ``admit_ratio`` times the running rows, or when the oldest has waited
        ``max_waiting_steps`` decoding steps (the policy of TGI's ``waiting_served_ratio`` and
        ``max_waiting_tokens``): each admission costs a prefill pass and a repacking of the batch cache, so
        rows join in groups rather than one by one.

        Models whose KV cannot be moved between batches (sliding-window layers) admit jobs only into an empty
        batch.
        """
        with eval_mode(self.model):
            self._schedule_in_eval_mode(jobs, finished)

    def _schedule_in_eval_mode(self, jobs: list[_Job], finished: Callable[[_Job, str], list[_Job]]) -> None:
        self._invalidate_stale_prefixes()
        waiting = deque(jobs)
        live: _LiveBatch | None = None
        waited = 0  # decoding steps the oldest waiting job has waited
        while waiting or live is not None:
            running = len(live.alive()) if live is not None else 0
            free = self.batch_size - running
            if waiting and free > 0 and (live is None or (self._kv_reuse and (
                    min(len(waiting), free) >= self.admit_ratio * running or waited >= self.max_waiting_steps))):
                admitted = [waiting.popleft() for _ in range(min(len(waiting), free))]
                live, done = self._admit(live, admitted)
                waited = 0
            else:
                done = self._step(live)
                waited = waited + 1 if waiting else 0
            if live is not None and not live.alive():
                live = None
            for row in done:
                waiting.extend(finished(row.job, self._finish_text(row.tokens, row.job.params.stop)))

    def _new_row(self, job: _Job) -> _Row:
        generator = None
        if job.params.temperature > 0:
            seed = request_seed(self.model_id, job.conversation, job.params, job.sample)
            generator = torch.Generator(device=self.device).manual_seed(seed)
        matcher = None
        if job.params.json_schema is not None:
            if xgrammar is None:
                logger.warning_once("xgrammar is not importable: generating without the JSON schema constraint")
            else:
                matcher = xgrammar.GrammarMatcher(self._compiled_grammar(job.params.json_schema))
        return _Row(job, generator, matcher)

    def _admit(self, live: _LiveBatch | None, jobs: list[_Job]) -> tuple[_LiveBatch | None, list[_Row]]:
        """Prefill ``jobs``, pick their first tokens and join them to ``live``.

        Returns:
            (the batch, the rows that finished at their first token).
        """
        rows = [self._new_row(job) for job in jobs]
        slot = {p: u for u, p in enumerate(dict.fromkeys(tuple(job.prompt) for job in jobs))}
        prompts = [list(p) for p in slot]
        room = max(job.params.max_new_tokens for job in jobs)
        logits, mask, cache = self._prefill(prompts, room)
        if len(rows) != len(prompts):  # samples of one prompt: prefilled once, then repeated
            index = torch.tensor([slot[tuple(job.prompt)] for job in jobs], device=self.device)
            cache.reorder_cache(index)
            logits, mask = logits.index_select(0, index), mask.index_select(0, index)
        fresh = _LiveBatch(rows, cache, mask, mask.sum(-1))
        done = self._pick_and_advance(fresh, logits)
        if not fresh.alive():
            return live, done
        if live is None:
            return fresh, done
        return self._merge([live, fresh]), done

    def _merge(self, batches: list[_LiveBatch]) -> _LiveBatch:
        """One batch of the live rows of ``batches``: each row's real KV columns packed right-aligned at column
        ``W`` (the longest row), with room after it for the tokens the rows may still generate.

        One slice copy per row and run of real columns, each over all layers at once (the batch caches are
        single buffers): few operations on a GPU, plain memory copies on a CPU.
        """
        picks = [(b, b.alive(), b.mask.tolist()) for b in batches]
        rows = [b.rows[j] for b, alive, _ in picks for j in alive]
        lengths = [sum(mask[j]) for _, alive, mask in picks for j in alive]
        width = max(lengths)
        room = max(row.job.params.max_new_tokens - len(row.tokens) + 1 for row in rows)
        first = batches[0].cache.buffer
        layers, _, _, kv_heads, _, head_dim = first.shape
        buffer = torch.empty((layers, 2, len(rows), kv_heads, width + room, head_dim), dtype=first.dtype,
                             device=first.device)
        u = 0
        for b, alive, mask in picks:
            for j in alive:
                column = width - lengths[u]
                if column:
                    buffer[:, :, u, :, :column].zero_()  # masked padding, but must not hold NaN bit patterns
                for start, end in _real_runs(mask[j]):
                    buffer[:, :, u, :, column: column + end - start] = b.cache.buffer[:, :, j, :, start:end]
                    column += end - start
                u += 1
        lengths_t = torch.tensor(lengths, dtype=torch.long, device=first.device)
        mask = (torch.arange(width, device=first.device) >= width - lengths_t[:, None]).long()
        return _LiveBatch(rows, PreallocatedKVCache(buffer, length=width), mask, lengths_t)

    def _step(self, live: _LiveBatch) -> list[_Row]:
        """Run every row's pending token through the model, then pick the next tokens."""
        tokens = torch.tensor([row.tokens[-1] for row in live.rows], dtype=torch.long, device=self.device)
        live.mask = torch.cat([live.mask, torch.ones_like(live.mask[:, :1])], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=live.mask, position_ids=live.positions[:, None],
                         cache=live.cache, use_cache=True)
        live.positions = live.positions + 1
        return self._pick_and_advance(live, out.logits[:, -1].float())

    def _pick_and_advance(self, live: _LiveBatch, logits: torch.Tensor) -> list[_Row]:
        """Pick a token for every live row from ``logits`` ``[R, V]`` (one row per slot); return the rows that
        finished. Finished rows stay in their slots until more than half the slots are finished (then the
        batch is compacted) or the batch is repacked."""
        alive = live.alive()
        rows = [live.rows[j] for j in alive]
        if len(alive) < len(live.rows):
            logits = logits[alive]
        constrained = [j for j, row in enumerate(rows) if row.matcher is not None]
        if constrained:
            bitmask = xgrammar.allocate_token_bitmask(len(rows), self.vocab_size)
            for j in constrained:
                rows[j].matcher.fill_next_token_bitmask(bitmask, j)
            xgrammar.apply_token_bitmask_inplace(logits, bitmask.to(logits.device),
                                                 indices=None if len(constrained) == len(rows) else constrained)
        tokens = self._pick(logits, rows)
        self.stats.generated_tokens += len(rows)
        stop_ids = self.stop_token_ids()
        done = []
        for row, token in zip(rows, tokens.tolist()):
            row.tokens.append(token)
            ended = token in stop_ids
            if row.matcher is not None:
                row.matcher.accept_token(token)
                ended = ended or row.matcher.is_terminated()
            if not ended and row.job.params.stop:
                ended = self._hit_stop_string(row.tokens, row.job.params.stop)
            row.done = ended or len(row.tokens) >= row.job.params.max_new_tokens
            if row.done:
                done.append(row)
        if done and 2 * (len(rows) - len(done)) < len(live.rows):
            live.compact()
        return done

    @staticmethod
    def _warpers(temperature: float, top_p: float) -> LogitsProcessorList:
        warpers = LogitsProcessorList()
        if temperature > 0 and temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))
        return warpers

    def _prefill(self, prompts: list[list[int]], new_tokens: int) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
        """Run the prompts through the model, reusing cached prefixes where possible.

        Args:
            prompts: Token ids of U distinct prompts.
            new_tokens: Tokens the caller will decode at most (room kept in the batch cache).

        Returns:
            (last-token logits ``[U, V]`` float32, attention mask ``[U, W]``, cache over those W columns).
        """
        if not self._kv_reuse:
            return self._prefill_plain(prompts)
        matches = [PrefixMatch() for _ in prompts]
        if self.prefix_cache is not None:
            self._prefill_shared_prefixes(prompts)
            matches = [self.prefix_cache.match(p, limit=len(p) - 1) for p in prompts]
        return self._prefill_rows(prompts, matches, new_tokens)

    def _prefill_plain(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
        """Left-padded prefill into a fresh ``DynamicCache`` (models whose KV cannot be reused)."""
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for u, p in enumerate(prompts):
            ids[u, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[u, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=True, logits_to_keep=1)
        tokens = sum(len(p) for p in prompts)
        self.stats.prompt_tokens += tokens
        self.stats.prefilled_tokens += tokens
        return out.logits[:, -1].float(), mask, cache

    def _prefill_rows(self, prompts: list[list[int]], matches: list[PrefixMatch], new_tokens: int,
                      count_as_prompts: bool = True) -> tuple[torch.Tensor, torch.Tensor, PreallocatedKVCache]:
        """Prefill each prompt after its cached prefix, in one forward pass, and cache the prompts' KV.

        Column layout of the batch (``Wc`` = longest cached part, ``Wn`` = longest new part): row u holds
        its cached KV in ``[Wc - c_u, Wc)`` and its new tokens in ``[Wc + Wn - n_u, Wc + Wn)``; the rest is
        padding, masked out (a hole when both parts are shorter than the longest). Position ids count the
        real tokens before each column, so they are those of the unpadded prompt.
        """
        device, rows = self.device, len(prompts)
        cached = [m.length for m in matches]
        fresh = [len(p) - c for p, c in zip(prompts, cached)]
        wc, wn = max(cached), max(fresh)
        width = wc + wn
        layers, kv_heads, head_dim = self._kv_layout
        dtype = next(self.model.parameters()).dtype
        buffer = torch.empty((layers, 2, rows, kv_heads, width + new_tokens, head_dim), dtype=dtype, device=device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((rows, wn), pad, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for u, (p, match) in enumerate(zip(prompts, matches)):
            column = wc - match.length
            buffer[:, :, u, :, :column].zero_()  # masked padding, but must not hold NaN bit patterns
            for segment in match.segments:
                buffer[:, :, u, :, column: column + segment.shape[3]] = segment
                column += segment.shape[3]
            ids[u, wn - fresh[u]:] = torch.tensor(p[match.length:], dtype=torch.long)
            mask[u, wc - match.length: wc] = 1
            mask[u, width - fresh[u]:] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, wc:]
        cache = PreallocatedKVCache(buffer, length=wc)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                         logits_to_keep=1)
        if self.prefix_cache is not None:
            for u, p in enumerate(prompts):
                self.prefix_cache.insert(p, self._kv_columns(buffer, u, wc, width, cached[u], len(p)))
        if count_as_prompts:
            self.stats.prompt_tokens += sum(len(p) for p in prompts)
            self.stats.cached_prompt_tokens += sum(cached)
        self.stats.prefilled_tokens += sum(fresh)
        return out.logits[:, -1].float(), mask, cache

    @staticmethod
    def _kv_columns(buffer: torch.Tensor, row: int, wc: int, width: int, cached: int, length: int):
        """``kv_of(start, end)`` for :meth:`PrefixKVCache.insert`: the KV of prompt tokens ``[start, end)``
        of batch row ``row`` (cached tokens end at column ``wc``, the others at ``width``)."""

        def kv_of(start: int, end: int) -> torch.Tensor:
            parts = []
            if start < cached:
                parts.append(buffer[:, :, row, :, wc - cached + start: wc - cached + min(end, cached)])
            if end > cached:
                offset = width - length
                parts.append(buffer[:, :, row, :, offset + max(start, cached): offset + end])
            return parts[0].clone() if len(parts) == 1 else torch.cat(parts, dim=3)

        return kv_of

    def _prefill_shared_prefixes(self, prompts: Sequence[Sequence[int]]) -> None:
        """Prefill once, into the prefix cache, the prefixes that prompts of this batch share beyond their
        cached part (at least :data:`MIN_SHARED_PREFIX_TOKENS` tokens); prefixes shared by those prefixes
        first (recursively), so the instructions common to all are computed once, then what a group shares.
        """
        limits = [len(p) - 1 for p in prompts]  # a prompt's last token always runs: its logits are needed
        shared = [0] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        for a, b in zip(order, order[1:]):
            n = common_prefix_length(list(prompts[a]), list(prompts[b]))
            shared[a], shared[b] = max(shared[a], n), max(shared[b], n)
        prefixes = set()
        for i, p in enumerate(prompts):
            n = min(shared[i], limits[i])
            if n >= MIN_SHARED_PREFIX_TOKENS and n - self.prefix_cache.match(p, limit=n).length >= \
                    MIN_SHARED_PREFIX_TOKENS:
                prefixes.add(tuple(p[:n]))
        if not prefixes:
            return
        prefixes = sorted(prefixes)
        self._prefill_shared_prefixes(prefixes)
        matches = [self.prefix_cache.match(p, limit=len(p) - 1) for p in prefixes]
        self._prefill_rows([list(p) for p in prefixes], matches, new_tokens=0, count_as_prompts=False)

    @classmethod
    def _pick(cls, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """The next token of each row: argmax for greedy rows, else a draw from the row's own generator.

        Sampling is the exponential race ``argmax(p / E)``, ``E ~ Exp(1)`` i.i.d. per token, which picks
        token ``t`` with probability ``p[t]``; each sampling row draws exactly one noise vector per step. Rows
        are warped by their own temperature and top-p (rows with equal settings together).
        """
        tokens = logits.argmax(dim=-1)
        groups: dict[tuple[float, float], list[int]] = {}
        for j, row in enumerate(rows):
            if row.job.params.temperature > 0:
                groups.setdefault((row.job.params.temperature, row.job.params.top_p), []).append(j)
        for (temperature, top_p), members in groups.items():
            everyone = len(members) == len(rows)
            sub = logits if everyone else logits[members]
            warpers = cls._warpers(temperature, top_p)
            probs = torch.softmax(warpers(None, sub) if len(warpers) else sub, dim=-1)
            noise = torch.empty_like(probs)
            for i, j in enumerate(members):
                noise[i].exponential_(generator=rows[j].generator)
            picked = (probs / noise.clamp_(min=torch.finfo(noise.dtype).tiny)).argmax(dim=-1)
            if everyone:
                tokens = picked
            else:
                tokens[members] = picked
        return tokens

    def _hit_stop_string(self, tokens: list[int], stop: Sequence[str]) -> bool:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in stop)

    def _finish_text(self, tokens: list[int], stop: Sequence[str]) -> str:
        """Decode a completion, dropping the end token and everything from the first stop string on."""
        if tokens and tokens[-1] in self.stop_token_ids():
            tokens = tokens[:-1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s and s in text]
        return text[: min(cuts)] if cuts else text
