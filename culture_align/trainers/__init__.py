"""Trainers on TRL's SFT: a `Config` + `Trainer` pair per recipe."""

from .answer_distribution import AnswerDistributionConfig, AnswerDistributionTrainer
from .clca import CLCAConfig, CLCATrainer
from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer
from .culturellm import CultureLLMConfig, CultureLLMTrainer
from .culturespa import CultureSPAConfig, CultureSPATrainer

__all__ = [
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
]
