"""CultureSPA corpus: self-instructed survey questions, a model's culture-unaware and culture-aware answers to
them, the culture-aware training pairs (CRQPC) and everything the pipeline dropped.

Built from a run folder of :class:`culture_align.recipes.culturespa.CultureSPAPipeline` (``<run>/dataset``
with the ``questions``, ``answers``, ``train`` and ``rejections`` tables, and ``<run>/stats.json``)::

    from culture_align.builders import build_corpus

    build_corpus("culturespa_qa", "runs/culturespa-data", "hub/culturespa-qa")
"""

from __future__ import annotations

from culture_align.builders import (
    CHAT_MESSAGE_FIELDS,
    PARAMS_PROVENANCE_FIELDS,
    CorpusCard,
    RunFolderBuilder,
    RunTable,
)
from culture_align.recipes.culturespa.schemas import (
    ANSWER_FEATURES,
    QUESTION_FEATURES,
    REJECTION_FEATURES,
    TRAIN_FEATURES,
)

_DISTRIBUTIONS = {
    "unaware_probs": "The model's answer distribution over `codes` when answering as a person with their own "
                     "values (culture-unaware prompt); null when no sampled answer parsed.",
    "aware_probs": "The model's answer distribution over `codes` when answering as a person of the culture "
                   "(culture-aware prompt); null when no sampled answer parsed.",
    "js_distance": "Jensen-Shannon distance (natural log) between the two distributions; null when one is missing.",
}


class CultureSPAQA(RunFolderBuilder):
    """The CultureSPA corpus of a pipeline run: ``train``, ``questions``, ``answers`` and ``rejections``."""

    RECIPE = "culturespa"
    TABLES = {
        "train": RunTable(TRAIN_FEATURES, (
            "Training conversations (CRQPC pairs): system = the culture-aware prompt, user = a generated question "
            "with its numbered options, assistant = the option number the model chose when prompted with the "
            "culture, kept where it differs from its culture-unaware answer.")),
        "questions": RunTable(QUESTION_FEATURES, (
            "The kept self-instructed survey questions, per WVS topic, with options and answer codes.")),
        "answers": RunTable(ANSWER_FEATURES, (
            "One row per (question, culture): the culture-unaware and culture-aware answer distributions and "
            "answers, and whether the pair counts as a cultural difference.")),
        "rejections": RunTable(REJECTION_FEATURES, (
            "Every generated question or answer a stage dropped, with the reason (invalid JSON, duplicates, "
            "overlap with evaluation items, ...) and the raw text.")),
    }
    CARD = CorpusCard(
        pretty_name="CultureSPA self-generated survey questions and culture-aware answers",
        summary=(
            "Survey-style questions a language model wrote itself, seeded by the World Values Survey topics, and "
            "the same model's answers to them with and without a cultural persona, made with the CultureSPA recipe "
            "(Self-Pluralising Culture Alignment, Xu et al. 2024) as implemented in culture-align. Culture-Related "
            "QA Pairs Collecting (CRQPC) keeps the questions where prompting with a culture changes the model's "
            "answer: those culture-aware answers are the training data (`train`) that teaches the model to "
            "answer as the culture without being told."),
        license="other",
        license_name="generated-data-terms-of-the-generating-model",
        task_categories=("question-answering", "text-generation"),
        tags=("synthetic", "survey", "culture", "values", "culturespa", "world-values-survey"),
        fields={
            "train": {
                "id": "Stable id of the example (hash of its inputs).",
                **CHAT_MESSAGE_FIELDS,
                "task": "Always `survey`.",
                "culture": "ISO3 code of the target culture.",
                "question_id": "Id of the generated question (`questions` config).",
                "topic": "WVS-7 topic id of the question.",
                "answer": "The target answer code: the culture-aware answer.",
                "unaware_answer": "The culture-unaware answer code, for comparison.",
                **_DISTRIBUTIONS,
            },
            "questions": {
                "id": "Stable id, `gen-<topic>-<hash>`.",
                "topic": "WVS-7 topic id the question was generated for.",
                "text": "The question.",
                "options": "Answer option labels, in the order of `codes`.",
                "codes": "Answer codes (1..n, or the scale's own numbers).",
                "example_ids": "Ids of the questions shown as examples in the generating prompt (WVS ids for seeds).",
                "provenance": "How the question was generated.",
                "provenance.stage": "`questions`.",
                "provenance.model": "The generating model.",
                "provenance.round": "The generation round.",
                **PARAMS_PROVENANCE_FIELDS,
            },
            "answers": {
                "id": "Stable id of the (question, culture) row.",
                "question_id": "Id of the question.",
                "topic": "WVS-7 topic id.",
                "culture": "ISO3 code of the culture in the culture-aware prompt.",
                "codes": "The question's answer codes.",
                **_DISTRIBUTIONS,
                "unaware_answer": "Most likely culture-unaware answer code (null when invalid).",
                "aware_answer": "Most likely culture-aware answer code (null when invalid).",
                "changed": "Whether CRQPC counts the pair as a cultural difference (kept for training).",
                "mode": "How answers were obtained: `logprob` (exact distribution) or `sampling`.",
                "variant": "Culture-aware prompt variant: `plain`, `cross_culture` or `self_alignment`.",
                "unaware_invalid": "Unparsable culture-unaware samples (0 in log-prob mode).",
                "aware_invalid": "Unparsable culture-aware samples (0 in log-prob mode).",
            },
            "rejections": {
                "id": "Id of the dropped record.",
                "stage": "Stage that dropped it (e.g. `questions`).",
                "reason": "Short reason (`invalid_json`, `exact_duplicate`, `near_duplicate`, `contaminated`, ...).",
                "topic": "WVS-7 topic id.",
                "culture": "ISO3 code (empty for questions).",
                "text": "The generated text (the raw answer when unparsable).",
                "detail": "JSON text: the error, the nearest kept or evaluation item and its similarity, ...",
            },
        },
        limitations=(
            "- The questions and the answers come from one language model: the 'cultural' answers are what that "
            "model associates with a culture, stereotypes included, not survey data.\n"
            "- Questions are in English and follow the WVS topics; they are filtered for duplicates and overlap "
            "with evaluation items, but their quality is not checked by people.\n"
            "- A culture is a country; variation inside it is not represented.\n"
            "- The generating model's terms of use apply to its outputs."),
    )
