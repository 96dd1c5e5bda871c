"""Build a backend from a plain dict (a YAML config section)."""

from __future__ import annotations

from typing import Any

from ..redaction import redact_url
from .base import GenerationBackend

__all__ = ["backend_from_config"]


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
