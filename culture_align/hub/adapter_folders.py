"""Cards of saved adapter folders, rendered again from what the folder holds (for :func:`push_adapter`)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from ..cards.model_card import EVALUATION_FILE, RecipeInfo, Report, adapter_model_card, read_json
from ..cards.rendering import LIBRARY_TAG
from .recipes import get_recipe, recipe_registry

__all__ = ["adapter_card_from_folder", "card_recipe", "folder_recipe"]

ISO3 = re.compile(r"^[A-Z]{3}$")


def card_recipe(readme: Path) -> str | None:
    """The recipe of the culture-align card at ``readme`` (its recipe tag); None when there is none or it is not
    ours (e.g. PEFT's generic card)."""
    if not readme.is_file():
        return None
    tags = ModelCard.load(readme).data.get("tags") or []
    registry = recipe_registry()
    return next((t for t in tags if t in registry), None) if LIBRARY_TAG in tags else None


def _training_info(folder: Path) -> dict[str, Any]:
    return read_json(folder / "training_info.json") if (folder / "training_info.json").is_file() else {}


def folder_recipe(folder: str | os.PathLike, recipe: str | None = None) -> RecipeInfo:
    """The recipe of a saved adapter folder: ``recipe`` when given, else the one its ``training_info.json`` records,
    else the one of its culture-align card.

    Raises:
        ValueError: none of them says (e.g. a folder with PEFT's generic card only), or an unknown recipe.
    """
    folder = Path(folder)
    recipe = recipe or str(_training_info(folder).get("recipe") or "").lower() or card_recipe(folder / "README.md")
    if not recipe:
        raise ValueError(f"{folder}: which recipe trained this adapter? Pass recipe= (--recipe): "
                         f"{', '.join(recipe_registry())}")
    return get_recipe(recipe)


def adapter_card_from_folder(
    folder: str | os.PathLike,
    *,
    recipe: str | None = None,
    report: Report | None = None,
    cultures: Sequence[str] | None = None,
    repo_id: str | None = None,
    subfolder: str | None = None,
    datasets_used: Sequence[str] = (),
) -> ModelCard:
    """:func:`adapter_model_card` rendered from a saved adapter folder.

    The base model and the adapter settings come from its ``adapter_config.json``; the recipe, the cultures, the
    training settings and data from the ``training_info.json`` the trainer wrote (every trainer of the library
    writes one), else the recipe from the folder's culture-align card and the culture from a folder named by its
    ISO3 code (``.../CHN``); the evaluation from ``report``, else the one kept in :data:`EVALUATION_FILE`.
    Arguments given here win; ``datasets_used`` adds to the recorded ones."""
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    adapter_config = read_json(config_file)
    info = _training_info(folder)
    recipe_info = folder_recipe(folder, recipe)
    if cultures is None:
        cultures = info.get("cultures") or ([folder.name] if ISO3.match(folder.name) else [])
    training_config = {**info.get("settings", {}), **({"mode": info["mode"]} if info.get("mode") else {}),
                       **({"train_metrics": info["train_metrics"]} if info.get("train_metrics") else {})}
    kept = folder / EVALUATION_FILE
    if report is None and kept.is_file():
        report = read_json(kept)
    return adapter_model_card(recipe=recipe_info, base_model=adapter_config.get("base_model_name_or_path"),
                              cultures=cultures, datasets_used=[*info.get("datasets", []), *datasets_used],
                              training_config=training_config or None, adapter_config=adapter_config, report=report,
                              repo_id=repo_id, subfolder=subfolder)
