"""`VLLMBackend`: in-process generation with vLLM (optional extra: ``pip install "culture-align[vllm]"``).

The module imports without vLLM; constructing the backend needs it. Every completion is one vLLM request
with its own seed (derived from its request key, like :class:`~culture_align.backends.TransformersBackend`),
so a request gives the same text whatever else is in the engine's batch. JSON schemas are enforced with
vLLM's structured outputs (``StructuredOutputsParams``; ``GuidedDecodingParams`` on vLLM < 0.12).
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import Any

from transformers.utils import logging

from .base import Conversation, GenerationBackend, GenerationParams, GenerationStats, request_key

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
