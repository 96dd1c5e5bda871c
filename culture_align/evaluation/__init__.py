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
