"""The CultureLLM recipe (Li et al., NeurIPS 2024): WVS seed items labelled per culture with the modal valid
answer, semantic augmentation (structural rewrites, then lexical variants, filtered by embedding similarity
to the seed) and culture-specific training records.

Read :mod:`.pipeline` for the whole run; :mod:`.seeds`, :mod:`.augment` and :mod:`.training_data` for the
steps.
"""

from .augment import (
    AUGMENT_REJECTION_FEATURES,
    AUGMENTED_FEATURES,
    DEFAULT_PARAPHRASE_PARAMS,
    DEFAULT_SYNONYM_PARAMS,
    lexical_variants,
    paraphrase_seeds,
    select_augmented,
)
from .pipeline import CultureLLMPipeline, CultureLLMPipelineConfig
from .seeds import CULTURELLM_SEED_ITEMS, SEED_FEATURES, build_seeds, seed_label_stats, train_item_ids
from .training_data import TRAIN_FEATURES, build_training_set

__all__ = [
    "CultureLLMPipeline",
    "CultureLLMPipelineConfig",
    "CULTURELLM_SEED_ITEMS",
    "SEED_FEATURES",
    "AUGMENTED_FEATURES",
    "AUGMENT_REJECTION_FEATURES",
    "TRAIN_FEATURES",
    "DEFAULT_PARAPHRASE_PARAMS",
    "DEFAULT_SYNONYM_PARAMS",
    "build_seeds",
    "seed_label_stats",
    "train_item_ids",
    "paraphrase_seeds",
    "lexical_variants",
    "select_augmented",
    "build_training_set",
]
