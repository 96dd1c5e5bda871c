"""Rows for :class:`~culture_align.trainers.AnswerDistributionTrainer`: a chat prompt, its legal answers and a
target distribution over them (plus ``culture`` and the item the row came from).

- :func:`wvs_distribution_rows`: the human distributions of survey cells (give it a split's training view), asked
  with the evaluator's own prompt (culture-aware by default: the culture is in the system prompt).
- :func:`culturespa_distribution_rows`: a soft-label CultureSPA: the CRQPC training pairs, with the culture-aware
  answer distribution the pipeline keeps as the target instead of its argmax.
- :func:`culturellm_distribution_rows`: a soft-label CultureLLM: every seed and augmented sample, with the seed's whole
  human distribution for the culture instead of its modal answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets

from ..cultures import get_culture, resolve_cultures
from ..prompts.wvs import build_conversation, get_setting
from ..wvs.data import WVSData

__all__ = ["DISTRIBUTION_FEATURES", "culturellm_distribution_rows", "culturespa_distribution_rows",
           "wvs_distribution_rows"]

_S = datasets.Value("string")
DISTRIBUTION_FEATURES = datasets.Features({
    "prompt": datasets.List({"role": _S, "content": _S}), "choices": datasets.List(_S),
    "target": datasets.List(datasets.Value("float64")), "culture": _S, "qid": _S,
})
"""``prompt`` (system + user turns), ``choices`` (answer codes as strings), ``target`` (aligned with choices, sums to
1), ``culture`` (ISO3), ``qid`` (the WVS item, or the generated question's id)."""


def wvs_distribution_rows(wvs: WVSData, cultures: Sequence[str] | None = None, setting: str = "culture-aware",
                          labels_from: dict[str, str] | None = None) -> datasets.Dataset:
    """One row per (culture, item) with human data in ``wvs``.

    Args:
        wvs: Human data (an experiment passes its split's training view: test cells raise).
        cultures: ISO3 codes (default: every culture of ``wvs``).
        setting: The evaluator's prompt setting (``culture-aware`` names the culture; ``culture-unaware`` does not).
        labels_from: ``{culture: other culture}``: take the target from the other culture's humans (the
            shuffled-label control); default: the culture's own.
    """
    template = get_setting(setting)
    rows = []
    for culture in resolve_cultures(cultures if cultures is not None else wvs.cultures):
        source = (labels_from or {}).get(culture.iso3, culture.iso3)
        for qid, question in wvs.questions.items():
            target = wvs.distribution(source, qid)
            if target is None:
                continue
            rows.append({"prompt": build_conversation(template, question, culture),
                         "choices": [str(c) for c in question.codes], "target": [float(p) for p in target],
                         "culture": culture.iso3, "qid": qid})
    return datasets.Dataset.from_list(rows, features=DISTRIBUTION_FEATURES)


def culturespa_distribution_rows(corpus: datasets.DatasetDict) -> datasets.Dataset:
    """The CRQPC pairs of a CultureSPA corpus (``train`` + ``questions``) with ``aware_probs`` as the target."""
    codes = {row["id"]: [str(c) for c in row["codes"]] for row in corpus["questions"]}
    rows = []
    for row in corpus["train"]:
        if row["question_id"] not in codes:
            raise ValueError(f"CultureSPA training row {row['id']}: question {row['question_id']} is not in the "
                             "corpus's questions")
        rows.append({"prompt": row["messages"][:-1], "choices": codes[row["question_id"]],
                     "target": list(row["aware_probs"]), "culture": row["culture"], "qid": row["question_id"]})
    return datasets.Dataset.from_list(rows, features=DISTRIBUTION_FEATURES)


def culturellm_distribution_rows(corpus: datasets.DatasetDict) -> datasets.Dataset:
    """Every training row of a CultureLLM corpus (``train`` + ``seeds``) with the seed's human distribution for the
    row's culture as the target."""
    seeds = {row["id"]: row for row in corpus["seeds"]}
    targets = {(row["id"], t["culture"]): t["distribution"] for row in corpus["seeds"] for t in row["targets"]}
    rows = []
    for row in corpus["train"]:
        culture = get_culture(row["culture"]).iso3
        target = targets.get((row["seed_id"], culture))
        if target is None:
            raise ValueError(f"CultureLLM training row {row['id']}: seed {row['seed_id']} has no distribution for "
                             f"{culture}")
        rows.append({"prompt": row["messages"][:-1], "choices": [str(c) for c in seeds[row["seed_id"]]["codes"]],
                     "target": list(target), "culture": culture, "qid": row["seed_id"]})
    return datasets.Dataset.from_list(rows, features=DISTRIBUTION_FEATURES)
