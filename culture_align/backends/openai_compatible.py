"""`OpenAICompatibleBackend`: any server that speaks the OpenAI chat-completions API.

vLLM ``serve``, TGI, ``transformers serve``, Inference Endpoints, ... are reached through
``huggingface_hub.InferenceClient(base_url=...)``. Requests run in a thread pool of bounded size; transient
failures (HTTP 429, 408, 5xx, timeouts, connection errors) are retried with exponential backoff and jitter;
other errors (a 400 for a bad request, a 401 for a wrong key) are raised at once.

The API key is read from one environment variable only (``OPENAI_API_KEY`` by default). It is handed to the
HTTP client and nowhere else: it is not stored on the backend, never logged, and not in ``repr``. Credentials in
the server URL (``user:password@``, ``?token=``, ``?api_key=``, ...) are treated alike: the real URL goes to the
HTTP client only; ``base_url``, ``model_id`` (hence cache keys, ``cache.jsonl``, provenance and ``stats.json``),
logs and raised errors carry it with the credentials replaced by ``***`` (:func:`culture_align.redaction.redact_url`).
"""

from __future__ import annotations

import importlib.util
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from tqdm.auto import tqdm
from transformers.utils import logging

from ..redaction import redact_error, redact_url
from .base import Conversation, GenerationBackend, GenerationParams, GenerationStats, request_key

logger = logging.get_logger(__name__)

__all__ = ["OpenAICompatibleBackend", "is_retryable_error", "backoff_delay", "make_client"]

NO_API_KEY = "EMPTY"
"""Sent when the key variable is unset, so the client never falls back to a stored Hugging Face token."""

_TRANSPORT_ERRORS = {
    "TransportError", "RequestError", "TimeoutException", "ConnectError", "ReadError", "RemoteProtocolError",
    "APIConnectionError", "APITimeoutError",
}


def _status_code(error: BaseException) -> int | None:
    """The HTTP status of an error from huggingface_hub (``.response.status_code``) or openai (``.status_code``)."""
    for obj in (error, getattr(error, "response", None)):
        code = getattr(obj, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def is_retryable_error(error: BaseException) -> bool:
    """True for errors worth retrying: HTTP 408, 429 and 5xx, timeouts and connection failures."""
    if any(cls.__name__ == "OfflineModeIsEnabled" for cls in type(error).__mro__):
        return False  # huggingface_hub refuses every request while HF_HUB_OFFLINE is set: retrying cannot help
    code = _status_code(error)
    if code is not None:
        return code in (408, 429) or code >= 500
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    return any(cls.__name__ in _TRANSPORT_ERRORS for cls in type(error).__mro__)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``min(cap, base * 2**attempt)`` times U[0.5, 1).

    The jitter keeps clients that failed together from retrying together; the lower bound of half the
    nominal delay keeps delays non-decreasing from one attempt to the next.
    """
    nominal = min(cap, base * 2.0**attempt)
    return nominal * (rng or random).uniform(0.5, 1.0)


def _retry_after(error: BaseException) -> float | None:
    """A ``Retry-After`` header in seconds, when the server sent one."""
    headers = getattr(getattr(error, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


class _OpenAIClient:
    """``openai.OpenAI`` behind the ``chat_completion(messages, **kwargs)`` call of ``InferenceClient``."""

    def __init__(self, base_url: str, api_key: str, timeout: float | None) -> None:
        import openai

        url, query = _split_query(base_url)
        # Retries are ours (with our backoff and error classes): the client's own are turned off.
        self._client = openai.OpenAI(base_url=url, api_key=api_key, timeout=timeout, max_retries=0,
                                     default_query=query or None)

    def chat_completion(self, messages: Conversation, **kwargs: Any) -> Any:
        return self._client.chat.completions.create(messages=messages, **kwargs)


def _split_query(base_url: str) -> tuple[str, dict[str, str]]:
    """``(URL ending in /v1, its query parameters)``: the openai client appends request paths to the base URL
    as text, so a query (``?api-version=...&api_key=...``) must travel as ``default_query`` instead."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path if path.endswith("/v1") else path + "/v1"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(path=path, query="", fragment="")), query


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def make_client(kind: str, base_url: str, api_key: str, timeout: float | None) -> Any:
    """An HTTP client with ``chat_completion(messages, **kwargs)``.

    Args:
        kind: ``"huggingface_hub"`` (``InferenceClient``), ``"openai"`` (``openai.OpenAI``), or ``"auto"``:
            ``InferenceClient`` unless ``HF_HUB_OFFLINE`` is set (it then refuses every request, local servers
            included), in which case ``openai`` when installed.
    """
    if kind == "auto":
        kind = "huggingface_hub"
        if _hub_offline():
            if importlib.util.find_spec("openai") is None:
                raise RuntimeError(
                    "HF_HUB_OFFLINE is set, so huggingface_hub's InferenceClient refuses to send requests (even to "
                    f"{redact_url(base_url)}): unset HF_HUB_OFFLINE, or `pip install openai` to use the openai client "
                    "instead"
                )
            kind = "openai"
    if kind == "huggingface_hub":
        from huggingface_hub import InferenceClient

        return InferenceClient(base_url=base_url, api_key=api_key, timeout=timeout)
    if kind == "openai":
        return _OpenAIClient(base_url, api_key, timeout)
    raise ValueError(f"client must be 'auto', 'huggingface_hub' or 'openai', got {kind!r}")


def _truncate(text: str, stop: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


class OpenAICompatibleBackend(GenerationBackend):
    """Generate through an OpenAI-compatible chat-completions server.

    Args:
        base_url: The server, e.g. ``"http://127.0.0.1:8000/v1"`` (``/v1`` is added when missing). Credentials in
            it reach the HTTP client only; the :attr:`base_url` attribute, :attr:`model_id`, logs and errors show
            it redacted.
        model: The model name the server knows.
        api_key_env: Environment variable holding the API key (default ``"OPENAI_API_KEY"``); unset means
            no key (a placeholder is sent).
        max_concurrency: Requests in flight at most (default 8).
        max_retries: Retries of a request after a transient error (default 5; 6 attempts in all).
        timeout: Seconds per HTTP request (default 120).
        server_constrains_json: Whether the server enforces ``response_format`` JSON schemas (vLLM does;
            ``transformers serve`` does not). Sets :attr:`supports_json_schema` (default False). The schema
            is sent either way.
        backoff_base: Nominal delay before the first retry, in seconds (default 1).
        backoff_cap: Longest delay between retries, in seconds (default 30).
        sleep: Called with each delay (default ``time.sleep``; tests inject a recorder).
        client: The HTTP client: ``"huggingface_hub"`` (``InferenceClient``), ``"openai"``, or ``"auto"``
            (default; see :func:`make_client`).
        client_factory: ``factory(base_url=, api_key=, timeout=)`` returning an object with
            ``chat_completion(messages, **kwargs)``; overrides ``client`` (tests use a fake).
        show_progress: Show a tqdm bar over requests (default False).
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", max_concurrency: int = 8,
                 max_retries: int = 5, timeout: float | None = 120.0, server_constrains_json: bool = False,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 client: str = "auto", client_factory: Callable[..., Any] | None = None,
                 show_progress: bool = False) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        url = base_url.rstrip("/")
        self.base_url = redact_url(url)
        """The server URL as shown (logs, errors, ``repr``), credentials replaced by ``***``."""
        self.model = model
        self.model_id = f"{self.base_url}|{model}"
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.timeout = timeout
        self.supports_json_schema = bool(server_constrains_json)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.show_progress = show_progress
        self.stats = GenerationStats()
        self._sleep = sleep
        self._stats_lock = threading.Lock()
        api_key = os.environ.get(api_key_env) or None
        if api_key is None:
            logger.info(f"${api_key_env} is not set: calling {self.base_url} without an API key")
        if client_factory is not None:
            self._client = client_factory(base_url=url, api_key=api_key or NO_API_KEY, timeout=timeout)
        else:
            self._client = make_client(client, url, api_key or NO_API_KEY, timeout)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})")

    __str__ = __repr__

    # -------------------------------------------------------------------------------------------- requests
    def request_kwargs(self, conversation: Conversation, params: GenerationParams, sample_index: int) -> dict[str, Any]:
        """The ``chat_completion`` arguments of one completion.

        The seed is ``params.seed`` plus an offset from the request key (kept below 2**31), so the ``n``
        samples of a conversation, and different conversations, use different server-side seeds.
        """
        offset = int(request_key(self.model_id, conversation, params, sample_index)[:8], 16)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": (params.seed + offset) % 2**31,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": params.json_schema, "strict": True},
            }
        return kwargs

    def _complete(self, conversation: Conversation, params: GenerationParams, sample_index: int) -> str:
        """One completion, retried on transient errors."""
        kwargs = self.request_kwargs(conversation, params, sample_index)
        for attempt in range(self.max_retries + 1):
            try:
                out = self._client.chat_completion(conversation, **kwargs)
            except Exception as error:  # classified below: retried or raised
                redact_error(error)  # its message may quote the real URL, credentials included
                if not is_retryable_error(error):
                    logger.error(f"{self.base_url} (model {self.model!r}) rejected a request: "
                                 f"{type(error).__name__} (HTTP {_status_code(error)})")
                    raise
                if attempt == self.max_retries:
                    raise RuntimeError(
                        f"{self.base_url} (model {self.model!r}): request failed after {attempt + 1} attempts; "
                        f"last error: {type(error).__name__}: {error}"
                    ) from error
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                retry_after = _retry_after(error)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.backoff_cap))
                logger.warning(f"{self.base_url}: {type(error).__name__} (HTTP {_status_code(error)}); "
                               f"retry {attempt + 1}/{self.max_retries} in {delay:.1f} s")
                with self._stats_lock:
                    self.stats.retries += 1
                self._sleep(delay)
                continue
            self._count(out)
            content = out.choices[0].message.content if out.choices else None
            return _truncate(content or "", params.stop)
        raise AssertionError("unreachable")  # pragma: no cover

    def _count(self, out: Any) -> None:
        usage = getattr(out, "usage", None)
        with self._stats_lock:
            self.stats.requests += 1
            if usage is not None:
                self.stats.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.stats.generated_tokens += int(getattr(usage, "completion_tokens", 0) or 0)

    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        """``n`` separate requests per conversation (servers differ in their support of ``n``)."""
        start = time.perf_counter()
        jobs = [(i, k) for i in range(len(conversations)) for k in range(params.n)]
        results: list[str | None] = [None] * len(jobs)
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(jobs)))
        try:
            futures = {pool.submit(self._complete, conversations[i], params, k): i * params.n + k for i, k in jobs}
            with tqdm(total=len(jobs), desc="generate", disable=not self.show_progress, leave=False) as bar:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        results[futures[future]] = future.result()  # raises the first failure
                    bar.update(len(done))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            with self._stats_lock:
                self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]
