# Copyright 2025 The culture-align developers.
# Licensed under the Apache License, Version 2.0.
"""WVS alignment: how close a model's survey answers are to a culture's human answers.

This file is a self-contained Hugging Face ``evaluate`` metric module. It must import nothing from
``culture_align``: it is loaded by path (``evaluate.load("evaluate_metrics/wvs_alignment")``) or from the
Hub, and the ``culture_align`` library reuses the plain numpy functions defined here
(:func:`distribution_scores`, :func:`alignment_score`) instead of re-implementing the math.
"""

from __future__ import annotations

import math
from typing import Any

import datasets
import evaluate
import numpy as np

DEFAULT_EPS = 1e-6
"""Default additive smoothing of the model distribution Q before the KL divergence."""

CONFIG_NAMES = ("distribution", "alignment_score")
"""Configurations of the metric; ``"default"`` (what ``evaluate`` uses when none is given) is
``"distribution"``."""

LN2 = math.log(2.0)

MAX_CODE = 1_000_000
"""The largest answer code, first code or option count accepted: survey scales are short, so anything
larger is a data error (WVS codes are small integers)."""

_CITATION = """\
@misc{culture_align_wvs_alignment,
  title  = {WVS alignment: distribution and answer alignment of language models with World Values Survey respondents},
  author = {culture-align developers},
  year   = {2025},
  note   = {evaluate metric module of the culture-align library}
}
@article{haerpfer2022wvs7,
  title   = {World Values Survey: Round Seven - Country-Pooled Datafile Version 5.0},
  author  = {Haerpfer, C. and Inglehart, R. and Moreno, A. and Welzel, C. and Kizilova, K. and
             Diez-Medrano, J. and Lagos, M. and Norris, P. and Ponarin, E. and Puranen, B.},
  journal = {Madrid, Spain \\& Vienna, Austria: JD Systems Institute \\& WVSA Secretariat},
  year    = {2022},
  doi     = {10.14281/18241.20}
}
@article{durmus2023measuring,
  title   = {Towards Measuring the Representation of Subjective Global Opinions in Language Models},
  author  = {Durmus, Esin and Nguyen, Karina and Liao, Thomas I. and Schiefer, Nicholas and Askell, Amanda
             and others},
  journal = {arXiv preprint arXiv:2306.16388},
  year    = {2023}
}
@article{xu2024cultural,
  title   = {Self-Pluralising Culture Alignment for Large Language Models},
  author  = {Xu, Shaoyang and Leng, Yongqi and Yu, Linhao and Xiong, Deyi},
  journal = {arXiv preprint arXiv:2410.12971},
  year    = {2024}
}
"""

_DESCRIPTION = """\
Compares a language model's answers to World Values Survey (WVS) items with the answers of a culture's
human respondents. Two configurations:

* ``distribution`` (default): per item, the human answer distribution P (the reference) and the model's
  answer distribution Q (the prediction) over the same answer codes. Reports the true KL divergence
  KL(P || Q) (natural log, Q smoothed by ``eps``), the Jensen-Shannon distance sqrt(JSD(P, Q)) (natural log,
  as ``scipy.spatial.distance.jensenshannon``), the GlobalOpinionQA-style similarity 1 - JSD(P, Q), and the
  share of items where the model's most likely answer equals the humans' modal answer.
* ``alignment_score``: the CultureSPA alignment score between one chosen answer code per item and the
  modal human code, 100 * (1 - sqrt(sum_q (a_q - g_q)^2) / sqrt(sum_q (n_q - 1)^2)), over the items with a
  valid answer; invalid or missing answers are excluded and counted. A code outside the item's scale of n_q
  consecutive codes is an error, not a number.
"""

_KWARGS_DESCRIPTION = """
Args (config "distribution", the default):
    predictions (`list` of `list` of `float`): one row per item, the model distribution Q over the item's
        answer codes. Rows may have different lengths between items (>= 2 entries each). Rows need not sum
        to 1: they are renormalised. Entries must be finite and >= 0, with at least one > 0.
    references (`list` of `list` of `float`): one row per item, the human distribution P over the same
        codes, in the same order as the matching prediction row (same length). Same rules as predictions.
    eps (`float`, optional, default 1e-6): additive smoothing of Q for the KL divergence only
        (Q + eps, renormalised), so that KL stays finite where Q has zeros. With eps=0 the KL is `inf`
        where Q_k = 0 < P_k.

Args (config "alignment_score"):
    predictions (`list` of `int` or `None`): the model's chosen answer code per item; `None` or a
        negative code (-1; WVS missing codes are negative) means "no valid answer".
    references (`list` of `int` or `None`): the modal human answer code per item; `None` or a negative
        code means "no gold answer" (the item is skipped and counted).
    num_options (`list` of `int`): the number of answer options n_q of each item (>= 2).
    first_code (`list` of `int` or `None`, optional): the lowest code of each item's scale: its codes are
        first_code .. first_code + n_q - 1 (1 for a 1..n scale, 0 for WVS items coded 0..n-1). `None` or a
        negative value: not known; the codes must then lie in 0..n_q, and the answer and gold within one
        scale of n_q consecutive codes (1..n_q or 0..n_q - 1). A code outside the scale raises ValueError.

Returns (config "distribution"):
    kl_divergence (`float`): mean over items of KL(P || Q) = sum_k P_k ln(P_k / Q_k), Q smoothed. >= 0,
        unbounded above; 0 for identical distributions (up to the smoothing).
    js_distance (`float`): mean over items of sqrt(JSD(P, Q)), natural log; in [0, sqrt(ln 2)].
    similarity (`float`): mean over items of 1 - JSD(P, Q) (= 1 - js_distance_i ** 2); in [1 - ln 2, 1].
    accuracy (`float`): share of items where argmax Q equals argmax P (first index on ties); in [0, 1].
    kl_per_item (`list` of `float`), js_per_item (`list` of `float`): the per-item values, in input order.
    num_items (`int`): the number of items.

Returns (config "alignment_score"):
    alignment_score (`float`): in [0, 100] (100 = every answer is the modal human answer); NaN when no
        item could be scored.
    n_scored (`int`): items with a valid answer and a gold answer.
    n_invalid (`int`): items with a gold answer but no valid model answer (None / negative code).
    n_no_gold (`int`): items without a gold answer (None / negative code), whatever the model answered.

Examples:

    >>> import evaluate
    >>> wvs = evaluate.load("evaluate_metrics/wvs_alignment")  # or the Hub id of the metric
    >>> out = wvs.compute(predictions=[[0.4, 0.6], [0.1, 0.7, 0.2]],
    ...                   references=[[0.9, 0.1], [0.2, 0.6, 0.2]])
    >>> round(out["kl_divergence"], 4), round(out["js_distance"], 4), out["accuracy"], out["num_items"]
    (0.2984, 0.2437, 0.5, 2)

    >>> score = evaluate.load("evaluate_metrics/wvs_alignment", "alignment_score")
    >>> out = score.compute(predictions=[1, 3, None], references=[2, 3, 1], num_options=[4, 4, 4])
    >>> round(out["alignment_score"], 2), out["n_scored"], out["n_invalid"]
    (76.43, 2, 1)
"""


# ---------------------------------------------------------------------------------------------------------
# Pure math, reusable without evaluate (the culture_align library calls these through alignment_math()).
# ---------------------------------------------------------------------------------------------------------


def _as_row(row: Any, i: int, side: str) -> np.ndarray:
    """One row as a 1-D float64 array; ``None`` entries become NaN (rejected by the caller)."""
    if row is None or isinstance(row, (str, bytes)):
        raise ValueError(f"row {i}: {side} must be a sequence of numbers, got {row!r}")
    try:
        arr = np.asarray([np.nan if v is None else v for v in row], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"row {i}: {side} must be a sequence of numbers ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"row {i}: {side} must be a flat sequence of numbers, got shape {arr.shape}")
    return arr


def _check_row(arr: np.ndarray, i: int, side: str) -> np.ndarray:
    """Validate one probability row and return it renormalised to sum 1.

    Entries near the largest float (1e308) overflow the sum to inf, which would make the row all zeros (KL 0):
    such a row is first divided by its largest entry, so that it sums to a finite number in [1, k]. The sum is
    checked to be finite and positive before any division by it.
    """
    if arr.size == 0:
        raise ValueError(f"row {i}: {side} is empty (need at least 2 entries)")
    if arr.size < 2:
        raise ValueError(f"row {i}: {side} has {arr.size} entry (need at least 2)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"row {i}: {side} contains NaN, inf or None: {arr.tolist()}")
    if np.any(arr < 0):
        raise ValueError(f"row {i}: {side} contains a negative value: {arr.tolist()}")
    with np.errstate(over="ignore"):
        total = float(arr.sum())
    if not math.isfinite(total):  # overflow: rescale by the largest entry (> 0 here), then sum again
        arr = arr / arr.max()
        total = float(arr.sum())
    if not math.isfinite(total):
        raise ValueError(f"row {i}: {side} sums to {total}, which cannot be normalised: {arr.tolist()}")
    if total <= 0:
        raise ValueError(f"row {i}: {side} is all zeros (cannot be normalised)")
    return arr / total


def validate_distributions(predictions: Any, references: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate and renormalise paired rows.

    Args:
        predictions: N rows, row i a sequence of k_i >= 2 non-negative finite numbers (model Q_i).
        references: N rows, row i of the same length k_i (human P_i).

    Returns:
        ``(qs, ps)``: two lists of N float64 arrays, each summing to 1.

    Raises:
        ValueError: naming the row ("row 3: ...") for an empty or length-1 row, a length mismatch between
            the prediction and reference of a row, NaN/inf/None, a negative value, or an all-zero row;
            and for zero rows or different numbers of prediction and reference rows.
    """
    if predictions is None or references is None:
        raise ValueError("predictions and references are both required")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} prediction rows but {len(references)} reference rows; "
            "they must pair up item by item"
        )
    if not predictions:
        raise ValueError("got zero rows: need at least one item")
    qs, ps = [], []
    for i, (q_row, p_row) in enumerate(zip(predictions, references)):
        q = _as_row(q_row, i, "prediction")
        p = _as_row(p_row, i, "reference")
        if q.size != p.size:
            raise ValueError(
                f"row {i}: prediction has {q.size} entries but reference has {p.size}; "
                "both must cover the same answer codes"
            )
        qs.append(_check_row(q, i, "prediction"))
        ps.append(_check_row(p, i, "reference"))
    return qs, ps


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """KL(P || Q) in nats for one item, with Q smoothed: ``(Q + eps) / sum(Q + eps)``.

    ``p`` and ``q`` are 1-D arrays of the same length, each already summing to 1 (see
    :func:`validate_distributions`). Terms with P_k = 0 contribute 0. Rounding noise below 0 is clipped, so
    the result is always >= 0; it is ``inf`` only when ``eps == 0`` and some Q_k = 0 < P_k.
    """
    q_s = q + eps
    q_s = q_s / q_s.sum()
    mask = p > 0
    with np.errstate(divide="ignore"):
        kl = float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q_s[mask]))))
    return max(kl, 0.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence JSD(P, Q) in nats for one item (no smoothing needed; always finite).

    JSD = (KL(P || M) + KL(Q || M)) / 2 with M = (P + Q) / 2; clipped to its exact range [0, ln 2].
    ``sqrt`` of it equals ``scipy.spatial.distance.jensenshannon(p, q)`` (natural log). Written as
    P_k ln(2 P_k / (P_k + Q_k)) so that M never underflows to 0 for subnormal entries.
    """
    s = p + q
    mp, mq = p > 0, q > 0
    jsd = 0.5 * (np.sum(p[mp] * np.log(2.0 * p[mp] / s[mp])) + np.sum(q[mq] * np.log(2.0 * q[mq] / s[mq])))
    return float(min(max(jsd, 0.0), LN2))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance sqrt(JSD(P, Q)), natural log, in [0, sqrt(ln 2)]; symmetric."""
    return math.sqrt(js_divergence(p, q))


def distribution_scores(predictions: Any, references: Any, eps: float = DEFAULT_EPS) -> dict[str, Any]:
    """All scores of the ``distribution`` configuration.

    Args:
        predictions: N rows, the model distribution Q_i of item i over its k_i >= 2 answer codes.
        references: N rows, the human distribution P_i of item i over the same codes, same order.
            Both are validated and renormalised (see :func:`validate_distributions`).
        eps: smoothing of Q for the KL divergence (>= 0, finite; default 1e-6).

    Returns:
        ``{"kl_divergence": float, "js_distance": float, "similarity": float, "accuracy": float,
        "kl_per_item": list[float], "js_per_item": list[float], "num_items": int}`` where the scalars are
        means over the N items (KL and JSD in nats; accuracy a share in [0, 1]).
    """
    if eps is None:
        eps = DEFAULT_EPS
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    qs, ps = validate_distributions(predictions, references)
    kl = [kl_divergence(p, q, eps) for p, q in zip(ps, qs)]
    jsd = [js_divergence(p, q) for p, q in zip(ps, qs)]
    js = [math.sqrt(d) for d in jsd]
    hits = [int(np.argmax(q)) == int(np.argmax(p)) for p, q in zip(ps, qs)]
    return {
        "kl_divergence": float(np.mean(kl)),
        "js_distance": float(np.mean(js)),
        "similarity": float(np.mean([1.0 - d for d in jsd])),
        "accuracy": float(np.mean(hits)),
        "kl_per_item": kl,
        "js_per_item": js,
        "num_items": len(ps),
    }


def _as_code(value: Any, i: int, name: str) -> int:
    """An answer code as an int; None, NaN and negative codes become -1 (missing).

    Refuses, naming the row: bools, strings, fractions (``1.5`` is never truncated) and codes above
    :data:`MAX_CODE` (however large: Python ints too large for a float included).
    """
    if value is None:
        return -1
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ValueError(f"row {i}: {name} must be an integer code or None, got {value!r}")
    if isinstance(value, (int, np.integer)):
        code = int(value)
    else:
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"row {i}: {name} must be an integer code or None, got {value!r}") from None
        if math.isnan(f):
            return -1
        if not f.is_integer():
            raise ValueError(f"row {i}: {name} must be an integer code, got {value!r}")
        code = int(f)
    if code > MAX_CODE:
        raise ValueError(f"row {i}: {name} {code} is larger than {MAX_CODE}: not a survey answer code")
    return max(code, -1)


def _scale(n: int, first: int) -> tuple[int, int]:
    """The lowest and highest code an item with ``n`` options may have; ``first`` < 0: not known (0..n)."""
    return (first, first + n - 1) if first >= 0 else (0, n)


def _check_in_scale(code: int, n: int, first: int, i: int, name: str) -> None:
    """``ValueError`` naming the row when a (non-missing) ``code`` lies outside the item's scale."""
    low, high = _scale(n, first)
    if code >= 0 and not low <= code <= high:
        known = (f"its codes are {low}..{high}" if first >= 0
                 else f"its codes are 1..{n} or 0..{n - 1} (pass first_code to say which)")
        raise ValueError(f"row {i}: {name} code {code} is outside the scale of an item with {n} options: {known}")


def _first_codes(first_code: Any, count: int) -> list[int]:
    """Per item, the lowest code of its scale (-1: not known), from ``first_code`` (None: none known)."""
    if first_code is None:
        return [-1] * count
    if isinstance(first_code, (str, bytes)):
        raise ValueError(f"first_code must be a list of integers or None, got {first_code!r}")
    firsts = list(first_code)
    if len(firsts) != count:
        raise ValueError(f"got {len(firsts)} first_code values for {count} items; they must pair up item by item")
    return [_as_code(f, i, "first_code") for i, f in enumerate(firsts)]


def alignment_score_from_sums(squared_error: Any, max_squared_error: Any) -> Any:
    """The alignment score from its two sums: 100 * (1 - sqrt(sum (a_q - g_q)^2) / sqrt(sum (n_q - 1)^2)).

    Elementwise over numpy arrays of equal shape (weighted or resampled sums, e.g. a bootstrap's), or on two
    numbers; NaN where ``max_squared_error`` is 0. :func:`alignment_score` computes its sums and calls this.
    """
    num = np.asarray(squared_error, dtype=np.float64)
    den = np.asarray(max_squared_error, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, 100.0 * (1.0 - np.sqrt(num) / np.sqrt(np.where(den > 0, den, 1.0))), np.nan)
    return out if out.ndim else float(out)


def alignment_score(answers: Any, gold: Any, num_options: Any, first_code: Any = None) -> dict[str, Any]:
    """CultureSPA alignment score of chosen answer codes against modal human codes.

    score = 100 * (1 - sqrt(sum_q (a_q - g_q)^2) / sqrt(sum_q (n_q - 1)^2)), both sums over the scored
    items: those with a valid answer a_q (not None / not negative) and a gold code g_q (not None / not
    negative). The denominator is the largest possible distance, so the score lies in [0, 100].

    Args:
        answers: N model answer codes (int), None or a negative code for no valid answer.
        gold: N modal human codes (int), None or a negative code for no gold answer.
        num_options: N option counts n_q (int >= 2).
        first_code: Optional, N lowest codes of the items' scales (codes first .. first + n_q - 1); None, or
            a None / negative entry: not known, and the codes must then lie in 0..n_q (the scale is 1..n_q
            or 0..n_q - 1). Every answer and gold code given is checked against its item's scale, scored
            or not.

    Returns:
        ``{"alignment_score": float, "n_scored": int, "n_invalid": int, "n_no_gold": int}``;
        alignment_score is NaN when n_scored == 0. n_no_gold counts items without gold (whatever the
        answer); n_invalid counts items with gold but no valid answer; n_scored + n_invalid + n_no_gold = N.

    Raises:
        ValueError: naming the row, for n_q < 2 (or missing) or above ``MAX_CODE``, non-integer codes, an
            answer and gold further apart than n_q - 1, or an answer or gold code outside the item's scale;
            and for length mismatches.
    """
    if answers is None or gold is None or num_options is None:
        raise ValueError("predictions (answers), references (gold) and num_options are all required")
    answers, gold, num_options = list(answers), list(gold), list(num_options)
    if not (len(answers) == len(gold) == len(num_options)):
        raise ValueError(
            f"got {len(answers)} predictions, {len(gold)} references and {len(num_options)} num_options; "
            "they must pair up item by item"
        )
    if not answers:
        raise ValueError("got zero rows: need at least one item")
    firsts = _first_codes(first_code, len(answers))
    num = 0
    den = 0
    n_scored = n_invalid = n_no_gold = 0
    for i, (a_raw, g_raw, n_raw, first) in enumerate(zip(answers, gold, num_options, firsts)):
        n = _as_code(n_raw, i, "num_options")
        if n < 2:
            raise ValueError(f"row {i}: num_options must be an integer >= 2, got {n_raw!r}")
        a = _as_code(a_raw, i, "prediction")
        g = _as_code(g_raw, i, "reference")
        if a >= 0 and g >= 0 and abs(a - g) > n - 1:
            raise ValueError(
                f"row {i}: answer {a} and gold {g} are {abs(a - g)} apart but an item with {n} options "
                f"allows at most {n - 1}; is a code outside the item's scale?"
            )
        _check_in_scale(a, n, first, i, "prediction (answer)")
        _check_in_scale(g, n, first, i, "reference (gold)")
        if g < 0:
            n_no_gold += 1
            continue
        if a < 0:
            n_invalid += 1
            continue
        num += (a - g) ** 2
        den += (n - 1) ** 2
        n_scored += 1
    score = float("nan") if n_scored == 0 else float(alignment_score_from_sums(num, den))
    return {"alignment_score": score, "n_scored": n_scored, "n_invalid": n_invalid, "n_no_gold": n_no_gold}


# ---------------------------------------------------------------------------------------------------------
# The evaluate module.
# ---------------------------------------------------------------------------------------------------------

_FEATURES = {
    "distribution": datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("float64")),
            "references": datasets.Sequence(datasets.Value("float64")),
        }
    ),
    "alignment_score": datasets.Features(
        {
            "predictions": datasets.Value("int64"),
            "references": datasets.Value("int64"),
            "num_options": datasets.Value("int64"),
            "first_code": datasets.Value("int64"),
        }
    ),
}


def _with_first_code(predictions: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``first_code`` (optional for callers, a column for evaluate) filled in: -1 (not known)
    per item when it is not given, its None entries as -1."""
    if kwargs.get("first_code") is not None:
        return {**kwargs, "first_code": _none_to_minus_one(kwargs["first_code"])}
    if isinstance(predictions, list):
        return {**kwargs, "first_code": [-1] * len(predictions)}
    return kwargs


def _none_to_minus_one(values: Any) -> Any:
    """Map None (and NaN) codes to -1 before the values reach arrow; other values pass unchanged."""
    if values is None or isinstance(values, (str, bytes)):
        return values
    try:
        items = list(values)
    except TypeError:  # not iterable: let the validation report it
        return values
    out = []
    for v in items:
        if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
            out.append(-1)
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(int(v))
        else:
            out.append(v)
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WVSAlignment(evaluate.Metric):
    """WVS alignment metric: ``distribution`` (KL, JS, similarity, accuracy) or ``alignment_score``."""

    def _config(self) -> str:
        name = self.config_name
        if name in (None, "default"):
            return "distribution"
        if name not in CONFIG_NAMES:
            raise ValueError(f"unknown config_name {name!r}: choose one of {list(CONFIG_NAMES)}")
        return name

    def _info(self) -> evaluate.MetricInfo:
        config = self._config()
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES[config],
            homepage="https://www.worldvaluessurvey.org/",
            license="apache-2.0",
            reference_urls=[
                "https://arxiv.org/abs/2306.16388",
                "https://arxiv.org/abs/2410.12971",
                "https://arxiv.org/abs/2504.02953",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.spatial.distance.jensenshannon.html",
            ],
        )

    # evaluate turns inputs into arrow rows before _compute; validate and clean them first so that errors
    # name the offending row and None answers survive as -1 (arrow would keep them as nulls otherwise).
    def _prepare(self, predictions: Any, references: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        if self._config() == "distribution":
            for name in ("num_options", "first_code"):
                if name in kwargs:
                    raise ValueError(f"{name} belongs to the 'alignment_score' configuration")
            if predictions is not None or references is not None:
                validate_distributions(predictions, references)  # raw rows go on; _compute renormalises
            return predictions, references
        if "eps" in kwargs:
            raise ValueError("eps belongs to the 'distribution' configuration")
        predictions = _none_to_minus_one(predictions)
        references = _none_to_minus_one(references)
        if predictions is not None or references is not None:
            # full validation (row-level errors) before arrow sees the values
            alignment_score(predictions, references, kwargs.get("num_options"), kwargs.get("first_code"))
            kwargs.update(_with_first_code(predictions, kwargs))
        return predictions, references

    def compute(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> dict | None:
        """Compute the metric; inputs are validated first (see the inputs description below).

        evaluate appends the inputs description to this docstring when the module is instantiated.
        """
        predictions, references = self._prepare(predictions, references, kwargs)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> None:
        """Add a batch of items; None answer codes become -1 for the ``alignment_score`` config, and
        ``first_code`` is optional there (not known unless given)."""
        if self._config() == "alignment_score":
            predictions = _none_to_minus_one(predictions)
            references = _none_to_minus_one(references)
            kwargs = _with_first_code(predictions, kwargs)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> None:
        """Add one item; a None answer code becomes -1 for the ``alignment_score`` config, where
        ``first_code`` is optional (not known unless given)."""
        if self._config() == "alignment_score":
            prediction = -1 if prediction is None else prediction
            reference = -1 if reference is None else reference
            kwargs["first_code"] = -1 if kwargs.get("first_code") is None else kwargs["first_code"]
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, num_options=None, first_code=None, eps=DEFAULT_EPS):
        if self._config() == "distribution":
            return distribution_scores(predictions, references, eps=eps)
        return alignment_score(predictions, references, num_options, first_code)
