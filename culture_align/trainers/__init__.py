"""Trainers on TRL's SFT: a `Config` + `Trainer` pair per recipe."""

from .answer_distribution import AnswerDistributionConfig, AnswerDistributionTrainer
from .clca import CLCAConfig, CLCATrainer
from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer
from .culturellm import CultureLLMConfig, CultureLLMTrainer
from .culturespa import CultureSPAConfig, CultureSPATrainer
from .distributed import end_distributed_run

#: The culture-adapter trainers by recipe name: ``(Config class, Trainer class)``. One table for the CLI and the
#: experiment runner.
ADAPTER_TRAINERS: dict[str, tuple[type, type]] = {
    "culturespa": (CultureSPAConfig, CultureSPATrainer),
    "culturellm": (CultureLLMConfig, CultureLLMTrainer),
    "answer_distribution": (AnswerDistributionConfig, AnswerDistributionTrainer),
}

__all__ = [
    "ADAPTER_TRAINERS",
    "AnswerDistributionConfig",
    "AnswerDistributionTrainer",
    "CLCAConfig",
    "CLCATrainer",
    "CultureAdapterConfig",
    "CultureAdapterTrainer",
    "CultureLLMConfig",
    "CultureLLMTrainer",
    "CultureSPAConfig",
    "CultureSPATrainer",
    "end_distributed_run",
]
