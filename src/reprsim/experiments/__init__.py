"""Sweeps: config → grid of units → executors → resumable run folder → results table."""

from reprsim.experiments.config import ExperimentConfig, parse_config
from reprsim.experiments.overrides import load_config
from reprsim.experiments.grid import Unit, expand
from reprsim.experiments.runner import plan, run_experiment
from reprsim.results import load_results

__all__ = [
    "ExperimentConfig",
    "Unit",
    "expand",
    "load_config",
    "load_results",
    "parse_config",
    "plan",
    "run_experiment",
]
