"""Publishing on the Hub: the recipe registry, the cards of saved folders, uploads.

- :mod:`.recipes`: :func:`recipe_registry`, derived from the trainers' ``_name`` and ``_paper`` (TRL's attributes),
  and :func:`get_recipe`.
- :mod:`.adapter_folders`: :func:`adapter_card_from_folder`, the card of a saved adapter folder rendered from what it
  holds.
- :mod:`.upload`: :func:`push_dataset`, :func:`push_adapter` and :func:`push_metric`, each one
  ``HfApi.upload_folder`` call.

The cards themselves are rendered by :mod:`culture_align.cards` (re-exported here), the layer the trainers and
builders use: nothing below this package imports it.
"""

from ..cards import (
    EVALUATION_FILE,
    LIBRARY_TAG,
    RecipeInfo,
    adapter_model_card,
    corpus_card,
    eval_results_from_report,
    training_summary,
    write_trainer_model_card,
)
from .adapter_folders import adapter_card_from_folder, folder_recipe
from .recipes import get_recipe, recipe_registry
from .upload import push_adapter, push_dataset, push_metric, upload_files

__all__ = [
    "EVALUATION_FILE",
    "LIBRARY_TAG",
    "RecipeInfo",
    "adapter_card_from_folder",
    "adapter_model_card",
    "corpus_card",
    "eval_results_from_report",
    "folder_recipe",
    "get_recipe",
    "push_adapter",
    "push_dataset",
    "push_metric",
    "recipe_registry",
    "training_summary",
    "upload_files",
    "write_trainer_model_card",
]
