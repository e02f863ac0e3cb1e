"""Adversarial transfer between the two compared models, both directions, with intervals.

``attack`` is an attack name (``"mi_fgsm"``, ``"pgd"``, ``"fgsm"``), a dict
``{"name": ..., "eps": ..., "steps": ..., "n": ..., <other attack options>}`` or an
:class:`reprsim.attacks.Attack` built with :func:`reprsim.attacks.make_attack`. Defaults are the
paper's (PAPER.md §7a): MI-FGSM, L∞, ε = 1/255, 3 steps, 500 seeded probe inputs. The inputs are
pixels in [0, 1] (uint8 images are scaled) and both models must return logits (N, classes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from reprsim.compare.inputs import Probe
from reprsim.compare.references import ModelRef
from reprsim.errors import ReprsimError

__all__ = ["AttackSpec", "SelectLogits", "resolve_attack", "resolve_label_map", "run_transfer", "transfer_frame"]

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
        raise ValueError(
            f"attack must be an attack name ({', '.join(sorted(ATTACKS))}), a dict of options or an "
            f"Attack from reprsim.attacks.make_attack; got {type(attack).__name__}."
        )
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
        raise ReprsimError(
            f"attack: model {which} ({ref.label}) returns {shape}, not logits (N, classes); transfer "
            "attacks need two classifiers."
        )
    if int(labels.max()) >= out.shape[1]:
        raise ReprsimError(
            f"attack: the labels go up to {int(labels.max())} but model {which} ({ref.label}) has only "
            f"{out.shape[1]} outputs; the labels must be classes of both models."
        )


class SelectLogits(nn.Module):
    """``model``'s logits at the columns ``classes`` (k,): a classifier restricted to, and reordered
    into, a shared k-way label space (shared id j = column ``classes[j]``)."""

    def __init__(self, model: nn.Module, classes: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("classes", torch.as_tensor(list(classes), dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(N, k) logits."""
        return self.model(x).index_select(1, self.classes.to(x.device))


def resolve_label_map(label_map: Any, labels: np.ndarray | None) -> dict[int, int | None]:
    """Check ``label_map`` (``{class of A: class of B}``, a JSON file of it, ``None``/-1 = not a class
    of B) against the probe labels (A's classes). Returns ``{a: b or None}``.

    Raises:
        ReprsimError: not a mapping, non-integer classes, two A classes on one B class, a probe label
            that the map does not list, or no class shared at all.
    """
    if isinstance(label_map, (str, Path)):
        path = Path(label_map).expanduser()
        try:
            label_map = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReprsimError(f'label_map: cannot read {path} as JSON {{"class of A": class of B}}: {exc}') from exc
    if not isinstance(label_map, Mapping) or not label_map:
        raise ReprsimError(
            f"label_map must be a non-empty dict {{class of A: class of B}} (or a JSON file of one); "
            f"got {type(label_map).__name__}."
        )
    out: dict[int, int | None] = {}
    for a, b in label_map.items():
        try:
            ka = int(a)
            kb = None if b is None or int(b) < 0 else int(b)
        except (TypeError, ValueError) as exc:
            raise ReprsimError(f"label_map: classes must be integers; got {a!r}: {b!r}.") from exc
        out[ka] = kb
    used = [b for b in out.values() if b is not None]
    if not used:
        raise ReprsimError("label_map maps no class of A to a class of B; the two models share no class to attack.")
    if len(set(used)) != len(used):
        dup = sorted({b for b in used if used.count(b) > 1})
        raise ReprsimError(f"label_map maps several classes of A onto class(es) {dup} of B; it must be one-to-one.")
    if labels is not None:
        missing = sorted(set(int(v) for v in np.unique(labels)) - set(out))
        if missing:
            raise ReprsimError(
                f"label_map has no entry for probe label(s) {missing[:10]}; map each to a class of B, "
                "or to null (-1) to leave its inputs out of the attack."
            )
    return out


def _shared_space(
    ref_a: ModelRef, ref_b: ModelRef, x: Tensor, y: Tensor, label_map: Mapping[int, int | None]
) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    """Both models restricted to the shared classes, the inputs of shared classes and their shared ids."""
    shared = sorted(a for a, b in label_map.items() if b is not None)
    ids = {a: j for j, a in enumerate(shared)}
    keep = torch.as_tensor([int(v) in ids for v in y.tolist()], dtype=torch.bool)
    if not bool(keep.any()):
        raise ReprsimError("attack: no probe input belongs to a class label_map shares between the models.")
    new_y = torch.as_tensor([ids[int(v)] for v in y[keep].tolist()], dtype=torch.long)
    return (
        SelectLogits(ref_a.module, shared).eval(),
        SelectLogits(ref_b.module, [label_map[a] for a in shared]).eval(),
        x[keep],
        new_y,
    )


def run_transfer(
    ref_a: ModelRef,
    ref_b: ModelRef,
    probe: Probe,
    spec: AttackSpec,
    seed: int,
    progress: bool | None = None,
    label_map: Mapping[int, int | None] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Attack A and apply to B, and attack B and apply to A, on a seeded subset of the probe set.

    With ``label_map`` (checked by :func:`resolve_label_map`), inputs of classes B lacks are left
    out, and both models' logits are restricted to the shared classes in one k-way space (shared id j
    = the j-th shared class of A, B's column ``label_map[that class]``), so the attack's loss and both
    predictions use the same labels — the sweep's task-overlap rule (:mod:`reprsim.attacks.transfer`).

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
    if label_map is not None:
        _check_classifier(ref_a, x, np.array([max(label_map)]), "A")
        _check_classifier(ref_b, x, np.array([max(b for b in label_map.values() if b is not None)]), "B")
    else:
        for ref, which in ((ref_a, "A"), (ref_b, "B")):
            _check_classifier(ref, x, probe.labels, which)
    idx = probe_subset(int(x.shape[0]), spec.n, seed)
    xs, ys = x[torch.as_tensor(idx)], torch.as_tensor(probe.labels[idx])
    model_a, model_b = ref_a.module, ref_b.module
    if label_map is not None:
        model_a, model_b, xs, ys = _shared_space(ref_a, ref_b, xs, ys, label_map)
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
            k = int(model_a(xs[:1]).shape[1])
        targets = random_targets(ys, k, seed)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    homes = [_home(m) for m in (model_a, model_b)]
    try:  # both models on the device for the attack (transfer moves the inputs to the source's device)
        model_a.to(dev)
        model_b.to(dev)
        result = transfer(
            model_a,
            model_b,
            xs,
            ys,
            atk,
            targets=targets,
            both_directions=True,
            progress=sys.stderr.isatty() if progress is None else bool(progress),
        )
    finally:
        model_a.to(homes[0])
        model_b.to(homes[1])
    return result.summary()


def _home(model: nn.Module) -> torch.device:
    """The device a model's first parameter (or buffer) is on; the CPU for a model without any."""
    first = next(iter(model.parameters()), None)
    first = first if first is not None else next(iter(model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


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
        rows.append(
            {
                "direction": "B→A" if reverse else "A→B",
                "source": "B" if reverse else "A",
                "victim": "A" if reverse else "B",
                "quantity": base,
                "value": float(value),
                "ci_low": float(summary.get(f"{base}_low{'_ba' if reverse else ''}", float("nan"))),
                "ci_high": float(summary.get(f"{base}_high{'_ba' if reverse else ''}", float("nan"))),
                "n": float(n),
            }
        )
    frame = pd.DataFrame(rows, columns=["direction", "source", "victim", "quantity", "value", "ci_low", "ci_high", "n"])
    return frame.sort_values(["direction", "quantity"], kind="stable").reset_index(drop=True)
