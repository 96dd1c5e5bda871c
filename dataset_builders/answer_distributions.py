"""Training rows for `AnswerDistributionTrainer`, built from the user's own WVS data: per (culture, item), the chat
prompt the evaluator asks, the legal answer codes and the culture's human answer distribution as the target.

Give an experiment's ``split.json`` to keep only its training cells (the rows then never hold a held-out item's, or
a held-out culture's, figures)::

    from culture_align.builders import build_corpus

    build_corpus("answer_distributions", "path/to/wvs", "hub/wvs-distributions", split="runs/x/split.json")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from culture_align.builders import CorpusBuilder, CorpusCard, CorpusConfig
from culture_align.recipes.distribution import DISTRIBUTION_FEATURES, wvs_distribution_rows
from culture_align.wvs import WVSData, load_questions, load_wvs

_TERMS = """\
The targets are World Values Survey (WVS) figures from the user's own copy of the WVS files, produced by the World
Values Survey Association (<https://www.worldvaluessurvey.org>) under its conditions of use. **culture-align does not
ship or redistribute any WVS data**: read the WVS conditions of use before publishing these rows (publish privately
unless you are allowed to do otherwise)."""


@dataclass
class AnswerDistributionsConfig(CorpusConfig):
    """Config of the :class:`AnswerDistributions` builder.

    Attributes:
        source: Any WVS source :func:`culture_align.wvs.load_wvs` reads (required).
        questions: A questions file for sources without their own.
        split: An experiment's ``split.json``: only its training cells become rows.
        setting: The evaluator's prompt setting (default ``culture-aware``: the culture is named).
    """

    questions: str | None = None
    split: str | None = None
    setting: str = "culture-aware"


class AnswerDistributions(CorpusBuilder):
    """Prompt, answer codes and human target distribution per (culture, item): rows for the distribution trainer."""

    BUILDER_CONFIG_CLASS = AnswerDistributionsConfig
    BUILDER_CONFIGS = [AnswerDistributionsConfig(name="rows", description=(
        "One row per (culture, item) with human data: the evaluator's chat prompt for the item (culture-aware by "
        "default), the legal answer codes and the culture's answer distribution over them, the target of "
        "AnswerDistributionTrainer's forward-KL loss."))]
    DEFAULT_CONFIG_NAME = "rows"
    PRIVATE_BY_DEFAULT = True
    RECIPE = "answer_distribution"
    CARD = CorpusCard(
        pretty_name="WVS answer distributions as training rows",
        summary=(
            "Training rows for culture-align's `AnswerDistributionTrainer` (LoRA with a forward-KL loss on the "
            "model's answer distribution, after Cao et al., NAACL 2025): each row asks one World Values Survey item "
            "the way the `WVSEvaluator` asks it, lists the legal answer codes and gives the culture's human answer "
            "distribution as the target. Built from an experiment split, it holds the training cells only."),
        license="other",
        license_name="wvs-conditions-of-use",
        license_link="https://www.worldvaluessurvey.org/",
        task_categories=("text-generation", "multiple-choice"),
        tags=("world-values-survey", "survey", "culture", "distributional-alignment", "pluralistic-alignment"),
        source_and_terms=_TERMS,
        fields={"rows": {
            "prompt": "The chat prompt: a system turn (naming the culture in the culture-aware setting) and the user "
                      "turn with the item and its numbered options.",
            "prompt.role": "`system` or `user`.",
            "prompt.content": "The turn's text.",
            "choices": "The legal answers: the item's answer codes as strings, in option order.",
            "target": "The culture's share of valid answers per code, aligned with `choices`; sums to 1.",
            "culture": "ISO3 code of the culture (country) whose respondents answered.",
            "qid": "WVS item id.",
        }},
        limitations=(
            "- A country's answer distribution over a handful of survey items is a narrow view of its values; a model "
            "trained to match it learns survey answering, which is not cultural competence.\n"
            "- Distributions are shares of valid answers: missing, don't-know and refused answers are left out.\n"
            "- Without a split every cell is a row: evaluate on other items or cultures than those trained on."),
    )

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.config.description, features=DISTRIBUTION_FEATURES,
                                    citation=self.citation(), license=self.CARD.license)

    def wvs_data(self) -> WVSData:
        data = load_wvs(str(self.source), load_questions(self.config.questions) if self.config.questions else None)
        if self.config.split:
            from culture_align.experiments import ExperimentSplit

            data = ExperimentSplit.load(self.config.split).training_view(data)
        return data

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"data": self.wvs_data()})]

    def _generate_examples(self, data: WVSData) -> Iterator[tuple[str, dict[str, Any]]]:
        rows = wvs_distribution_rows(data, setting=self.config.setting)
        yield from self.keyed(rows, lambda r: f"{r['culture']}/{r['qid']}", f"{self.source} (rows)")

    def card_provenance(self) -> str:
        data = self.wvs_data()
        split = (f", the training cells of the split `{Path(self.config.split).name}`" if self.config.split
                 else " (every cell: no split)")
        return (f"Built with the culture-align `answer_distributions` builder from the WVS source "
                f"`{Path(data.source or self.source).name}`: {len(data.questions)} items x {len(data.cultures)} "
                f"cultures{split}, prompt setting `{self.config.setting}`. No model was involved.")
