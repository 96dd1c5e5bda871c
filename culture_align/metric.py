"""Find and load the WVS alignment metric, the one implementation of the alignment math.

The metric is a standalone Hugging Face ``evaluate`` module in the repository's top-level
``evaluate_metrics/wvs_alignment`` folder (loadable by path or from the Hub). The wheel ships the same folder
as package data under ``culture_align/_metrics/wvs_alignment`` (in a checkout, ``culture_align/_metrics``
is a symlink to ``../evaluate_metrics``), so it is found from a checkout, an editable install or an
installed wheel alike. The library never re-implements the math: it calls the module's pure functions
through :func:`alignment_math`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import evaluate

METRIC_NAME = "wvs_alignment"

_PACKAGE_DIR = Path(__file__).resolve().parent


def alignment_metric_path() -> Path:
    """The folder holding ``wvs_alignment.py`` (and its metric card), as an absolute path.

    Looks in the installed package data (``culture_align/_metrics/wvs_alignment``) first, then in the
    top-level ``evaluate_metrics/wvs_alignment`` of a source checkout.

    Raises:
        FileNotFoundError: when neither location holds the module (a broken install).
    """
    candidates = (
        _PACKAGE_DIR / "_metrics" / METRIC_NAME,
        _PACKAGE_DIR.parent / "evaluate_metrics" / METRIC_NAME,
    )
    for folder in candidates:
        if (folder / f"{METRIC_NAME}.py").is_file():
            return folder.resolve()
    raise FileNotFoundError(
        f"the {METRIC_NAME} metric module was not found in any of {[str(c) for c in candidates]}; "
        "reinstall culture-align"
    )


def load_alignment_metric(config_name: str = "distribution", **kwargs: Any) -> evaluate.EvaluationModule:
    """Load the metric with ``evaluate.load`` from :func:`alignment_metric_path` (no network).

    Args:
        config_name: ``"distribution"`` (KL / JS / similarity / accuracy between per-item probability rows)
            or ``"alignment_score"`` (CultureSPA score of chosen answer codes, 0-100).
        **kwargs: passed on to ``evaluate.load`` (e.g. ``keep_in_memory=True``, ``experiment_id``,
            ``num_process``/``process_id`` for distributed evaluation).
    """
    return evaluate.load(str(alignment_metric_path()), config_name, **kwargs)


@functools.lru_cache(maxsize=1)
def alignment_math() -> ModuleType:
    """The loaded metric's Python module, to call its pure numpy functions directly.

    The same module object ``evaluate`` runs, so the numbers are identical to ``compute``:

    - ``distribution_scores(predictions, references, eps=1e-6) -> dict``: N rows of model Q / human P
      (row i: k_i >= 2 non-negative numbers, renormalised) -> ``kl_divergence`` (nats), ``js_distance``
      (sqrt of nats, in [0, sqrt(ln 2)]), ``similarity`` (1 - JSD), ``accuracy`` (share, 0-1),
      ``kl_per_item``, ``js_per_item`` (lists of N floats), ``num_items``.
    - ``alignment_score(answers, gold, num_options, first_code=None) -> dict``: N codes (None / negative =
      missing; ``first_code``: the lowest code of each item's scale, e.g. ``min(question.codes)``, so that a
      code outside it is refused) -> ``alignment_score`` (0-100, NaN when nothing is scored), ``n_scored``,
      ``n_invalid``, ``n_no_gold``.
    - per-row helpers on normalised 1-D arrays: ``kl_divergence(p, q, eps)``, ``js_divergence(p, q)``,
      ``js_distance(p, q)``; ``validate_distributions(predictions, references)``; ``DEFAULT_EPS``.
    """
    metric = load_alignment_metric(keep_in_memory=True)
    return sys.modules[type(metric).__module__]
