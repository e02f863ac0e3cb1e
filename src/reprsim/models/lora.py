"""A fine-tune of a causal LM whose state is only what training changes, and its features.

:class:`FineTunedLM` wraps a Hugging Face causal LM — with a LoRA adapter (``peft``) or fully
trainable — as reprsim's training loop and attacks expect: ``forward(ids) -> logits (B, T, V)``,
``get_input_embeddings()``. Its ``state_dict()`` holds only the trainable tensors (the adapter), so
the training loop's checkpoints and the model cache keep the adapter, never a copy of the base; a
fully fine-tuned model's state is the whole model. ``load_state_dict`` expects exactly those keys.

:func:`hidden_features` reads the last hidden state after the final norm (``penultimate``) or a
decoder block's output (``blocks.<i>``), mean-pooled over the real tokens of the attention mask.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reprsim.models.hf_spec import LoraOptions

__all__ = ["FineTunedLM", "apply_lora", "decoder_blocks", "hidden_features", "layer_names"]


class FineTunedLM(nn.Module):
    """A causal LM (``lm``: a Hugging Face ``*ForCausalLM`` or a ``peft`` model around one) being fine-tuned.

    ``forward(input_ids, attention_mask=None, inputs_embeds=None)`` returns the logits tensor
    (B, T, V). ``state_dict()`` / ``load_state_dict()`` cover the trainable parameters only
    (all of them for full fine-tuning, see the module docstring).
    """

    def __init__(self, lm: nn.Module, *, full: bool = False) -> None:
        super().__init__()
        self.lm = lm
        self.full = bool(full)
        self._trainable = frozenset(f"lm.{n}" for n, p in lm.named_parameters() if p.requires_grad)
        if not self._trainable:
            raise ValueError("FineTunedLM: the model has no trainable parameter (no adapter and nothing unfrozen)")
        self.block_size = int(getattr(self.hf_model.config, "max_position_embeddings", 0) or 0) or None

    # ---- structure --------------------------------------------------------------------------
    @property
    def hf_model(self) -> nn.Module:
        """The Hugging Face ``*ForCausalLM`` inside (under the adapter, if any)."""
        get = getattr(self.lm, "get_base_model", None)
        return get() if callable(get) else self.lm

    @property
    def backbone(self) -> nn.Module:
        """The decoder stack without the LM head (``model`` of a Llama, ``transformer`` of a GPT-2)."""
        inner = self.hf_model
        return getattr(inner, inner.base_model_prefix)

    @property
    def config(self) -> Any:
        return self.hf_model.config

    @property
    def vocab_size(self) -> int:
        return int(self.get_input_embeddings().weight.shape[0])

    def get_input_embeddings(self) -> nn.Module:
        return self.hf_model.get_input_embeddings()

    def trainable_names(self) -> list[str]:
        """Sorted state keys of the trainable tensors (the adapter's, for LoRA)."""
        return sorted(self._trainable)

    # ---- forward ----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, V) of token ids (B, T) or input embeddings (B, T, d)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("FineTunedLM.forward: pass exactly one of input_ids or inputs_embeds")
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "use_cache": False, "return_dict": True}
        if input_ids is not None:
            kwargs["input_ids"] = input_ids.long()
        else:
            kwargs["inputs_embeds"] = inputs_embeds
        return self.lm(**kwargs).logits

    @torch.no_grad()
    def generate(self, input_ids: Tensor, **kwargs: Any) -> Tensor:
        """Hugging Face ``generate`` of the wrapped model (with its KV cache); returns prompt + new ids."""
        return self.lm.generate(input_ids=input_ids, **kwargs)

    # ---- state: the trainable tensors only ---------------------------------------------------
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        full = super().state_dict(*args, prefix=prefix, keep_vars=keep_vars)
        if self.full:
            out = full
        else:
            out = OrderedDict((k, v) for k, v in full.items() if k[len(prefix) :] in self._trainable)
        if destination is not None:
            destination.update(out)
            return destination
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.full:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        keys = set(state_dict)
        missing, unexpected = sorted(self._trainable - keys), sorted(keys - self._trainable)
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"FineTunedLM.load_state_dict: the state is not this model's adapter (missing "
                f"{missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                f"{'…' if len(unexpected) > 3 else ''}); was it saved with other LoRA options?"
            )
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        return type(result)([k for k in result.missing_keys if k in self._trainable], list(result.unexpected_keys))


def apply_lora(model: nn.Module, options: LoraOptions, seed: int) -> FineTunedLM:
    """``model`` (a HF causal LM) wrapped for fine-tuning: a LoRA adapter (initialised from ``seed``,
    base frozen) or, with ``options.full``, every weight trainable."""
    if options.full:
        for p in model.parameters():
            p.requires_grad_(True)
        return FineTunedLM(model, full=True)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        bias=options.bias,
        task_type="CAUSAL_LM",
    )
    from reprsim.models.hf_lm import quiet_transformers

    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(int(seed))
        peft_model = get_peft_model(model, config)
    return FineTunedLM(peft_model)


def decoder_blocks(model: FineTunedLM) -> nn.ModuleList:
    """The decoder blocks of ``model`` (the ModuleList with ``num_hidden_layers`` entries)."""
    from reprsim.models.adapters import _find_blocks

    path, _ = _find_blocks(model.backbone)
    return model.backbone.get_submodule(path)


def layer_names(model: FineTunedLM) -> list[str]:
    """The layers :func:`hidden_features` can read: ``penultimate`` and ``blocks.0`` … ``blocks.<n-1>``."""
    return ["penultimate"] + [f"blocks.{i}" for i in range(len(decoder_blocks(model)))]


def _masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


@torch.no_grad()
def hidden_features(
    model: FineTunedLM,
    input_ids: Tensor | np.ndarray,
    layers: Sequence[str],
    *,
    attention_mask: Tensor | np.ndarray | None = None,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """``{layer: (n, d) float32}``: hidden states mean-pooled over the real tokens (mask 1; all when None).

    ``penultimate`` is the backbone's last hidden state (after the final norm, the LM head's input);
    ``blocks.<i>`` the output of decoder block i. Runs the backbone only (no logits), in eval mode,
    on the model's device, batch by batch.
    """
    from reprsim.devices import model_device

    ids = torch.as_tensor(np.asarray(input_ids) if not isinstance(input_ids, Tensor) else input_ids).long()
    if ids.dim() != 2:
        raise ValueError(f"hidden_features: input_ids must be (n, T), got shape {tuple(ids.shape)}")
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(np.asarray(attention_mask)).long()
    if mask.shape != ids.shape:
        raise ValueError(f"hidden_features: attention_mask {tuple(mask.shape)} must match input_ids {tuple(ids.shape)}")
    known = set(layer_names(model))
    bad = [layer for layer in layers if layer not in known]
    if bad:
        raise ValueError(f"hidden_features: unknown layer(s) {bad}; available: {layer_names(model)}")
    blocks = decoder_blocks(model)
    device = model_device(model)
    captured: dict[str, Tensor] = {}
    handles = []
    for layer in layers:
        if layer.startswith("blocks."):

            def hook(_m, _a, out, name=layer):  # noqa: ANN001
                captured[name] = out[0] if isinstance(out, tuple) else out

            handles.append(blocks[int(layer.split(".")[1])].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    try:
        for s in range(0, len(ids), batch_size):
            xb, mb = ids[s : s + batch_size].to(device), mask[s : s + batch_size].to(device)
            captured.clear()
            last = model.backbone(input_ids=xb, attention_mask=mb, use_cache=False, return_dict=True).last_hidden_state
            for layer in layers:
                hidden = last if layer == "penultimate" else captured[layer]
                out[layer].append(_masked_mean(hidden.float(), mb).cpu().numpy())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {
        layer: np.concatenate(v).astype(np.float32) if v else np.zeros((0, 0), np.float32) for layer, v in out.items()
    }
