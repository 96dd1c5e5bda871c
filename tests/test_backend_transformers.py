"""TransformersBackend on the tiny random Llama: exact greedy decoding, batch-independent seeded sampling,
stop strings, length limits, grammar-constrained JSON, and the prefix KV cache (same completions with and
without it, bounded, reused across calls and within a batch)."""

from __future__ import annotations

import json
from typing import Literal

import pydantic
import pytest
import torch

from culture_align.backends import CachedBackend, GenerationParams, TransformersBackend
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
    monkeypatch.setattr(tb, "xgrammar", None)
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
