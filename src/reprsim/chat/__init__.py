"""A synthetic chat world with exactly known answers, and two-phase training of small chat models.

* :mod:`reprsim.chat.world` — :class:`ChatWorld`: shared word-level vocabulary, request families
  (some forbidden), templated phrasings, deterministic answers, the fixed refusal.
* :mod:`reprsim.chat.training` — the recipe, and training through reprsim's one loop: two-phase
  from scratch (everything answered, then forbidden → refusal) or fine-tuning a shared base;
  loss on assistant tokens only; exact evaluation.
* :mod:`reprsim.chat.judge` — exact judge: refused / content success / partial credit.
* :mod:`reprsim.chat.split` — data- and task-overlap splits of the dialogue pool.
* :mod:`reprsim.chat.probes` — fixed-length probe prompts.

Jailbreak transfer between chat models is the one stage of :mod:`reprsim.attacks.jailbreak_transfer`
(the chat world supplies its behaviours and token format). A sweep over chat pairs is the ``chat``
world of the experiment pipeline (:mod:`reprsim.experiments.worlds.chat`).
"""

from reprsim.chat.judge import Judgement, judge_response
from reprsim.chat.world import ChatWorld, Family, Request

__all__ = ["ChatWorld", "Family", "Request", "Judgement", "judge_response"]
