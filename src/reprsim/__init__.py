"""reprsim: causal experiments on representational similarity.

Stages (each usable alone): :mod:`reprsim.data` (sources and controlled-overlap splits),
:mod:`reprsim.models` / :mod:`reprsim.train` / :mod:`reprsim.features` (models, training,
representation extraction), :mod:`reprsim.metrics` (similarity measures), :mod:`reprsim.attacks`
(consequences), :mod:`reprsim.experiments` (sweeps) and :mod:`reprsim.analysis` (statistics, report).
:func:`compare_models` compares two models you already have, :func:`compare_features` their saved
features (see :mod:`reprsim.compare`).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # compare_models is imported on first use, so that `import reprsim` stays light
    if name in ("compare_models", "compare_features", "Comparison"):
        from reprsim import compare

        return getattr(compare, name)
    raise AttributeError(f"module 'reprsim' has no attribute {name!r}")
