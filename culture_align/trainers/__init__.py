"""Trainers on TRL's SFT: a `Config` + `Trainer` pair per recipe."""

from .clca import CLCAConfig, CLCATrainer

__all__ = ["CLCAConfig", "CLCATrainer"]
