"""Real language models: LoRA fine-tuning of local Hugging Face causal LMs and jailbreak transfer between them.

* moved: :mod:`reprsim.models.hf_spec` (what a config's ``models: [{hf: ...}]`` entry means),
  :mod:`reprsim.models.hf_lm` (loading and checking a local model folder and its tokenizer),
  :mod:`reprsim.models.lora` (:class:`~reprsim.models.lora.FineTunedLM`, LoRA and features) and
  :mod:`reprsim.experiments.families.hf_demo_base` (the offline CPU demo bases, the ``hf_lm`` family's step).
* :mod:`reprsim.llm.jailbreak` — older entry points of the jailbreak transfer stage, which lives in
  :mod:`reprsim.attacks.jailbreak_transfer` (judges: :mod:`reprsim.attacks.judges`).

The sweep family is :mod:`reprsim.experiments.families.hf_lm`. ``transformers``, ``peft``, ``tokenizers``
and ``datasets`` are the optional extra ``[hf]``; they are imported only when these modules are used.
"""
