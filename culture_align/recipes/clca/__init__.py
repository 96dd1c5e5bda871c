"""CLCA data pipeline (Liu, Korhonen, Gurevych, arXiv 2504.02953): role-played dialogues in a target culture,
judged and annotated with intents, turned into training conversations.

Stages (each a function over ``datasets.Dataset``, usable alone), and the pipeline that chains them with a
resumable completion cache:

=====================  ===================================  ==========================================================
stage                  function                             output
=====================  ===================================  ==========================================================
seed scenarios         :func:`load_seed_scenarios`          ``SEED_FEATURES``
scenario adaptation    :func:`adapt_scenarios`              ``SCENARIO_FEATURES`` + rejections
role-play              :func:`run_roleplay`                 ``dialogue_features(judged=False, annotated=False)`` + rej.
judge + drop rule      :func:`judge_dialogues`              ``dialogue_features(annotated=False)``: + ``judge`` + rej.
intents                :func:`annotate_intents`             ``DIALOGUE_FEATURES``: + each turn's ``intent`` + rej.
training conversations :func:`build_training_set`           ``TRAIN_FEATURES``
all of the above       :class:`CLCAPipeline`                ``DatasetDict``: dialogues, train, rejections
=====================  ===================================  ==========================================================

Each stage adds its own columns and its key of the ``provenance`` struct (:mod:`culture_align.recipes.provenance`);
none leaves a placeholder for a later one.
"""

from .intents import DEFAULT_INTENT_PARAMS, annotate_intents
from .judge import DEFAULT_JUDGE_PARAMS, DropRule, judge_dialogues
from .pipeline import PAPER_CULTURES, CLCAPipeline, CLCAPipelineConfig
from .roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay, strip_impersonation
from .scenarios import DEFAULT_SCENARIO_PARAMS, adapt_scenarios, load_seed_scenarios
from .schemas import (
    DIALOGUE_FEATURES,
    REJECTION_FEATURES,
    SCENARIO_FEATURES,
    SEED_FEATURES,
    TRAIN_FEATURES,
    AdaptedScenario,
    AlignmentVerdict,
    IntentAnnotation,
    MetaVerdict,
    QualityVerdict,
    SeedScenario,
    StageResult,
    TurnReply,
    dialogue_features,
    generate_validated,
    parse_reply,
    stable_id,
)
from .training_data import build_training_set, dialogue_conversation, intent_conversation

__all__ = [
    "CLCAPipeline",
    "CLCAPipelineConfig",
    "PAPER_CULTURES",
    "DropRule",
    "StageResult",
    "load_seed_scenarios",
    "adapt_scenarios",
    "run_roleplay",
    "strip_impersonation",
    "judge_dialogues",
    "annotate_intents",
    "build_training_set",
    "dialogue_conversation",
    "intent_conversation",
    "generate_validated",
    "parse_reply",
    "stable_id",
    "SeedScenario",
    "AdaptedScenario",
    "TurnReply",
    "QualityVerdict",
    "AlignmentVerdict",
    "MetaVerdict",
    "IntentAnnotation",
    "SEED_FEATURES",
    "SCENARIO_FEATURES",
    "DIALOGUE_FEATURES",
    "dialogue_features",
    "REJECTION_FEATURES",
    "TRAIN_FEATURES",
    "DEFAULT_SCENARIO_PARAMS",
    "DEFAULT_ROLEPLAY_PARAMS",
    "DEFAULT_JUDGE_PARAMS",
    "DEFAULT_INTENT_PARAMS",
]
