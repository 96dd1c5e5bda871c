"""CultureLLM seeds: WVS items with, per culture, the answer the fine-tuned model should give.

The reference used 50 WVS-7 items (:data:`CULTURELLM_SEED_ITEMS`). For each item and culture the **target
answer** is the modal valid answer of the culture's respondents (:meth:`WVSData.modal_code`): the
distribution is normalised over valid answers by the loaders (negative, i.e. missing, WVS codes never
count), and the most frequent code wins (the first in code order on a tie). It is never a mean over codes
(the reference's mean, with the missing codes averaged in, differs from the mode in most cells). The full
distribution is kept beside the target.

An item that a culture has no data for gets no target for that culture (it is listed in the seed's
``unlabelled_cultures`` and counted by :func:`seed_label_stats`); it never falls back to a guess.

Seeds are a split: the items trained on are recorded (:func:`train_item_ids`, and ``train_items`` in the
pipeline's ``stats.json``) so that evaluation can leave them out (``EvaluationConfig.exclude_items``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import datasets

from ...cultures import Culture, resolve_cultures
from ...prompts.culturellm import render_item
from ...wvs.data import WVSData
from ...wvs.questions import SurveyQuestion

__all__ = [
    "CULTURELLM_SEED_ITEMS",
    "SEED_FEATURES",
    "build_seeds",
    "seed_question",
    "seed_targets",
    "seed_label_stats",
    "train_item_ids",
]

CULTURELLM_SEED_ITEMS: tuple[str, ...] = tuple(
    [f"Q{i}" for i in range(27, 42)]        # social values, attitudes and stereotypes
    + [f"Q{i}" for i in range(122, 130)]    # migration
    + [f"Q{i}" for i in range(132, 139)]    # security
    + [f"Q{i}" for i in range(158, 163)]    # science and technology
    + ["Q169", "Q170"]                      # religion
    + ["Q196", "Q197", "Q198"]              # ethics and norms
    + [f"Q{i}" for i in range(224, 234)]    # political participation
)
"""The 50 WVS-7 items of the CultureLLM reference (Q27-Q41, Q122-Q129, Q132-Q138, Q158-Q162, Q169-Q170,
Q196-Q198, Q224-Q233): the default seed set."""

_S, _I, _F = datasets.Value("string"), datasets.Value("int32"), datasets.Value("float64")

TARGET_FEATURES = {"culture": _S, "code": _I, "distribution": datasets.List(_F), "n": _F}
"""One culture's label of a seed: ``code`` (the modal valid answer code), ``distribution`` (aligned with
the seed's ``codes``, summing to 1 over valid answers), ``n`` (valid answers; -1 when unknown)."""

SEED_FEATURES = datasets.Features({
    "id": _S, "text": _S, "options": datasets.List(_S), "codes": datasets.List(_I), "topic": _S,
    "prompt": _S, "targets": datasets.List(TARGET_FEATURES), "unlabelled_cultures": datasets.List(_S),
})
"""Seeds: ``id`` (the WVS item id), ``text``, ``options`` and ``codes`` (as in :class:`SurveyQuestion`),
``topic``, ``prompt`` (the rendered user turn: text, numbered options, the instruction), ``targets`` (one
:data:`TARGET_FEATURES` entry per culture with data) and ``unlabelled_cultures`` (cultures without data)."""


def build_seeds(wvs: WVSData, cultures: Sequence[str | Culture] | str | None = None,
                items: Iterable[str] = CULTURELLM_SEED_ITEMS) -> datasets.Dataset:
    """The seed table (:data:`SEED_FEATURES`), one row per item in ``items`` order.

    Args:
        wvs: The user's survey data (questions and per-culture distributions).
        cultures: ISO3 codes to label (default: every culture of ``wvs``).
        items: Item ids (default: :data:`CULTURELLM_SEED_ITEMS`).

    Raises:
        ValueError: when an item is not among ``wvs.questions`` (naming the items and the data source), or
            when no items are given.
    """
    qids = list(dict.fromkeys(items))
    if not qids:
        raise ValueError("no seed items given")
    missing = [q for q in qids if q not in wvs.questions]
    if missing:
        raise ValueError(f"seed items not in the survey data {wvs.source or ''}: {', '.join(missing)} "
                         f"(pass `items` to choose other seeds)")
    resolved = resolve_cultures(cultures if cultures is not None else wvs.cultures)
    rows: list[dict[str, Any]] = []
    for qid in qids:
        question = wvs.questions[qid]
        targets, unlabelled = [], []
        for culture in resolved:
            distribution = wvs.distribution(culture.iso3, qid)
            code = wvs.modal_code(culture.iso3, qid)
            if distribution is None or code is None:
                unlabelled.append(culture.iso3)
                continue
            n = wvs.counts.get(culture.iso3, {}).get(qid, -1)
            targets.append({"culture": culture.iso3, "code": int(code),
                            "distribution": [float(p) for p in distribution], "n": float(n)})
        rows.append({"id": qid, "text": question.text, "options": list(question.options),
                     "codes": list(question.codes), "topic": question.topic, "prompt": render_item(question),
                     "targets": targets, "unlabelled_cultures": unlabelled})
    return datasets.Dataset.from_list(rows, features=SEED_FEATURES)


def seed_question(seed: dict[str, Any]) -> SurveyQuestion:
    """The :class:`SurveyQuestion` of a seed row."""
    return SurveyQuestion(qid=seed["id"], text=seed["text"], options=tuple(seed["options"]),
                          codes=tuple(seed["codes"]), topic=seed["topic"])


def seed_targets(seed: dict[str, Any]) -> dict[str, int]:
    """``{ISO3: target code}`` of a seed row (cultures without data are absent)."""
    return {t["culture"]: int(t["code"]) for t in seed["targets"]}


def train_item_ids(seeds: datasets.Dataset) -> list[str]:
    """The ids of the seeds with a target in at least one culture: the items the training data covers, to
    exclude from evaluation (``EvaluationConfig(exclude_items=...)``)."""
    return [row["id"] for row in seeds if row["targets"]]


def seed_label_stats(seeds: datasets.Dataset) -> dict[str, Any]:
    """Counts of a seed table: seeds, labelled (culture, item) cells, and the cells without data.

    Returns:
        ``{"seeds", "labelled_cells", "unlabelled_cells", "unlabelled": {ISO3: [item ids]},
        "seeds_without_any_label": [item ids]}``.
    """
    unlabelled: dict[str, list[str]] = {}
    for row in seeds:
        for culture in row["unlabelled_cultures"]:
            unlabelled.setdefault(culture, []).append(row["id"])
    return {
        "seeds": len(seeds),
        "labelled_cells": sum(len(t) for t in seeds["targets"]),
        "unlabelled_cells": sum(len(v) for v in unlabelled.values()),
        "unlabelled": unlabelled,
        "seeds_without_any_label": [row["id"] for row in seeds if not row["targets"]],
    }
