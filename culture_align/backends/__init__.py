"""Generation backends: one protocol (chats in, texts out) with a persistent cache beneath.

``TransformersBackend`` and ``VLLMBackend`` are imported lazily: using a server backend loads neither torch
nor vLLM (``from culture_align.backends import VLLMBackend`` works without vLLM; constructing it needs vLLM).
"""

from typing import Any

from .base import Conversation, GenerationBackend, GenerationParams, GenerationStats, Message, request_key
from .cache import CachedBackend, CompletionCache
from .openai_compatible import OpenAICompatibleBackend

__all__ = [
    "CachedBackend",
    "CompletionCache",
    "Conversation",
    "GenerationBackend",
    "GenerationParams",
    "GenerationStats",
    "Message",
    "OpenAICompatibleBackend",
    "TransformersBackend",
    "VLLMBackend",
    "request_key",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersBackend":
        from .transformers import TransformersBackend

        return TransformersBackend
    if name == "VLLMBackend":
        from .vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
