"""CultureLLM training: LoRA adapters on augmented WVS seed items, one per culture or one for all ("One").

CultureLLM (Li et al., NeurIPS 2024) fine-tunes on 50 WVS items and their semantic augmentations, labelled per
culture with that culture's answer: system = a chatbot that knows the culture well, user = the item with its
options, assistant = the option number. Culture-specific models are `mode="specific"`, CultureLLM-One is
`mode="joint"`. The data come from `culture_align.recipes.culturellm`; the training is [`CultureAdapterTrainer`]'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer

__all__ = ["CultureLLMConfig", "CultureLLMTrainer"]


@dataclass
class CultureLLMConfig(CultureAdapterConfig):
    r"""
    Configuration class for the [`CultureLLMTrainer`]: [`CultureAdapterConfig`] with CultureLLM's Llama fine-tuning
    hyper-parameters as defaults, without the 4-bit quantisation.

    Parameters:
        mode (`str`, *optional*, defaults to `"specific"`):
            `"specific"` (one adapter per culture, the paper's culture-specific CultureLLMs, saved as
            `<output_dir>/<ISO3>/`) or `"joint"` (one adapter for all cultures: CultureLLM-One).
        culture_column (`str`, *optional*, defaults to `"culture"`):
            Dataset column with each record's culture (ISO3).
        cultures (`list[str]` or `None`, *optional*, defaults to `None`):
            Cultures to train on; `None` for all in the dataset.

    > Parameters whose defaults differ from [`~trl.SFTConfig`] (the reference's values):

        learning_rate (`float`, *optional*, defaults to `2e-4`):
            Initial learning rate of AdamW.
        lr_scheduler_type (`str`, *optional*, defaults to `"constant"`):
            Learning-rate schedule (constant in the reference).
        num_train_epochs (`float`, *optional*, defaults to `6.0`):
            Epochs over each adapter's records.

    LoRA defaults (used when the trainer gets no `peft_config`; `reference_lora`): the reference's `r=64`,
    `lora_alpha=16` (a scaling of 0.25). Its dropout and target modules are not recorded: we use `lora_dropout=0.1`
    (the usual value of QLoRA recipes with these settings) and every linear layer but `lm_head`. The reference
    trained QLoRA on a 4-bit NF4 base; we train LoRA on the unquantised model (pass a `quantization_config` to the
    trainer for QLoRA). The loss is on the answer (assistant) tokens only.
    """

    reference_lora: ClassVar[dict[str, Any]] = {
        "r": 64, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": "all-linear", "bias": "none",
    }

    mode: str = field(
        default="specific",
        metadata={
            "help": "`specific`: one LoRA adapter per culture, saved as `<output_dir>/<ISO3>/`. `joint`: one adapter "
            "for all cultures (CultureLLM-One), saved in `output_dir`.",
            "choices": ["joint", "specific"],
        },
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "Initial learning rate of AdamW."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    num_train_epochs: float = field(default=6.0, metadata={"help": "Epochs over each adapter's records."})


class CultureLLMTrainer(CultureAdapterTrainer):
    """
    Trainer for CultureLLM: [`CultureAdapterTrainer`] with [`CultureLLMConfig`]'s reference defaults;
    `mode="specific"` trains the culture-specific adapters, `mode="joint"` CultureLLM-One.

    Example:

    ```python
    >>> from datasets import load_from_disk
    >>> from culture_align.trainers import CultureLLMConfig, CultureLLMTrainer

    >>> dataset = load_from_disk("runs/culturellm/dataset")["train"]  # messages + culture
    >>> trainer = CultureLLMTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=dataset,
    ...                             args=CultureLLMConfig("culturellm-one", mode="joint"))
    >>> trainer.train(); trainer.save_model()
    ```
    """

    config_class: ClassVar[type[CultureAdapterConfig]] = CultureLLMConfig
    _tag_names = ["trl", "sft", "culturellm", "culture-align"]
    _name = "CultureLLM"
    _paper = {
        "title": "CultureLLM: Incorporating Cultural Differences into Large Language Models",
        "id": "2402.10946",
        "citation": "@inproceedings{li2024culturellm,\n  title     = {CultureLLM: Incorporating Cultural Differences "
        "into Large Language Models},\n  author    = {Cheng Li and Mengzhou Chen and Jindong Wang and Sunayana "
        "Sitaram and Xing Xie},\n  booktitle = {Advances in Neural Information Processing Systems},\n  year      = "
        "{2024}\n}",
    }
