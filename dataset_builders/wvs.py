"""World Values Survey tables built from the user's own WVS data: items, per-culture answer distributions and
respondent personas.

The WVS data is not distributed with culture-align: the user downloads it from the WVS Association and points
the builder at it (anything :func:`culture_align.wvs.load_wvs` reads: the official respondent-level Wave 7 CSV, a
folder with ``wvs_questions.json`` + ``proportions_group_by_country.json``, a distributions JSON, GlobalOpinionQA
files)::

    from culture_align.builders import build_corpus, load_builder_class

    WVS = load_builder_class("wvs")
    builder = WVS(config_name="distributions", source="WVS_Cross-National_Wave_7_csv_v6_0.csv")
    builder.download_and_prepare(); builder.as_dataset("train")
    build_corpus("wvs", "WVS_Cross-National_Wave_7_csv_v6_0.csv", "hub/wvs")   # Parquet + card
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from culture_align.builders import CorpusBuilder, CorpusCard, CorpusConfig
from culture_align.cultures import get_culture
from culture_align.wvs import PERSONA_FIELDS, TOPICS, WVSData, load_questions, load_wvs

_S = datasets.Value("string")

QUESTION_FEATURES = datasets.Features({
    "qid": _S, "text": _S, "options": datasets.List(_S), "codes": datasets.List(datasets.Value("int32")),
    "topic": _S, "topic_name": _S,
})
"""One row per survey item."""

DISTRIBUTION_FEATURES = WVSData(questions={}, distributions={}).to_dataset().features
"""One row per (culture, item) with data: the library's own distribution table (``WVSData.to_dataset``)."""

PERSONA_FEATURES = datasets.Features({
    "culture": _S, "respondent_id": _S, **{name: _S for name in PERSONA_FIELDS},
    "answers": datasets.List({"qid": _S, "code": datasets.Value("int32")}),
})
"""One row per respondent; ``answers`` lists every loaded item, in catalog order, with the respondent's code."""

_FEATURES = {"questions": QUESTION_FEATURES, "distributions": DISTRIBUTION_FEATURES, "personas": PERSONA_FEATURES}
_TOPIC_NAMES = {t.id: t.name for t in TOPICS}

_PERSONA_DOCS = {
    "sex": "Sex (Q260): male / female.",
    "age": "Age in years (Q262), as text.",
    "born_in_country": "Born in the survey country or immigrant (Q263).",
    "household_size": "Number of people in the household (Q270), as text.",
    "marital_status": "Marital status (Q273).",
    "education": "Highest education level, ISCED 2011 (Q275).",
    "employment": "Employment status (Q279).",
    "profession": "Occupational group of the current or last job (Q281).",
    "social_class": "Subjective social class (Q287).",
}

_TERMS = """\
The World Values Survey (WVS) data is produced by the World Values Survey Association
(<https://www.worldvaluessurvey.org>) and distributed by it under its own conditions of use, which you accept when
you download it. **culture-align does not ship or redistribute any WVS data**: this dataset was built by whoever
pushed it, from their own copy of the WVS files, with the `wvs` builder of culture-align. Read the WVS
conditions of use before publishing or re-using it: they govern redistribution of the data and of tables derived
from it (publish privately unless you are allowed to do otherwise). Cite the survey as

Haerpfer, C., Inglehart, R., Moreno, A., Welzel, C., Kizilova, K., Diez-Medrano J., M. Lagos, P. Norris, E.
Ponarin & B. Puranen (eds.). 2022. World Values Survey: Round Seven - Country-Pooled Datafile Version 5.0.
Madrid, Spain & Vienna, Austria: JD Systems Institute & WVSA Secretariat. doi:10.14281/18241.20"""

_CITATION = """\
@misc{haerpfer2022wvs7,
  title     = {World Values Survey: Round Seven - Country-Pooled Datafile Version 5.0},
  author    = {Haerpfer, C. and Inglehart, R. and Moreno, A. and Welzel, C. and Kizilova, K. and Diez-Medrano, J.
               and Lagos, M. and Norris, P. and Ponarin, E. and Puranen, B.},
  publisher = {JD Systems Institute and WVSA Secretariat},
  year      = {2022},
  doi       = {10.14281/18241.20}
}"""


@dataclass
class WVSConfig(CorpusConfig):
    """Config of the :class:`WVS` builder.

    Attributes:
        source: Any WVS source :func:`culture_align.wvs.load_wvs` reads (required).
        questions: A questions file for sources without their own (default: the one beside the data, or the
            bundled WVS-7 catalog).
        cultures: Comma-separated ISO3 codes to keep (default: every culture in the data).
    """

    questions: str | None = None
    cultures: str | None = None


@functools.lru_cache(maxsize=2)
def _load(source: str, questions: str | None, cultures: str | None, mtime: float) -> WVSData:
    """The WVS data, read once for all configs of a build (``mtime`` invalidates the cache on change)."""
    data = load_wvs(source, load_questions(questions) if questions else None)
    if cultures:
        data = data.select(cultures=[c.strip() for c in cultures.split(",") if c.strip()])
    return data


class WVS(CorpusBuilder):
    """World Values Survey items, per-culture answer distributions and personas, from the user's WVS data."""

    BUILDER_CONFIG_CLASS = WVSConfig
    BUILDER_CONFIGS = [
        WVSConfig(name="distributions", description=(
            "One row per (culture, item): the share of the culture's respondents choosing each answer code, over "
            "valid answers (survey-weighted when the source has weights), and the number of valid answers `n`.")),
        WVSConfig(name="questions", description=(
            "One row per survey item: the question text, its answer options and their WVS answer codes, and its "
            "WVS-7 topic.")),
        WVSConfig(name="personas", description=(
            "One row per respondent (only from the respondent-level WVS CSV): demographics decoded to English and "
            "the respondent's own answer to every item.")),
    ]
    DEFAULT_CONFIG_NAME = "distributions"
    PRIVATE_BY_DEFAULT = True
    CARD = CorpusCard(
        pretty_name="World Values Survey: items, answer distributions and personas",
        summary=(
            "Human answers to the World Values Survey (WVS), in the tables culture-align evaluates and trains "
            "language models with: the survey items with their answer options and codes, each culture's answer "
            "distribution over every item (the reference P of the `wvs_alignment` metric: KL(P ‖ Q), 1 - JSD, "
            "alignment score), and respondent personas (demographics plus their own answers) for persona prompts "
            "and per-person accuracy. Cultures are ISO 3166-1 alpha-3 codes."),
        license="other",
        license_name="wvs-conditions-of-use",
        license_link="https://www.worldvaluessurvey.org/",
        task_categories=("multiple-choice", "question-answering"),
        tags=("world-values-survey", "survey", "culture", "values", "pluralistic-alignment"),
        source_and_terms=_TERMS,
        citation=_CITATION,
        fields={
            "distributions": {
                "culture": "ISO3 code of the culture (country) whose respondents answered.",
                "qid": "WVS item id (`Q1`..`Q259`, or the source's own id).",
                "topic": "WVS-7 topic id of the item (e.g. `social_values`, `religion`).",
                "codes": "The item's answer codes, in option order (WVS coding: 1..n, or 0..n-1 for some items).",
                "probabilities": "Share of valid answers per code, aligned with `codes`; sums to 1.",
                "n": "Number of respondents with a valid answer (unweighted); -1 when the source does not say.",
            },
            "questions": {
                "qid": "WVS item id.",
                "text": "The question or statement as shown to respondents (and models).",
                "options": "Answer option labels, in the order of `codes`.",
                "codes": "The answer code of each option.",
                "topic": "WVS-7 topic id.",
                "topic_name": "WVS-7 questionnaire section name (empty for non-WVS items).",
            },
            "personas": {
                "culture": "ISO3 code of the respondent's country.",
                "respondent_id": "The WVS interview id (`D_INTERVIEW`), or `<ISO3>-<row>` when the file has none.",
                **_PERSONA_DOCS,
                "answers": "The respondent's answer to every loaded item, in catalog order.",
                "answers.qid": "Item id.",
                "answers.code": "The respondent's answer code; null when missing, don't know, refused or not asked.",
            },
        },
        limitations=(
            "- Distributions are shares of valid answers: missing, don't-know and refused answers are left out, "
            "which shifts the distribution where they are frequent.\n"
            "- A country is not a culture: national samples hide regional, ethnic, religious and generational "
            "variation, and the survey's translation and fieldwork differ by country.\n"
            "- Persona demographics are coarse (the WVS categories), and sampled respondents are not weighted.\n"
            "- Answer distributions of a handful of survey items are a narrow view of values; model agreement "
            "with them is a proxy, not a measure of cultural competence.\n"
            "- The rows are only as current as the WVS wave the source comes from (Wave 7: 2017-2022)."),
    )

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.config.description, features=_FEATURES[self.config.name],
                                    citation=self.citation(), license=self.CARD.license)

    def wvs_data(self) -> WVSData:
        """The configured WVS source, loaded with :func:`culture_align.wvs.load_wvs`."""
        source = str(self.source)
        mtime = os.stat(source).st_mtime if os.path.exists(source) else 0.0
        return _load(source, self.config.questions, self.config.cultures, mtime)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        data = self.wvs_data()
        if self.config.name == "personas" and data.personas is None:
            raise ValueError(f"{self.source}: this source has no respondent rows, so no personas; the personas "
                             "config needs the respondent-level WVS CSV")
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"data": data})]

    def _generate_examples(self, data: WVSData) -> Iterator[tuple[str, dict[str, Any]]]:
        where = f"{self.source} ({self.config.name})"
        if self.config.name == "questions":
            rows = ({**q.to_dict(), "topic_name": _TOPIC_NAMES.get(q.topic, "")} for q in data.questions.values())
            yield from self.keyed(rows, lambda r: r["qid"], where)
        elif self.config.name == "distributions":
            yield from self.keyed(data.to_dataset(), lambda r: f"{r['culture']}/{r['qid']}", where)
        else:
            items = list(data.questions)
            rows = ({**{k: v for k, v in p.items() if k != "answers"},
                     "answers": [{"qid": q, "code": p["answers"].get(q)} for q in items]} for p in data.personas)
            yield from self.keyed(rows, lambda r: f"{r['culture']}/{r['respondent_id']}", where)

    def card_provenance(self) -> str:
        data = self.wvs_data()
        names = ", ".join(f"{c} ({get_culture(c).name})" for c in data.cultures)
        personas = "no respondent rows" if data.personas is None else f"{len(data.personas)} respondents"
        return (f"Built with the culture-align `wvs` builder from the WVS source file `{Path(data.source or self.source).name}` "
                f"(read with `culture_align.wvs.load_wvs`): {len(data.questions)} items, {len(data.cultures)} "
                f"cultures ({names}), {personas}. No model was involved: every row is a tabulation of the human "
                "answers. From the respondent-level CSV, a distribution is the survey-weighted share of valid "
                "answers (the `W_WEIGHT` column when present) and `n` the unweighted count of valid answers.")
