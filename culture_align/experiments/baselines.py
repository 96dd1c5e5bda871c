"""Baselines every experiment reports, computed on exactly the run's test cells.

No-model baselines (what a reviewer gets without any model): ``uniform``; ``position_prior`` (for each number of
options, the mean human distribution over answer positions on the training cells; uniform for a number of
options no training item has); ``loo_human_mean`` (for each
test cell, the mean of the other loaded cultures' human distributions on the item); ``other_culture_humans``
(each other culture's humans used as the prediction, scores averaged over those cultures per cell).

Model baselines are the model's own distributions (``base``: culture-unaware prompt; ``culture_prompt``:
culture-aware) and their calibrated versions (:func:`fit_calibration`): one temperature T and one uniform-mixing
weight alpha, Q' = (1 - alpha) softmax(log Q / T) + alpha / n, fitted on the training cells only by minimising the
mean KL of the ``wvs_alignment`` metric (Meister et al., NAACL 2025: fit any temperature on training items only).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from transformers.utils import logging

from ..metric import alignment_math
from ..wvs.data import WVSData
from .splits import ExperimentSplit
from .statistics import CellTable, Scores, answer_scores, score_cells, stack_seeds

__all__ = [
    "HUMAN_BASELINES",
    "Calibration",
    "apply_calibration",
    "fit_calibration",
    "human_baseline_scores",
    "loo_human_mean",
    "position_prior",
]

logger = logging.get_logger(__name__)

#: No-model baselines, in report order.
HUMAN_BASELINES: tuple[str, ...] = ("uniform", "position_prior", "loo_human_mean", "other_culture_humans")


def position_prior(wvs: WVSData, split: ExperimentSplit) -> dict[int, np.ndarray]:
    """Number of options n -> mean human distribution over positions 1..n on the training cells."""
    sums: dict[int, list[np.ndarray]] = {}
    for culture, qid in split.training_cells(wvs):
        p = wvs.distribution(culture, qid)
        sums.setdefault(len(p), []).append(p)
    return {n: np.mean(rows, axis=0) for n, rows in sums.items()}


def loo_human_mean(wvs: WVSData, culture: str, qid: str, cultures: Sequence[str]) -> np.ndarray | None:
    """The mean of the other ``cultures``' human distributions on ``qid`` (None when no other has data)."""
    rows = [wvs.distribution(c, qid) for c in cultures if c != culture]
    rows = [r for r in rows if r is not None]
    return np.mean(rows, axis=0) if rows else None


def human_baseline_scores(name: str, cells: CellTable, wvs: WVSData, split: ExperimentSplit,
                          cultures: Sequence[str]) -> Scores:
    """Per-cell scores of one no-model baseline (see the module docstring). ``cultures``: the loaded cultures
    whose humans ``loo_human_mean`` and ``other_culture_humans`` may use."""
    if name == "uniform":
        # Its argmax is arbitrary (the first option): modal accuracy and the alignment score are those expected of
        # a uniformly random answer instead, as in the evaluator's reference row.
        scores = score_cells(cells, [np.full(len(c), 1.0 / len(c)) for c in cells.codes])
        return {**scores, **{k: v for k, v in answer_scores(cells, "random_answers").items()
                             if k in ("accuracy", "squared_error", "max_squared_error")}}
    if name == "position_prior":
        prior = position_prior(wvs, split)
        missing = sorted({len(c) for c in cells.codes} - set(prior))
        if missing:
            logger.warning(f"position_prior: no training cell has {missing} options; uniform on those test items")
        return score_cells(cells, [prior.get(len(c), np.full(len(c), 1.0 / len(c))) for c in cells.codes])
    if name == "loo_human_mean":
        return score_cells(cells, [loo_human_mean(wvs, c, q, cultures) for c, q in zip(cells.cultures, cells.qids)])
    if name == "other_culture_humans":
        per_other = []
        for other in cultures:
            preds = [None if c == other else wvs.distribution(other, q) for c, q in zip(cells.cultures, cells.qids)]
            per_other.append(score_cells(cells, preds))
        stacked = stack_seeds(per_other)  # (n_others, N): averaged per cell over the other cultures
        with warnings.catch_warnings():  # cells no other culture answered stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return {k: np.nanmean(v, axis=0, keepdims=True) for k, v in stacked.items()}
    raise ValueError(f"unknown baseline {name!r}: use one of {', '.join(HUMAN_BASELINES)}")


@dataclass
class Calibration:
    """Temperature and uniform mixing fitted on training cells.

    Attributes:
        temperature: T > 0 (T > 1 flattens).
        alpha: Uniform-mixing weight in [0, 1).
        train_kl_before, train_kl_after: Mean KL on the training cells before and after (nats).
        n_train_cells: Cells the fit saw.
    """

    temperature: float
    alpha: float
    train_kl_before: float
    train_kl_after: float
    n_train_cells: int

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return apply_calibration(probs, self.temperature, self.alpha)


def apply_calibration(probs: np.ndarray, temperature: float, alpha: float) -> np.ndarray:
    """(1 - alpha) softmax(log probs / T) + alpha / n, for one distribution."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    logits -= logits.max()
    tempered = np.exp(logits)
    tempered /= tempered.sum()
    return (1.0 - alpha) * tempered + alpha / len(tempered)


def fit_calibration(model_probs: Sequence[np.ndarray], human_probs: Sequence[np.ndarray]) -> Calibration:
    """Fit T and alpha minimising the mean KL(P || Q') of the ``wvs_alignment`` metric over training cells.

    Args:
        model_probs, human_probs: The model's and the humans' distributions on the training cells, paired.
    """
    if len(model_probs) != len(human_probs) or not model_probs:
        raise ValueError(f"calibration needs paired training cells, got {len(model_probs)} and {len(human_probs)}")
    math = alignment_math()

    def unpack(x: np.ndarray) -> tuple[float, float]:
        return float(np.exp(x[0])), float(1.0 / (1.0 + np.exp(-x[1])))

    def loss(x: np.ndarray) -> float:
        t, a = unpack(x)
        return math.distribution_scores([apply_calibration(q, t, a) for q in model_probs], human_probs)["kl_divergence"]

    before = loss(np.array([0.0, -30.0]))
    bounds = [(np.log(0.05), np.log(50.0)), (-20.0, 20.0)]  # T in [0.05, 50]; T = 50 is flat for any model
    best = min((minimize(loss, np.array([np.log(t0), a0]), method="Nelder-Mead", bounds=bounds,
                         options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400})
                for t0, a0 in ((1.0, -3.0), (3.0, 0.0))), key=lambda r: r.fun)
    t, a = unpack(best.x)
    return Calibration(temperature=t, alpha=a, train_kl_before=before, train_kl_after=float(best.fun),
                       n_train_cells=len(model_probs))
