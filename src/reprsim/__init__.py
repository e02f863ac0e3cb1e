"""reprsim: causal experiments on representational similarity.

Stages (each usable alone): :mod:`reprsim.data` (sources and controlled-overlap splits),
:mod:`reprsim.models` / :mod:`reprsim.train` / :mod:`reprsim.features` (models, training,
representation extraction), :mod:`reprsim.metrics` (similarity measures), :mod:`reprsim.attacks`
(consequences), :mod:`reprsim.experiments` (sweeps) and :mod:`reprsim.analysis` (statistics, report).
"""

__version__ = "0.1.0"
