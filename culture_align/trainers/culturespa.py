"""CultureSPA training: LoRA adapters on culture-aware survey answers, joint or one per culture.

CultureSPA (Xu et al., 2024) keeps the (question, culture) pairs where the model's culture-aware answer differs from its
culture-unaware one (CRQPC) and fine-tunes on them: system = the culture-aware survey prompt, user = the question and
its numbered options, assistant = the option number. The recipe's data come from
`culture_align.recipes.culturespa`; the training itself is [`CultureAdapterTrainer`]'s, with the reference
hyper-parameters as defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer

__all__ = ["CultureSPAConfig", "CultureSPATrainer"]


@dataclass
class CultureSPAConfig(CultureAdapterConfig):
    r"""
    Configuration class for the [`CultureSPATrainer`]: [`CultureAdapterConfig`] with the reference hyper-parameters
    of CultureSPA as defaults.

    Parameters:
        mode (`str`, *optional*, defaults to `"joint"`):
            `"joint"` (one adapter for all cultures, the paper's "joint" CultureSPA) or `"specific"` (one adapter per
            culture, saved as `<output_dir>/<ISO3>/`).
        culture_column (`str`, *optional*, defaults to `"culture"`):
            Dataset column with each record's culture (ISO3).
        cultures (`list[str]` or `None`, *optional*, defaults to `None`):
            Cultures to train on; `None` for all in the dataset.

    > Parameters whose defaults differ from [`~trl.SFTConfig`] (the reference's values):

        learning_rate (`float`, *optional*, defaults to `1e-4`):
            Initial learning rate of AdamW.
        lr_scheduler_type (`str`, *optional*, defaults to `"cosine"`):
            Learning-rate schedule.
        warmup_steps (`float`, *optional*, defaults to `0.1`):
            Warm-up: a share of the training steps when below 1 (the reference's warm-up ratio 0.1).
        num_train_epochs (`float`, *optional*, defaults to `1.0`):
            Epochs over each adapter's records.

    LoRA defaults (used when the trainer gets no `peft_config`; `reference_lora`): `r=8`, `lora_alpha=16`,
    `lora_dropout=0.0`, every linear layer but `lm_head` (`target_modules="all-linear"`), no bias. The loss is on the
    answer (assistant) tokens only. The reference's effective batch was 128; with TRL's defaults
    (`per_device_train_batch_size=8`) reproduce it with `gradient_accumulation_steps=16` on one device.
    """

    reference_lora: ClassVar[dict[str, Any]] = {
        "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear", "bias": "none",
    }

    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate of AdamW."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Warm-up steps; a value below 1 is a share of the training steps (0.1: a tenth of them)."},
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over each adapter's records."})


class CultureSPATrainer(CultureAdapterTrainer):
    """
    Trainer for CultureSPA: [`CultureAdapterTrainer`] with [`CultureSPAConfig`]'s reference defaults.

    Example:

    ```python
    >>> from datasets import load_from_disk
    >>> from culture_align.trainers import CultureSPAConfig, CultureSPATrainer

    >>> dataset = load_from_disk("runs/culturespa/dataset")["train"]  # messages + culture
    >>> trainer = CultureSPATrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=dataset,
    ...                             args=CultureSPAConfig("culturespa-specific", mode="specific"))
    >>> trainer.train()  # culturespa-specific/<ISO3>/ for every culture of the dataset
    ```
    """

    config_class: ClassVar[type[CultureAdapterConfig]] = CultureSPAConfig
    _tag_names = ["trl", "sft", "culturespa", "culture-align"]
    _name = "CultureSPA"
    _paper = {
        "title": "Self-Pluralising Culture Alignment for Large Language Models",
        "id": "2410.12971",
        "citation": "@article{xu2024culturespa,\n  title   = {Self-Pluralising Culture Alignment for Large Language "
        "Models},\n  author  = {Shaoyang Xu and Yongqi Leng and Linhao Yu and Deyi Xiong},\n  journal = {arXiv "
        "preprint arXiv:2410.12971},\n  year    = {2024}\n}",
    }
