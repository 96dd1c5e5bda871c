"""Experiments that a reviewer accepts: held-out splits, no-model and model baselines, culture controls, gated
training over several seeds and paired cluster-bootstrap confidence intervals, run from one YAML config by
``culture-align experiment --config ...`` (:class:`ExperimentRunner`)."""

from .baselines import HUMAN_BASELINES, Calibration, apply_calibration, fit_calibration, position_prior
from .config import ALL_BASELINES, ExperimentConfig, SplitConfig, TrainedCondition
from .controls import culture_derangement, specificity_scores, swap_kl, swap_matrix
from .gates import (
    MIN_OPTIMIZER_STEPS,
    TrainingGateError,
    check_adapter_changed,
    check_training_length,
    first_step_learning_rate_schedule,
    optimizer_steps,
)
from .runner import ExperimentRunner
from .splits import PROTOCOLS, ExperimentSplit, HeldOutError, TrainingView, make_split
from .statistics import METRICS, CellTable, ClusterBootstrap, answer_scores, score_cells

__all__ = [
    "ALL_BASELINES", "HUMAN_BASELINES", "METRICS", "MIN_OPTIMIZER_STEPS", "PROTOCOLS",
    "Calibration", "CellTable", "ClusterBootstrap", "ExperimentConfig", "ExperimentRunner", "ExperimentSplit",
    "HeldOutError", "SplitConfig", "TrainedCondition", "TrainingGateError", "TrainingView",
    "answer_scores", "apply_calibration", "check_adapter_changed", "check_training_length", "culture_derangement",
    "first_step_learning_rate_schedule", "fit_calibration", "make_split", "optimizer_steps", "position_prior",
    "score_cells", "specificity_scores", "swap_kl", "swap_matrix",
]
