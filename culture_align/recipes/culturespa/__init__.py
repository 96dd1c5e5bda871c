"""CultureSPA data pipeline (Xu et al., arXiv 2410.12971): the model writes new survey questions per WVS
topic, answers them culture-unaware and culture-aware, and the pairs where its culture-aware answer differs
(CRQPC) become training conversations.

Stages (each a function over ``datasets.Dataset``, usable alone), and the pipeline that chains them with
resumable caches:

=====================  ======================================  ==========================================
stage                  function                                output
=====================  ======================================  ==========================================
seed items by topic    :func:`seed_questions_by_topic`         ``{topic: [SurveyQuestion]}``
question generation    :func:`generate_questions`              ``QUESTION_FEATURES`` + rejections
answering              :func:`answer_questions`                ``ANSWER_FEATURES``
CRQPC + training set   :func:`collect_pairs`                   ``ANSWER_FEATURES`` (changed), ``TRAIN_FEATURES``
all of the above       :class:`CultureSPAPipeline`             ``DatasetDict``: questions, answers, train,
                                                               rejections
=====================  ======================================  ==========================================
"""

from .answering import (
    DEFAULT_ANSWER_SAMPLING,
    AnswerCache,
    SurveyAnswerer,
    answer_questions,
    self_alignment_examples,
)
from .crqpc import CRQPCResult, collect_pairs, is_changed, training_messages
from .pipeline import PAPER_CULTURES, CultureSPAPipeline, CultureSPAPipelineConfig
from .questions import (
    DEFAULT_QUESTION_PARAMS,
    TOPIC_NAMES,
    QuestionRejected,
    generate_questions,
    generated_question_id,
    normalise_options,
    parse_generated_question,
    question_key,
    seed_questions_by_topic,
)
from .schemas import (
    ANSWER_FEATURES,
    QUESTION_FEATURES,
    REJECTION_FEATURES,
    TRAIN_FEATURES,
    GeneratedQuestion,
    survey_question,
)
from .similarity import culture_similarity, load_culture_similarity, most_and_least_similar

__all__ = [
    "CultureSPAPipeline",
    "CultureSPAPipelineConfig",
    "PAPER_CULTURES",
    "seed_questions_by_topic",
    "generate_questions",
    "parse_generated_question",
    "normalise_options",
    "question_key",
    "generated_question_id",
    "QuestionRejected",
    "TOPIC_NAMES",
    "DEFAULT_QUESTION_PARAMS",
    "SurveyAnswerer",
    "AnswerCache",
    "answer_questions",
    "self_alignment_examples",
    "DEFAULT_ANSWER_SAMPLING",
    "collect_pairs",
    "is_changed",
    "training_messages",
    "CRQPCResult",
    "culture_similarity",
    "load_culture_similarity",
    "most_and_least_similar",
    "GeneratedQuestion",
    "survey_question",
    "QUESTION_FEATURES",
    "ANSWER_FEATURES",
    "TRAIN_FEATURES",
    "REJECTION_FEATURES",
]
