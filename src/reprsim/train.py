"""Training for classifiers and language models: ``train(model, dataset, config, seed)``.

The public face of :mod:`reprsim.training` (one list of names, kept there). See :class:`TrainConfig`
for the options and :func:`train` for datasets, checkpoints and resume.
"""

from reprsim.training import *  # noqa: F403 - re-exports exactly reprsim.training.__all__
from reprsim.training import __all__  # noqa: F401
