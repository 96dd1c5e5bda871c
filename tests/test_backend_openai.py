"""OpenAICompatibleBackend: retries and backoff, error handling, bounded concurrency and key hygiene with a
fake client; then a real `transformers serve` on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

from culture_align.backends import GenerationParams, OpenAICompatibleBackend, TransformersBackend
from culture_align.backends import openai_compatible as oc

URL = "http://127.0.0.1:9/v1"
SECRET = "sk-test-Zq81-not-a-real-key"


def http_error(status: int, headers: dict[str, str] | None = None) -> HfHubHTTPError:
    """An HfHubHTTPError as huggingface_hub raises it for an HTTP error status."""
    import httpx2

    request = httpx2.Request("POST", URL + "/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return HfHubHTTPError(f"{status} error", response=response)


class StatusError(Exception):
    """An error shaped like the openai client's (``.status_code``)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code


def reply(text: str) -> SimpleNamespace:
    return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))],
                           usage=SimpleNamespace(prompt_tokens=5, completion_tokens=2))


class FakeClient:
    """Raises ``failures`` in turn, then answers with the last user message (and the sample seed)."""

    def __init__(self, failures=(), delay: float = 0.0) -> None:
        self.failures = list(failures)
        self.delay = delay
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def chat_completion(self, messages, **kwargs):
        with self.lock:
            self.calls.append({"messages": messages, **kwargs})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        try:
            time.sleep(self.delay)
            if failure is not None:
                raise failure
            return reply(messages[-1]["content"] + " | stop here")
        finally:
            with self.lock:
                self.in_flight -= 1


def make_backend(client: FakeClient, **kwargs) -> tuple[OpenAICompatibleBackend, list[float], dict]:
    delays: list[float] = []
    seen: dict = {}

    def factory(**factory_kwargs):
        seen.update(factory_kwargs)
        return client

    backend = OpenAICompatibleBackend(URL, "tiny", sleep=delays.append, client_factory=factory, **kwargs)
    return backend, delays, seen


def chats(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(count)]


def test_retries_transient_errors_with_exponential_backoff():
    failures = [http_error(429), http_error(503), InferenceTimeoutError("timed out"), ConnectionError("reset"),
                StatusError(502)]
    client = FakeClient(failures)
    backend, delays, _ = make_backend(client, max_retries=5)
    assert backend.generate(chats(1), GenerationParams(stop=(" | ",))) == ["question 0"]
    assert len(client.calls) == 6 and len(delays) == 5
    for attempt, delay in enumerate(delays):
        assert 0.5 * 2**attempt <= delay <= 2**attempt
    assert delays == sorted(delays) and delays[-1] > 4 * delays[0]
    assert backend.stats.retries == 5 and backend.stats.requests == 1 and backend.stats.generated_tokens == 2


def test_backoff_is_capped_and_honours_retry_after():
    assert all(15 <= oc.backoff_delay(a) <= 30 for a in range(5, 12))
    client = FakeClient([http_error(429, {"Retry-After": "7"})])
    backend, delays, _ = make_backend(client)
    backend.generate(chats(1), GenerationParams())
    assert delays[0] >= 7


def test_connection_errors_are_retryable():
    import httpx2

    assert oc.is_retryable_error(httpx2.ConnectError("refused"))
    assert oc.is_retryable_error(http_error(500)) and oc.is_retryable_error(http_error(408))
    assert not oc.is_retryable_error(http_error(401)) and not oc.is_retryable_error(ValueError("bad"))
    assert not oc.is_retryable_error(OfflineModeIsEnabled("HF_HUB_OFFLINE is set"))


def test_non_retryable_error_raises_at_once():
    client = FakeClient([http_error(400)])
    backend, delays, _ = make_backend(client)
    with pytest.raises(HfHubHTTPError, match="400"):
        backend.generate(chats(1), GenerationParams())
    assert len(client.calls) == 1 and delays == []


def test_gives_up_after_max_retries_with_a_clear_error():
    client = FakeClient([http_error(503)] * 10)
    backend, delays, _ = make_backend(client, max_retries=3)
    with pytest.raises(RuntimeError) as info:
        backend.generate(chats(1), GenerationParams())
    message = str(info.value)
    assert URL in message and "'tiny'" in message and "4 attempts" in message and "503" in message
    assert len(client.calls) == 4 and len(delays) == 3


def test_concurrency_is_bounded_and_order_kept():
    client = FakeClient(delay=0.02)
    backend, _, _ = make_backend(client, max_concurrency=3)
    texts = backend.generate(chats(12), GenerationParams(n=2, stop=(" | ",)))
    assert texts == [f"question {i}" for i in range(12) for _ in range(2)]
    assert 2 <= client.max_in_flight <= 3
    assert len(client.calls) == 24  # n requests per conversation


def test_request_arguments():
    client = FakeClient()
    backend, _, _ = make_backend(client)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    params = GenerationParams(temperature=0.5, top_p=0.9, max_new_tokens=7, stop=("\n",), seed=3, n=3,
                              json_schema=schema)
    backend.generate(chats(1), params)
    calls = client.calls
    assert {c["temperature"] for c in calls} == {0.5} and {c["top_p"] for c in calls} == {0.9}
    assert {c["max_tokens"] for c in calls} == {7} and all(c["stop"] == ["\n"] for c in calls)
    assert all(c["model"] == "tiny" for c in calls)
    assert len({c["seed"] for c in calls}) == 3 and all(0 <= c["seed"] < 2**31 for c in calls)
    assert calls[0]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
    assert backend.model_id == f"{URL}|tiny" and not backend.supports_json_schema
    assert make_backend(FakeClient(), server_constrains_json=True)[0].supports_json_schema
    assert "response_format" not in backend.request_kwargs(chats(1)[0], GenerationParams(), 0)


def test_api_key_from_env_only_and_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("CULTURE_ALIGN_TEST_KEY", SECRET)
    client = FakeClient([http_error(503)] * 3 + [http_error(401)])
    caplog.set_level(logging.DEBUG)
    backend, _, seen = make_backend(client, api_key_env="CULTURE_ALIGN_TEST_KEY", max_retries=5)
    assert seen["api_key"] == SECRET
    with pytest.raises(HfHubHTTPError) as info:
        backend.generate(chats(1), GenerationParams())
    assert caplog.records  # retries and the rejection were logged ...
    assert SECRET not in caplog.text  # ... without the key
    assert SECRET not in repr(backend) and SECRET not in str(backend) and SECRET not in str(info.value)
    assert SECRET not in repr(vars(backend).get("stats"))

    monkeypatch.delenv("CULTURE_ALIGN_TEST_KEY")
    _, _, seen = make_backend(FakeClient(), api_key_env="CULTURE_ALIGN_TEST_KEY")
    assert seen["api_key"] == oc.NO_API_KEY  # a placeholder, never a stored Hugging Face token


def test_client_choice_follows_hub_offline_mode(monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert isinstance(oc.make_client("auto", URL, "k", 5.0), oc._OpenAIClient)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert isinstance(oc.make_client("auto", URL, "k", 5.0), InferenceClient)
    with pytest.raises(ValueError, match="client must be"):
        oc.make_client("curl", URL, "k", 5.0)


# ----------------------------------------------------------------------------------------------- scoring
def logprobs_reply(top: list[tuple[str, float]], as_dicts: bool = False,
                   sampled: tuple[str, float] | None = None) -> SimpleNamespace:
    """A one-token answer whose logprobs list ``top`` (openai-style objects, or dicts)."""
    token, logprob = sampled or top[0]
    if as_dicts:
        logprobs = {"content": [{"token": token, "logprob": logprob,
                                 "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
    else:
        logprobs = SimpleNamespace(content=[SimpleNamespace(
            token=token, logprob=logprob, top_logprobs=[SimpleNamespace(token=t, logprob=lp) for t, lp in top])])
    return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=token), logprobs=logprobs)],
                           usage=SimpleNamespace(prompt_tokens=5, completion_tokens=1))


class LogprobsClient(FakeClient):
    """Answers each conversation (by its last message) with the top log-probabilities in ``answers``."""

    def __init__(self, answers: dict, failures=(), delay: float = 0.0) -> None:
        super().__init__(failures, delay)
        self.answers = answers

    def chat_completion(self, messages, **kwargs):
        with self.lock:
            self.calls.append({"messages": messages, **kwargs})
            failure = self.failures.pop(0) if self.failures else None
        time.sleep(self.delay)
        if failure is not None:
            raise failure
        return self.answers[messages[-1]["content"]]


def ln(p: float) -> float:
    import math

    return math.log(p)


def test_score_renormalises_listed_choices_exactly():
    import numpy as np

    answers = {
        "question 0": logprobs_reply([("1", -0.5), (" 2", -1.5), ("2", -4.0), ("3", -2.0), ("x", -3.0)]),
        "question 1": logprobs_reply([("yes", ln(0.6)), ("no", ln(0.3)), ("maybe", ln(0.1))], as_dicts=True),
        "question 2": logprobs_reply([("b", ln(0.5)), ("c", ln(0.2))], sampled=("a", ln(0.25))),
    }
    client = LogprobsClient(answers, delay=0.01)
    backend, _, _ = make_backend(client, max_concurrency=2)
    finished = []
    scores = backend.score(chats(3), [["1", "2", "3"], ["no", "yes"], ["a", "b"]], progress=finished.append)
    logits = np.array([-0.5, -1.5, -2.0])  # " 2" and "2" both match "2": the higher one counts
    np.testing.assert_allclose(scores[0], logits - np.log(np.exp(logits).sum()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(scores[1]), [1 / 3, 2 / 3], rtol=0, atol=1e-12)
    # The sampled token counts as listed even where top_logprobs left it out.
    np.testing.assert_allclose(np.exp(scores[2]), [0.25 / 0.75, 0.5 / 0.75], rtol=0, atol=1e-12)
    assert all(s.dtype == np.float64 and abs(np.exp(s).sum() - 1) < 1e-12 for s in scores)
    assert backend.approximated_choices == 0 and sum(finished) == 3
    assert backend.stats.requests == 3 and backend.stats.prompt_tokens == 15
    assert backend.score([], []) == []
    with pytest.raises(ValueError, match="3 conversations but 1 choice lists"):
        backend.score(chats(3), [["1"]])


def test_score_estimates_missing_choices(monkeypatch):
    import numpy as np

    warnings = []
    monkeypatch.setattr(oc.logger, "warning_once", warnings.append)
    answers = {
        # 0.1 left by the listed tokens, 2 missing choices: 0.05 each (under the smallest listed, 0.1).
        "question 0": logprobs_reply([("1", ln(0.5)), ("2", ln(0.3)), ("x", ln(0.1))]),
        # 0.48 left, 1 missing choice: capped at the smallest listed probability, 0.02.
        "question 1": logprobs_reply([("1", ln(0.5)), ("2", ln(0.02))]),
    }
    backend, _, _ = make_backend(LogprobsClient(answers))
    scores = backend.score(chats(2), [["1", "2", "3", "4"], ["1", "2", "3"]])
    np.testing.assert_allclose(np.exp(scores[0]), np.array([0.5, 0.3, 0.05, 0.05]) / 0.9, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(scores[1]), np.array([0.5, 0.02, 0.02]) / 0.54, rtol=0, atol=1e-12)
    assert backend.approximated_choices == 3
    assert len(warnings) == 2 and len(set(warnings)) == 1 and "estimated" in warnings[0]  # one message: logged once

    # No choice listed: nothing to read (an error, not a made-up uniform distribution); "1" vs "10": one first token
    # cannot tell them apart
    with pytest.raises(ValueError, match="none of the choices .* is among the listed first tokens"):
        oc.choice_log_probs_from_top_logprobs(["1", "2"], [("x", 0.0)])
    with pytest.raises(ValueError, match=r"\['1'\] begin\(s\) other choices"):
        oc.choice_log_probs_from_top_logprobs(["1", "2", "10"], [("1", 0.0)])
    values, missing = oc.choice_log_probs_from_top_logprobs(["1", "2"], [("1", 0.0)])
    assert missing == 1 and values[0] == 0.0 and values[1] == -np.inf


def test_score_needs_a_server_that_returns_logprobs():
    backend, _, _ = make_backend(FakeClient())  # plain answers, no logprobs
    with pytest.raises(NotImplementedError) as info:
        backend.score(chats(1), [["1", "2"]])
    message = str(info.value)
    assert URL in message and "does not return logprobs" in message and "sampling mode" in message

    empty = SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="1"), logprobs=SimpleNamespace(
        content=[SimpleNamespace(token="1", logprob=-0.1, top_logprobs=[])]))], usage=None)
    backend, _, _ = make_backend(LogprobsClient({"question 0": empty}))
    with pytest.raises(NotImplementedError, match="lists no tokens"):
        backend.score(chats(1), [["1", "2"]])

    rejected = HfHubHTTPError("422 Unprocessable Entity: logprobs is not supported",
                              response=http_error(422).response)
    backend, delays, _ = make_backend(FakeClient([rejected]))
    with pytest.raises(NotImplementedError, match="does not return logprobs"):
        backend.score(chats(1), [["1", "2"]])
    assert delays == []  # a rejection is not retried


def test_score_request_arguments_and_retries():
    answers = {f"question {i}": logprobs_reply([("1", -0.1), ("2", -2.5)]) for i in range(2)}
    client = LogprobsClient(answers, failures=[http_error(503)])
    backend, delays, _ = make_backend(client)
    backend.score(chats(2), [["1", "2"], ["2", "1"]])
    assert len(client.calls) == 3 and len(delays) == 1 and backend.stats.retries == 1  # the same retry machinery
    for call in client.calls:
        assert (call["max_tokens"], call["temperature"], call["logprobs"], call["top_logprobs"]) == (1, 0, True, 20)
        assert call["model"] == "tiny" and "response_format" not in call
    client = LogprobsClient(answers)
    backend, _, _ = make_backend(client, score_top_logprobs=5)
    backend.score(chats(1), [["1", "2"]])
    assert client.calls[0]["top_logprobs"] == 5
    with pytest.raises(ValueError, match="score_top_logprobs"):
        make_backend(FakeClient(), score_top_logprobs=0)


# ------------------------------------------------------------------------------- a real transformers serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_tiny_model(tiny_model_dir, tmp_path_factory):
    """`transformers serve <tiny model folder>` on 127.0.0.1; yields the base URL."""
    port = _free_port()
    hub_cache = tmp_path_factory.mktemp("hub-cache")
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub_cache), HF_HUB_DISABLE_UPDATE_CHECK="1",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not healthy after 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


@pytest.mark.parametrize("client", ["openai", "huggingface_hub"])
def test_real_transformers_serve(served_tiny_model, tiny_model_dir, tiny_model_and_tokenizer, client,
                                 monkeypatch):
    if client == "huggingface_hub":  # InferenceClient refuses all requests in offline mode
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    backend = OpenAICompatibleBackend(served_tiny_model, str(tiny_model_dir), client=client, max_concurrency=2,
                                      timeout=60, max_retries=1)
    conversations = [[{"role": "user", "content": "How important is family in your life?"}],
                     [{"role": "system", "content": "You are a real person."}, {"role": "user", "content": "yes?"}],
                     [{"role": "user", "content": "On a scale from 1 to 10"}]]
    params = GenerationParams(temperature=0, max_new_tokens=6)
    texts = backend.generate(conversations, params)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    assert backend.stats.requests == 3 and backend.stats.generated_tokens > 0
    # Greedy decoding on the server and locally agree token for token.
    model, tok = tiny_model_and_tokenizer
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = TransformersBackend.from_model(model, tok).generate(conversations, params)
    finally:
        torch.set_num_threads(before)
    assert texts == local


def test_transformers_serve_returns_no_logprobs(served_tiny_model, tiny_model_dir):
    """`transformers serve` ignores ``logprobs``/``top_logprobs`` (answers 200 without them): score says so."""
    backend = OpenAICompatibleBackend(served_tiny_model, str(tiny_model_dir), client="openai", timeout=60,
                                      max_retries=1)
    with pytest.raises(NotImplementedError, match="does not return logprobs.*sampling mode"):
        backend.score([[{"role": "user", "content": "On a scale from 1 to 10"}]], [["1", "2", "3"]])
