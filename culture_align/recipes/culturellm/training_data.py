"""CultureLLM training records: every seed and augmented text, labelled for every culture with data.

The augmented texts are shared by all cultures; only the label (the culture's target answer of the seed)
differs. A record is ``system`` (an assistant that knows the culture well), ``user`` (the text with the
seed's numbered options, asking for one option), ``assistant`` (the target option's number, i.e. its WVS
code, as the evaluator shows it). A seed without data for a culture gives that culture no record.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets

from ...cultures import Culture, get_culture
from ...prompts.culturellm import PROMPT_VERSION, build_training_messages
from ..stages import stable_id, to_dataset
from .seeds import seed_question, seed_targets

__all__ = ["TRAIN_FEATURES", "build_training_set"]

_S = datasets.Value("string")

TRAIN_FEATURES = datasets.Features({
    "id": _S, "messages": datasets.List({"role": _S, "content": _S}), "culture": _S, "task": _S,
    "seed_id": _S, "text_id": _S, "source": _S, "answer": datasets.Value("int32"),
})
"""Training conversations: ``task`` is ``"survey"``; ``seed_id`` the WVS item; ``text_id`` the seed id or the
augmented sample's id; ``source`` ``seed`` | ``paraphrase`` | ``lexical``; ``answer`` the target code."""


def build_training_set(seeds: datasets.Dataset, augmented: datasets.Dataset,
                       cultures: Sequence[str | Culture] | None = None, *, include_seeds: bool = True,
                       prompt_version: str = PROMPT_VERSION) -> datasets.Dataset:
    """Training records (:data:`TRAIN_FEATURES`), culture by culture, seed by seed: the seed itself (when
    ``include_seeds``), then its augmented samples in table order.

    Args:
        seeds: Seed rows with their per-culture targets (:data:`~.seeds.SEED_FEATURES`).
        augmented: Augmented samples (:data:`~.augment.AUGMENTED_FEATURES`); ``seed_id`` links them to seeds.
        cultures: Cultures to emit (default: every culture that has a target in ``seeds``).

    ``id`` = hash of (culture, text id, text, answer, prompt version): stable across runs.
    """
    by_seed: dict[str, list[dict]] = {}
    for row in augmented:
        by_seed.setdefault(row["seed_id"], []).append(row)
    seed_rows = seeds.to_list()
    if cultures is None:
        codes = list(dict.fromkeys(t["culture"] for row in seed_rows for t in row["targets"]))
    else:
        codes = [get_culture(c).iso3 for c in cultures]
    rows = []
    for iso3 in codes:
        culture = get_culture(iso3)
        for seed in seed_rows:
            answer = seed_targets(seed).get(iso3)
            if answer is None:
                continue
            question = seed_question(seed)
            texts = [(seed["id"], "seed", seed["text"])] if include_seeds else []
            texts += [(a["id"], a["step"], a["text"]) for a in by_seed.get(seed["id"], [])]
            for text_id, source, text in texts:
                rows.append({
                    "id": stable_id("culturellm-train", iso3, text_id, text, answer, prompt_version),
                    "messages": build_training_messages(culture, question, text, answer),
                    "culture": iso3, "task": "survey", "seed_id": seed["id"], "text_id": text_id,
                    "source": source, "answer": answer,
                })
    return to_dataset(rows, TRAIN_FEATURES)
