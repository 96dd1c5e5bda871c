"""Per-cell scores and paired cluster-bootstrap confidence intervals.

Every condition of a run (a baseline, the model under a prompt, a trained adapter with several seeds) is scored on
the same ordered table of test cells (:class:`CellTable`), one value per (seed, cell) and metric
(:func:`score_cells`). :class:`ClusterBootstrap` then draws, once per run, resampling weights over clusters of
cells (the WVS topic of the item by default, so items that share a topic move together; every culture's cells on a
drawn item come along), and over seeds; every condition and every paired difference is computed on the same
draws, so differences are paired.

The metric values come from the ``wvs_alignment`` evaluate module (per-item KL, JS distance, accuracy; the
alignment score from its sums); nothing here re-implements them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metric import alignment_math
from ..wvs.data import WVSData

__all__ = ["MEAN_METRICS", "METRICS", "CellTable", "ClusterBootstrap", "score_cells", "answer_scores"]

#: Metrics averaged over cells. ``one_minus_js_distance`` is the field's "1 - JS distance" (scipy's
#: ``jensenshannon``, natural log; Cao et al. 2025, GlobalOpinionQA); ``similarity`` is ours: 1 - JS *divergence*.
MEAN_METRICS: tuple[str, ...] = ("kl_divergence", "js_distance", "one_minus_js_distance", "similarity", "accuracy")
#: Every metric reported; ``alignment_score`` (CultureSPA, 0-100) is a per-culture score averaged over cultures.
METRICS: tuple[str, ...] = MEAN_METRICS + ("alignment_score",)

Scores = dict[str, np.ndarray]
"""Metric name -> float array of shape (S, N): S seeds x N cells, NaN where a cell has no value."""


@dataclass
class CellTable:
    """The test cells of a run in one fixed order: N (culture, item) pairs with human data.

    Attributes:
        cultures, qids, topics: Length-N lists.
        codes: The item's answer codes per cell.
        human: The human distribution per cell (aligned with codes, sums to 1).
        gold: The modal human code per cell.
    """

    cultures: list[str]
    qids: list[str]
    topics: list[str]
    codes: list[tuple[int, ...]]
    human: list[np.ndarray]
    gold: list[int]

    @classmethod
    def from_cells(cls, wvs: WVSData, cells: Sequence[tuple[str, str]]) -> CellTable:
        qs = [wvs.questions[q] for _, q in cells]
        return cls(cultures=[c for c, _ in cells], qids=[q for _, q in cells], topics=[q.topic or "other" for q in qs],
                   codes=[q.codes for q in qs], human=[wvs.distribution(c, q) for c, q in cells],
                   gold=[int(wvs.modal_code(c, q)) for c, q in cells])

    def __len__(self) -> int:
        return len(self.qids)

    def index(self) -> dict[tuple[str, str], int]:
        return {(c, q): i for i, (c, q) in enumerate(zip(self.cultures, self.qids))}

    @property
    def culture_names(self) -> list[str]:
        return list(dict.fromkeys(self.cultures))


def score_cells(cells: CellTable, predictions: Sequence[np.ndarray | None],
                answers: Sequence[float | None] | None = None) -> Scores:
    """Per-cell scores of one set of model distributions (one seed).

    Args:
        cells: The test cells.
        predictions: N distributions aligned with each cell's codes, or None where the condition has none.
        answers: The chosen code per cell for the alignment score (default: the argmax of the prediction).

    Returns:
        Metric -> (1, N) array. ``alignment_score`` is not a cell mean: its entries are the squared errors
        (a - g)^2, with the matching maxima (n - 1)^2 under ``max_squared_error``.
    """
    math = alignment_math()
    n = len(cells)
    out = {m: np.full(n, np.nan) for m in MEAN_METRICS + ("squared_error", "max_squared_error")}
    have = [i for i, p in enumerate(predictions) if p is not None]
    if have:
        dist = math.distribution_scores([predictions[i] for i in have], [cells.human[i] for i in have])
        js = np.asarray(dist["js_per_item"])
        out["kl_divergence"][have] = dist["kl_per_item"]
        out["js_distance"][have] = js
        out["one_minus_js_distance"][have] = 1.0 - js
        out["similarity"][have] = 1.0 - js ** 2
        out["accuracy"][have] = [float(np.argmax(predictions[i]) == np.argmax(cells.human[i])) for i in have]
    for i in range(n):
        a = answers[i] if answers is not None else (
            None if predictions[i] is None else cells.codes[i][int(np.argmax(predictions[i]))])
        if a is not None:
            out["squared_error"][i] = (float(a) - cells.gold[i]) ** 2
            out["max_squared_error"][i] = (len(cells.codes[i]) - 1) ** 2
    return {k: v[None, :] for k, v in out.items()}


def answer_scores(cells: CellTable, kind: str) -> Scores:
    """Scores of answer-only baselines for the alignment score and modal accuracy.

    ``kind``: ``"random_answers"`` (a uniformly random code: the *expected* squared error and hit rate, exact, no
    draws) or ``"middle_option"`` (the code at position (n - 1) // 2, the lower middle for even n).
    """
    n = len(cells)
    out = {m: np.full(n, np.nan) for m in MEAN_METRICS + ("squared_error", "max_squared_error")}
    for i in range(n):
        codes = np.asarray(cells.codes[i], dtype=float)
        if kind == "random_answers":
            out["squared_error"][i] = float(np.mean((codes - cells.gold[i]) ** 2))
            out["accuracy"][i] = 1.0 / len(codes)
        elif kind == "middle_option":
            a = codes[(len(codes) - 1) // 2]
            out["squared_error"][i] = (a - cells.gold[i]) ** 2
            out["accuracy"][i] = float(a == cells.gold[i])
        else:
            raise ValueError(f"unknown answer baseline {kind!r}")
        out["max_squared_error"][i] = (len(codes) - 1) ** 2
    return {k: v[None, :] for k, v in out.items()}


def stack_seeds(per_seed: Sequence[Scores]) -> Scores:
    """(1, N) scores of several seeds -> (S, N)."""
    return {k: np.concatenate([s[k] for s in per_seed], axis=0) for k in per_seed[0]}


class ClusterBootstrap:
    """Paired bootstrap over clusters of test cells (and over seeds), drawn once and shared by every condition.

    Args:
        cells: The test cells.
        unit: ``"topic"`` (default: clusters are the WVS topics of the items), ``"item"`` (each item with all its
            cultures' cells) or ``"cell"``.
        n_resamples: Bootstrap draws B (default 2000).
        seed: Seed of the draws.
        confidence: Two-sided level of the percentile intervals (default 0.95).
        resample_cultures: Also resample the test cultures (a culture split, where they are a sample too); each
            cell's weight is its cluster's draw count times its culture's.
        min_clusters: With ``unit="topic"`` and fewer topics than this among the cells (a held-out-topics split),
            items are the clusters instead; :attr:`unit` says which was used.
    """

    def __init__(self, cells: CellTable, unit: str = "topic", n_resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95, resample_cultures: bool = False, min_clusters: int = 10) -> None:
        if unit not in ("topic", "item", "cell"):
            raise ValueError(f"bootstrap unit must be topic, item or cell, not {unit!r}")
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
        keys = {"topic": cells.topics, "item": cells.qids,
                "cell": [f"{c}/{q}" for c, q in zip(cells.cultures, cells.qids)]}[unit]
        if unit == "topic" and len(set(keys)) < min_clusters:  # held-out topics: too few clusters to resample
            unit, keys = "item", cells.qids
        names = list(dict.fromkeys(keys))
        self.unit, self.n_resamples, self.seed, self.confidence = unit, n_resamples, seed, confidence
        self.n_clusters = len(names)
        self.cluster_of = np.asarray([names.index(k) for k in keys])
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(self.n_clusters, np.full(self.n_clusters, 1.0 / self.n_clusters), size=n_resamples)
        self.cell_weights = counts[:, self.cluster_of].astype(float)  # (B, N)
        self.cultures = cells.culture_names
        self.resample_cultures = resample_cultures and len(self.cultures) > 1
        if self.resample_cultures:  # a culture split: the test cultures are a sample too (two-way bootstrap)
            of = np.asarray([self.cultures.index(c) for c in cells.cultures])
            k = len(self.cultures)
            self.cell_weights *= rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples)[:, of]
        culture_index = np.asarray([self.cultures.index(c) for c in cells.cultures])
        self.culture_onehot = np.eye(len(self.cultures))[culture_index]  # (N, C)
        self._seed_weights: dict[int, np.ndarray] = {}

    def seed_weights(self, n_seeds: int) -> np.ndarray:
        """(B, S) resampling weights over seeds, the same for every condition with S seeds (S = 1: all ones)."""
        if n_seeds not in self._seed_weights:
            if n_seeds == 1:
                w = np.ones((self.n_resamples, 1))
            else:
                rng = np.random.default_rng([self.seed, n_seeds])
                w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=self.n_resamples).astype(float)
            self._seed_weights[n_seeds] = w
        return self._seed_weights[n_seeds]

    # ------------------------------------------------------------------------------------- statistics
    @staticmethod
    def _seed_average(values: np.ndarray, seed_w: np.ndarray) -> np.ndarray:
        """(S, N) values, (R, S) weights -> (R, N) weighted seed means (NaN where no seed has a value)."""
        valid = ~np.isnan(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (seed_w @ np.where(valid, values, 0.0)) / (seed_w @ valid)

    def _statistics(self, scores: Scores, cell_w: np.ndarray, seed_w: np.ndarray) -> dict[str, np.ndarray]:
        """Metric -> (R, 1 + C): the statistic over all cells, then per culture, for R weightings."""
        out = {}
        onehot = self.culture_onehot
        for metric in MEAN_METRICS:
            v = self._seed_average(scores[metric], seed_w)
            valid = ~np.isnan(v)
            wv, w = cell_w * np.where(valid, v, 0.0), cell_w * valid
            with np.errstate(invalid="ignore", divide="ignore"):
                overall = wv.sum(1) / w.sum(1)
                per = (wv @ onehot) / (w @ onehot)
            out[metric] = np.column_stack([overall, per])
        sq = self._seed_average(scores["squared_error"], seed_w)
        valid = ~np.isnan(sq)
        with warnings.catch_warnings():  # cells no seed has an answer for stay out of both sums
            warnings.simplefilter("ignore", RuntimeWarning)
            mx = np.where(valid, np.nan_to_num(np.nanmax(scores["max_squared_error"], axis=0)), 0.0)
        num = (cell_w * np.where(valid, sq, 0.0)) @ onehot
        den = (cell_w * mx) @ onehot
        per = alignment_math().alignment_score_from_sums(num, den)
        per = np.where(den > 0, per, np.nan)
        defined = ~np.isnan(per)
        with np.errstate(invalid="ignore", divide="ignore"):
            overall = np.where(defined, per, 0.0).sum(1) / defined.sum(1)
        out["alignment_score"] = np.column_stack([overall, per])
        return out

    def replicates(self, scores: Scores) -> dict[str, np.ndarray]:
        """Metric -> (B, 1 + C) bootstrap replicates."""
        n_seeds = next(iter(scores.values())).shape[0]
        return self._statistics(scores, self.cell_weights, self.seed_weights(n_seeds))

    def point(self, scores: Scores) -> dict[str, np.ndarray]:
        """Metric -> (1 + C,) estimates on the observed cells and seeds."""
        n_seeds, n = next(iter(scores.values())).shape
        return {k: v[0] for k, v in self._statistics(scores, np.ones((1, n)), np.ones((1, n_seeds))).items()}

    def _interval(self, reps: np.ndarray) -> np.ndarray:
        """(B, K) -> (2, K) percentile bounds (NaN where fewer than half the replicates are defined)."""
        tail = 100 * (1 - self.confidence) / 2
        ok = (~np.isnan(reps)).sum(0) >= reps.shape[0] / 2
        with np.errstate(invalid="ignore"):
            bounds = np.nanpercentile(np.where(ok[None, :], reps, 0.0), [tail, 100 - tail], axis=0) \
                if reps.size else np.full((2, reps.shape[1]), np.nan)
        return np.where(ok[None, :], bounds, np.nan)

    def summarize(self, scores: Scores) -> dict[str, dict]:
        """``{"mean": {metric: x, metric_ci95: [lo, hi]}, "per_culture": {ISO3: {...}}}``."""
        point, reps = self.point(scores), self.replicates(scores)
        mean: dict = {}
        per: dict = {c: {} for c in self.cultures}
        for metric in METRICS:
            bounds = self._interval(reps[metric])
            for j, target in enumerate([mean] + [per[c] for c in self.cultures]):
                target[metric] = _num(point[metric][j])
                target[f"{metric}_ci95"] = [_num(bounds[0, j]), _num(bounds[1, j])]
        return {"mean": mean, "per_culture": per}

    def compare(self, scores: Scores, other: Scores) -> dict[str, dict]:
        """Paired differences ``scores - other`` on the cells both have: ``{metric: {"difference": x, "ci95": [lo,
        hi]}}`` over all test cells (alignment score: mean over cultures of the per-culture difference)."""
        def defined(s: Scores) -> np.ndarray:
            return ~np.isnan(s["kl_divergence"]).all(0) | ~np.isnan(s["squared_error"]).all(0)

        both = defined(scores) & defined(other)

        def restrict(s: Scores) -> Scores:
            return {k: np.where(both[None, :], v, np.nan) for k, v in s.items()}

        a, b = restrict(scores), restrict(other)
        pa, pb = self.point(a), self.point(b)
        ra, rb = self.replicates(a), self.replicates(b)
        out = {}
        for metric in METRICS:
            bounds = self._interval((ra[metric] - rb[metric])[:, :1])
            out[metric] = {"difference": _num(pa[metric][0] - pb[metric][0]),
                           "ci95": [_num(bounds[0, 0]), _num(bounds[1, 0])]}
        out["n_cells"] = int(both.sum())
        return out


def _num(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x
