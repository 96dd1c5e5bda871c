"""VLLMBackend without vLLM: the import guard and the SamplingParams mapping (with a stand-in module)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from culture_align.backends import GenerationParams
from culture_align.backends import vllm as vb


class _Params(SimpleNamespace):
    pass


def fake_vllm(*, structured: bool = True, guided: bool = False) -> ModuleType:
    module = ModuleType("vllm")
    module.SamplingParams = _Params
    sampling = ModuleType("vllm.sampling_params")
    if structured:
        sampling.StructuredOutputsParams = lambda json: ("structured", json)
    if guided:
        sampling.GuidedDecodingParams = lambda json: ("guided", json)
    module.sampling_params = sampling
    return module


@pytest.fixture()
def no_vllm(monkeypatch):
    """Make ``import vllm`` fail, whether or not vLLM is installed (``None`` in sys.modules blocks it)."""
    monkeypatch.setitem(sys.modules, "vllm", None)


def test_module_imports_and_construction_says_how_to_install(no_vllm):
    importlib.reload(vb)
    from culture_align.backends import VLLMBackend

    with pytest.raises(ImportError, match=r'pip install "culture-align\[vllm\]"'):
        VLLMBackend("some/model")


def test_sampling_params_mapping():
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    params = GenerationParams(temperature=0.3, top_p=0.8, max_new_tokens=11, stop=("\n\n",), n=4,
                              json_schema=schema)
    sp = vb.make_sampling_params(params, seed=123, vllm=fake_vllm())
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed, sp.stop) == (1, 0.3, 0.8, 11, 123, ["\n\n"])
    assert sp.structured_outputs == ("structured", schema)
    old = vb.make_sampling_params(params, seed=1, vllm=fake_vllm(structured=False, guided=True))
    assert old.guided_decoding == ("guided", schema) and not hasattr(old, "structured_outputs")
    plain = vb.make_sampling_params(GenerationParams(temperature=0), seed=5, vllm=fake_vllm())
    assert not hasattr(plain, "stop") and not hasattr(plain, "structured_outputs") and plain.temperature == 0


def test_backend_with_a_fake_engine(monkeypatch):
    module = fake_vllm()

    class FakeLLM:
        def __init__(self, model, **kwargs):
            self.model = model

        def chat(self, messages, sampling_params, use_tqdm):
            return [SimpleNamespace(prompt_token_ids=[1, 2], outputs=[SimpleNamespace(
                text=f"{m[-1]['content']}#{sp.seed}", token_ids=[7])]) for m, sp in zip(messages, sampling_params)]

    module.LLM = FakeLLM
    monkeypatch.setattr(vb, "import_vllm", lambda: module)
    backend = vb.VLLMBackend("m")
    chats = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    texts = backend.generate(chats, GenerationParams(n=2, seed=9))
    assert [t.split("#")[0] for t in texts] == ["a", "a", "b", "b"]
    assert len({t.split("#")[1] for t in texts}) == 4  # one seed per completion
    reversed_texts = backend.generate(chats[::-1], GenerationParams(n=2, seed=9))
    assert texts == reversed_texts[2:] + reversed_texts[:2]  # seeds follow the request, not its position
    assert backend.stats.requests == 8 and backend.model_id == "m"


# ----------------------------------------------------------------------------------------------- scoring
SCORE_CHATS = [
    [{"role": "user", "content": "On a scale from 1 to 10 where 1 means never justifiable"}],
    [{"role": "system", "content": "You are a real person."}, {"role": "user", "content": "Agree or Disagree?"}],
    [{"role": "user", "content": "How important is family in your life?"}],
    [{"role": "user", "content": "yes or no?"}],
]
SCORE_CHOICES = [
    [str(i) for i in range(1, 11)],  # "1" is a prefix of "10" (per-digit tokens): a branching node after "1"
    ["Agree", "Disagree", "Neither agree nor disagree"],
    ["100", "101", "11"],  # one first token: the branching nodes are "1" and "10", never the root
    ["yes", "no"],
]


class PromptLogprobsLLM:
    """A stand-in ``vllm.LLM`` whose ``generate`` reports prompt log-probabilities computed by the tiny model."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.calls: list[tuple[list, object, bool]] = []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm):
        import torch

        self.calls.append((prompts, sampling_params, use_tqdm))
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            entries = [None]
            for k in range(1, len(ids)):
                top = int(logp[k - 1].argmax())  # vLLM adds the top token(s) next to the prompt token's own entry
                entries.append({top: SimpleNamespace(logprob=float(logp[k - 1, top]), rank=1),
                                ids[k]: SimpleNamespace(logprob=float(logp[k - 1, ids[k]]), rank=2)})
            outputs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=entries,
                                           outputs=[SimpleNamespace(text="", token_ids=[0])]))
        return outputs


@pytest.fixture()
def scoring_backends(monkeypatch, tiny_model_and_tokenizer):
    import torch

    from culture_align.backends import TransformersBackend

    model, tokenizer = tiny_model_and_tokenizer
    module = fake_vllm()
    llm = PromptLogprobsLLM(model, tokenizer)
    module.LLM = lambda model, **kwargs: llm
    monkeypatch.setattr(vb, "import_vllm", lambda: module)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield vb.VLLMBackend("tiny"), TransformersBackend.from_model(model, tokenizer), llm
    torch.set_num_threads(before)


def test_score_matches_transformers_backend(scoring_backends):
    from culture_align.backends.option_scoring import OptionScorer, branching_nodes

    backend, reference, llm = scoring_backends
    encoder = OptionScorer(None, llm.tokenizer)
    # The choice lists branch below the root: "1" then "<end>"/"0"; "1" then "0"/"1", "10" then "0"/"1".
    nodes = [branching_nodes(encoder.choice_sequences(c, ch)) for c, ch in zip(SCORE_CHATS, SCORE_CHOICES)]
    assert any(len(node) == 1 for node in nodes[0]) and () not in nodes[2] and max(map(len, nodes[2])) == 2
    finished = []
    scores = backend.score(SCORE_CHATS, SCORE_CHOICES, progress=finished.append)
    expected = reference.score(SCORE_CHATS, SCORE_CHOICES)
    assert len(scores) == len(expected) == len(SCORE_CHATS) and sum(finished) == len(SCORE_CHATS)
    for got, want, choices in zip(scores, expected, SCORE_CHOICES):
        assert got.dtype == np.float64 and got.shape == (len(choices),)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert not all(np.allclose(s, s[0]) for s in scores)  # random weights, far from uniform

    # One generate call, one token prompt per (conversation, choice), prompt log-probs of the prompt tokens only.
    assert len(llm.calls) == 1
    prompts, sampling, use_tqdm = llm.calls[0]
    assert len(prompts) == sum(len(ch) for ch in SCORE_CHOICES) and use_tqdm is False
    assert (sampling.max_tokens, sampling.prompt_logprobs, sampling.temperature) == (1, 0, 0)
    first = encoder.encode(SCORE_CHATS[0]) + list(encoder.choice_sequences(SCORE_CHATS[0], SCORE_CHOICES[0])[9])
    assert prompts[9] == {"prompt_token_ids": first}
    assert backend.stats.prompt_tokens == sum(len(p["prompt_token_ids"]) for p in prompts)
    assert backend.score([], []) == []


def test_score_rows_are_distributions(scoring_backends):
    backend, _, _ = scoring_backends
    scores = backend.score(SCORE_CHATS, SCORE_CHOICES)
    for row in scores:
        assert np.all(row <= 0) and np.isfinite(row).all()
        assert abs(np.exp(row).sum() - 1) < 1e-9
    single = backend.score(SCORE_CHATS[:1], [["7"]])
    assert single[0].tolist() == [0.0]
    with pytest.raises(ValueError, match="2 conversations but 1 choice lists"):
        backend.score(SCORE_CHATS[:2], SCORE_CHOICES[:1])
