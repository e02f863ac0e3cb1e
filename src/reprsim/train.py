"""Training for classifiers and language models: ``train(model, dataset, config, seed)``.

See :class:`TrainConfig` for the options and :func:`train` for datasets, checkpoints and resume.
"""

from reprsim.training.config import TrainConfig
from reprsim.training.data import MaskedTokens
from reprsim.training.loop import train
from reprsim.training.parts import TrainResult, evaluate, evaluate_lm

__all__ = ["MaskedTokens", "TrainConfig", "TrainResult", "evaluate", "evaluate_lm", "train"]
