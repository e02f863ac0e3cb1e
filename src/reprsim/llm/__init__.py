"""Real language models: LoRA fine-tuning of local Hugging Face causal LMs and jailbreak transfer between them.

* :mod:`reprsim.llm.spec` — what a config's ``models: [{hf: ...}]`` entry means (paths, LoRA options).
* :mod:`reprsim.llm.hf` — loading a local model folder and its tokenizer, and checking it.
* :mod:`reprsim.llm.finetune` — :class:`~reprsim.llm.finetune.FineTunedLM`, a fine-tune whose state
  is only what training changes (the LoRA adapter), and its features.
* :mod:`reprsim.llm.demo` — the offline CPU demo bases (a small Llama built from a ``LlamaConfig``).
* :mod:`reprsim.llm.jailbreak` — behaviours, prompt template, random-search suffix, sampling and
  judges for jailbreak transfer between chat models.

The sweep kind is :mod:`reprsim.experiments.kinds.llm`. ``transformers``, ``peft``, ``tokenizers``
and ``datasets`` are the optional extra ``[hf]``; they are imported only when these modules are used.
"""
