"""Trainers on TRL's SFT: a `Config` + `Trainer` pair per recipe."""

from .clca import CLCAConfig, CLCATrainer
from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer
from .culturellm import CultureLLMConfig, CultureLLMTrainer
from .culturespa import CultureSPAConfig, CultureSPATrainer

__all__ = [
    "CLCAConfig",
    "CLCATrainer",
    "CultureAdapterConfig",
    "CultureAdapterTrainer",
    "CultureLLMConfig",
    "CultureLLMTrainer",
    "CultureSPAConfig",
    "CultureSPATrainer",
]
