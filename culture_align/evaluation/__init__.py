"""Evaluation: WVS answer distributions scored with the alignment metric per culture, reports and plots;
downstream culture classification tasks scored with macro-F1."""

from .evaluator import EvaluationConfig, WVSEvaluator, scored_items
from .report import WVSReport, plot_item_distributions, plot_kl_bars
from .scoring import OptionScorer, SamplingParams, parse_answer_code
from .task_report import TaskReport, classification_scores
from .tasks import CultureTask, TaskEvaluationConfig, TaskEvaluator, attach_adapters, load_tasks

__all__ = [
    "CultureTask",
    "EvaluationConfig",
    "OptionScorer",
    "SamplingParams",
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
