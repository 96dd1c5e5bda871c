"""Cards from template files: ``ModelCard.from_template`` / ``DatasetCard.from_template`` over ``templates/*.md``.

A card is always rendered whole from data (what a trainer recorded, the report); nothing patches a rendered card.
Every card parses back before it is returned (``huggingface_hub`` raises on invalid metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

__all__ = ["LIBRARY_TAG", "TEMPLATES", "render_dataset_card", "render_model_card"]

LIBRARY_TAG = "culture-align"
"""Tag of every card this library writes; a README without it is not ours and gets replaced."""

TEMPLATES = Path(__file__).parent / "templates"
"""The card templates (Jinja2 markdown with the YAML header ``{{ card_data }}``)."""


def render_model_card(data: ModelCardData, template: str = "adapter_card.md", **values: Any) -> ModelCard:
    """The model card of ``templates/<template>`` with ``data`` as its YAML header and ``values`` in its body."""
    card = ModelCard.from_template(data, template_path=str(TEMPLATES / template), **values)
    return ModelCard(str(card).rstrip("\n") + "\n")  # parsed back (raises on invalid metadata); one final newline


def render_dataset_card(data: DatasetCardData, template: str = "dataset_card.md", **values: Any) -> DatasetCard:
    """The dataset card of ``templates/<template>`` with ``data`` as its YAML header and ``values`` in its body."""
    card = DatasetCard.from_template(data, template_path=str(TEMPLATES / template), **values)
    return DatasetCard(str(card).rstrip("\n") + "\n")
