"""What the trainers share: tokenising a conversation with its assistant-token mask, the config a trainer runs with,
and the defaults the recipe configs resolve the way a user expects on the machine at hand.

- `bf16`: TRL defaults it to `True` (unless `fp16`), which `TrainingArguments` then refuses on a machine without a
  bf16-capable accelerator: a minimal config fails on a CPU-only machine. The recipe configs keep TRL's default
  where transformers accepts bf16 and fall back to 32-bit elsewhere; an explicit value is kept as given.
- `resume_from_checkpoint`: a `str` field in `TrainingArguments`, so `--resume_from_checkpoint true` arrives as the
  string `"true"`; it is read as a boolean the way `HfArgumentParser` reads boolean flags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from transformers.hf_argparser import string_to_bool
from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available, logging
from trl import SFTConfig
from trl.chat_template_utils import has_generation_markers
from trl.data_utils import common_prefix_length

logger = logging.get_logger(__name__)

__all__ = ["content_sha256", "default_bf16", "jsonable", "parse_resume_from_checkpoint", "tokenize_chat_example",
           "tokenize_conversation", "trainer_config"]

_TRUTH_WORDS = {"yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"}


def default_bf16(fp16: bool, use_cpu: bool) -> bool:
    """The `bf16` a config gets when none is given: TRL's default (bf16 unless `fp16`) where transformers accepts
    bf16 (training on the CPU with `use_cpu`, a GPU/XPU/NPU/... that supports bf16, or XLA), else `False`."""
    if fp16:
        return False
    return bool(use_cpu or is_torch_bf16_gpu_available() or is_torch_xla_available())


def parse_resume_from_checkpoint(value: str | bool | None) -> str | bool | None:
    """`resume_from_checkpoint` as `Trainer.train` takes it: `"true"`/`"false"` (and the other words
    `HfArgumentParser` reads as booleans: yes/no, t/f, y/n, 1/0) become `True`/`False`, unless a folder of that
    name exists; a checkpoint path stays a string."""
    if isinstance(value, str) and value.strip().lower() in _TRUTH_WORDS and not os.path.isdir(value):
        return string_to_bool(value.strip())
    return value


def trainer_config(model, args: SFTConfig | None, config_class: type[SFTConfig], name: str) -> SFTConfig:
    """The `args` a trainer runs with, as in [`~trl.SFTTrainer`]: an instance of `config_class`.

    `None` gives `config_class("<model name>-<name>")` (the last part of the model's id or path; `model` is an id,
    a path or a loaded model); an `SFTConfig` of another class is converted field by field (the fields
    `config_class` has, with their raw values: `hub_token`, `eos_token` and `pad_token` included).
    """
    if args is None:
        model_name = model if isinstance(model, str) else model.config._name_or_path
        return config_class(f"{str(model_name).rstrip('/').split('/')[-1]}-{name}")
    if not isinstance(args, config_class):
        # The raw field values: `to_dict()` masks every `*_token` field (`eos_token`, `hub_token`, ...)
        names = {f.name for f in dataclasses.fields(config_class) if f.init}
        return config_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args)
                                if f.init and f.name in names})
    return args


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], chat_template: str | None = None
) -> dict[str, list[int]]:
    """
    Tokenise a conversation with its chat template and mark the tokens of every assistant turn.

    A template with `{% generation %}` markers gives the mask directly (`return_assistant_tokens_mask`). Any other
    template is rendered on prefixes of the conversation: assistant turn `i` spans from the end of
    `messages[:i]` rendered with the generation prompt (so the role header is excluded) to the end of
    `messages[: i + 1]`, so it covers the content, the end-of-turn token and whatever the template appends after it
    (ChatML's newline), like TRL's training templates. Where a prefix does not tokenise as a prefix of the whole
    conversation (templates that render earlier turns differently), the span is cut where they diverge and a warning
    is logged once.

    Args:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Tokenizer with a chat template.
        messages (`list[dict]`):
            The conversation, a list of `{"role", "content"}` messages; any number of assistant turns.
        chat_template (`str`, *optional*):
            Template to use instead of the tokenizer's own.

    Returns:
        `dict` with `input_ids` (`list[int]`) and `assistant_masks` (`list[int]`, 1 on assistant-turn tokens).
    """

    def render(conversation, add_generation_prompt=False, **kwargs):
        return tokenizer.apply_chat_template(
            conversation,
            chat_template=chat_template,
            tokenize=True,
            return_dict=True,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )

    template = chat_template if chat_template is not None else tokenizer.chat_template
    if template is not None and has_generation_markers(template):
        processed = render(messages, return_assistant_tokens_mask=True)
        return {"input_ids": list(processed["input_ids"]), "assistant_masks": list(processed["assistant_masks"])}

    input_ids = list(render(messages)["input_ids"])
    mask = [0] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i > 0:
            prefix = list(render(messages[:i], add_generation_prompt=True)["input_ids"])
        else:  # an opening assistant turn: the template's header for it, read off a turn with empty content
            prefix = list(render([{**message, "content": ""}])["input_ids"])
        start = common_prefix_length(prefix, input_ids)
        turn = list(render(messages[: i + 1])["input_ids"])
        end = common_prefix_length(turn, input_ids)
        if (i > 0 and start < len(prefix)) or end < len(turn):
            logger.warning_once(
                "The chat template does not render a conversation's prefixes as prefixes of the whole "
                "conversation, so some assistant spans are cut where the renderings diverge. Prefer a template with "
                "`{% generation %}` markers (e.g. TRL's training templates, via `chat_template_path`)."
            )
        mask[start:end] = [1] * max(end - start, 0)
    return {"input_ids": input_ids, "assistant_masks": mask}


def tokenize_chat_example(
    example: dict[str, Any], index: int, tokenizer: PreTrainedTokenizerBase
) -> dict[str, list[int]]:
    """A chat record (`messages`) tokenised with its assistant mask ([`tokenize_conversation`]); `index` names the row
    in the errors (no messages, no assistant token)."""
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"Row {index}: `messages` must be a non-empty list of chat messages, got {messages!r}.")
    processed = tokenize_conversation(tokenizer, messages)
    if 1 not in processed["assistant_masks"]:
        raise ValueError(f"Row {index} has no assistant tokens to train on (no assistant message, or a chat template "
                         f"that renders none): {messages!r}")
    return processed


def content_sha256(dataset: Dataset) -> str:
    """Order-independent hash of the tokenised rows (``input_ids`` with ``labels``, or with ``choice_ids`` and
    ``target`` for answer-distribution rows): what an adapter was trained on."""
    columns = [c for c in ("input_ids", "labels", "choice_ids", "target") if c in dataset.column_names]
    rows = sorted(hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()
                  for values in zip(*(dataset[c] for c in columns)))
    return hashlib.sha256("".join(rows).encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """`value` as plain JSON values (sets sorted into lists, anything else unknown as its string)."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
