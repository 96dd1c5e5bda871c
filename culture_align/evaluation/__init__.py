"""Evaluation: WVS answer distributions scored with the alignment metric per culture, reports and plots;
downstream culture classification tasks scored with macro-F1."""

from ..backends.option_scoring import OptionScorer
from .evaluator import DEFAULT_SAMPLING, EvaluationConfig, WVSEvaluator, scored_items
from .report import WVSReport, plot_item_distributions, plot_kl_bars
from .scoring import parse_answer_code
from .task_report import TaskReport, classification_scores
from .tasks import CultureTask, TaskEvaluationConfig, TaskEvaluator, attach_adapters, load_tasks

__all__ = [
    "CultureTask",
    "DEFAULT_SAMPLING",
    "EvaluationConfig",
    "OptionScorer",
    "TaskEvaluationConfig",
    "TaskEvaluator",
    "TaskReport",
    "WVSEvaluator",
    "WVSReport",
    "attach_adapters",
    "classification_scores",
    "load_tasks",
    "parse_answer_code",
    "plot_item_distributions",
    "plot_kl_bars",
    "scored_items",
]


def __getattr__(name: str):
    if name == "SamplingParams":  # removed in the redesign of #14: say what replaces it
        raise AttributeError("culture_align.evaluation.SamplingParams is gone: sampling mode takes the backends' "
                             "GenerationParams (from culture_align.backends import GenerationParams; num_samples is "
                             "now n), e.g. EvaluationConfig(mode='sampling', sampling=GenerationParams(n=10, "
                             "temperature=1.0, max_new_tokens=8))")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
