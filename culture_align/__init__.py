"""culture-align: make language models reflect the values of a chosen culture.

Heavy submodules (torch, transformers) are imported lazily: ``import culture_align`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Culture": "culture_align.cultures",
    "CULTURES": "culture_align.cultures",
    "get_culture": "culture_align.cultures",
    "resolve_cultures": "culture_align.cultures",
    "SurveyQuestion": "culture_align.wvs",
    "WVSData": "culture_align.wvs",
    "load_wvs": "culture_align.wvs",
    "load_wvs_csv": "culture_align.wvs",
    "load_questions": "culture_align.wvs",
    "load_distributions": "culture_align.wvs",
    "load_global_opinions": "culture_align.wvs",
    "bundled_questions": "culture_align.wvs",
    "load_alignment_metric": "culture_align.metric",
    "load_model_and_tokenizer": "culture_align.models",
    "DEFAULT_MODEL": "culture_align.embedded_models",
    "WVSEvaluator": "culture_align.evaluation",
    "EvaluationConfig": "culture_align.evaluation",
    "WVSReport": "culture_align.evaluation",
    "build_corpus": "culture_align.builders",
    "push_dataset": "culture_align.hub",
    "push_adapter": "culture_align.hub",
    "push_metric": "culture_align.hub",
    "load_culture_adapters": "culture_align.models",
    "attach_adapters": "culture_align.models",
    "SentenceEmbedder": "culture_align.embeddings",
    "TaskEvaluator": "culture_align.evaluation",
    "TaskEvaluationConfig": "culture_align.evaluation",
    "load_tasks": "culture_align.evaluation",
    "AnswerDistributionConfig": "culture_align.trainers",
    "AnswerDistributionTrainer": "culture_align.trainers",
    "CLCAConfig": "culture_align.trainers",
    "CLCATrainer": "culture_align.trainers",
    "CultureSPAConfig": "culture_align.trainers",
    "CultureSPATrainer": "culture_align.trainers",
    "CultureLLMConfig": "culture_align.trainers",
    "CultureLLMTrainer": "culture_align.trainers",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'culture_align' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
