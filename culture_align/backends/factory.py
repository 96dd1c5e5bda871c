"""Build a backend from a plain dict (a YAML config section)."""

from __future__ import annotations

from typing import Any

from ..redaction import redact_url
from .base import GenerationBackend

__all__ = ["backend_from_config", "as_backend"]


def as_backend(model: Any, tokenizer: Any = None, *, batch_size: int = 16,
               model_id: str | None = None) -> GenerationBackend:
    """``model`` itself when it is a :class:`GenerationBackend` (then ``tokenizer`` must be None), else a
    :class:`~culture_align.backends.TransformersBackend` over the loaded ``(model, tokenizer)`` pair.

    What the evaluator, the task harness and CultureSPA answering call, so each takes a backend (a vLLM or
    OpenAI-compatible server included) or a local model alike.

    Args:
        batch_size: Prompts per forward pass of the local backend (a given backend keeps its own).
        model_id: Name of the local model in cache keys (default: ``model.config.name_or_path``).
    """
    if isinstance(model, GenerationBackend):
        if tokenizer is not None:
            raise TypeError(f"give a backend or a (model, tokenizer) pair, not both: got {model!r} and a tokenizer")
        return model
    if tokenizer is None:
        raise TypeError(f"a local model needs its tokenizer (got {type(model).__name__} without one)")
    from .transformers import TransformersBackend

    return TransformersBackend.from_model(model, tokenizer, model_id=model_id, batch_size=batch_size)


def backend_from_config(spec: dict[str, Any] | str) -> GenerationBackend:
    """A backend from ``{"backend": "transformers" | "openai" | "vllm", ...kwargs}``.

    ``"transformers"`` takes ``model`` (HF id, path or ``"smollm2-135m-instruct"``) and ``batch_size``,
    ``dtype``, ``device``, ``adapter``; ``"openai"`` takes ``base_url``, ``model``, ``api_key_env``,
    ``max_concurrency``, ``max_retries``, ``server_constrains_json``; ``"vllm"`` takes ``model`` and vLLM's
    ``LLM`` arguments. A bare string is a local model for the transformers backend.
    """
    if isinstance(spec, str):
        spec = {"backend": "transformers", "model": spec}
    spec = dict(spec)
    kind = spec.pop("backend", "transformers")
    if "model" not in spec:
        raise ValueError(f"backend config {redact_url(repr(spec))} needs a 'model'")
    if kind == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend(spec.pop("model"), **spec)
    if kind in ("openai", "openai_compatible", "openai-compatible"):
        from .openai_compatible import OpenAICompatibleBackend

        if "base_url" not in spec:
            raise ValueError("an openai backend needs 'base_url' (e.g. http://127.0.0.1:8000/v1)")
        return OpenAICompatibleBackend(spec.pop("base_url"), spec.pop("model"), **spec)
    if kind == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(spec.pop("model"), **spec)
    raise ValueError(f"unknown backend {kind!r}: use 'transformers', 'openai' or 'vllm'")
