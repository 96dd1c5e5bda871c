"""Exact answer distributions over fixed choices from a local causal LM (:class:`OptionScorer`, behind
:meth:`TransformersBackend.score <culture_align.backends.TransformersBackend.score>`), and the constrained-choice
math every backend's ``score`` shares (:func:`constrained_choice_log_probs`, :func:`choice_log_probs_from_tokens`).

The prompts of one call usually share a long token prefix (the
system prompt and the instructions before the item): it is run through the model once, and its key/value
cache is reused by every batch. Rows are right-padded after the shared prefix, so padding never sits
between the prefix and a row's tokens and position ids stay those of an unpadded prompt.

Scoring (:meth:`OptionScorer.score`): the probability of each option's code tokens after the generation
prompt, under the constraint that the answer is one legal code. When one option's tokens are a prefix of
another's (``"1"`` and ``"10"`` with per-digit tokenizers), the options are completed with the end-of-turn
token that the chat template puts after an answer, so they form a prefix-free set of complete answers.
The model is only consulted where legal answers branch: after the prompt, and (for such items) after the
shared first token, in one extra single-token step over the first step's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicCache
from trl.data_utils import common_prefix_length

from ..chat import Conversation

__all__ = ["OptionScorer", "branching_nodes", "constrained_choice_log_probs", "choice_log_probs_from_tokens",
           "node_chains"]


Progress = Callable[[int], None]


def _kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache_from(kv: list[tuple[torch.Tensor, torch.Tensor]], index: torch.Tensor) -> DynamicCache:
    """A fresh cache holding the rows ``index`` of ``kv`` (the originals are never modified)."""
    return DynamicCache(ddp_cache_data=[(k.index_select(0, index), v.index_select(0, index)) for k, v in kv])


def branching_nodes(sequences: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    """Token prefixes after which two or more legal choices continue differently, with those next tokens.

    The root ``()`` is one whenever there are two choices or more; ``("1",)`` is one for ``"1<end>"`` vs ``"10"``.
    """
    children: dict[tuple[int, ...], set[int]] = {}
    for seq in sequences:
        for j in range(len(seq)):
            children.setdefault(seq[:j], set()).add(seq[j])
    return {node: sorted(nxt) for node, nxt in children.items() if len(nxt) > 1}


def node_chains(nodes: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The fewest token paths whose prefixes cover every branching node: the nodes that are not a prefix of another.

    Feeding ``prompt + path`` gives the next-token distribution after every prefix of ``path`` in one row
    (``[()]`` when the root is the only node)."""
    nodes = sorted(set(nodes), key=len, reverse=True)
    chains: list[tuple[int, ...]] = []
    for node in nodes:
        if not any(chain[: len(node)] == node for chain in chains):
            chains.append(node)
    return chains or [()]


def constrained_choice_log_probs(node_log_probs: Mapping[tuple[int, ...], torch.Tensor],
                                 sequences: Sequence[tuple[int, ...]],
                                 branches: Mapping[tuple[int, ...], list[int]]) -> torch.Tensor:
    """Log-probability of each legal choice under a decoder constrained to write exactly one of them.

    The one implementation of the answer distribution, shared by :meth:`OptionScorer.score` (the evaluator) and
    the answer-distribution trainer (differentiable: it is plain indexing and ``logsumexp``).

    Args:
        node_log_probs: For every branching node (a token prefix of the choices, see :func:`branching_nodes`), the
            model's next-token log-probabilities there: a [V] tensor.
        sequences: The choices' token sequences (prefix-free: complete answers).
        branches: ``branching_nodes(sequences)``.

    Returns:
        A [len(sequences)] tensor of log-probabilities; ``exp`` sums to 1. At each branching node the next-token
        probabilities are renormalised over the legal continuations; where only one continuation is legal it has
        probability 1.
    """
    totals = []
    for seq in sequences:
        terms = []
        for j in range(len(seq)):
            legal = branches.get(seq[:j])
            if legal is None:  # a single legal continuation
                continue
            logp = node_log_probs[seq[:j]]
            terms.append(logp[seq[j]] - torch.logsumexp(logp[legal], dim=0))
        totals.append(torch.stack(terms).sum() if terms else next(iter(node_log_probs.values())).new_zeros(()))
    return torch.stack(totals)


def choice_log_probs_from_tokens(sequences: Sequence[tuple[int, ...]],
                                 token_log_probs: Sequence[Sequence[float]]) -> np.ndarray:
    """The constrained answer distribution from each choice's own token log-probabilities (what an engine that
    reports prompt log-probabilities gives: vLLM's ``prompt_logprobs``, a server's ``logprobs``).

    Args:
        sequences: The choices' token sequences (prefix-free, as :meth:`OptionScorer.choice_sequences` makes them).
        token_log_probs: ``token_log_probs[i][j]`` = log P(``sequences[i][j]`` | prompt + ``sequences[i][:j]``)
            in nats, one value per token of each sequence.

    Returns:
        A float64 array of log-probabilities, one per choice (``exp`` sums to 1): the same distribution as
        :meth:`OptionScorer.score` (:func:`constrained_choice_log_probs` over the branching nodes; a legal token's
        log-probability at a node is read from any sequence that passes through it).
    """
    if len(sequences) != len(token_log_probs):
        raise ValueError(f"{len(sequences)} choice sequences but {len(token_log_probs)} log-probability lists")
    for seq, values in zip(sequences, token_log_probs):
        if len(seq) != len(values):
            raise ValueError(f"choice tokens {list(seq)} have {len(values)} log-probabilities")
    branches = branching_nodes(sequences)
    if not branches:  # a single choice
        return np.zeros(len(sequences))
    width = max(t for seq in sequences for t in seq) + 1
    nodes: dict[tuple[int, ...], torch.Tensor] = {}
    for seq, values in zip(sequences, token_log_probs):
        for j, value in enumerate(values):
            if seq[:j] in branches:
                nodes.setdefault(seq[:j], torch.full((width,), -torch.inf, dtype=torch.float64))[seq[j]] = value
    return constrained_choice_log_probs(nodes, sequences, branches).numpy()


def _common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all ``seqs`` share (TRL's ``common_prefix_length``), leaving at least one
    own token in every sequence."""
    first = list(seqs[0])
    shared = min((common_prefix_length(first, list(s)) for s in seqs[1:]), default=len(first))
    return max(min(shared, min(len(s) for s in seqs) - 1), 0)


class OptionScorer:
    """Batched answer scoring and sampling for one model.

    Args:
        model: A causal LM (a PEFT model works: whatever adapter is active is used).
        tokenizer: Its tokenizer; it needs a chat template.
        batch_size: Prompts per forward pass (default 16).
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 16) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "the tokenizer has no chat template: set tokenizer.chat_template (e.g. copy the instruct "
                "model's) before evaluating a base model"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self._continuations: dict[str, list[int]] = {}
        self._end_ids: list[int] | None = None

    # ----------------------------------------------------------------------------------------- encoding
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def render(self, conversation: Conversation) -> str:
        """The prompt text: the chat template applied with the generation prompt."""
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def encode(self, conversation: Conversation) -> list[int]:
        return self.tokenizer(self.render(conversation), add_special_tokens=False)["input_ids"]

    def _answer_tokens(self, conversation: Conversation, answer: str) -> list[int]:
        """Token ids of ``answer`` as the model would write it right after the generation prompt."""
        if answer not in self._continuations:
            context = self.render(conversation)
            ctx_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
            full = self.tokenizer(context + answer, add_special_tokens=False)["input_ids"]
            if full[: len(ctx_ids)] == ctx_ids and len(full) > len(ctx_ids):
                ids = full[len(ctx_ids):]
            else:
                ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            self._continuations[answer] = ids
        return self._continuations[answer]

    def end_of_answer_ids(self, conversation: Conversation) -> list[int]:
        """The first token the chat template writes after an assistant answer (end of turn), or EOS."""
        if self._end_ids is None:
            prompt = self.render(conversation)
            full = self.tokenizer.apply_chat_template(
                conversation + [{"role": "assistant", "content": "7"}], tokenize=False
            )
            tail = full[len(prompt) + 1:] if full.startswith(prompt + "7") else ""
            ids = self.tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
            if not ids:
                eos = self.tokenizer.eos_token_id
                ids = [eos[0] if isinstance(eos, list) else eos]
            self._end_ids = ids[:1]
        return self._end_ids

    def choice_sequences(self, conversation: Conversation, choices: Sequence[str]) -> list[tuple[int, ...]]:
        """The token sequences of ``choices`` as complete answers after the generation prompt: each choice's tokens,
        followed by the end-of-turn token when one choice's tokens are a prefix of another's (``"1"``, ``"10"``)."""
        seqs = [tuple(self._answer_tokens(conversation, c)) for c in choices]
        if len(set(seqs)) != len(seqs):
            raise ValueError(f"options {list(choices)} tokenize to identical token sequences")
        prefix_free = not any(a != b and b[: len(a)] == a for a in seqs for b in seqs)
        if not prefix_free:
            end = tuple(self.end_of_answer_ids(conversation))
            seqs = [s + end for s in seqs]
        return seqs

    # ------------------------------------------------------------------------------------- forward steps
    def _prefix_cache(self, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        if not prefix:
            return None
        ids = torch.tensor([prefix], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return _kv(out.past_key_values)

    def _first_step(self, prefix_kv, prefix_len: int, rows: list[list[int]], keep_cache: bool):
        """Run the rows (right-padded) after the shared prefix.

        Returns (log-probs at each row's last token: [B, V] float32, lengths [B], attention mask [B, P+S],
        cache or None).
        """
        bsz = len(rows)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        width = int(lengths.max())
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((bsz, width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((bsz, prefix_len + width), dtype=torch.long, device=self.device)
        mask[:, :prefix_len] = 1
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, device=self.device)
            mask[i, prefix_len: prefix_len + len(r)] = 1
        cache = None
        if prefix_kv is not None:
            cache = _cache_from(prefix_kv, torch.zeros(bsz, dtype=torch.long, device=self.device))
        # Only the last real position of each row needs logits: keep the smallest window covering them.
        keep = width - int(lengths.min()) + 1
        out = self.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=keep_cache,
                         logits_to_keep=keep)
        last = lengths - 1 - (width - keep)
        logits = out.logits[torch.arange(bsz, device=self.device), last].float()
        return torch.log_softmax(logits, dim=-1), lengths, mask, (out.past_key_values if keep_cache else None)

    def _deeper_steps(self, kv, mask: torch.Tensor, lengths: torch.Tensor, prefix_len: int,
                      paths: list[tuple[int, tuple[int, ...]]]) -> list[torch.Tensor]:
        """Log-probs after each token of ``paths`` ((row, tokens) pairs), continuing the rows' cache.

        Returns, per path, a [len(tokens), V] tensor: row j is the distribution after tokens[: j + 1].
        """
        index = torch.tensor([row for row, _ in paths], device=self.device)
        width = max(len(p) for _, p in paths)
        ids = torch.zeros((len(paths), width), dtype=torch.long, device=self.device)
        new_mask = torch.zeros((len(paths), width), dtype=torch.long, device=self.device)
        for i, (_, p) in enumerate(paths):
            ids[i, : len(p)] = torch.tensor(p, device=self.device)
            new_mask[i, : len(p)] = 1
        attn = torch.cat([mask.index_select(0, index), new_mask], dim=1)
        start = prefix_len + lengths.index_select(0, index)
        positions = start[:, None] + torch.arange(width, device=self.device)[None, :]
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions,
                         cache=_cache_from(kv, index), use_cache=True)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        return [logp[i, : len(p)] for i, (_, p) in enumerate(paths)]

    def _batches(self, encoded: list[list[int]], prefix_len: int) -> list[list[int]]:
        order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i]) - prefix_len))
        return [order[s: s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def _column_step(self, cache: DynamicCache, mask: torch.Tensor, lengths: torch.Tensor, prefix_len: int,
                     tokens: list[int | None]) -> torch.Tensor:
        """Feed one token per row right after its last real token; the cache is restored afterwards.

        Rows whose entry is None get a dummy token (their output is ignored). Returns [B, V] log-probs.
        """
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad if t is None else t] for t in tokens], device=self.device)
        attn = torch.cat([mask, torch.ones_like(ids)], dim=1)
        positions = (prefix_len + lengths)[:, None]
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions, cache=cache,
                         use_cache=True)
        cache.crop(-1)  # drop the token just fed: the cache is the first step's again
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

    # ------------------------------------------------------------------------------------------- public
    @torch.inference_mode()
    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Progress | None = None) -> list[np.ndarray]:
        """The model's answer distribution over the choices of each conversation, as log-probabilities.

        The distribution is that of a decoder constrained to write one legal choice: at every point where
        legal answers branch (the first token; after ``"1"`` when ``"1"`` and ``"10"`` are both legal), the
        next-token probabilities are renormalised over the legal continuations. For choices that are single
        tokens this is exactly the softmax of their logits after the generation prompt; a multi-token choice
        is scored as a sequence, and only branching points need the model (``"0"`` after ``"1"`` needs no
        extra step when ``"10"`` is the only legal answer starting ``"10"``).

        Args:
            conversations: N chats, each ending with the user turn to answer.
            choices: N lists of answer strings (e.g. option codes ``["1", "2", "3"]``).
            progress: Called with the number of prompts finished after each batch.

        Returns:
            N float64 arrays of log-probabilities (nats), one per choice; ``exp`` of each sums to 1.
        """
        if len(conversations) != len(choices):
            raise ValueError(f"{len(conversations)} conversations but {len(choices)} choice lists")
        if not conversations:
            return []
        encoded = [self.encode(c) for c in conversations]
        sequences = [self.choice_sequences(c, ch) for c, ch in zip(conversations, choices)]
        branches = [branching_nodes(seqs) for seqs in sequences]
        prefix_len = _common_prefix_length(encoded)
        prefix_kv = self._prefix_cache(encoded[0][:prefix_len])
        results: list[np.ndarray | None] = [None] * len(encoded)
        for batch in self._batches(encoded, prefix_len):
            rows = [encoded[i][prefix_len:] for i in batch]
            inner = [[node for node in branches[i] if node] for i in batch]
            needs_deeper = any(inner)
            root, lengths, mask, cache = self._first_step(prefix_kv, prefix_len, rows, keep_cache=needs_deeper)
            node_logp: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
            for b in range(len(batch)):
                node_logp[(b, ())] = root[b]
            # Branching points one token deep: one single-token step over the whole batch per rank.
            shallow = [[n for n in nodes if len(n) == 1] for nodes in inner]
            for rank in range(max((len(n) for n in shallow), default=0)):
                tokens = [nodes[rank][0] if rank < len(nodes) else None for nodes in shallow]
                logp = self._column_step(cache, mask, lengths, prefix_len, tokens)
                for b, nodes in enumerate(shallow):
                    if rank < len(nodes):
                        node_logp[(b, nodes[rank])] = logp[b]
            deep = [(b, n) for b, nodes in enumerate(inner) for n in nodes if len(n) > 1]
            if deep:
                for (b, path), logp in zip(deep, self._deeper_steps(_kv(cache), mask, lengths, prefix_len, deep)):
                    node_logp[(b, path)] = logp[-1]
            for b, i in enumerate(batch):
                nodes = {node: node_logp[(b, node)] for node in branches[i]}
                scores = constrained_choice_log_probs(nodes, sequences[i], branches[i])
                results[i] = scores.double().cpu().numpy()
            if progress is not None:
                progress(len(batch))
        return results  # type: ignore[return-value]
