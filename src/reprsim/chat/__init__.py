"""A synthetic chat world with exactly known answers, and two-phase training of small chat models.

* :mod:`reprsim.chat.world` — :class:`ChatWorld`: shared word-level vocabulary, request families
  (some forbidden), templated phrasings, deterministic answers, the fixed refusal.
* :mod:`reprsim.chat.training` — pre-training (everything answered) then safety tuning
  (forbidden → refusal), loss on assistant tokens only; exact evaluation.
* :mod:`reprsim.chat.finetune` — shared-base mode: one cached safety-tuned base, fine-tuned into A and B.
* :mod:`reprsim.chat.judge` — exact judge: refused / content success / partial credit.
* :mod:`reprsim.chat.split` — data- and task-overlap splits of the dialogue pool.
* :mod:`reprsim.chat.pipeline` — ``train_pair`` (shared base or from scratch) and ``probe_sets``.
* :mod:`reprsim.chat.lm` — causal-LM adapter (GPT, Hugging Face, callables) and greedy decoding.

Attacks on these models are in :mod:`reprsim.attacks.jailbreak`.
"""

from reprsim.chat.judge import Judgement, judge_response
from reprsim.chat.world import ChatWorld, Family, Request

__all__ = ["ChatWorld", "Family", "Request", "Judgement", "judge_response"]
