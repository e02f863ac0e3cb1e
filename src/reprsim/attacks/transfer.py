"""Transfer of adversarial examples from a source model to a victim model.

:func:`transfer` crafts adversarial inputs on the source (white-box), feeds them to both models
and keeps **per-example** predictions, so every success definition is derived, not baked in:

* ``whitebox_asr`` — fraction of adversarial inputs the *source* misclassifies;
* ``transfer_asr`` — the paper's definition (PAPER.md §7a): fraction of adversarial inputs the
  *victim* misclassifies. Clean errors are **not** filtered out, so they count as successes;
* ``transfer_asr_conditional`` — the standard one: among inputs that *both* models classify
  correctly when clean, the fraction the victim gets wrong on the adversarial input;
* ``victim_clean_error`` / ``source_clean_error`` — the clean error rates, for reference;
* with a targeted attack also ``targeted_whitebox_asr`` / ``targeted_transfer_asr`` (fraction
  predicted as the target).

Every rate comes with a 95% interval (``<key>_low`` / ``<key>_high``, Wilson by default), and,
with ``both_directions=True``, the victim → source direction is reported with the suffix ``_ba``.

Task-overlap pairs (different label spaces)
-------------------------------------------
Transfer is measured on the inputs of the **shared classes only, in the shared label space**:
labels are remapped to the shared ids ``0..k−1`` (``label_map``: original label → shared id, or
−1 / missing for a class not shared by both models, whose inputs are dropped), and both models'
logits are restricted to their first ``k`` outputs (``num_shared_classes``), because the
task-overlap splits give the shared classes the first ids in both heads. The attack's loss and
both models' predictions therefore live in the same k-way label space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reprsim.devices import to_model_device

from .adversarial import ATTACKS, Attack, make_attack
from .stats import proportion_interval

__all__ = [
    "FirstKLogits",
    "TransferResult",
    "apply_label_map",
    "probe_subset",
    "random_targets",
    "transfer",
    "attack_transfer_stage",
]

AttackFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


class FirstKLogits(nn.Module):
    """Wrap a classifier so that it returns only its first ``k`` logits, shape (N, k)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_shared_classes must be an integer >= 1, got {k!r}.")
        self.model = model
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if not isinstance(out, Tensor) or out.ndim != 2:
            raise ValueError("model must return logits of shape (N, n_classes).")
        if out.shape[1] < self.k:
            raise ValueError(
                f"num_shared_classes={self.k} but the model has only {out.shape[1]} outputs; "
                "give at most the number of classes both models share."
            )
        return out[:, : self.k]


def apply_label_map(
    inputs: Tensor,
    labels: Tensor,
    label_map: Mapping[int, int] | Sequence[int] | np.ndarray,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """Keep the inputs of shared classes and remap their labels to the shared ids 0..k−1.

    ``label_map`` maps an original label to its shared id, either as a dict (missing = not
    shared) or as an array indexed by original label (−1 = not shared). ``targets`` (if any)
    are kept for the same rows and must already be shared ids.

    Returns
    -------
    (inputs, labels, targets, k) : the kept rows (N', ...), their shared labels (N',), the kept
    targets (N',) or None, and k = the number of shared classes (max shared id + 1).
    """
    if isinstance(label_map, Mapping):
        size = max([int(c) for c in label_map] + [int(labels.max().item()) if labels.numel() else 0]) + 1
        table = np.full(size, -1, dtype=np.int64)
        for c, s in label_map.items():
            table[int(c)] = int(s)
    else:
        table = np.asarray(label_map, dtype=np.int64)
        if table.ndim != 1:
            raise ValueError(f"label_map must be a dict or a 1-D array, got shape {table.shape}.")
    if table.size == 0 or table.max() < 0:
        raise ValueError("label_map maps no class to a shared id; task-overlap transfer needs shared classes.")
    shared = table[table >= 0]
    k = int(shared.max()) + 1
    if len(np.unique(shared)) != len(shared) or len(shared) != k:
        raise ValueError(
            f"label_map must map the shared classes one-to-one onto 0..k-1, got shared ids {sorted(shared.tolist())}."
        )
    lab = labels.cpu().numpy()
    if lab.size and lab.max() >= table.size:
        raise ValueError(f"label {int(lab.max())} is outside label_map (size {table.size}).")
    mapped = table[lab]
    keep = torch.as_tensor(np.flatnonzero(mapped >= 0), device=inputs.device)
    if keep.numel() == 0:
        raise ValueError("no input belongs to a shared class of label_map; nothing to attack.")
    new_labels = torch.as_tensor(mapped[mapped >= 0], device=labels.device)
    new_targets = None if targets is None else targets[keep.to(targets.device)]
    return inputs[keep], new_labels, new_targets, k


def _rate(mask: np.ndarray, method: str) -> tuple[float, float, float]:
    n = int(mask.size)
    k = int(mask.sum())
    low, high = proportion_interval(k, n, method)
    return (k / n if n else float("nan"), low, high)


@dataclass(frozen=True)
class TransferResult:
    """Per-example outcome of one transfer direction (source → victim), all arrays of shape (N,).

    ``reverse`` holds the victim → source direction (same inputs), or None.
    """

    labels: np.ndarray
    source_clean_pred: np.ndarray
    victim_clean_pred: np.ndarray
    source_adv_pred: np.ndarray
    victim_adv_pred: np.ndarray
    targets: np.ndarray | None = None
    reverse: TransferResult | None = None

    @property
    def clean_correct_source(self) -> np.ndarray:
        """(N,) bool: the source classifies the clean input correctly."""
        return self.source_clean_pred == self.labels

    @property
    def clean_correct_victim(self) -> np.ndarray:
        """(N,) bool: the victim classifies the clean input correctly."""
        return self.victim_clean_pred == self.labels

    @property
    def fooled_source(self) -> np.ndarray:
        """(N,) bool: the source misclassifies the adversarial input (white-box success)."""
        return self.source_adv_pred != self.labels

    @property
    def fooled_victim(self) -> np.ndarray:
        """(N,) bool: the victim misclassifies the adversarial input (paper's transfer success)."""
        return self.victim_adv_pred != self.labels

    @property
    def targeted(self) -> bool:
        """Whether the attack was targeted (then ``targets`` is set)."""
        return self.targets is not None

    def summary(self, interval: str = "wilson") -> dict[str, float]:
        """Success rates with 95% intervals (``wilson`` or ``clopper_pearson``).

        Returns
        -------
        dict[str, float] with ``whitebox_asr``, ``transfer_asr``, ``transfer_asr_conditional``,
        ``transfer_asr_given_source_fooled`` (P(victim fooled | source fooled)),
        ``victim_clean_error``, ``source_clean_error`` (plus ``targeted_whitebox_asr`` and
        ``targeted_transfer_asr`` when targeted), each with ``_low``/``_high``; the counts
        ``attack_n`` (inputs attacked) and ``n_both_correct``; and every rate again with suffix ``_ba`` for the
        reverse direction when it was measured. A rate over zero inputs is NaN.
        """
        both = self.clean_correct_source & self.clean_correct_victim
        rates = {
            "whitebox_asr": self.fooled_source,
            "transfer_asr": self.fooled_victim,
            "transfer_asr_conditional": self.fooled_victim[both],
            "transfer_asr_given_source_fooled": self.fooled_victim[self.fooled_source],
            "victim_clean_error": ~self.clean_correct_victim,
            "source_clean_error": ~self.clean_correct_source,
        }
        if self.targets is not None:
            rates["targeted_whitebox_asr"] = self.source_adv_pred == self.targets
            rates["targeted_transfer_asr"] = self.victim_adv_pred == self.targets
        counts = {"attack_n": float(self.labels.size), "n_both_correct": float(both.sum())}
        out: dict[str, float] = dict(counts)
        for key, mask in rates.items():
            out[key], out[f"{key}_low"], out[f"{key}_high"] = _rate(mask, interval)
        if self.reverse is not None:  # the same inputs: the counts are the same in both directions
            for key, value in self.reverse.summary(interval).items():
                if key not in counts:
                    out[f"{key}_ba"] = value
        return out


def _as_inputs(inputs: Any, labels: Any, targets: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    x = torch.as_tensor(inputs)
    if not x.is_floating_point():
        x = x.float()
    if x.ndim < 2:
        raise ValueError(f"inputs must have shape (N, ...) with N >= 1, got {tuple(x.shape)}.")
    y = torch.as_tensor(labels, device=x.device)
    if y.dtype.is_floating_point or y.shape != (x.shape[0],):
        raise ValueError(f"labels must be integer class ids of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}.")
    if y.numel() and y.min().item() < 0:
        raise ValueError(f"labels must be class ids >= 0, got minimum {y.min().item()}.")
    t = None
    if targets is not None:
        t = torch.as_tensor(targets, device=x.device)
        if t.dtype.is_floating_point or t.shape != (x.shape[0],):
            raise ValueError(
                f"targets must be integer class ids of shape ({x.shape[0]},), got {t.dtype} {tuple(t.shape)}."
            )
        t = t.long()
    return x, y.long(), t


def _match_dtype(x: Tensor, model: nn.Module) -> Tensor:
    """Cast x to the model's floating dtype (e.g. float64 numpy images for a float32 model)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return x if dtype is None or x.dtype == dtype else x.to(dtype)


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError("model must return logits of shape (N, n_classes).")
    return logits.argmax(dim=1)


def _run_attack(attack: AttackFn, model: nn.Module, x: Tensor, y: Tensor, batch_index: int) -> Tensor:
    if isinstance(attack, Attack):
        return attack(model, x, y, seed_offset=batch_index)
    return attack(model, x, y)


def transfer(
    source: nn.Module,
    victim: nn.Module,
    inputs: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    attack: AttackFn,
    *,
    batch_size: int = 250,
    targets: Tensor | np.ndarray | None = None,
    both_directions: bool = True,
    label_map: Mapping[int, int] | Sequence[int] | np.ndarray | None = None,
    num_shared_classes: int | None = None,
    progress: bool = False,
) -> TransferResult:
    """Craft adversarial inputs on ``source`` and measure how they fool ``victim``.

    Parameters
    ----------
    source, victim : nn.Module mapping inputs (N, ...) to logits (N, n_classes); both are put in
        eval mode.
    inputs : array of shape (N, ...), pixel inputs in the attack's clip range.
    labels : int array of shape (N,), true labels.
    attack : callable ``(model, x, y) -> x_adv`` such as :func:`~reprsim.attacks.adversarial.make_attack`'s
        result. A targeted attack (``attack.targeted``) needs ``targets``.
    batch_size : int, default=250. Inputs attacked per batch (memory bound; an :class:`Attack` with a
        random start gets ``seed + batch_index``, so random starts depend on the batch size).
    targets : int array of shape (N,) or None. Target labels of a targeted attack.
    both_directions : bool, default=True. Also attack the victim and test on the source.
    label_map : dict or 1-D array or None. Task-overlap pairs: original label → shared id
        (see the module docstring); inputs of non-shared classes are dropped. Implies
        ``num_shared_classes = k`` unless given.
    num_shared_classes : int or None. Restrict both models' logits to their first k outputs.
    progress : bool, default=False. Show a tqdm bar over batches.

    Returns
    -------
    TransferResult with per-example arrays of shape (N,) (N after ``label_map`` filtering).
    """
    if not isinstance(source, nn.Module) or not isinstance(victim, nn.Module):
        raise TypeError("source and victim must be torch.nn.Module classifiers.")
    if not callable(attack):
        raise TypeError(
            f"attack must be a callable (model, x, y) -> x_adv, e.g. make_attack('mi_fgsm', eps=1/255); got {attack!r}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    x, y, t = _as_inputs(inputs, labels, targets)
    x, y = to_model_device(source, x, y)
    t = None if t is None else to_model_device(source, t)
    x = _match_dtype(x, source)
    if x.ndim == 4:
        # Same values, NHWC layout: convolutions run ~25-40% faster on CPU (benchmarks/README.md).
        x = x.contiguous(memory_format=torch.channels_last)
    targeted = bool(getattr(attack, "targeted", False))
    if targeted and t is None:
        raise ValueError("the attack is targeted: pass targets=(N,) target labels.")
    if t is not None and not targeted:
        raise ValueError("targets were given but the attack is untargeted; build it with targeted=True.")
    if label_map is not None:
        x, y, t, k = apply_label_map(x, y, label_map, t)
        num_shared_classes = k if num_shared_classes is None else num_shared_classes
    if num_shared_classes is not None:
        source, victim = FirstKLogits(source, num_shared_classes), FirstKLogits(victim, num_shared_classes)
    if x.shape[0] == 0:
        raise ValueError("inputs is empty; transfer needs at least one input.")
    source.eval()
    victim.eval()

    keys = ["src_clean", "vic_clean", "src_adv", "vic_adv", "src_adv_ba", "vic_adv_ba"]
    preds: dict[str, list[Tensor]] = {k: [] for k in keys}
    starts = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="attack transfer", unit="batch")
    for i, start in enumerate(starts):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        goal = yb if t is None else t[start : start + batch_size]
        preds["src_clean"].append(_predict(source, xb))
        preds["vic_clean"].append(_predict(victim, xb))
        adv = _run_attack(attack, source, xb, goal, i)
        preds["src_adv"].append(_predict(source, adv))
        preds["vic_adv"].append(_predict(victim, adv))
        if both_directions:
            adv = _run_attack(attack, victim, xb, goal, i)
            preds["src_adv_ba"].append(_predict(source, adv))
            preds["vic_adv_ba"].append(_predict(victim, adv))
    p = {k: torch.cat(v).cpu().numpy() for k, v in preds.items() if v}
    lab = y.cpu().numpy()
    tgt = None if t is None else t.cpu().numpy()
    reverse = None
    if both_directions:
        reverse = TransferResult(lab, p["vic_clean"], p["src_clean"], p["vic_adv_ba"], p["src_adv_ba"], tgt)
    return TransferResult(lab, p["src_clean"], p["vic_clean"], p["src_adv"], p["vic_adv"], tgt, reverse)


def probe_subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed, seeded subset of ``min(n, n_total)`` probe inputs, shape (n,)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (probe inputs to attack) must be an integer >= 1, got {n!r}.")
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def random_targets(labels: Tensor, num_classes: int, seed: int) -> Tensor:
    """Seeded target labels, uniform over the classes other than each true label; shape (N,)."""
    if num_classes < 2:
        raise ValueError(f"a targeted attack needs at least 2 classes, got {num_classes}.")
    shift = np.random.default_rng(seed).integers(1, num_classes, size=labels.shape[0])
    return (labels + torch.as_tensor(shift, device=labels.device)) % num_classes


def _num_classes(model: nn.Module, x: Tensor, k: int | None) -> int:
    if k is not None:
        return k
    model.eval()
    with torch.no_grad():
        logits = model(_match_dtype(x[:1], model))
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError("model must return logits of shape (N, n_classes).")
    return int(logits.shape[1])


def attack_transfer_stage(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    attack: str = "mi_fgsm",
    eps: float = 1 / 255,
    steps: int = 3,
    n: int = 500,
    seed: int = 0,
    num_shared_classes: int | None = None,
    label_map: Mapping[int, int] | Sequence[int] | np.ndarray | None = None,
    batch_size: int = 250,
    both_directions: bool = True,
    **attack_params: Any,
) -> dict[str, float]:
    """The sweep's attack-transfer consequence stage: A → B (and B → A) on a seeded probe subset.

    Draws ``n`` probe inputs with ``numpy.random.default_rng(seed)`` (all of them if fewer; after
    ``label_map`` filtering for task-overlap pairs), attacks them with
    ``make_attack(attack, eps=eps, steps=steps, **attack_params)`` (``steps`` is ignored by
    ``fgsm``; ``seed`` seeds the probe subset and, for PGD, the random start; with
    ``targeted=True`` the targets are seeded random labels other than the true one), and
    measures transfer with :func:`transfer`. Defaults are the paper's (§7a): MI-FGSM, L∞,
    ε = 1/255 (use 2/255 for task-overlap pairs), 3 steps, μ = 1, 500 probe images.

    Returns
    -------
    dict[str, float] : :meth:`TransferResult.summary` — its keys become result-table columns.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid names: {', '.join(sorted(ATTACKS))}.")
    params: dict[str, Any] = {"eps": eps, **attack_params}
    if attack != "fgsm":
        params["steps"] = steps
    if attack == "pgd":
        params["seed"] = seed
    atk = make_attack(attack, **params)
    x, y, _ = _as_inputs(inputs, labels, None)
    x, y = to_model_device(model_a, x, y)
    if label_map is not None:
        x, y, _, k = apply_label_map(x, y, label_map)
        num_shared_classes = k if num_shared_classes is None else num_shared_classes
    idx = torch.as_tensor(probe_subset(x.shape[0], n, seed), device=x.device)
    x, y = x[idx], y[idx]
    targets = None
    if atk.targeted:
        targets = random_targets(y, _num_classes(model_a, x, num_shared_classes), seed)
    result = transfer(
        model_a,
        model_b,
        x,
        y,
        atk,
        batch_size=batch_size,
        targets=targets,
        both_directions=both_directions,
        num_shared_classes=num_shared_classes,
    )
    return result.summary()
