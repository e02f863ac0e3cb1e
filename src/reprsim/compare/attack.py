"""Adversarial transfer between the two compared models, both directions, with intervals.

``attack`` is an attack name (``"mi_fgsm"``, ``"pgd"``, ``"fgsm"``), a dict
``{"name": ..., "eps": ..., "steps": ..., "n": ..., <other attack options>}`` or an
:class:`reprsim.attacks.Attack` built with :func:`reprsim.attacks.make_attack`. Defaults are the
paper's (PAPER.md §7a): MI-FGSM, L∞, ε = 1/255, 3 steps, 500 seeded probe inputs. The inputs are
pixels in [0, 1] (uint8 images are scaled) and both models must return logits (N, classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from reprsim.compare.inputs import Probe
from reprsim.compare.references import ModelRef
from reprsim.errors import ReprsimError

__all__ = ["AttackSpec", "resolve_attack", "run_transfer", "transfer_frame"]

DEFAULTS: dict[str, Any] = {"name": "mi_fgsm", "eps": 1 / 255, "steps": 3, "n": 500}


class AttackSpec:
    """A checked attack request: ``name`` and options, or a ready ``Attack`` object, and ``n``."""

    def __init__(self, name: str, options: dict[str, Any], n: int, attack: Any = None) -> None:
        self.name, self.options, self.n, self.attack = name, options, n, attack

    def describe(self) -> str:
        """e.g. ``mi_fgsm (eps=0.00392, steps=3), 500 inputs``."""
        opts = self.attack.params if self.attack is not None else self.options
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items())
        return f"{self.name} ({shown}), up to {self.n} inputs"


def resolve_attack(attack: Any) -> AttackSpec | None:
    """Check an ``attack=`` argument (see the module docstring); None stays None."""
    from reprsim.attacks import ATTACKS, Attack, make_attack

    if attack is None:
        return None
    if isinstance(attack, Attack):
        return AttackSpec(attack.name, dict(attack.params), DEFAULTS["n"], attack)
    if isinstance(attack, str):
        attack = {"name": attack}
    if not isinstance(attack, Mapping):
        raise ValueError(f"attack must be an attack name ({', '.join(sorted(ATTACKS))}), a dict of options or an "
                         f"Attack from reprsim.attacks.make_attack; got {type(attack).__name__}.")
    opts = dict(attack)
    name = opts.pop("name", DEFAULTS["name"])
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(sorted(ATTACKS))}.")
    n = opts.pop("n", DEFAULTS["n"])
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"attack n (inputs to attack) must be an integer >= 1; got {n!r}.")
    opts.setdefault("eps", DEFAULTS["eps"])
    if name != "fgsm":
        opts.setdefault("steps", DEFAULTS["steps"])
    make_attack(name, **opts)  # checks the options now, before any model runs
    return AttackSpec(name, opts, n)


def _pixels(x: Tensor) -> Tensor:
    if x.dtype == torch.uint8 and x.dim() == 4:
        return x.float() / 255.0
    return x.float() if not x.is_floating_point() or x.dtype == torch.float64 else x


def _check_classifier(ref: ModelRef, x: Tensor, labels: np.ndarray, which: str) -> None:
    ref.module.eval()
    with torch.no_grad():
        out = ref.module(x[:2])
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ReprsimError(f"attack: model {which} ({ref.label}) returns {shape}, not logits (N, classes); transfer "
                           "attacks need two classifiers.")
    if int(labels.max()) >= out.shape[1]:
        raise ReprsimError(f"attack: the labels go up to {int(labels.max())} but model {which} ({ref.label}) has only "
                           f"{out.shape[1]} outputs; the labels must be classes of both models.")


def run_transfer(ref_a: ModelRef, ref_b: ModelRef, probe: Probe, spec: AttackSpec, seed: int,
                 progress: bool | None = None) -> dict[str, float]:
    """Attack A and apply to B, and attack B and apply to A, on a seeded subset of the probe set.

    Returns the :meth:`reprsim.attacks.TransferResult.summary` dict: ``whitebox_asr`` (A fooled by
    its own examples), ``transfer_asr`` (B fooled by A's), ``transfer_asr_conditional``, the clean
    errors, each with ``_low``/``_high`` (Wilson 95%), and the same with suffix ``_ba`` for B → A.
    """
    from reprsim.attacks import make_attack
    from reprsim.attacks.transfer import probe_subset, random_targets, transfer

    if probe.is_text or probe.data is None:
        raise ReprsimError("attack: adversarial transfer needs pixel inputs (images or vectors), not texts.")
    if probe.labels is None:
        raise ReprsimError("attack: pass labels=(N,) class ids (or inputs from a data source, which carry labels).")
    x = _pixels(probe.data)
    if not x.is_floating_point():
        raise ReprsimError(f"attack: the inputs are {x.dtype}; attacks perturb pixel values, not token ids.")
    for ref, which in ((ref_a, "A"), (ref_b, "B")):
        _check_classifier(ref, x, probe.labels, which)
    idx = probe_subset(int(x.shape[0]), spec.n, seed)
    xs, ys = x[torch.as_tensor(idx)], torch.as_tensor(probe.labels[idx])
    if spec.attack is not None:
        atk = spec.attack
    else:
        opts = dict(spec.options)
        if spec.name == "pgd":
            opts.setdefault("seed", seed)
        atk = make_attack(spec.name, **opts)
    targets = None
    if getattr(atk, "targeted", False):
        with torch.no_grad():
            k = int(ref_a.module(xs[:1]).shape[1])
        targets = random_targets(ys, k, seed)
    result = transfer(ref_a.module, ref_b.module, xs, ys, atk, targets=targets, both_directions=True,
                      progress=bool(progress))
    return result.summary()


_COUNTS = ("attack_n", "n_probe", "n_both_correct")


def transfer_frame(summary: Mapping[str, float]) -> pd.DataFrame:
    """The summary as a tidy table: one row per (direction, quantity) with ``value``, ``ci_low``,
    ``ci_high`` and ``n`` (inputs attacked). Directions: ``A→B`` (crafted on A, tried on B) and ``B→A``."""
    n = summary.get("attack_n", summary.get("n_probe", float("nan")))
    rows = []
    for key, value in summary.items():
        if key in _COUNTS or key.endswith(("_low", "_high")) or key.endswith(("_low_ba", "_high_ba")):
            continue
        reverse = key.endswith("_ba")
        base = key[:-3] if reverse else key
        rows.append({"direction": "B→A" if reverse else "A→B", "source": "B" if reverse else "A",
                     "victim": "A" if reverse else "B", "quantity": base, "value": float(value),
                     "ci_low": float(summary.get(f"{base}_low{'_ba' if reverse else ''}", float("nan"))),
                     "ci_high": float(summary.get(f"{base}_high{'_ba' if reverse else ''}", float("nan"))),
                     "n": float(n)})
    frame = pd.DataFrame(rows, columns=["direction", "source", "victim", "quantity", "value", "ci_low", "ci_high", "n"])
    return frame.sort_values(["direction", "quantity"], kind="stable").reset_index(drop=True)
