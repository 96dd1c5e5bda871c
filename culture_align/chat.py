"""The chat types every layer shares (prompts, generation backends, scoring): one message, one conversation."""

from __future__ import annotations

__all__ = ["Conversation", "Message"]

Message = dict[str, str]
"""``{"role": "system" | "user" | "assistant", "content": str}``."""

Conversation = list[Message]
"""A chat, oldest message first."""
