"""`VLLMBackend`: in-process generation with vLLM (optional extra: ``pip install "culture-align[vllm]"``).

The module imports without vLLM; constructing the backend needs it. Every completion is one vLLM request
with its own seed (derived from its request key, like :class:`~culture_align.backends.TransformersBackend`),
so a request gives the same text whatever else is in the engine's batch. JSON schemas are enforced with
vLLM's structured outputs (``StructuredOutputsParams``; ``GuidedDecodingParams`` on vLLM < 0.12).

Scoring (:meth:`VLLMBackend.score`) reads vLLM's prompt log-probabilities: every (conversation, choice) pair is one
token prompt, the chat-templated conversation followed by the choice's tokens as a complete answer
(:meth:`~culture_align.backends.option_scoring.OptionScorer.choice_sequences`), all of them in one
``LLM.generate`` call (``max_tokens=1, prompt_logprobs=0``). The log-probability vLLM reports for each choice
token gives the same constrained distribution as :meth:`TransformersBackend.score <culture_align.backends.TransformersBackend.score>`
(:func:`~culture_align.backends.option_scoring.choice_log_probs_from_tokens`), up to the engine's numerics. Cost:
vLLM (V1) does not read its prefix cache for requests that ask prompt log-probabilities, so every choice's prompt
is prefilled in full (a 10-option item costs about 10 prompts).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from transformers.utils import logging

from .base import Conversation, GenerationBackend, GenerationParams, GenerationStats, request_key
from .option_scoring import OptionScorer, choice_log_probs_from_tokens

logger = logging.get_logger(__name__)

__all__ = ["VLLMBackend", "make_sampling_params", "import_vllm"]

INSTALL_HINT = 'pip install "culture-align[vllm]"'


def import_vllm() -> ModuleType:
    """``import vllm``, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as error:
        raise ImportError(f"VLLMBackend needs vLLM, which is not installed: {INSTALL_HINT}") from error


def _structured_outputs_kwargs(schema: dict[str, Any], vllm: ModuleType) -> dict[str, Any]:
    """The ``SamplingParams`` keyword that constrains decoding to ``schema`` in this vLLM version."""
    sampling = getattr(vllm, "sampling_params", None)
    if sampling is not None and hasattr(sampling, "StructuredOutputsParams"):
        return {"structured_outputs": sampling.StructuredOutputsParams(json=schema)}
    if sampling is not None and hasattr(sampling, "GuidedDecodingParams"):
        return {"guided_decoding": sampling.GuidedDecodingParams(json=schema)}
    logger.warning_once("this vLLM has no structured outputs: the JSON schema does not constrain decoding")
    return {}


def make_sampling_params(params: GenerationParams, seed: int, vllm: ModuleType) -> Any:
    """The ``vllm.SamplingParams`` of one completion.

    Args:
        params: The generation settings (``params.n`` is not used: each completion is its own request).
        seed: The completion's seed.
        vllm: The ``vllm`` module (a stand-in in tests).
    """
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
    }
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.json_schema is not None:
        kwargs.update(_structured_outputs_kwargs(params.json_schema, vllm))
    return vllm.SamplingParams(**kwargs)


class VLLMBackend(GenerationBackend):
    """Generate with an in-process ``vllm.LLM``.

    Args:
        model: A Hub id or local folder vLLM can load.
        model_id: Name used in cache keys (default: ``model``).
        show_progress: vLLM's own progress bar (default False).
        **llm_kwargs: Passed to ``vllm.LLM`` (e.g. ``dtype``, ``gpu_memory_utilization``, ``max_model_len``).

    Raises:
        ImportError: vLLM is not installed.
    """

    supports_json_schema = True

    def __init__(self, model: str, *, model_id: str | None = None, show_progress: bool = False,
                 **llm_kwargs: Any) -> None:
        self._vllm = import_vllm()
        self.model_id = model_id or model
        self.show_progress = show_progress
        self.stats = GenerationStats()
        self.llm = self._vllm.LLM(model=model, **llm_kwargs)
        self._option_scorer: OptionScorer | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r})"

    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        start = time.perf_counter()
        messages, sampling = [], []
        for conversation in conversations:
            for k in range(params.n):
                seed = int(request_key(self.model_id, conversation, params, k)[:8], 16) ^ params.seed
                messages.append(conversation)
                sampling.append(make_sampling_params(params, seed % 2**31, self._vllm))
        outputs = self.llm.chat(messages, sampling_params=sampling, use_tqdm=self.show_progress)
        texts = []
        for out in outputs:
            completion = out.outputs[0]
            texts.append(completion.text)
            self.stats.prompt_tokens += len(out.prompt_token_ids or [])
            self.stats.generated_tokens += len(completion.token_ids or [])
        self.stats.requests += len(texts)
        self.stats.seconds += time.perf_counter() - start
        return texts

    # ------------------------------------------------------------------------------------------- scoring
    @property
    def option_scorer(self) -> OptionScorer:
        """Chat-template encoding of prompts and choices with the engine's tokenizer (no model: vLLM runs it)."""
        if self._option_scorer is None:
            self._option_scorer = OptionScorer(None, self.llm.get_tokenizer())
        return self._option_scorer

    def score(self, conversations: Sequence[Conversation], choices: Sequence[Sequence[str]],
              progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Constrained option log-probabilities from vLLM's prompt log-probabilities.

        Each (conversation, choice) pair is one token prompt: the conversation rendered with the chat template and
        the generation prompt, then the choice's tokens as a complete answer (followed by the end-of-turn token when
        one choice's tokens are a prefix of another's, ``"1"`` and ``"10"``). All prompts go to vLLM in one
        ``generate`` call with ``max_tokens=1, prompt_logprobs=0, temperature=0``; the log-probability of each
        choice token given everything before it is read from ``prompt_logprobs`` and turned into the distribution
        of a decoder constrained to write one legal choice
        (:func:`~culture_align.backends.option_scoring.choice_log_probs_from_tokens`): the same as
        :meth:`TransformersBackend.score <culture_align.backends.TransformersBackend.score>` on the same weights,
        up to the engine's numerics. :attr:`stats` counts the scoring prompts' tokens in ``prompt_tokens`` (every
        prompt in full: vLLM skips its prefix cache for requests asking prompt log-probabilities).

        Args:
            conversations: N chats, each ending with the user turn to answer.
            choices: N lists of answer strings (e.g. option codes ``["1", "2", "3"]``).
            progress: Called once with N when vLLM has finished (vLLM's own bar: ``show_progress``).

        Returns:
            N float64 arrays of log-probabilities (nats), one per choice; ``exp`` of each sums to 1.
        """
        if len(conversations) != len(choices):
            raise ValueError(f"{len(conversations)} conversations but {len(choices)} choice lists")
        if not conversations:
            return []
        scorer = self.option_scorer
        prompts: list[list[int]] = []
        spans: list[tuple[int, list[tuple[int, ...]]]] = []  # per conversation: (first prompt index, sequences)
        for conversation, options in zip(conversations, choices):
            encoded = scorer.encode(conversation)
            sequences = scorer.choice_sequences(conversation, list(options))
            spans.append((len(prompts), sequences))
            prompts.extend(list(encoded) + list(seq) for seq in sequences)
        sampling = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], sampling_params=sampling,
                                    use_tqdm=self.show_progress)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        results = []
        for first, sequences in spans:
            token_log_probs = [_choice_token_log_probs(outputs[first + i], prompts[first + i], seq)
                               for i, seq in enumerate(sequences)]
            results.append(choice_log_probs_from_tokens(sequences, token_log_probs).astype(np.float64))
        self.stats.prompt_tokens += sum(len(ids) for ids in prompts)
        if progress is not None:
            progress(len(conversations))
        return results


def _choice_token_log_probs(output: Any, prompt: list[int], sequence: tuple[int, ...]) -> list[float]:
    """log P(token | everything before it) of the last ``len(sequence)`` prompt tokens, from ``prompt_logprobs``
    (one ``{token_id: Logprob}`` per prompt position, None at position 0)."""
    entries = getattr(output, "prompt_logprobs", None)
    if entries is None or len(entries) != len(prompt):
        raise RuntimeError("vLLM returned no prompt log-probabilities for a scoring prompt "
                           f"({0 if entries is None else len(entries)} entries for {len(prompt)} tokens)")
    values = []
    for k in range(len(prompt) - len(sequence), len(prompt)):
        entry = entries[k]
        if entry is None or prompt[k] not in entry:
            raise RuntimeError(f"vLLM's prompt log-probabilities lack token {prompt[k]} at position {k}")
        values.append(float(entry[prompt[k]].logprob))
    return values
