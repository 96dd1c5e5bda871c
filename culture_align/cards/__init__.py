"""Dataset and model cards, rendered whole from data with the template files in ``templates/``
(``DatasetCard.from_template`` / ``ModelCard.from_template``).

The layer below the trainers and the corpus builders, which write their cards with it; :mod:`culture_align.hub` (the
recipe registry, the cards of saved folders, uploads) sits above them.
"""

from .dataset_card import corpus_card, size_category
from .model_card import (
    EVALUATION_FILE,
    RecipeInfo,
    adapter_model_card,
    eval_results_from_report,
    recipe_key,
    training_summary,
    write_trainer_model_card,
)
from .rendering import LIBRARY_TAG, TEMPLATES

__all__ = ["EVALUATION_FILE", "LIBRARY_TAG", "TEMPLATES", "RecipeInfo", "adapter_model_card", "corpus_card",
           "eval_results_from_report", "recipe_key", "size_category", "training_summary", "write_trainer_model_card"]
