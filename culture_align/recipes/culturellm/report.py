"""Similarity summaries and the similarity histogram of a CultureLLM augmentation run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

__all__ = ["similarity_summary", "plot_similarity_histogram"]

_STEPS = ("paraphrase", "lexical")


def _groups(kept: datasets.Dataset, rejected: datasets.Dataset) -> dict[str, dict[str, list[float]]]:
    """``{step: {"passed": [...], "rejected": [...]}}`` of the similarities that were computed.

    ``passed`` holds the texts above the threshold: the kept ones and those dropped later by the per-seed cap
    (step ``select``, counted under their own step).
    """
    out = {step: {"passed": [], "rejected": []} for step in _STEPS}
    for step, sim in zip(kept["step"], kept["similarity"]):
        out[step]["passed"].append(sim)
    for row in rejected:
        if row["similarity"] is None:
            continue
        if row["reason"] == "over_cap":
            out[json.loads(row["detail"])["step"]]["passed"].append(row["similarity"])
        elif row["step"] in out:
            out[row["step"]]["rejected"].append(row["similarity"])
    return out


def _describe(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    q = np.quantile(arr, [0.1, 0.5, 0.9])
    return {"count": int(arr.size), "mean": round(float(arr.mean()), 4), "min": round(float(arr.min()), 4),
            "p10": round(float(q[0]), 4), "median": round(float(q[1]), 4), "p90": round(float(q[2]), 4),
            "max": round(float(arr.max()), 4)}


def similarity_summary(kept: datasets.Dataset, rejected: datasets.Dataset) -> dict[str, Any]:
    """Per step, count / mean / min / p10 / median / p90 / max of the cosine similarity to the seed, for the
    texts that passed the threshold (``passed``: kept, or dropped by the per-seed cap) and for those that did not
    (``rejected``); texts never embedded (malformed answers, exact duplicates) are left out."""
    return {step: {status: _describe(values) for status, values in groups.items()}
            for step, groups in _groups(kept, rejected).items()}


def plot_similarity_histogram(kept: datasets.Dataset, rejected: datasets.Dataset, threshold: float,
                              path: str | os.PathLike, bins: int = 40) -> Path:
    """A PNG with one panel per step: stacked histograms of the similarity to the seed of the kept and the
    rejected candidates (passed = above the threshold, whether kept or dropped by the per-seed cap), and the
    threshold as a vertical line. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(kept, rejected)
    edges = np.linspace(min([0.0] + [v for g in groups.values() for vs in g.values() for v in vs]), 1.0, bins + 1)
    fig, axes = plt.subplots(1, len(_STEPS), figsize=(5 * len(_STEPS), 3.6), sharex=True)
    for ax, step in zip(np.atleast_1d(axes), _STEPS):
        values = [groups[step]["passed"], groups[step]["rejected"]]
        ax.hist(values, bins=edges, stacked=True, color=["tab:green", "tab:red"],
                label=[f"above tau ({len(values[0])})", f"rejected ({len(values[1])})"])
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"tau = {threshold:g}")
        ax.set_title({"paraphrase": "Step 1: structural rewrites", "lexical": "Step 2: lexical variants"}[step])
        ax.set_xlabel("cosine similarity to the seed")
        ax.set_ylabel("candidates")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
