"""`WVSData`: questions, per-culture answer distributions and (optionally) personas, from any loader."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import datasets
import numpy as np

from ..cultures import get_culture
from .questions import SurveyQuestion

__all__ = ["WVSData", "finite_non_negative", "normalised"]

_SUM_TOLERANCE = 1e-6


def finite_non_negative(value: object) -> bool:
    """Whether ``value`` is a number (not a bool) that is finite and >= 0; an integer too large for a float
    is not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int beyond float64
        return False


def normalised(values: Iterable[float] | np.ndarray, where: str, what: str = "proportions") -> np.ndarray:
    """``values`` divided by their sum, as float64: how every loader turns shares, weights or counts into one
    answer distribution.

    Args:
        values: Non-negative finite numbers, one per answer option.
        where: The file and key (``"data.json: USA/Q27"``) named in errors.
        what: What the values are, for errors (``"proportions"``, ``"weighted answers"``).

    Raises:
        ValueError: naming ``where``, for a value that is negative, NaN or infinite, and for a sum that is 0
            or not finite (values near 1e308 overflow the sum: the row would become all zeros or NaN).
    """
    try:
        row = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: the {what} must be finite numbers >= 0, got {values!r}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(row.sum()) if row.size else 0.0
    if row.ndim != 1 or not np.all(np.isfinite(row)) or np.any(row < 0):
        raise ValueError(f"{where}: the {what} must be finite numbers >= 0, got {row.tolist()}")
    if not math.isfinite(total):
        raise ValueError(f"{where}: the {what} sum to {total} (the sum overflows float64; scale them down): "
                         f"{row.tolist()}")
    if total <= 0:
        raise ValueError(f"{where}: the {what} sum to 0")
    probs = row / total
    if not (np.all(np.isfinite(probs)) and abs(float(probs.sum()) - 1.0) <= _SUM_TOLERANCE):
        raise ValueError(f"{where}: the {what} {row.tolist()} cannot be normalised to a distribution")
    return probs


@dataclass
class WVSData:
    """Human survey data in one shape, whatever file it came from.

    Attributes:
        questions: Items by id, in catalog order.
        distributions: ``{ISO3: {qid: probs}}``; ``probs`` is a float64 array aligned with
            ``questions[qid].codes``, summing to 1 over valid answers. A missing cell means "no data for
            this item in this culture": the item is skipped there, never replaced by a uniform guess.
        counts: ``{ISO3: {qid: n}}``, respondents with a valid answer (or weighted total), where known.
        personas: Respondent-level table (one row per respondent; see :mod:`culture_align.wvs.personas`),
            or ``None`` when the source has no respondent rows.
        source: Where the data came from (a path, or ``owner/name[split]`` for a Hub dataset), for reports.
    """

    questions: dict[str, SurveyQuestion]
    distributions: dict[str, dict[str, np.ndarray]]
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    personas: datasets.Dataset | None = None
    source: str = ""

    def validate(self) -> WVSData:
        """Check every distribution and count; returns ``self``. The loaders call it on what they return.

        Raises:
            ValueError: naming ``source`` and the cell (``USA/Q27``), for a cell of an unknown item, a
                distribution that is not aligned with its item's codes, not finite, negative or not summing
                to 1 (an overflowed row), or a count that is negative, NaN or infinite.
        """
        source = self.source or "the WVS data"
        for culture, cells in self.distributions.items():
            for qid, probs in cells.items():
                where = f"{source}: {culture}/{qid}"
                if qid not in self.questions:
                    raise ValueError(f"{where}: a distribution for an item that is not among the questions")
                row = np.asarray(probs, dtype=np.float64)
                n = self.questions[qid].num_options
                if row.shape != (n,):
                    raise ValueError(f"{where}: {row.size} probabilities for the item's {n} codes")
                with np.errstate(over="ignore", invalid="ignore"):
                    total = float(row.sum())
                valid = np.all(np.isfinite(row)) and np.all(row >= 0) and abs(total - 1.0) <= _SUM_TOLERANCE
                if not valid:
                    raise ValueError(f"{where}: not a distribution (finite, >= 0, summing to 1): "
                                     f"{row.tolist()}")
        for culture, cells in self.counts.items():
            for qid, n in cells.items():
                if not finite_non_negative(n):
                    raise ValueError(f"{source}: {culture}/{qid}: the count must be a finite number >= 0, "
                                     f"got {n!r}")
        return self

    @property
    def cultures(self) -> list[str]:
        """ISO3 codes with at least one distribution, in load order."""
        return [c for c, cells in self.distributions.items() if cells]

    def distribution(self, culture: str, qid: str) -> np.ndarray | None:
        """The human distribution of ``culture`` on ``qid`` (aligned with the question's codes), or None."""
        return self.distributions.get(get_culture(culture).iso3, {}).get(qid)

    def modal_code(self, culture: str, qid: str) -> int | None:
        """The most frequent valid answer code (first in code order on ties), or None without data."""
        probs = self.distribution(culture, qid)
        if probs is None:
            return None
        return self.questions[qid].codes[int(np.argmax(probs))]

    def select(self, qids: Iterable[str] | None = None, cultures: Iterable[str] | None = None) -> WVSData:
        """A view restricted to some items and/or cultures (unknown item ids raise ``KeyError``)."""
        keep_q = list(self.questions) if qids is None else list(dict.fromkeys(qids))
        missing = [q for q in keep_q if q not in self.questions]
        if missing:
            raise KeyError(f"items not in {self.source or 'the data'}: {', '.join(missing[:10])}")
        keep_c = self.cultures if cultures is None else [get_culture(c).iso3 for c in cultures]
        keep_set = set(keep_c)
        return WVSData(
            questions={q: self.questions[q] for q in keep_q},
            distributions={c: {q: v for q, v in self.distributions.get(c, {}).items() if q in keep_q}
                           for c in keep_c},
            counts={c: {q: v for q, v in self.counts.get(c, {}).items() if q in keep_q} for c in keep_c},
            personas=None if self.personas is None else self.personas.filter(
                lambda c: c in keep_set, input_columns="culture"),
            source=self.source,
        )

    def to_dataset(self) -> datasets.Dataset:
        """The distribution table: one row per (culture, item) with data.

        Columns: ``culture`` (str), ``qid`` (str), ``topic`` (str), ``codes`` (list[int]),
        ``probabilities`` (list[float], aligned with codes), ``n`` (float, -1 when unknown).
        """
        rows: dict[str, list] = {k: [] for k in ("culture", "qid", "topic", "codes", "probabilities", "n")}
        for culture, cells in self.distributions.items():
            for qid, probs in cells.items():
                q = self.questions[qid]
                rows["culture"].append(culture)
                rows["qid"].append(qid)
                rows["topic"].append(q.topic)
                rows["codes"].append(list(q.codes))
                rows["probabilities"].append([float(p) for p in probs])
                rows["n"].append(float(self.counts.get(culture, {}).get(qid, -1)))
        features = datasets.Features({
            "culture": datasets.Value("string"), "qid": datasets.Value("string"),
            "topic": datasets.Value("string"), "codes": datasets.List(datasets.Value("int32")),
            "probabilities": datasets.List(datasets.Value("float64")), "n": datasets.Value("float64"),
        })
        return datasets.Dataset.from_dict(rows, features=features)
