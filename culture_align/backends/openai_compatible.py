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

Scoring (:meth:`OpenAICompatibleBackend.score`) needs a server that returns ``logprobs``: one chat completion per
conversation with ``max_tokens=1, temperature=0, logprobs=True, top_logprobs=k``, and the distribution over the
choices is read from the top-``k`` log-probabilities of the first generated token
(:func:`choice_log_probs_from_top_logprobs`). Only that one token is read, so each choice must be a single token on
the server (option codes ``"1"`` ... ``"9"`` usually are); a choice that is not among the top ``k`` (a multi-token
choice, or one the model finds unlikely) gets an estimated share of the probability the top ``k`` leave, counted in
:attr:`OpenAICompatibleBackend.approximated_choices`. The result is exact only when every choice is listed; it is
the same constrained distribution as
:meth:`TransformersBackend.score <culture_align.backends.TransformersBackend.score>` for single-token choices.
A server that returns no logprobs (``transformers serve``) raises ``NotImplementedError``: use sampling mode there.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from ..redaction import redact_error, redact_url
from .base import Conversation, GenerationBackend, GenerationParams, GenerationStats, request_key

logger = logging.get_logger(__name__)

__all__ = ["OpenAICompatibleBackend", "is_retryable_error", "backoff_delay", "make_client",
           "choice_log_probs_from_top_logprobs"]

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


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a dict, else ``obj.name`` (openai's pydantic models, huggingface_hub's dataclasses)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def choice_log_probs_from_top_logprobs(choices: Sequence[str],
                                       listed: Sequence[tuple[str, float]]) -> tuple[np.ndarray, int]:
    """The distribution over ``choices`` from the top log-probabilities of one generated token.

    A choice is the listed token whose text equals it after ``.strip()`` on both sides (``"1"`` and ``" 1"`` both
    match choice ``"1"``; the highest log-probability is kept when several match). A choice that is not listed
    (outside the top ``k``, or not a single token) is *missing*: the missing choices share the probability the
    listed tokens leave, ``1 - sum(listed probabilities)``, equally, each capped at the smallest listed probability
    (a missing choice never outranks a listed token). The choice probabilities are then renormalised to sum to 1.
    When every choice is listed this is exactly the softmax of their log-probabilities, i.e. the distribution of a
    decoder constrained to write one of them.

    Raises:
        ValueError: a choice begins another (``"1"`` and ``"10"``: one first token cannot tell them apart), or no
            choice is listed at all (the model started its answer otherwise: nothing to read, rather than a
            made-up uniform distribution).

    Args:
        choices: The answer strings.
        listed: ``(token text, log-probability in nats)`` of the distinct tokens the server listed.

    Returns:
        ``(log-probabilities, one per choice, float64, exp sums to 1; -inf for a missing choice when the listed
        tokens leave no probability, number of missing choices)``.
    """
    if not listed:
        raise ValueError("no listed tokens to read choice probabilities from")
    stripped = [c.strip() for c in choices]
    clashing = sorted({a for a in stripped for b in stripped if a != b and b.startswith(a)})
    if clashing:
        raise ValueError(f"choices {list(choices)}: {clashing} begin(s) other choices, so the first answer token "
                         "cannot tell them apart; score them with a backend that reads whole sequences (transformers, "
                         "vLLM), or use sampling mode")
    probs = [math.exp(float(logprob)) for _, logprob in listed]
    left = max(0.0, 1.0 - sum(probs))
    found: list[float | None] = []
    for choice in choices:
        matches = [p for (token, _), p in zip(listed, probs) if str(token).strip() == choice.strip()]
        found.append(max(matches) if matches else None)
    missing = sum(p is None for p in found)
    if missing == len(choices):
        raise ValueError(f"none of the choices {list(choices)} is among the listed first tokens "
                         f"{[token for token, _ in listed]}: the model did not start its answer with one")
    share = min(left / missing, min(probs)) if missing else 0.0
    values = np.array([share if p is None else p for p in found], dtype=np.float64)
    total = values.sum()
    with np.errstate(divide="ignore"):
        return np.log(values / total), missing


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
        score_top_logprobs: ``top_logprobs`` asked per :meth:`score` request (default 20, the most OpenAI and vLLM
            allow by default).
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", max_concurrency: int = 8,
                 max_retries: int = 5, timeout: float | None = 120.0, server_constrains_json: bool = False,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 client: str = "auto", client_factory: Callable[..., Any] | None = None,
                 show_progress: bool = False, score_top_logprobs: int = 20) -> None:
        if score_top_logprobs < 1:
            raise ValueError(f"score_top_logprobs must be >= 1, got {score_top_logprobs}")
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
        self.score_top_logprobs = int(score_top_logprobs)
        self.stats = GenerationStats()
        self.approximated_choices = 0
        """Choices :meth:`score` did not find among the top log-probabilities and estimated instead."""
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
        """One completion's text, retried on transient errors."""
        out = self._request(conversation, self.request_kwargs(conversation, params, sample_index))
        content = out.choices[0].message.content if out.choices else None
        return _truncate(content or "", params.stop)

    def _request(self, conversation: Conversation, kwargs: dict[str, Any]) -> Any:
        """One ``chat_completion`` call, retried on transient errors; returns the server's answer."""
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
            return out
        raise AssertionError("unreachable")  # pragma: no cover

    def _count(self, out: Any) -> None:
        usage = getattr(out, "usage", None)
        with self._stats_lock:
            self.stats.requests += 1
            if usage is not None:
                self.stats.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.stats.generated_tokens += int(getattr(usage, "completion_tokens", 0) or 0)

    def _run_pool(self, job: Callable[[int], Any], count: int, desc: str,
                  progress: Callable[[int], None] | None = None) -> list[Any]:
        """``[job(0), ..., job(count - 1)]`` in the thread pool (``max_concurrency`` at most in flight); the first
        failure is raised and the jobs not started are cancelled. ``progress`` gets the number of jobs finished."""
        results: list[Any] = [None] * count
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, count))
        try:
            futures = {pool.submit(job, index): index for index in range(count)}
            with tqdm(total=count, desc=desc, disable=not self.show_progress, leave=False) as bar:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        results[futures[future]] = future.result()  # raises the first failure
                    bar.update(len(done))
                    if progress is not None:
                        progress(len(done))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        """``n`` separate requests per conversation (servers differ in their support of ``n``)."""
        start = time.perf_counter()
        jobs = [(i, k) for i in range(len(conversations)) for k in range(params.n)]
        try:
            return self._run_pool(lambda j: self._complete(conversations[jobs[j][0]], params, jobs[j][1]), len(jobs),
                                  "generate")
        finally:
            with self._stats_lock:
                self.stats.seconds += time.perf_counter() - start

    # ------------------------------------------------------------------------------------------- scoring
    def score_request_kwargs(self, conversation: Conversation) -> dict[str, Any]:
        """The ``chat_completion`` arguments of one :meth:`score` request: one greedy token with its top
        ``score_top_logprobs`` log-probabilities."""
        kwargs = self.request_kwargs(conversation, GenerationParams(temperature=0, max_new_tokens=1), 0)
        kwargs.update(logprobs=True, top_logprobs=self.score_top_logprobs)
        return kwargs

    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Option log-probabilities from the server's top log-probabilities of the first answer token.

        One chat completion per conversation (``max_tokens=1, temperature=0, logprobs=True,
        top_logprobs=score_top_logprobs``), through the same thread pool and retries as :meth:`generate`. Only the
        first generated token is read, so each choice must be a single token on the server: a choice matches the
        listed token whose text equals it after ``.strip()`` (the most probable one when several do). When every
        choice is listed, the result is the softmax of their log-probabilities: the distribution of a decoder
        constrained to write one of them (as :meth:`TransformersBackend.score
        <culture_align.backends.TransformersBackend.score>` gives it for single-token choices).

        A choice that is not listed (beyond the top ``k``, or not a single token) is estimated: the missing choices
        share the probability the listed tokens leave, equally, each capped at the smallest listed probability,
        before the choices are renormalised (:func:`choice_log_probs_from_top_logprobs`). Each estimated choice is
        counted in :attr:`approximated_choices`, and a warning is logged once. Raise ``score_top_logprobs`` (up to the
        server's limit) to estimate fewer.

        Args:
            conversations: N chats, each ending with the user turn to answer.
            choices: N lists of answer strings (e.g. option codes ``["1", "2", "3"]``).
            progress: Called with the number of conversations finished, as they finish.

        Returns:
            N float64 arrays of log-probabilities (nats), one per choice; ``exp`` of each sums to 1.

        Raises:
            NotImplementedError: the server returns no logprobs (e.g. ``transformers serve``): use sampling mode.
        """
        if len(conversations) != len(choices):
            raise ValueError(f"{len(conversations)} conversations but {len(choices)} choice lists")
        if not conversations:
            return []
        return self._run_pool(lambda i: self._score_one(conversations[i], list(choices[i])), len(conversations),
                              "score", progress)

    def _no_logprobs(self, why: str) -> NotImplementedError:
        return NotImplementedError(
            f"{self.base_url} (model {self.model!r}) does not return logprobs ({why}), so it cannot score choices: "
            "use sampling mode with this server, or a server that returns logprobs (e.g. vLLM)")

    def _score_one(self, conversation: Conversation, choices: list[str]) -> np.ndarray:
        try:
            out = self._request(conversation, self.score_request_kwargs(conversation))
        except Exception as error:
            if _status_code(error) in (400, 422) and "logprob" in str(error).lower():
                raise self._no_logprobs(f"it rejected a request asking them: {error}") from error
            raise
        first = out.choices[0] if out.choices else None
        logprobs = _field(first, "logprobs") if first is not None else None
        content = _field(logprobs, "content") if logprobs is not None else None
        if not content:
            raise self._no_logprobs("its answer to logprobs=True has none")
        token = content[0]
        listed: dict[str, float] = {}
        for entry in _field(token, "top_logprobs") or []:
            text, logprob = _field(entry, "token"), _field(entry, "logprob")
            if text is not None and logprob is not None:
                listed[str(text)] = max(float(logprob), listed.get(str(text), -math.inf))
        if not listed:
            raise self._no_logprobs(f"its answer to top_logprobs={self.score_top_logprobs} lists no tokens")
        text, logprob = _field(token, "token"), _field(token, "logprob")
        if text is not None and logprob is not None and str(text) not in listed:  # top_logprobs=k left it out
            listed[str(text)] = float(logprob)
        scores, missing = choice_log_probs_from_top_logprobs(choices, list(listed.items()))
        if missing:
            with self._stats_lock:
                self.approximated_choices += missing
            logger.warning_once(
                f"{self.base_url}: some choices are not among the top {self.score_top_logprobs} log-probabilities of "
                "the first answer token (not single tokens, or unlikely): their probabilities are estimated "
                "(see OpenAICompatibleBackend.approximated_choices)")
        return scores
