"""Consequences of similarity: adversarial attacks and their transfer between two models.

* :mod:`reprsim.attacks.adversarial` — FGSM, PGD (L∞/L2), MI-FGSM on pixel inputs, and
  :func:`make_attack` to bind their settings.
* :mod:`reprsim.attacks.transfer` — :func:`transfer` (per-example outcomes, both directions)
  and :func:`attack_transfer_stage`, the sweep's consequence stage.
* :mod:`reprsim.attacks.stats` — Wilson / Clopper–Pearson intervals for success rates.
* :mod:`reprsim.attacks.jailbreak` — suffix searches on causal LMs (random search, GCG).
* :mod:`reprsim.attacks.jailbreak_transfer` — the one jailbreak transfer stage, for the chat world's
  zoo LMs and Hugging Face LMs alike; its options (:mod:`~reprsim.attacks.jailbreak_options`),
  behaviours and prompt formats (:mod:`~reprsim.attacks.jailbreak_prompts`), greedy / sampled
  answers (:mod:`~reprsim.attacks.jailbreak_decoding`) and judges (:mod:`~reprsim.attacks.judges`).
"""

from .adversarial import ATTACKS, Attack, fgsm, make_attack, mi_fgsm, pgd
from .stats import clopper_pearson_interval, wilson_interval
from .transfer import TransferResult, attack_transfer_stage, transfer

__all__ = [
    "ATTACKS",
    "Attack",
    "fgsm",
    "pgd",
    "mi_fgsm",
    "make_attack",
    "transfer",
    "TransferResult",
    "attack_transfer_stage",
    "wilson_interval",
    "clopper_pearson_interval",
]
