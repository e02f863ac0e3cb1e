"""Training internals; the public entry points are re-exported by :mod:`reprsim.train`."""

from reprsim.training.config import TrainConfig
from reprsim.training.data import MaskedTokens
from reprsim.training.loop import train
from reprsim.training.parts import TrainResult, evaluate, evaluate_lm

__all__ = ["MaskedTokens", "TrainConfig", "TrainResult", "evaluate", "evaluate_lm", "train"]
