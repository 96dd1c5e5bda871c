"""CultureLLM corpus: WVS seed items with each culture's answer, their semantically augmented rewrites, the
training conversations made from both, and everything the augmentation dropped.

Built from a run folder of :class:`culture_align.recipes.culturellm.CultureLLMPipeline` (``<run>/dataset`` with
the ``seeds``, ``augmented``, ``train`` and ``rejections`` tables, and ``<run>/stats.json``)::

    from culture_align.builders import build_corpus

    build_corpus("culturellm_augmented", "runs/culturellm-data", "hub/culturellm-augmented")
"""

from __future__ import annotations

from culture_align.builders import (
    CHAT_MESSAGE_FIELDS,
    PARAMS_PROVENANCE_FIELDS,
    CorpusCard,
    RunFolderBuilder,
    RunTable,
)
from culture_align.recipes.culturellm.augment import AUGMENT_REJECTION_FEATURES, AUGMENTED_FEATURES
from culture_align.recipes.culturellm.seeds import SEED_FEATURES
from culture_align.recipes.culturellm.training_data import TRAIN_FEATURES


class CultureLLMAugmented(RunFolderBuilder):
    """The CultureLLM corpus of a pipeline run: ``train``, ``seeds``, ``augmented`` and ``rejections``."""

    RECIPE = "culturellm"
    TABLES = {
        "train": RunTable(TRAIN_FEATURES, (
            "Training conversations: a seed item or one of its rewrites with the item's options, answered with "
            "the culture's modal answer code from the WVS.")),
        "seeds": RunTable(SEED_FEATURES, (
            "The WVS seed items, with every culture's answer distribution and modal answer.")),
        "augmented": RunTable(AUGMENTED_FEATURES, (
            "The kept augmented samples: paraphrases of the seeds by a teacher model and lexical variants with "
            "synonyms, each close in meaning to its seed (cosine similarity of sentence embeddings).")),
        "rejections": RunTable(AUGMENT_REJECTION_FEATURES, (
            "Every rewrite or variant that was dropped (malformed answers, too dissimilar to the seed, not "
            "selected), with the reason.")),
    }
    CARD = CorpusCard(
        pretty_name="CultureLLM semantically augmented WVS training data",
        summary=(
            "World Values Survey items with each culture's answer, augmented by semantic data augmentation as in "
            "CultureLLM (Li et al., NeurIPS 2024) and implemented in culture-align: a teacher model paraphrases "
            "each seed item, words are swapped for synonyms, and only variants that stay close in meaning to the "
            "seed (sentence-embedding cosine similarity) are kept. Each seed and variant is paired with a "
            "culture's modal WVS answer as a training conversation (`train`)."),
        license="other",
        license_name="wvs-conditions-of-use-and-teacher-model-terms",
        license_link="https://www.worldvaluessurvey.org/",
        task_categories=("question-answering", "text-generation"),
        tags=("synthetic", "survey", "culture", "values", "culturellm", "world-values-survey"),
        source_and_terms=(
            "The seed items, the answer distributions and the training targets come from the World Values Survey "
            "(<https://www.worldvaluessurvey.org>), which the person who built this dataset supplied from their own "
            "copy; culture-align ships no WVS data. The WVS conditions of use govern tables derived from it: read "
            "them before publishing, and publish privately unless you are allowed to do otherwise."),
        fields={
            "train": {
                "id": "Stable id of the example (hash of its inputs).",
                **CHAT_MESSAGE_FIELDS,
                "culture": "ISO3 code of the culture whose answer is the target.",
                "task": "Always `survey`.",
                "seed_id": "The WVS item id.",
                "text_id": "The seed's id, or the augmented sample's id (`augmented` config).",
                "source": "`seed`, `paraphrase` or `lexical`.",
                "answer": "The target answer code (the culture's modal valid answer).",
            },
            "seeds": {
                "id": "The WVS item id.",
                "text": "The item's question.",
                "options": "Answer option labels, in the order of `codes`.",
                "codes": "The item's answer codes.",
                "topic": "WVS-7 topic id.",
                "prompt": "The rendered user turn: question, numbered options, the instruction.",
                "targets": "One entry per culture with data.",
                "targets.culture": "ISO3 code.",
                "targets.code": "The culture's modal valid answer code.",
                "targets.distribution": "The culture's answer distribution over `codes` (sums to 1).",
                "targets.n": "Number of valid answers; -1 when unknown.",
                "unlabelled_cultures": "Cultures without data for the item.",
            },
            "augmented": {
                "id": "Stable id of the sample.",
                "seed_id": "The WVS item it rewrites.",
                "step": "`paraphrase` (teacher rewrite) or `lexical` (synonym substitution).",
                "text": "The rewritten question.",
                "similarity": "Cosine similarity of its sentence embedding to the seed's.",
                "source_id": "The text it was made from (the seed, or a rewrite for a lexical variant).",
                "substitutions": "The word swaps of a lexical variant.",
                "substitutions.word": "The original word.",
                "substitutions.synonym": "Its replacement.",
                "provenance": "How the sample was made.",
                "provenance.teacher": "The teacher model.",
                "provenance.round": "The retry round a rewrite was kept in (None for a lexical variant).",
                **PARAMS_PROVENANCE_FIELDS,
            },
            "rejections": {
                "id": "Id of the dropped text.",
                "seed_id": "The WVS item it was made from.",
                "step": "`paraphrase`, `lexical` or `select`.",
                "text": "The text (the raw answer when malformed).",
                "similarity": "Similarity to the seed (null when not embedded).",
                "reason": "Short reason (e.g. `malformed`, `too_dissimilar`).",
                "detail": "JSON text: the error or the scores.",
            },
        },
        limitations=(
            "- Each culture is reduced to its modal answer per item: the spread of opinion inside a country is "
            "lost in `train` (the full distributions are in `seeds`).\n"
            "- Rewrites are made by a teacher model and filtered automatically; some may shift the meaning of the "
            "item, which changes what the answer means.\n"
            "- The data is in English and limited to the WVS items used as seeds.\n"
            "- The WVS conditions of use and the teacher model's terms apply."),
    )
