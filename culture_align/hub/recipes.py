"""The recipe registry: what a card cites, derived from the trainers.

Each trainer declares its recipe the TRL way: ``_name`` (``"CLCA"``) and ``_paper`` (``{"title", "id", "citation"}``,
the attribute TRL's own cards read). The registry is those classes and every subclass of them that is imported, by
``_name`` lower-cased (the recipe's tag and command-line name: ``clca``, ``culturespa``, ``culturellm``,
``answer_distribution``); so a user's subclass with its own ``_name`` gets a card citing its ``_paper`` (or its
parent's). Nothing else holds a citation: the corpus cards read theirs from here too.
"""

from __future__ import annotations

from ..cards.model_card import RecipeInfo, recipe_key

__all__ = ["get_recipe", "recipe_registry"]


def _subclasses(roots: tuple[type, ...]) -> list[type]:
    """``roots`` and all their imported subclasses, parents before children, each once."""
    seen: list[type] = []
    stack = list(roots)
    while stack:
        cls = stack.pop(0)
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen


def recipe_registry() -> dict[str, RecipeInfo]:
    """``{key: RecipeInfo}`` of the library's trainers and every imported subclass that declares a paper, by key (the
    first class of a ``_name`` wins: a subclass that keeps its parent's ``_name`` is its parent's recipe)."""
    from ..trainers import CLCATrainer, CultureAdapterTrainer

    registry: dict[str, RecipeInfo] = {}
    for cls in _subclasses((CLCATrainer, CultureAdapterTrainer)):
        if (getattr(cls, "_paper", None) or {}).get("citation") and recipe_key(cls) not in registry:
            registry[recipe_key(cls)] = RecipeInfo.from_trainer(cls)
    return dict(sorted(registry.items()))


def get_recipe(key: str) -> RecipeInfo:
    """The registry's recipe ``key`` (case-insensitive).

    Raises:
        ValueError: an unknown recipe, naming the known ones.
    """
    registry = recipe_registry()
    found = registry.get(str(key).lower())
    if found is None:
        raise ValueError(f"unknown recipe {key!r}; choose one of {', '.join(registry)}")
    return found
