"""TransformersBackend on the tiny random Llama: exact greedy decoding, batch-independent seeded sampling,
stop strings, length limits, grammar-constrained JSON, and the prefix KV cache (same completions with and
without it, bounded, reused across calls and within a batch)."""

from __future__ import annotations

import json
from typing import Literal

import pydantic
import pytest
import torch

from culture_align.backends import CachedBackend, GenerationParams, TransformersBackend, decoder
from culture_align.backends import transformers as tb
from culture_align.backends.kv_cache import PrefixKVCache


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: much faster for a tiny model on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def backend(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    return TransformersBackend.from_model(model, tok, model_id="tiny", batch_size=4)


def _chat(text: str, system: str | None = None) -> list[dict[str, str]]:
    chat = [{"role": "system", "content": system}] if system else []
    return chat + [{"role": "user", "content": text}]


CONVS = [
    _chat("How important is family in your life?"),
    _chat("yes or no?", system="You are a real person taking part in the World Values Survey."),
    _chat("Agree strongly, agree, disagree or strongly disagree: 1 2 3 4"),
    _chat("On a scale from 1 to 10"),
    _chat("an American woman, 35 years old, married. How interested are you in politics?"),
]


class Verdict(pydantic.BaseModel):
    verdict: Literal["good", "bad"]
    confidence: Literal["low", "medium", "high"]


def _hf_greedy(model, tok, conversation, max_new_tokens, stop_ids):
    prompt = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                         pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_greedy_matches_hf_generate(backend, tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    params = GenerationParams(temperature=0, max_new_tokens=12)
    texts = backend.generate(CONVS, params)  # batched, left-padded, prompts of different lengths
    expected = [_hf_greedy(model, tok, c, 12, backend.stop_token_ids()) for c in CONVS]
    assert texts == expected
    assert all(texts)


def test_from_path_and_model_id(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir, device="cpu", batch_size=2)
    assert backend.model_id == str(tiny_model_dir)
    assert repr(backend) == f"TransformersBackend(model_id={str(tiny_model_dir)!r}, batch_size=2)"
    assert backend.generate(CONVS[:2], GenerationParams(temperature=0, max_new_tokens=3))


def test_sampling_is_batch_independent(backend):
    params = GenerationParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=7, n=2)
    together = backend.generate(CONVS, params)
    alone = [t for c in CONVS for t in backend.generate([c], params)]
    assert together == alone
    # Mixed into a different batch, in another order, with other requests.
    others = [_chat("Can most people be trusted?"), _chat("0 1 2 3")]
    mixed = backend.generate([others[0], CONVS[3], CONVS[0], others[1]], params)
    assert mixed[2:4] == together[6:8] and mixed[4:6] == together[0:2]
    # Another batch size gives the same texts too.
    backend.batch_size = 3
    assert backend.generate(CONVS, params) == together


def test_seeds_and_sample_indices_differ(backend):
    params = GenerationParams(temperature=1.0, max_new_tokens=8, seed=1, n=4)
    texts = backend.generate(CONVS[:1], params)
    assert len(set(texts)) > 1  # the n samples differ
    other_seed = backend.generate(CONVS[:1], GenerationParams(temperature=1.0, max_new_tokens=8, seed=2, n=4))
    assert other_seed != texts
    assert backend.generate(CONVS[:1], params) == texts  # and a seed reproduces them


def test_n_shape_and_grouping(backend):
    params = GenerationParams(temperature=1.0, max_new_tokens=5, n=3)
    texts = backend.generate(CONVS[:3], params)
    assert len(texts) == 9
    for i, c in enumerate(CONVS[:3]):
        assert texts[i * 3:(i + 1) * 3] == backend.generate([c], params)
    greedy = backend.generate(CONVS[:2], GenerationParams(temperature=0, max_new_tokens=5, n=3))
    assert len(greedy) == 6 and len(set(greedy[:3])) == 1 and len(set(greedy[3:])) == 1


def test_stop_strings_truncate(backend):
    full = backend.generate(CONVS[:1], GenerationParams(temperature=0, max_new_tokens=16))[0]
    stop = full[4:6]
    assert stop and len(full) > 6
    before = backend.stats.generated_tokens
    cut = backend.generate(CONVS[:1], GenerationParams(temperature=0, max_new_tokens=16, stop=(stop, "\x00zz")))[0]
    assert cut == full[: full.find(stop)]
    assert backend.stats.generated_tokens - before < 16  # decoding stopped early


def test_max_new_tokens_respected(backend, tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    before = backend.stats.generated_tokens
    texts = backend.generate(CONVS, GenerationParams(temperature=1.0, max_new_tokens=3))
    assert backend.stats.generated_tokens - before <= 3 * len(CONVS)
    greedy = backend.generate(CONVS[:2], GenerationParams(temperature=0, max_new_tokens=3))
    assert greedy == [_hf_greedy(model, tok, c, 3, backend.stop_token_ids()) for c in CONVS[:2]]
    assert len(texts) == len(CONVS)
    assert backend.stats.requests >= 7 and backend.stats.seconds > 0 and backend.stats.prompt_tokens > 0


def test_json_schema_constrains_output(backend):
    assert backend.supports_json_schema
    schema = Verdict.model_json_schema()
    for temperature in (0.0, 1.0):
        params = GenerationParams(temperature=temperature, max_new_tokens=48, json_schema=schema, n=2)
        texts = backend.generate(CONVS, params)
        for text in texts:
            Verdict.model_validate_json(text)  # raises unless the text is valid JSON following the schema
    # Unconstrained, the random model writes no JSON at all.
    free = backend.generate(CONVS, GenerationParams(temperature=1.0, max_new_tokens=48))
    assert not any(_is_json(t) for t in free)
    assert len(backend._grammars) == 1  # compiled once


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_without_xgrammar_generation_is_unconstrained(tiny_model_and_tokenizer, monkeypatch):
    monkeypatch.setattr(tb, "xgrammar", None)  # the backend's check, and the decoder's rows
    monkeypatch.setattr(decoder, "xgrammar", None)
    model, tok = tiny_model_and_tokenizer
    backend = TransformersBackend.from_model(model, tok, model_id="tiny")
    assert not backend.supports_json_schema
    texts = backend.generate(CONVS[:2], GenerationParams(max_new_tokens=4, json_schema=Verdict.model_json_schema()))
    assert len(texts) == 2


def test_with_cached_backend(backend, tmp_path):
    cached = CachedBackend(backend, tmp_path / "cache.jsonl", chunk_size=2)
    params = GenerationParams(temperature=1.0, max_new_tokens=6, n=2, seed=3)
    first = cached.generate(CONVS, params)
    assert first == backend.generate(CONVS, params)
    requests = backend.stats.requests
    second = cached.generate(CONVS, params)
    assert second == first
    assert backend.stats.requests == requests  # nothing regenerated
    assert cached.cache.hits == len(CONVS) and cached.cache.misses == len(CONVS)
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 2 * len(CONVS)


# ------------------------------------------------------------------------------------------------------
# Prefix KV cache
# ------------------------------------------------------------------------------------------------------


def _fake_kv(tokens) -> torch.Tensor:
    """KV ``[layers=1, 2, heads=1, len, dim=1]`` whose entries are the token ids themselves."""
    return torch.tensor(tokens, dtype=torch.float32).view(1, 1, 1, -1, 1).expand(1, 2, 1, -1, 1).clone()


def _joined(match) -> list[int]:
    return torch.cat(match.segments, dim=3)[0, 0, 0, :, 0].int().tolist() if match.segments else []


def test_prefix_store_match_insert_split_and_evict():
    store = PrefixKVCache(max_tokens=10)
    asked = []

    def insert(tokens):
        def kv_of(start, end):
            asked.append((start, end))
            return _fake_kv(tokens[start:end])
        return store.insert(tokens, kv_of)

    assert insert([1, 2, 3, 4]) == 4 and store.num_tokens == 4
    match = store.match([1, 2, 3, 9])
    assert match.length == 3 and _joined(match) == [1, 2, 3]
    assert insert([1, 2, 5, 6]) == 2 and asked[-1] == (2, 4)  # only the uncached part is asked for
    assert store.num_tokens == 6  # the shared [1, 2] is stored once (the first run was split)
    match = store.match([1, 2, 5, 6, 7])
    assert match.length == 4 and _joined(match) == [1, 2, 5, 6]
    assert store.match([1, 2, 3, 4], limit=3).length == 3 and store.match([8]).length == 0
    assert insert([1, 2, 5, 6]) == 0  # already there
    # Over budget: the least recently used leaf goes first ([3, 4] was used before [5, 6]).
    store.match([1, 2, 5, 6])
    assert insert([7, 8, 9, 10, 11]) == 5 and store.num_tokens == 9
    assert store.match([1, 2, 3, 4]).length == 2 and store.match([1, 2, 5, 6]).length == 4
    assert _joined(store.match([7, 8, 9, 10, 11])) == [7, 8, 9, 10, 11]
    store.clear()
    assert store.num_tokens == 0 and store.match([7, 8]).length == 0
    with pytest.raises(ValueError, match="max_tokens"):
        PrefixKVCache(0)


LONG_SYSTEM = ("You are a real person with your own values and beliefs, taking part in the World Values Survey. "
               "Answer the survey question below with the number of the option you choose, and nothing else.")


def _multi_turn(texts: list[str]) -> list[list[dict[str, str]]]:
    """Second turns of the CONVS chats (with a long shared system prompt), plus a chat never seen before."""
    firsts = [_chat(c[-1]["content"], system=LONG_SYSTEM) for c in CONVS]
    seconds = [c + [{"role": "assistant", "content": t}, {"role": "user", "content": "Why? Answer 1 2 3"}]
               for c, t in zip(firsts, texts)]
    return seconds[:3] + [_chat("0 1 2 3 4 5 6 7 8 9 10 11")] + seconds[3:]


@pytest.fixture()
def no_prefix_cache(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    return TransformersBackend.from_model(model, tok, model_id="tiny", batch_size=4, prefix_cache_tokens=0)


def test_prefix_cache_gives_the_same_completions(backend, no_prefix_cache):
    assert backend.prefix_cache is not None and no_prefix_cache.prefix_cache is None
    greedy = GenerationParams(temperature=0, max_new_tokens=10)
    firsts = [_chat(c[-1]["content"], system=LONG_SYSTEM) for c in CONVS]
    first = backend.generate(firsts, greedy)
    assert first == no_prefix_cache.generate(firsts, greedy)
    # Within the first batch, the shared system prompt was prefilled once for all its prompts.
    assert backend.stats.cached_prompt_tokens > 0
    assert backend.stats.prefilled_tokens < no_prefix_cache.stats.prefilled_tokens == backend.stats.prompt_tokens
    # Second turns extend the first prompts: almost everything is reused; rows with different cached
    # lengths (and a chat never seen) share batches, so masks have holes.
    seconds = _multi_turn(first)
    before = backend.stats.to_dict()
    assert backend.generate(seconds, greedy) == no_prefix_cache.generate(seconds, greedy)
    cached = backend.stats.cached_prompt_tokens - before["cached_prompt_tokens"]
    assert cached > 0.6 * (backend.stats.prompt_tokens - before["prompt_tokens"])
    assert no_prefix_cache.stats.cached_prompt_tokens == 0 and no_prefix_cache.stats.prefix_cache_hit_rate == 0
    assert 0 < backend.stats.prefix_cache_hit_rate < 1
    # The logits themselves agree with a full prefill (up to float rounding).
    prompts = [backend.encode(c) for c in seconds]
    with torch.inference_mode():
        reused, _, _ = backend._prefill(prompts, new_tokens=4)
        recomputed, _, _ = no_prefix_cache._prefill(prompts, new_tokens=4)
    torch.testing.assert_close(reused, recomputed, rtol=1e-4, atol=1e-4)


def test_prefix_cache_keeps_seeded_sampling_per_request(backend, no_prefix_cache):
    params = GenerationParams(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=5, n=2)
    firsts = [_chat(c[-1]["content"], system=LONG_SYSTEM) for c in CONVS]
    first = backend.generate(firsts, params)
    assert first == no_prefix_cache.generate(firsts, params)
    seconds = _multi_turn(first[::2])
    texts = backend.generate(seconds, params)
    assert texts == no_prefix_cache.generate(seconds, params)
    assert backend.generate(seconds, params) == texts  # fully cached prompts: still the same draws
    assert backend.generate(seconds[::-1], params) == [t for i in range(len(seconds))[::-1]
                                                       for t in texts[2 * i: 2 * i + 2]]


def test_prefix_cache_is_bounded(tiny_model_and_tokenizer, no_prefix_cache):
    model, tok = tiny_model_and_tokenizer
    small = TransformersBackend.from_model(model, tok, model_id="tiny", batch_size=4, prefix_cache_tokens=60)
    greedy = GenerationParams(temperature=0, max_new_tokens=6)
    firsts = [_chat(c[-1]["content"], system=LONG_SYSTEM) for c in CONVS]
    for convs in (firsts, _multi_turn(small.generate(firsts, greedy))):
        assert small.generate(convs, greedy) == no_prefix_cache.generate(convs, greedy)
        assert small.prefix_cache.num_tokens <= 60
    small.clear_prefix_cache()
    assert small.prefix_cache.num_tokens == 0
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        TransformersBackend.from_model(model, tok, prefix_cache_tokens=-1)


def test_chat_template_renders_earlier_turns_identically(backend):
    """The tiny ChatML template is prefix-stable in tokens: a chat's prompt extends its earlier prompts up to
    the generation prompt (what the prefix cache relies on)."""
    chat = _chat("How important is family in your life?", system=LONG_SYSTEM)
    longer = chat + [{"role": "assistant", "content": "1"}, {"role": "user", "content": "yes or no?"}]
    earlier, later = backend.encode(chat), backend.encode(longer)
    assert later[: len(earlier)] == earlier


def test_prefix_cache_empties_when_the_weights_change(backend, no_prefix_cache):
    greedy = GenerationParams(temperature=0, max_new_tokens=8)
    firsts = [_chat(c[-1]["content"], system=LONG_SYSTEM) for c in CONVS]
    backend.generate(firsts, greedy)
    within_batch = backend.stats.cached_prompt_tokens  # nothing cached before: only in-batch sharing
    with torch.no_grad():
        backend.model.model.layers[0].self_attn.k_proj.weight.mul_(1.5)  # in place, as a training step would
    assert backend.generate(firsts, greedy) == no_prefix_cache.generate(firsts, greedy)
    assert backend.stats.cached_prompt_tokens == 2 * within_batch  # the stale KV was not reused


# ------------------------------------------------------------------------------------------------------
# Continuous batching
# ------------------------------------------------------------------------------------------------------

CHAIN_PARAMS = [
    GenerationParams(temperature=0, max_new_tokens=9),
    GenerationParams(temperature=1.0, top_p=0.9, max_new_tokens=14, seed=5),
    GenerationParams(temperature=0.7, max_new_tokens=4, seed=1, stop=("e",)),
    GenerationParams(temperature=1.0, max_new_tokens=20, seed=2, json_schema=Verdict.model_json_schema()),
]


def _run_chains(backend, steps: int = 3) -> dict[tuple[int, int], tuple[list, GenerationParams, str]]:
    """One chain per conversation of CONVS: each completion asks a follow-up request (the reply and a new
    question appended), ``steps`` requests per chain, params rotating through CHAIN_PARAMS. Returns every
    request and its completion by (chain, step)."""
    from culture_align.backends.base import GenerationRequest

    seen = {}

    def request(chain: int, step: int, conversation) -> GenerationRequest:
        return GenerationRequest(conversation, CHAIN_PARAMS[(chain + step) % len(CHAIN_PARAMS)], (chain, step))

    def on_completion(req, text):
        chain, step = req.tag
        assert (chain, step) not in seen  # each request completes once
        seen[(chain, step)] = (req.conversation, req.params, text)
        if step + 1 == steps:
            return None
        follow = req.conversation + [{"role": "assistant", "content": text},
                                     {"role": "user", "content": f"And then? ({step})"}]
        return [request(chain, step + 1, follow)]

    backend.generate_continuous([request(i, 0, c) for i, c in enumerate(CONVS)], on_completion)
    return seen


def test_continuous_batching_gives_the_completions_of_generate(backend, no_prefix_cache, monkeypatch):
    """Follow-ups join the running batch (KV of running rows and new rows packed together), and every
    completion equals what ``generate`` gives for that request alone: greedy, sampled, stop strings,
    length limits and JSON constraints mixed in one batch."""
    merges = []
    merge = tb.TransformersBackend._merge
    monkeypatch.setattr(tb.TransformersBackend, "_merge", lambda self, batches: merges.append(
        [len(b.rows) for b in batches]) or merge(self, batches))
    backend.batch_size = 3  # 5 chains, 3 rows at a time: requests keep joining a running batch
    requests_before = backend.stats.requests
    seen = _run_chains(backend)
    assert len(seen) == 5 * 3 and backend.stats.requests - requests_before == 15
    assert merges and all(len(m) == 2 and m[0] >= 1 for m in merges)
    for (chain, step), (conversation, params, text) in seen.items():
        alone = no_prefix_cache.generate([conversation], params)[0]
        assert text == alone, (chain, step)
        if params.json_schema is not None and len(text) > 0:
            assert text.startswith('{"verdict": "')
    # batch size 1: no row ever joins another; the same completions
    one = TransformersBackend.from_model(backend.model, backend.tokenizer, model_id="tiny", batch_size=1)
    assert {k: v[2] for k, v in _run_chains(one).items()} == {k: v[2] for k, v in seen.items()}


def test_continuous_batching_over_the_completion_cache(backend, tmp_path):
    """Through CachedBackend: each completion is persisted as it arrives; a run stopped midway keeps what
    was done, and the rerun completes the rest (cached requests answered without the model, follow-ups of
    cached requests looked up too), with nothing stored twice."""
    from culture_align.backends.base import GenerationRequest

    reference = _run_chains(backend)
    cached = CachedBackend(backend, tmp_path / "cache.jsonl")
    stop_after = 7

    def interrupted():
        done = []

        def on_completion(req, text):
            if len(done) == stop_after:
                raise KeyboardInterrupt("simulated kill")
            done.append(req.tag)
            chain, step = req.tag
            follow = req.conversation + [{"role": "assistant", "content": text},
                                         {"role": "user", "content": f"And then? ({step})"}]
            nxt = CHAIN_PARAMS[(chain + step + 1) % len(CHAIN_PARAMS)]
            return None if step == 2 else [GenerationRequest(follow, nxt, (chain, step + 1))]

        first = [GenerationRequest(c, CHAIN_PARAMS[i % len(CHAIN_PARAMS)], (i, 0)) for i, c in enumerate(CONVS)]
        cached.generate_continuous(first, on_completion)

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) >= stop_after
    resumed = _run_chains(cached)
    assert {k: v[2] for k, v in resumed.items()} == {k: v[2] for k, v in reference.items()}
    lines = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert len(lines) == len({row["key"] for row in lines}) == 15
    requests = backend.stats.requests
    again = _run_chains(CachedBackend(backend, tmp_path / "cache.jsonl"))  # all cached: no generation
    assert backend.stats.requests == requests
    assert {k: v[2] for k, v in again.items()} == {k: v[2] for k, v in reference.items()}


def test_generate_refills_the_batch_as_rows_finish(backend, no_prefix_cache):
    """``generate`` over more requests than the batch holds admits waiting ones as rows finish, and the
    completions stay those of one request at a time."""
    params = GenerationParams(temperature=1.0, max_new_tokens=12, seed=3, n=2)
    backend.batch_size = 3
    together = backend.generate(CONVS, params)
    alone = [t for c in CONVS for t in no_prefix_cache.generate([c], params)]
    assert together == alone


def test_continuous_batching_with_sliding_window_layers(tiny_model_and_tokenizer):
    """A model whose KV cannot be moved (sliding-window layers) admits follow-ups only into an empty batch,
    and still gives the completions of ``generate``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, tok = tiny_model_and_tokenizer
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=16,
                         max_window_layers=1, pad_token_id=0, eos_token_id=2)
    model = Qwen2ForCausalLM(config).eval()
    backend = TransformersBackend.from_model(model, tok, model_id="tiny-qwen", batch_size=3)
    assert backend.prefix_cache is None and not backend._kv_reuse
    seen = _run_chains(backend, steps=2)
    assert len(seen) == 10
    for conversation, params, text in seen.values():
        assert text == backend.generate([conversation], params)[0]


def test_admission_policy_groups_joins(backend, monkeypatch):
    """``admit_ratio``/``max_waiting_steps`` decide when waiting requests join: at once (0, 0) gives the most
    repackings, a policy that never joins a running batch gives none; the completions never change."""
    merges = []
    merge = tb.TransformersBackend._merge
    monkeypatch.setattr(tb.TransformersBackend, "_merge", lambda self, batches: merges.append(1) or merge(self, batches))
    backend.batch_size = 3
    counts, texts = [], []
    for ratio, wait in [(0, 0), (0.5, 8), (100, 10_000)]:
        backend.admit_ratio, backend.max_waiting_steps = ratio, wait
        merges.clear()
        texts.append({k: v[2] for k, v in _run_chains(backend).items()})
        counts.append(len(merges))
    assert counts[0] >= counts[1] >= counts[2] == 0 and counts[0] > 0
    assert texts[0] == texts[1] == texts[2]
    with pytest.raises(ValueError, match="admit_ratio"):
        TransformersBackend.from_model(backend.model, backend.tokenizer, admit_ratio=-1)


def test_preallocated_cache_selects_rows_and_grows_as_one_buffer():
    from culture_align.backends.kv_cache import PreallocatedKVCache

    buffer = torch.randn(2, 2, 3, 1, 4, 2)  # layers, k/v, batch, heads, capacity, dim
    cache = PreallocatedKVCache(buffer.clone(), length=3)
    assert torch.equal(cache.layers[1].keys, buffer[1, 0, :, :, :3])
    cache.reorder_cache(torch.tensor([2, 0]))
    assert cache.buffer.shape[2] == 2 and torch.equal(cache.layers[0].values, buffer[0, 1][[2, 0], :, :3])
    new = torch.randn(2, 1, 3, 2)  # three more positions than the capacity has left
    for layer in cache.layers:
        layer.update(new, -new)
    assert cache.buffer.shape[4] == 8 and cache.get_seq_length() == 6
    assert torch.equal(cache.layers[1].keys[:, :, :3], buffer[1, 0][[2, 0], :, :3])
    assert torch.equal(cache.layers[1].keys[:, :, 3:], new) and torch.equal(cache.layers[0].values[:, :, 3:], -new)


def test_a_dropped_batch_cache_frees_its_buffer_at_once():
    """No reference cycle between the cache and its layers: a finished batch's buffer is freed when the batch is
    dropped, not when the cyclic garbage collector runs (with the cycle, a sampling run of 257 prompts x 10 samples
    held 11-13 GB of old buffers at its peak instead of about 4)."""
    import gc
    import weakref

    from culture_align.backends.kv_cache import PreallocatedKVCache

    cache = PreallocatedKVCache(torch.zeros(2, 2, 3, 1, 4, 2), length=2)
    cache.layers[0].update(torch.ones(3, 1, 3, 2), torch.ones(3, 1, 3, 2))  # grows: a new buffer
    buffer = weakref.ref(cache.buffer)
    gc.disable()
    try:
        del cache
        assert buffer() is None
    finally:
        gc.enable()


def test_a_model_in_training_scores_and_generates_in_eval_mode_and_keeps_its_mode(tiny_model_and_tokenizer):
    """No dropout while scoring or sampling, and a model being trained (evaluated from a callback) stays in training
    mode afterwards."""
    model, tok = tiny_model_and_tokenizer
    seen = []
    handle = model.register_forward_hook(lambda module, args, out: seen.append(module.training))
    try:
        model.train()
        backend = TransformersBackend.from_model(model, tok, model_id="tiny")
        assert model.training  # wrapping it changes nothing
        backend.score(CONVS[:2], [["1", "2"], ["1", "2"]])
        backend.generate(CONVS[:2], GenerationParams(max_new_tokens=3, temperature=0))
        assert seen and not any(seen) and model.training
    finally:
        handle.remove()
        model.eval()
