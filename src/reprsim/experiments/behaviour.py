"""The behavioural stage of a unit: how alike the two classifiers' *outputs* are on each probe set.

With ``measures.behavioural`` set (``all`` or a list of :data:`reprsim.metrics.behavioural.BEHAVIOURAL`
names), a unit whose family outputs class scores (``ModelFamily.class_outputs``) and whose split
gives both models classes of one label space (data, task and combined splits; not attribute tasks,
whose outputs answer different questions) gets rows on the layer ``output``: both models' softmax
on the probe inputs, placed in the union of their class ids (a class a model never trained on has
probability 0), compared by :func:`reprsim.metrics.behaviour_rows.behaviour_rows`.

The measures that need labels (error consistency, CAPA) are computed only on probe sets whose every
input is of a class *both* models train on (every in-distribution set of a data split; ``common`` /
``common_fixed`` of a task split where the classes are shared). Elsewhere a model cannot be right on
some inputs by construction, and counting "both wrong" there as agreement would make error
consistency move with the class composition rather than with the models. The other measures
(agreement, Cohen's κ, Jensen–Shannon divergence) are computed on every probe set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprsim.metrics.behaviour_rows import behaviour_rows, shared_space_probs
from reprsim.metrics.behavioural import NEEDS_LABELS

if TYPE_CHECKING:
    from reprsim.experiments.composition import Composition
    from reprsim.experiments.config import MeasureSpec
    from reprsim.experiments.worlds.base import ProbeSet, Trained, TrainingPair

#: inputs per forward pass when reading a model's logits
BATCH = 512


def label_spaces(kind: Composition, pair: TrainingPair) -> dict[str, np.ndarray] | None:
    """``{"a": class ids, "b": class ids}`` of each model's logit columns (in training-id order), or
    None where the unit has no shared label space to compare outputs in."""
    split = getattr(pair, "split", None)
    if not getattr(kind.family, "class_outputs", False) or split is None or split.kind == "attribute":
        return None
    return {"a": np.asarray(split.a_classes, dtype=np.int64), "b": np.asarray(split.b_classes, dtype=np.int64)}


@torch.no_grad()
def logits(model: torch.nn.Module, inputs: Any) -> np.ndarray:
    """(n, C) float64 logits of ``model`` (in eval mode, on its device) for ``inputs``, in batches."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(inputs))
    out = [model(x[i : i + BATCH].to(device)).double().cpu() for i in range(0, len(x), BATCH)]
    return torch.cat(out).numpy()


def behaviour_stage_rows(
    spec: MeasureSpec,
    kind: Composition,
    pair: TrainingPair,
    trained: dict[str, Trained],
    probes: list[ProbeSet],
    seed: int,
) -> list[dict[str, Any]]:
    """The unit's ``output`` rows, tagged like the similarity rows (probe set, role, size, classes);
    [] when ``measures.behavioural`` is off or the unit has no shared label space."""
    names = spec.resolved_behavioural()
    classes = label_spaces(kind, pair) if names else None
    if classes is None:
        return []
    rows = []
    for probe in probes:
        if len(probe) == 0:
            continue
        labels = getattr(probe, "labels", None)
        if labels is not None and not (np.isin(labels, classes["a"]).all() and np.isin(labels, classes["b"]).all()):
            labels = None  # some inputs are of a class one model never learnt (see the module docstring)
        pa, pb, y, _ = shared_space_probs(
            logits(trained["a"].model, probe.inputs),
            classes["a"],
            logits(trained["b"].model, probe.inputs),
            classes["b"],
            labels=labels,
        )
        wanted = [m for m in names if y is not None or m not in NEEDS_LABELS]
        tags = {
            "n_probe_classes": probe.n_classes,
            "probe_set": probe.name,
            "probe_role": probe.role,
            "n_probe": len(probe),
            "prepare": "softmax",
        }
        rows += [tags | row for row in behaviour_rows(pa, pb, y, seed=seed, measures=wanted)]
    return rows
