"""``compare_models``: two models you already have + inputs → every measure at every layer pair,
attack transfer, one table and one page.

>>> comp = reprsim.compare_models("runs/a/model.safetensors", "hf/resnet-50", "cifar10:root=data",
...                               layers="all", attack="mi_fgsm")          # doctest: +SKIP
>>> comp.table            # layer_a, layer_b, measure, value (+ p_value / ci_low / ci_high)
>>> comp.matrix("cka")    # layers of A × layers of B
>>> comp.to_html("comparison.html")

Modules: :mod:`~reprsim.compare.references` (model references), :mod:`~reprsim.compare.inputs`
(probe sets), :mod:`~reprsim.compare.extraction` (layer names, one pass per model),
:mod:`~reprsim.compare.similarity` (measures with per-layer work shared across pairs),
:mod:`~reprsim.compare.attack` (transfer), :mod:`~reprsim.compare.result` (:class:`Comparison`),
:mod:`~reprsim.compare.html` (figures and page), :mod:`~reprsim.compare.cli` (``reprsim compare-models``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprsim.compare.result import Comparison
from reprsim.compare.table import check_count, layer_table
from reprsim.compare.features_in import compare_features  # noqa: E402  (uses _layer_specs lazily)

__all__ = ["Comparison", "compare_features", "compare_models"]

ModelLike = Any  # nn.Module | str | Path


def _layer_specs(layers: Any) -> tuple[Any, Any]:
    if isinstance(layers, Mapping):
        unknown = sorted(set(layers) - {"a", "b"})
        if unknown or not layers:
            raise ValueError(f"layers as a dict takes keys 'a' and 'b' (one spec per model); got {sorted(layers)}.")
        return layers.get("a", "penultimate"), layers.get("b", "penultimate")
    return layers, layers


_check_count = check_count


def compare_models(
    model_a: ModelLike,
    model_b: ModelLike,
    inputs: Any,
    *,
    layers: Any = "penultimate",
    measures: Any = "all",
    prepare: Any = "paper",
    labels: Any = None,
    attack: Any = None,
    n_permutations: int = 0,
    seed: int = 0,
    n_boot: int = 0,
    level: float = 0.95,
    params: Mapping[str, Any] | None = None,
    weights_a: str | Path | None = None,
    weights_b: str | Path | None = None,
    tokenizer: Any = None,
    pool: Any = "avg",
    batch_size: int = 256,
    device: str | None = None,
    progress: bool | None = None,
) -> Comparison:
    """Compare two models' representations of the same inputs with every similarity measure.

    Args:
        model_a, model_b: an ``nn.Module``, a local Hugging Face folder (image classifier, vision or
            text encoder, causal LM), a checkpoint written by ``reprsim.train``, a TorchScript file
            (output only) or ``"MODULE:CALLABLE"`` (a factory returning an ``nn.Module``; the current
            folder is importable) — see :mod:`reprsim.compare.references`.
        inputs: an array/tensor (N, ...), a list of texts, a data-source spec such as
            ``"fashion_mnist"`` or ``"cifar10:root=DIR"`` (default: 1000 test inputs; ``n=``,
            ``split=`` change it), a :class:`reprsim.data.Dataset`, or a ``.npy``/``.npz``/``.pt``/
            ``.txt`` file. Both models see the same inputs in the same order.
        layers: a layer name, a list of names, ``"all"`` (every layer: a full layer × layer
            table) or ``{"a": spec, "b": spec}`` for different architectures. Names are the
            models' public layer names (``reprsim.models.layers``), ``"penultimate"`` (the input
            of the classification / LM head, or an encoder's last hidden state; for text
            mean-pooled over real tokens), ``"output"``, or module paths of ``named_modules()``
            (``"body"``, ``"encoder.layer.3"``, ``"fc:input"``). Every listed layer of A is
            compared with every listed layer of B.
        measures: ``"all"`` (every registered measure), ``"paper"`` (the paper's 8), a name or a
            list of names from :data:`reprsim.metrics.MEASURES`.
        prepare: feature preparation before measuring: ``"paper"`` (clamp at the 0.95 quantile
            of |x|, then L2 rows; the sweep's default), ``"l2"``, ``None``, a dict
            ``{"normalize", "clip_quantile"}`` or a callable (n, d) → (n, d).
        labels: (N,) class ids; needed by ``attack`` unless the inputs carry them (data sources do).
        attack: None, an attack name (``"mi_fgsm"``, ``"pgd"``, ``"fgsm"``), a dict of options
            (``{"name", "eps", "steps", "n", ...}``) or an Attack from
            :func:`reprsim.attacks.make_attack`: adversarial examples crafted on each model are
            tried on the other (see :mod:`reprsim.compare.attack`).
        n_permutations: permutation-test size per (layer pair, measure); adds ``p_value``.
        seed: seeds the permutations, the bootstrap, the attack's probe subset and random starts.
        n_boot: bootstrap resamples over inputs; adds ``ci_low`` / ``ci_high`` at ``level``.
        params: measure parameters, e.g. ``{"k": 10}``, passed to every measure that takes them.
        weights_a, weights_b: weights for a factory / module reference (``.safetensors`` or a
            state dict, loaded with ``weights_only=True``).
        tokenizer: for texts and a model without its own tokenizer: a Hugging Face tokenizer,
            ``"bytes"`` (reprsim's byte-level GPTs) or a callable texts → ``{"input_ids", "attention_mask"}``.
        pool: how sequence / spatial outputs become vectors (see :func:`reprsim.features.pool_features`).
        batch_size, device: for the forward passes.
        progress: progress bars (None: only on a terminal).

    Returns:
        A :class:`Comparison` (``.table``, ``.matrix(measure)``, ``.plot()``, ``.to_html(path)``,
        ``.transfer`` with ``attack``).

    Raises:
        ReprsimError / ValueError with one line naming the problem and the fix: a reference that is
        not a model, a layer that does not exist (the available ones are listed), inputs of the
        wrong shape for a model (which model and what it expects), ``attack`` without labels,
        unknown measures or parameters.
    """
    from reprsim.compare import attack as attack_mod
    from reprsim.compare import extraction, references, similarity
    from reprsim.compare.inputs import resolve_inputs

    # ---- check everything cheap before any model runs ----------------------------------------
    names = similarity.resolve_measures(measures)
    prep_fn, prep_desc = similarity.resolve_prepare(prepare)
    n_permutations = _check_count(n_permutations, "n_permutations")
    n_boot = _check_count(n_boot, "n_boot")
    seed = _check_count(seed, "seed")
    if n_boot == 1:
        raise ValueError("n_boot must be 0 (no intervals) or >= 2.")
    if n_boot and not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}.")
    spec_a, spec_b = _layer_specs(layers)
    atk = attack_mod.resolve_attack(attack)
    probe = resolve_inputs(inputs, labels)
    if atk is not None and probe.labels is None:
        raise ValueError("attack= needs labels: pass labels=(N,) class ids, or inputs from a data source "
                         "(which carry their labels).")
    ref_a = references.load_model(model_a, weights_a, which="A")
    ref_b = references.load_model(model_b, weights_b, which="B")
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    notes: list[str] = []

    # ---- features: one pass per model over the inputs ----------------------------------------
    feats: dict[str, dict[str, np.ndarray]] = {}
    shown: dict[str, list[str]] = {}
    plans = []
    for ref, spec, which in ((ref_a, spec_a, "A"), (ref_b, spec_b, "B")):  # both checked before the long passes
        fed = extraction.model_inputs(ref, probe, tokenizer, which)
        sample = extraction.sampler(fed, which=which, label=ref.label)
        resolved = extraction.resolve_layers(ref, spec, which, sample if spec == "all" else None)
        if spec != "all":
            sample(ref.module)  # a wrong input shape fails here, on two inputs, naming the model
        plans.append((ref, which, fed, resolved))
    for ref, which, fed, resolved in plans:
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            feats[which.lower()] = extraction.model_features(ref, fed, resolved, which=which, batch_size=batch_size,
                                                             pool=pool, device=device)
        from reprsim.models import GPT

        causal = isinstance(ref.module, GPT)  # reprsim's GPTs are causal: right padding is exact, no note needed
        notes += sorted({f"model {which}: {w.message}" for w in caught
                         if not (causal and "takes no attention_mask" in str(w.message))})
        timings[f"features_{which.lower()}"] = time.perf_counter() - t0
        cpu[f"features_{which.lower()}"] = time.process_time() - c0
        shown[which] = list(resolved)

    # ---- measures, each layer prepared once (the engine shared with compare_features) ----------
    measured = layer_table(feats["a"], feats["b"], prep_fn, names, params, n_permutations=n_permutations,
                           n_boot=n_boot, level=level, seed=seed, progress=progress)
    table = measured.table
    notes += measured.notes
    timings |= measured.timings
    cpu |= measured.cpu

    # ---- consequences ------------------------------------------------------------------------
    transfer = summary = None
    if atk is not None:
        t0 = time.perf_counter()
        summary = attack_mod.run_transfer(ref_a, ref_b, probe, atk, seed, progress)
        transfer = attack_mod.transfer_frame(summary)
        timings["attack"] = time.perf_counter() - t0
    if notes:
        more = f" (+{len(notes) - 1} more in Comparison.warnings)" if len(notes) > 1 else ""
        warnings.warn(f"compare_models: {notes[0]}{more}", stacklevel=2)
    return Comparison(
        table=table, layers_a=shown["A"], layers_b=shown["B"], measures=names, model_a=ref_a.label,
        model_b=ref_b.label, inputs=probe.description, n_inputs=probe.n, prepare=prep_desc,
        params=dict(params or {}),
        transfer=transfer, transfer_summary=summary, attack=atk.describe() if atk is not None else None,
        features=feats, timings=timings, cpu_timings=cpu, warnings=notes,
    )

