"""Secrets stay out of what culture-align logs, raises, caches, records and uploads.

- Credentials inside a server URL (``user:password@``, ``?token=``, ``?api_key=``, ...) reach the HTTP client and
  nowhere else: not the backend's id or repr, logs, errors, ``cache.jsonl``, ``stats.json`` or row provenance.
- A Hub token given to a trainer (``hub_token``) is never pickled into ``training_args.bin``, and ``push adapter``
  never uploads a ``training_args.bin`` that holds one.
- A failed push leaves the local cards as they were; cards name the base model by its Hub id, never by the path
  of a local model cache.

HfApi is a mock throughout: no network.
"""

from __future__ import annotations

import copy
import io
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError
from test_clca_pipeline import SEEDS, FakeBackend
from test_hub import mock_api, save_adapter

from culture_align import hub
from culture_align.backends import GenerationParams, OpenAICompatibleBackend
from culture_align.backends import openai_compatible as oc
from culture_align.backends.base import GenerationBackend
from culture_align.backends.cache import CachedBackend
from culture_align.backends.factory import backend_from_config
from culture_align.redaction import pickled_secrets, redact_url

PASSWORD = "pw-Kq93-not-real"
QUERY_KEY = "qk-Vb27-not-real"
HUB_TOKEN = "hf_" + "Zx8" * 11  # shaped like a Hugging Face token, not a real one
SECRETS = (PASSWORD, QUERY_KEY, HUB_TOKEN)
SECRET_URL = f"http://alice:{PASSWORD}@127.0.0.1:9/v1?api-version=2024-06&api_key={QUERY_KEY}"
SHOWN_URL = "http://***@127.0.0.1:9/v1?api-version=2024-06&api_key=***"
HUB_CACHE_BASE = "models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/0123456789abcdef"


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    leaked = [s for s in SECRETS if s.encode() in data]
    assert not leaked, f"{where} holds {leaked}"


# ---------------------------------------------------------------------------------------------- redact_url

@pytest.mark.parametrize("url, shown", [
    (SECRET_URL, SHOWN_URL),
    ("https://TOKEN123@example.org/v1", "https://***@example.org/v1"),
    ("https://u:p@ss@example.org/v1", "https://***@example.org/v1"),  # an unencoded @ in the password
    ("https://h/v1?token=a&model=m#access_token=b", "https://h/v1?token=***&model=m#access_token=***"),
    ("https://h/v1?X-Amz-Signature=a&apiKey=b&sig=c&code=d",
     "https://h/v1?X-Amz-Signature=***&apiKey=***&sig=***&code=***"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),  # nothing to remove: unchanged
    ("http://h/v1?model=a&lang=en", "http://h/v1?model=a&lang=en"),
    (f"{SECRET_URL}|teacher", f"{SHOWN_URL}|teacher"),  # a server backend's model id
    ("POST http://u:p@h/v1/chat/completions?key=k failed; retry", "POST http://***@h/v1/chat/completions?key=*** "
                                                                  "failed; retry"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown


# ---------------------------------------------------------------------------------------------- backends

def http_error(status: int, url: str) -> HfHubHTTPError:
    """An HfHubHTTPError as huggingface_hub raises it: its message quotes the URL of the request."""
    import httpx2

    base, _, query = url.partition("?")
    request = httpx2.Request("POST", f"{base}/chat/completions?{query}")
    response = httpx2.Response(status, request=request)
    return HfHubHTTPError(f"{status} Server Error for url: {request.url}", response=response)


class ScriptedClient:
    """An HTTP client for the backend: raises ``failures`` in turn, then answers like the CLCA pipeline's
    scripted fake (the stage is the title of the requested JSON schema)."""

    def __init__(self, failures=()) -> None:
        self.failures = list(failures)
        self.fake = FakeBackend()

    def chat_completion(self, messages, **kwargs):
        if self.failures:
            raise self.failures.pop(0)
        schema = kwargs["response_format"]["json_schema"]["schema"]
        params = SimpleNamespace(seed=0, temperature=kwargs["temperature"])
        out = getattr(self.fake, f"_{schema['title']}")(messages, params)
        text = json.dumps(out) if isinstance(out, dict) else out
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))],
                               usage=SimpleNamespace(prompt_tokens=3, completion_tokens=2))


def server_backend(client, seen: dict | None = None, **kwargs) -> OpenAICompatibleBackend:
    def factory(**factory_kwargs):
        (seen if seen is not None else {}).update(factory_kwargs)
        return client

    return OpenAICompatibleBackend(SECRET_URL, "teacher", client_factory=factory, sleep=lambda _: None, **kwargs)


def test_server_url_credentials_reach_the_client_only(caplog):
    seen: dict = {}
    caplog.set_level(logging.DEBUG)
    client = ScriptedClient([http_error(503, SECRET_URL)] * 2)
    backend = server_backend(client, seen, max_retries=1)
    assert seen["base_url"] == SECRET_URL  # the requests use the real URL
    assert backend.base_url == SHOWN_URL and backend.model_id == f"{SHOWN_URL}|teacher"
    assert_no_secret(repr(backend), "repr")
    with pytest.raises(RuntimeError) as info:  # gives up after retries
        backend.generate([[{"role": "user", "content": "hi"}]], GenerationParams())
    assert SHOWN_URL in str(info.value)
    chained = info.value.__cause__
    assert isinstance(chained, HfHubHTTPError)
    for error in (info.value, chained):
        assert_no_secret(str(error), f"{type(error).__name__} message")
    assert caplog.records and "retry 1/1" in caplog.text
    assert_no_secret(caplog.text, "the log")

    client = ScriptedClient([http_error(401, SECRET_URL)])
    with pytest.raises(HfHubHTTPError) as info:  # not retried, and still the client's error type
        server_backend(client).generate([[{"role": "user", "content": "hi"}]], GenerationParams())
    assert "401" in str(info.value) and "http://***@127.0.0.1:9/v1/chat/completions" in str(info.value)
    assert_no_secret(str(info.value), "the raised error")
    assert_no_secret(caplog.text, "the log")


def test_cached_backend_and_factory_hide_url_credentials(tmp_path):
    class UrlBackend(GenerationBackend):
        model_id = f"{SECRET_URL}|m"

        def _generate(self, conversations, params):
            return ["ok"] * len(conversations) * params.n

    cached = CachedBackend(UrlBackend(), tmp_path / "cache.jsonl")
    assert cached.generate([[{"role": "user", "content": "hi"}]]) == ["ok"]
    line = json.loads((tmp_path / "cache.jsonl").read_text())
    assert line["model"] == cached.model_id == f"{SHOWN_URL}|m"
    with pytest.raises(ValueError, match="needs a 'model'") as info:
        backend_from_config({"backend": "openai", "base_url": SECRET_URL})
    assert_no_secret(str(info.value), "the factory's error")


def test_openai_client_keeps_the_query_of_the_base_url():
    pytest.importorskip("openai")
    client = oc._OpenAIClient(f"http://127.0.0.1:9/?api_key={QUERY_KEY}&api-version=1", "k", 5.0)._client
    assert str(client.base_url) == "http://127.0.0.1:9/v1/"  # the request paths go after /v1, not the query
    assert client.default_query == {"api_key": QUERY_KEY, "api-version": "1"}


def test_pipeline_outputs_hold_no_url_credentials(tmp_path, caplog):
    from culture_align.recipes.clca import CLCAPipeline, CLCAPipelineConfig

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps(SEEDS[0]) + "\n")
    caplog.set_level(logging.INFO)
    teacher = server_backend(ScriptedClient([http_error(503, SECRET_URL)]))
    config = CLCAPipelineConfig(cultures=("GBR",), scenario_file=str(seeds), max_turns=6, show_progress=False)
    corpus = CLCAPipeline(teacher, config=config).run(tmp_path / "out")
    assert len(corpus["dialogues"]) == 1
    provenance = corpus["dialogues"][0]["provenance"]
    assert provenance["scenario"]["teacher"] == f"{SHOWN_URL}|teacher"
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["models"]["judge"] == f"{SHOWN_URL}|teacher"
    assert {json.loads(line)["model"] for line in (tmp_path / "out" / "cache.jsonl").read_text().splitlines()} == {
        f"{SHOWN_URL}|teacher"}
    for path in (tmp_path / "out").rglob("*"):  # cache.jsonl, stats.json, the Arrow files of every table
        if path.is_file():
            assert_no_secret(path.read_bytes(), str(path))
    assert "retry 1/5" in caplog.text
    assert_no_secret(caplog.text, "the log")


# ---------------------------------------------------------------------------------------------- training_args.bin

def test_trainer_never_pickles_the_hub_token(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig

    from culture_align.trainers import CLCAConfig, CLCATrainer, CultureSPAConfig

    rows = [{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}],
             "task": "dialogue", "culture": "GBR"}] * 2
    args = CLCAConfig(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to="none",
                      save_strategy="steps", save_steps=1, use_cpu=True, hub_token=HUB_TOKEN,
                      model_init_kwargs={"token": HUB_TOKEN})
    trainer = CLCATrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(rows),
                          peft_config=LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    saved = sorted(tmp_path.rglob("training_args.bin"))
    assert [p.relative_to(tmp_path).as_posix() for p in saved] == ["adapter/training_args.bin",
                                                                   "out/checkpoint-1/training_args.bin"]
    for path in saved:
        assert_no_secret(path.read_bytes(), str(path))
        assert pickled_secrets(path) == []
        loaded = torch.load(path, weights_only=False)
        assert type(loaded) is CLCAConfig and loaded.hub_token is None and loaded.max_steps == 1
    # the trainer itself keeps the token (push_to_hub needs it), copies of its arguments too
    assert trainer.args.hub_token == HUB_TOKEN and trainer.args.model_init_kwargs["token"] == HUB_TOKEN
    assert copy.deepcopy(trainer.args).hub_token == HUB_TOKEN == copy.copy(trainer.args).hub_token

    buffer = io.BytesIO()
    torch.save(CultureSPAConfig(str(tmp_path / "spa"), hub_token=HUB_TOKEN, use_cpu=True, report_to="none"), buffer)
    assert_no_secret(buffer.getvalue(), "a pickled CultureSPAConfig")


# ---------------------------------------------------------------------------------------------- push adapter

def uploads(api: mock.MagicMock, call: int = -1) -> dict[str, bytes]:
    """``{path in repo: content}`` of one upload."""
    return api.uploads[call]["files"]


def save_args(path: Path, hub_token: str | None) -> Path:
    """``training_args.bin`` as a plain transformers ``Trainer`` writes it (the token pickled with the rest)."""
    from transformers import TrainingArguments

    torch.save(TrainingArguments(str(path.parent / "run"), hub_token=hub_token, report_to="none"), path)
    return path


def test_push_adapter_never_uploads_a_training_args_bin_with_a_token(tiny_model_dir, tmp_path, caplog):
    folder = save_adapter(tmp_path / "adapter", tiny_model_dir)
    save_args(folder / "training_args.bin", HUB_TOKEN)
    assert HUB_TOKEN.encode() in (folder / "training_args.bin").read_bytes()
    api = mock_api()
    hub.push_adapter(folder, "me/clca-tiny", recipe="clca", api=api)
    assert sorted(uploads(api)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    for path, content in uploads(api).items():
        assert_no_secret(content, path)
    assert f"{folder / 'training_args.bin'}: not uploaded, since it holds hub_token" in caplog.text
    assert_no_secret(caplog.text, "the log")

    save_args(folder / "training_args.bin", None)  # a clean one goes up as before
    hub.push_adapter(folder, "me/clca-tiny", api=api)
    assert "training_args.bin" in uploads(api)

    (folder / "training_args.bin").write_bytes(b"not a pickle")  # cannot be checked: left out
    hub.push_adapter(folder, "me/clca-tiny", api=api)
    assert "training_args.bin" not in uploads(api) and "cannot be checked" in caplog.text


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_push_leaves_the_local_files_as_they_were(tiny_model_dir, tmp_path):
    single = save_adapter(tmp_path / "single", tiny_model_dir)
    specific = tmp_path / "specific"
    for culture in ("CHN", "GBR"):
        save_adapter(specific / culture, tiny_model_dir)
    hub.adapter_card_from_folder(specific / "CHN", recipe="culturespa").save(specific / "CHN" / "README.md")
    for folder, kwargs in ((single, {"recipe": "clca"}), (specific, {"recipe": "culturespa"}),
                           (specific, {"recipe": "culturespa", "per_culture_repos": True})):
        before = snapshot(folder)
        api = mock_api()
        api.upload_folder.side_effect = http_error(500, "https://huggingface.co/api/models/me/adapter")
        with pytest.raises(HfHubHTTPError):
            hub.push_adapter(folder, "me/adapter", api=api, **kwargs)
        assert snapshot(folder) == before, kwargs

    api = mock_api()  # once a push succeeds, the folder holds the cards that were pushed
    hub.push_adapter(specific, "me/adapter", recipe="culturespa", api=api)
    pushed = uploads(api)
    for readme in ("README.md", "CHN/README.md", "GBR/README.md"):
        assert (specific / readme).read_bytes() == pushed[readme]
    assert "culturespa" in ModelCard.load(specific / "GBR" / "README.md").data.tags


def test_cards_name_the_hub_id_not_a_local_cache_path(tiny_model_dir, tmp_path, monkeypatch):
    hub_cache = tmp_path / "hf-cache" / HUB_CACHE_BASE
    embedded = tmp_path / "ca-cache" / "models" / "smollm2-135m-instruct-0.1.2"
    for base in (hub_cache, embedded):
        base.mkdir(parents=True)
    (embedded / "EMBEDDED_SOURCE.txt").write_text("HuggingFaceTB/SmolLM2-135M-Instruct\nconverted from gguf\n")
    for base in (hub_cache, embedded):
        folder = save_adapter(tmp_path / f"adapter-{base.parent.name}", tiny_model_dir)
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
        api = mock_api()
        hub.push_adapter(folder, "me/adapter", recipe="clca", api=api)
        card = ModelCard(uploads(api)["README.md"].decode())
        assert str(base) not in card.content and str(tmp_path) not in card.content
        assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert "- Base model: `HuggingFaceTB/SmolLM2-135M-Instruct`" in card.text
        assert 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in card.text

    # a culture-align card written with the cache path (by an earlier version) gets the Hub id when pushed
    text = (folder / "README.md").read_text().replace("`HuggingFaceTB/SmolLM2-135M-Instruct`", f"`{embedded}`")
    (folder / "README.md").write_text(text.replace("base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n", ""))
    api = mock_api()
    hub.push_adapter(folder, "me/adapter", api=api)
    card = ModelCard(uploads(api)["README.md"].decode())
    assert str(embedded) not in card.content and "- Base model: `HuggingFaceTB/SmolLM2-135M-Instruct`" in card.text
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
