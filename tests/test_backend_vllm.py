"""VLLMBackend without vLLM: the import guard and the SamplingParams mapping (with a stand-in module)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType, SimpleNamespace

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
