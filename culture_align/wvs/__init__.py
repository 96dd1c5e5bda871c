"""Survey data: questions and topics, per-culture answer distributions, personas, and their loaders."""

from .data import WVSData
from .loaders import (
    HUB_PREFIX,
    bundled_questions,
    hub_dataset_id,
    load_distributions,
    load_global_opinions,
    load_questions,
    load_wvs,
    load_wvs_csv,
    persona_features,
)
from .personas import (
    BORN_IN_COUNTRY,
    DEMOGRAPHIC_CODES,
    DEMOGRAPHIC_COLUMNS,
    EDUCATION,
    EMPLOYMENT,
    MARITAL_STATUS,
    PERSONA_FIELDS,
    PROFESSION,
    SEX,
    SOCIAL_CLASS,
    decode_demographic,
    describe_persona,
    persona_rng,
    sample_personas,
)
from .questions import (
    EXCLUDED_QIDS,
    MAX_CODE,
    TOPICS,
    ZERO_BASED_QIDS,
    SurveyQuestion,
    Topic,
    answer_code,
    is_evaluation_item,
    qid_number,
    topic_of,
    wvs_codes_for,
)

__all__ = [
    # questions
    "SurveyQuestion", "Topic", "TOPICS", "topic_of", "qid_number", "ZERO_BASED_QIDS", "EXCLUDED_QIDS",
    "is_evaluation_item", "wvs_codes_for", "answer_code", "MAX_CODE",
    # data
    "WVSData",
    # loaders
    "load_questions", "load_distributions", "load_wvs_csv", "load_global_opinions", "load_wvs",
    "bundled_questions", "persona_features", "HUB_PREFIX", "hub_dataset_id",
    # personas
    "PERSONA_FIELDS", "DEMOGRAPHIC_COLUMNS", "DEMOGRAPHIC_CODES", "SEX", "BORN_IN_COUNTRY", "MARITAL_STATUS",
    "EDUCATION", "EMPLOYMENT", "PROFESSION", "SOCIAL_CLASS", "decode_demographic", "describe_persona",
    "sample_personas", "persona_rng",
]
