"""Key/value caches for :class:`~culture_align.backends.transformers.TransformersBackend`.

Two pieces, both for decoder models whose layers all use full attention (Llama, Qwen2, SmolLM2, ...):

* :class:`PrefixKVCache`: the keys and values of recently prefilled prompts kept across calls, in a radix
  tree keyed by token ids (as SGLang's RadixAttention and vLLM's automatic prefix caching do). A new prompt
  reuses the KV of its longest cached token prefix and only the rest is run through the model. Bounded
  by a number of tokens (each shared prefix stored once), least recently used leaves evicted first.
  The KV of a token depends only on the tokens before it, so reusing it changes nothing but float rounding.
* :class:`PreallocatedKVCache`: a ``DynamicCache`` whose layers write into buffers allocated once per batch
  (prompt width + new tokens), instead of concatenating the whole cache at every decoding step (which,
  with a batch of long prompts, costs more than the forward pass itself on a CPU).

KV tensors of one sequence are stored as ONE tensor of shape ``[layers, 2, kv_heads, tokens, head_dim]``
(index 0 of dim 1 holds keys, 1 holds values); a batch buffer is ``[layers, 2, batch, kv_heads, capacity,
head_dim]``.
"""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, get_layer_types_and_kwargs

__all__ = ["PrefixKVCache", "PrefixMatch", "PreallocatedKVCache", "kv_layout", "supports_kv_reuse"]


def supports_kv_reuse(config: PreTrainedConfig) -> bool:
    """True when every layer of the model is a plain full-attention layer (no sliding window, no linear
    attention, no KV sharing): only then can KV segments be cut, moved and joined freely."""
    try:
        layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    except Exception:  # configs this transformers version cannot describe: stay on the plain path
        return False
    return bool(layer_types) and all(t == "full_attention" for t in layer_types)


def kv_layout(config: PreTrainedConfig) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a decoder config."""
    text = config.get_text_config(decoder=True)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return int(text.num_hidden_layers), int(kv_heads), int(head_dim)


# ----------------------------------------------------------------------------------------------------------
# Prefix cache
# ----------------------------------------------------------------------------------------------------------


class _Node:
    """A run of tokens and their KV ``[layers, 2, kv_heads, len(tokens), head_dim]``."""

    __slots__ = ("tokens", "kv", "parent", "children", "last_used")

    def __init__(self, tokens: tuple[int, ...], kv: torch.Tensor | None, parent: _Node | None) -> None:
        self.tokens = tokens
        self.kv = kv
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.last_used = 0


def _common_length(run: tuple[int, ...], tokens: Sequence[int], start: int) -> int:
    """How many leading tokens of ``run`` equal ``tokens[start:]``."""
    n = min(len(run), len(tokens) - start)
    if tuple(tokens[start: start + n]) == run[:n]:
        return n
    i = 0
    while run[i] == tokens[start + i]:
        i += 1
    return i


@dataclass
class PrefixMatch:
    """The cached part of a prompt.

    Attributes:
        length: Tokens of the prompt whose KV is cached (a prefix of the prompt).
        segments: KV tensors ``[layers, 2, kv_heads, n, head_dim]`` that, joined along the token axis, hold
            the KV of those ``length`` tokens.
    """

    length: int = 0
    segments: tuple[torch.Tensor, ...] = ()


class PrefixKVCache:
    """KV of recently seen prompts, found again by their longest common token prefix.

    Args:
        max_tokens: Tokens kept at most, counting each shared prefix once. Memory is
            ``max_tokens * 2 * layers * kv_heads * head_dim * dtype size`` bytes at most (SmolLM2-135M in
            float32: 46 KiB per token).

    Tokens are compared as ids, so only prompts tokenized the same way share a prefix. When over budget,
    the least recently used leaves (runs with no continuation) are dropped first; a run used by a lookup or
    an insertion counts as used, and so do the runs before it.
    """

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)
        self._root = _Node((), None, None)
        self._clock = 0
        self.num_tokens = 0
        """Tokens held now."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_tokens={self.num_tokens}, max_tokens={self.max_tokens})"

    def clear(self) -> None:
        """Drop everything."""
        self._root = _Node((), None, None)
        self.num_tokens = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def match(self, tokens: Sequence[int], limit: int | None = None) -> PrefixMatch:
        """The longest cached prefix of ``tokens`` (at most ``limit`` tokens), marked as used."""
        limit = len(tokens) if limit is None else min(limit, len(tokens))
        now, node, pos = self._tick(), self._root, 0
        segments: list[torch.Tensor] = []
        while pos < limit:
            child = node.children.get(tokens[pos])
            if child is None:
                break
            n = min(_common_length(child.tokens, tokens, pos), limit - pos)
            child.last_used = now
            segments.append(child.kv if n == len(child.tokens) else child.kv[:, :, :, :n])
            pos += n
            if n < len(child.tokens):
                break
            node = child
        return PrefixMatch(pos, tuple(segments))

    def insert(self, tokens: Sequence[int], kv_of: Callable[[int, int], torch.Tensor]) -> int:
        """Cache the KV of ``tokens``; ``kv_of(start, end)`` gives that of ``tokens[start:end]``
        (``[layers, 2, kv_heads, end - start, head_dim]``, copied: it is kept). Only the part not cached yet
        is asked for. Returns the number of tokens added."""
        tokens = tuple(int(t) for t in tokens[: self.max_tokens])
        now, node, pos = self._tick(), self._root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                break
            n = _common_length(child.tokens, tokens, pos)
            if n < len(child.tokens):
                child = self._split(child, n)
            child.last_used = now
            node, pos = child, pos + n
        added = len(tokens) - pos
        if added:
            leaf = _Node(tokens[pos:], kv_of(pos, len(tokens)).contiguous(), node)
            leaf.last_used = now
            node.children[tokens[pos]] = leaf
            self.num_tokens += added
            self._evict()
        return added

    def _split(self, node: _Node, n: int) -> _Node:
        """Cut ``node`` after its first ``n`` tokens; returns the new first part (the parent of the rest)."""
        head = _Node(node.tokens[:n], node.kv[:, :, :, :n].clone(), node.parent)
        head.last_used = node.last_used
        node.parent.children[node.tokens[0]] = head
        node.tokens, node.kv, node.parent = node.tokens[n:], node.kv[:, :, :, n:].clone(), head
        head.children[node.tokens[0]] = node
        return head

    def _evict(self) -> None:
        if self.num_tokens <= self.max_tokens:
            return
        leaves, stack = [], [self._root]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            if not node.children and node is not self._root:
                leaves.append((node.last_used, id(node), node))
        heapq.heapify(leaves)
        while self.num_tokens > self.max_tokens and leaves:
            _, _, leaf = heapq.heappop(leaves)
            parent = leaf.parent
            del parent.children[leaf.tokens[0]]
            self.num_tokens -= len(leaf.tokens)
            if parent is not self._root and not parent.children:
                heapq.heappush(leaves, (parent.last_used, id(parent), parent))


# ----------------------------------------------------------------------------------------------------------
# Batch cache with preallocated buffers
# ----------------------------------------------------------------------------------------------------------


class _PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` writing into its slice ``[batch, kv_heads, capacity, head_dim]`` of the cache's one
    buffer; ``keys``/``values`` are views of the filled part. When full, the whole cache grows (doubling)."""

    def __init__(self, owner: PreallocatedKVCache, index: int, length: int) -> None:
        super().__init__()
        # A weak reference: the cache holds its layers, so a strong one back would make a reference cycle, and a
        # finished batch's buffer (hundreds of MB) would wait for the cyclic garbage collector instead of being
        # freed when the batch is dropped.
        self._owner = weakref.ref(owner)
        self.index = index
        self.device = owner.buffer.device
        self.is_initialized = True
        self._set_length(length)

    @property
    def owner(self) -> PreallocatedKVCache:
        owner = self._owner()
        if owner is None:  # pragma: no cover - a layer outliving its cache is a bug
            raise RuntimeError("the PreallocatedKVCache of this layer is gone")
        return owner

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys = self.owner.buffer[self.index, 0, :, :, :length]
        self.values = self.owner.buffer[self.index, 1, :, :, :length]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:  # pragma: no cover
        raise RuntimeError("a preallocated layer is initialised at construction")

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        end = self.length + new
        if end > self.owner.buffer.shape[4]:
            self.owner.grow(end)
        self.owner.buffer[self.index, 0, :, :, self.length: end] = key_states
        self.owner.buffer[self.index, 1, :, :, self.length: end] = value_states
        self._set_length(end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        self._set_length(self.length + tokens_to_remove)

    def batch_select_indices(self, indices: torch.Tensor) -> None:  # pragma: no cover - the cache does it
        raise RuntimeError("select rows on the PreallocatedKVCache (one operation for all layers)")

    reorder_cache = batch_select_indices


class PreallocatedKVCache(DynamicCache):
    """A ``DynamicCache`` over ONE buffer ``[layers, 2, batch, kv_heads, capacity, head_dim]`` whose first
    ``length`` positions are filled (the caller fills them before the first forward pass).

    Decoding writes each new token in place: no per-step concatenation of the whole cache. Selecting rows
    (finished rows leaving the batch) or growing the capacity is one operation on the whole buffer, not one
    per layer: on a GPU, where small kernel launches cost more than the copies, that matters.

    Attributes:
        buffer: The buffer (replaced when rows are selected or the capacity grows).
    """

    def __init__(self, buffer: torch.Tensor, length: int = 0) -> None:
        self.buffer = buffer
        Cache.__init__(self, layers=[_PreallocatedLayer(self, i, length) for i in range(buffer.shape[0])])

    def _rebind(self) -> None:
        for layer in self.layers:
            layer._set_length(layer.length)

    def select_rows(self, indices: torch.Tensor) -> None:
        """Keep the batch rows at ``indices`` (in that order), for all layers at once."""
        self.buffer = self.buffer.index_select(2, indices.to(self.buffer.device))
        self._rebind()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.select_rows(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.select_rows(indices)

    def grow(self, capacity: int) -> None:
        """Make room for at least ``capacity`` positions (at least doubling), keeping the contents."""
        current = self.buffer.shape[4]
        extra = max(capacity, 2 * current) - current
        self.buffer = torch.nn.functional.pad(self.buffer, (0, 0, 0, extra))
        self._rebind()
