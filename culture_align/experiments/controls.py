"""Culture controls: does a culture-conditioned condition know *which* culture it is answering for?

- The culture-swap matrix: the condition for culture c (its prompt, its adapter) scored against the humans of
  every culture c' on the test items. A condition that only learned "how survey answers spread" has a flat
  matrix; one that learned cultures has its smallest KL on the diagonal.
- The specificity index: mean over cells (c, q) of [mean over c' != c of KL(P_c || Q_c') - KL(P_c || Q_c)]: how
  much worse the other cultures' answers fit c's humans than c's own. The humans' own index (Q_c' = P_c') on the
  same cells gives its scale.
- The shuffled-label control (:func:`culture_derangement`): train the same data with culture labels permuted
  among the cultures (no culture keeps its own), same steps, seeds and settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..metric import alignment_math
from .statistics import CellTable, ClusterBootstrap, Scores

__all__ = ["culture_controls", "culture_derangement", "swap_kl", "swap_matrix", "specificity_scores"]

#: ``predict(culture, qid)`` -> the condition's distribution for that culture on that item, or None.
Predict = Callable[[str, str], "np.ndarray | None"]


def swap_kl(cells: CellTable, predict: Predict, cultures: Sequence[str]) -> np.ndarray:
    """(C, N) array: KL(P_cell || Q_{cultures[k], item of cell}) for every condition culture k and test cell."""
    math = alignment_math()
    out = np.full((len(cultures), len(cells)), np.nan)
    for k, culture in enumerate(cultures):
        preds = [predict(culture, q) for q in cells.qids]
        have = [i for i, p in enumerate(preds) if p is not None]
        if have:
            out[k, have] = math.distribution_scores([preds[i] for i in have],
                                                    [cells.human[i] for i in have])["kl_per_item"]
    return out


def swap_matrix(cells: CellTable, kl: np.ndarray, cultures: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``{condition culture: {human culture: mean KL over that human culture's test cells}}`` from :func:`swap_kl`."""
    matrix: dict[str, dict[str, float | None]] = {}
    human_cultures = cells.culture_names
    for k, culture in enumerate(cultures):
        row = {}
        for h in human_cultures:
            vals = kl[k, [i for i, c in enumerate(cells.cultures) if c == h]]
            vals = vals[~np.isnan(vals)]
            row[h] = float(vals.mean()) if vals.size else None
        matrix[culture] = row
    return matrix


def specificity_scores(cells: CellTable, kl: np.ndarray, cultures: Sequence[str]) -> np.ndarray:
    """(N,) per-cell specificity from :func:`swap_kl`: mean over other condition cultures of their KL minus the
    KL of the cell's own culture (NaN where the own culture or every other one has no value)."""
    pos = {c: k for k, c in enumerate(cultures)}
    out = np.full(len(cells), np.nan)
    for i, culture in enumerate(cells.cultures):
        if culture not in pos:
            continue
        own = kl[pos[culture], i]
        others = np.delete(kl[:, i], pos[culture])
        others = others[~np.isnan(others)]
        if others.size and not np.isnan(own):
            out[i] = others.mean() - own
    return out


def culture_derangement(cultures: Sequence[str], seed: int) -> dict[str, str]:
    """A seeded permutation of ``cultures`` with no fixed point: ``{culture: culture whose labels it gets}``.

    Raises:
        ValueError: for fewer than two cultures (nothing to shuffle).
    """
    cultures = list(cultures)
    if len(cultures) < 2:
        raise ValueError(f"a shuffled-label control needs at least two cultures, got {cultures}")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        perm = rng.permutation(len(cultures))
        if not np.any(perm == np.arange(len(cultures))):
            return {c: cultures[j] for c, j in zip(cultures, perm)}
    raise RuntimeError("no derangement found")  # probability ~ e^-1000 for two or more cultures


def culture_controls(cells: CellTable, predictions: Sequence[Mapping[tuple[str, str], np.ndarray]],
                     bootstrap: ClusterBootstrap) -> dict:
    """The culture controls of one culture-conditioned condition, from its per-seed predictions
    (``{(culture, qid): distribution}``): the swap matrix (mean over seeds), the specificity index with its CI, and
    the per-cell specificity ``scores`` (seeds x cells) for paired comparisons."""
    cultures = cells.culture_names
    per_seed_kl = [swap_kl(cells, lambda c, q, p=p: p.get((c, q)), cultures) for p in predictions]
    spec = np.stack([specificity_scores(cells, k, cultures) for k in per_seed_kl])
    nan = np.full_like(spec, np.nan)
    scores: Scores = {"kl_divergence": spec, **{m: nan for m in (
        "js_distance", "one_minus_js_distance", "similarity", "accuracy", "squared_error", "max_squared_error")}}
    summary = bootstrap.summarize(scores)["mean"]
    return {"swap_matrix": swap_matrix(cells, np.mean(per_seed_kl, axis=0), cultures),
            "specificity_index": summary["kl_divergence"],
            "specificity_index_ci95": summary["kl_divergence_ci95"], "scores": scores}
