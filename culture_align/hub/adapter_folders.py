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
    """The recipe of a saved adapter folder: ``recipe`` when given, else the one its ``training_info.json`` records
    (the registry's, or, for a trainer subclass not imported here, the name and paper it recorded), else the one of
    its culture-align card.

    Raises:
        ValueError: none of them says (e.g. a folder with PEFT's generic card only), or an unknown recipe.
    """
    folder = Path(folder)
    info = _training_info(folder)
    recorded = str(info.get("recipe") or "")
    if recipe is None and recorded and recorded.lower() not in recipe_registry():
        paper = info.get("paper") if isinstance(info.get("paper"), dict) else {}
        if paper.get("title") and paper.get("citation"):
            return RecipeInfo(key=recorded.lower(), name=recorded, paper_title=paper["title"],
                              arxiv_id=str(paper.get("id") or ""), citation=paper["citation"])
    recipe = recipe or recorded.lower() or card_recipe(folder / "README.md")
    if not recipe:
        raise ValueError(f"{folder}: which recipe trained this adapter? Pass recipe= (--recipe): "
                         f"{', '.join(recipe_registry())}")
    return get_recipe(recipe)


_LOCAL_SETTINGS = ("base_model", "peft_config")
"""Keys of an adapter's reuse fingerprint (``training_info.json`` ``settings``) that hold local paths: never in a card."""


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

    The base model and the adapter settings come from its ``adapter_config.json``; the recipe, the cultures and the
    training settings from the ``training_info.json`` the trainer wrote (every trainer of the library writes one),
    else the recipe from the folder's culture-align card and the culture from a folder named by its ISO3 code
    (``.../CHN``); the evaluation from ``report``, else the one kept in :data:`EVALUATION_FILE`; the training data,
    extra tags and model name from the folder's culture-align card (its metadata), where a trainer or an earlier push
    put them. Arguments given here win; ``datasets_used`` adds to the recorded ones."""
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    adapter_config = read_json(config_file)
    info = _training_info(folder)
    recipe_info = folder_recipe(folder, recipe)
    if cultures is None:
        cultures = info.get("cultures") or ([folder.name] if ISO3.match(folder.name) else [])
    recorded = info.get("training") or {k: v for k, v in info.get("settings", {}).items() if k not in _LOCAL_SETTINGS}
    training_config = {**recorded, **({"mode": info["mode"]} if info.get("mode") else {}),
                       **({"train_metrics": info["train_metrics"]} if info.get("train_metrics") else {})}
    kept = folder / EVALUATION_FILE
    if report is None and kept.is_file():
        report = read_json(kept)
    # what only the card holds (given to the trainer's create_model_card or to an earlier push): kept
    card = ModelCard.load(folder / "README.md") if card_recipe(folder / "README.md") else None
    earlier = card.data if card is not None else None
    return adapter_model_card(recipe=recipe_info, base_model=adapter_config.get("base_model_name_or_path"),
                              cultures=cultures, datasets_used=[*(getattr(earlier, "datasets", None) or []),
                                                                *datasets_used],
                              training_config=training_config or None, adapter_config=adapter_config, report=report,
                              repo_id=repo_id, subfolder=subfolder,
                              model_name=getattr(earlier, "model_name", None) if subfolder is None else None,
                              tags=[t for t in (getattr(earlier, "tags", None) or [])])
