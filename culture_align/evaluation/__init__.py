"""WVS evaluation: answer distributions, the alignment metric per culture, reports and plots."""

from .evaluator import EvaluationConfig, WVSEvaluator
from .report import WVSReport, plot_item_distributions, plot_kl_bars
from .scoring import OptionScorer, SamplingParams, parse_answer_code

__all__ = [
    "EvaluationConfig",
    "OptionScorer",
    "SamplingParams",
    "WVSEvaluator",
    "WVSReport",
    "parse_answer_code",
    "plot_item_distributions",
    "plot_kl_bars",
]
