"""TransformersBackend on the tiny random Llama: exact greedy decoding, batch-independent seeded sampling,
stop strings, length limits and grammar-constrained JSON."""

from __future__ import annotations

import json
from typing import Literal

import pydantic
import pytest
import torch

from culture_align.backends import CachedBackend, GenerationParams, TransformersBackend
from culture_align.backends import transformers as tb


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
