"""`WVSData`: questions, per-culture answer distributions and (optionally) personas, from any loader."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import datasets
import numpy as np

from ..cultures import get_culture
from .questions import SurveyQuestion

__all__ = ["WVSData"]


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
        source: Where the data came from (a path or a Hub id), for reports.
    """

    questions: dict[str, SurveyQuestion]
    distributions: dict[str, dict[str, np.ndarray]]
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    personas: datasets.Dataset | None = None
    source: str = ""

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
