"""``compare_models``: two models you already have + inputs → every measure at every layer pair,
attack transfer, one table and one page; ``compare_features``: the same table from features you
already have (:mod:`~reprsim.compare.features_in`).

>>> comp = reprsim.compare_models("runs/a/model.safetensors", "hf/resnet-50", "cifar10:root=data",
...                               layers="all", attack="mi_fgsm")          # doctest: +SKIP
>>> comp.table            # layer_a, layer_b, measure, value (+ p_value / ci_low / ci_high)
>>> comp.matrix("cka")    # layers of A × layers of B
>>> comp.to_html("comparison.html")

Modules: :mod:`~reprsim.compare.references` (model references), :mod:`~reprsim.compare.inputs`
(probe sets), :mod:`~reprsim.compare.extraction` (layer names, one pass per model),
:mod:`~reprsim.compare.similarity` (measures with per-layer work shared across pairs),
:mod:`~reprsim.compare.attack` (transfer), :mod:`~reprsim.compare.result` (:class:`Comparison`),
:mod:`~reprsim.compare.html` (figures and page), :mod:`~reprsim.compare.cli` (``reprsim compare-models``),
:mod:`~reprsim.compare.table` (the layer table both entry points share), :mod:`~reprsim.compare.sources`
(PEFT adapters, sweep models, dtype, input size), :mod:`~reprsim.compare.diffusion` (diffusion UNets).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reprsim.compare.result import Comparison
from reprsim.errors import ReprsimError
from reprsim.compare.table import check_table_options, layer_table, split_measures
from reprsim.compare.features_in import compare_features  # imports _layer_specs from here lazily

__all__ = ["Comparison", "compare_features", "compare_models"]

ModelLike = Any  # nn.Module | str | Path


def _layer_specs(layers: Any) -> tuple[Any, Any]:
    if isinstance(layers, Mapping):
        unknown = sorted(set(layers) - {"a", "b"})
        if unknown or not layers:
            raise ValueError(f"layers as a dict takes keys 'a' and 'b' (one spec per model); got {sorted(layers)}.")
        return layers.get("a", "penultimate"), layers.get("b", "penultimate")
    return layers, layers


def _per_side(value: Any, name: str) -> tuple[Any, Any]:
    """One value for both models, or ``{"a": ..., "b": ...}``."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"a", "b"})
        if unknown:
            raise ValueError(f"{name} as a dict takes keys 'a' and 'b'; got {sorted(value)}.")
        return value.get("a"), value.get("b")
    return value, value


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
    calibrate: int = 0,
    params: Mapping[str, Any] | None = None,
    weights_a: str | Path | None = None,
    weights_b: str | Path | None = None,
    tokenizer: Any = None,
    pool: Any = "avg",
    batch_size: int = 256,
    device: str | None = None,
    progress: bool | None = None,
    dtype: Any = None,
    base: Any = None,
    cache_dir: str | Path | None = None,
    input_size: Any = None,
    label_map: Any = None,
    noise_seed: int | None = None,
    timesteps: Any = None,
) -> Comparison:
    """Compare two models' representations of the same inputs with every similarity measure.

    Args:
        model_a, model_b: an ``nn.Module``, a local Hugging Face folder (image classifier, vision or
            text encoder, causal LM; or a diffusers ``UNet2DModel`` folder), a checkpoint written by ``reprsim.train``, a TorchScript file
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
            list of names from :data:`reprsim.metrics.MEASURES`, and/or behavioural measures
            (:data:`reprsim.metrics.behavioural.BEHAVIOURAL`: ``agreement``, ``cohen_kappa``,
            ``error_consistency``, ``capa``, ``js_divergence``) computed on the layer ``output`` (which
            ``layers`` must then include for both models): the softmax of a classifier's logits, or a
            causal LM's next-token distributions at every position of the probe windows, with the next
            tokens as labels. ``error_consistency`` and ``capa`` need labels and get a bootstrap
            interval over inputs (``ci_low``/``ci_high``; ``n_boot`` resamples, 1000 when 0).
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
        calibrate: K row permutations of B for calibrated scores (:func:`reprsim.metrics.calibrate`,
            one set for every pair and measure); adds ``null_mean``, ``tau``, ``calibrated``.
        params: measure parameters, e.g. ``{"k": 10}``, passed to every measure that takes them.
        weights_a, weights_b: weights for a factory / module reference (``.safetensors`` or a
            state dict, loaded with ``weights_only=True``).
        tokenizer: for texts and a model without its own tokenizer: a Hugging Face tokenizer,
            ``"bytes"`` (reprsim's byte-level GPTs) or a callable texts → ``{"input_ids", "attention_mask"}``.
        pool: how sequence / spatial outputs become vectors (see :func:`reprsim.features.pool_features`).
        batch_size, device: for the forward passes and the attack (None: CUDA when available) and
            the measures (torch on the device named; None: the CPU). A measure that fails on a GPU
            is computed on the CPU; the table's ``device`` column (present when a GPU was named)
            says where each row was computed.
        progress: progress bars (None: only on a terminal).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``: run both models in it (a Hugging Face
            folder is loaded in it); features are cast to float32 for the measures.
        base: for a PEFT adapter folder given as a model: its base model's local folder (one path, or
            ``{"a": path, "b": path}``); default: ``base_model_name_or_path`` of its adapter_config.json.
        cache_dir: the model cache of models given as ``"RUN_DIR:UNIT_ID:a"`` (models a reprsim
            sweep trained; default ``$REPRSIM_CACHE`` or ``~/.cache/reprsim``).
        input_size: an int or (H, W): Hugging Face vision models resize every batch to it (grey
            images repeated to RGB), as a sweep's ``input_size``.
        label_map: for ``attack`` between models with different label spaces: ``{class of A: class
            of B}`` (probe labels are A's classes; ``None`` / -1 = no such class in B, those inputs are
            dropped); every probe label must be a key. See :mod:`reprsim.compare.attack`.
        noise_seed, timesteps: for diffusion UNets (reprsim's zoo ``DiffusionUNet`` or a diffusers
            ``UNet2DModel``, see :mod:`reprsim.compare.diffusion`), as in a diffusion sweep: both
            models get the identical x_t = √ᾱ_t·(2x − 1) + √(1 − ᾱ_t)·ε, t and the null class label,
            with ε from :func:`reprsim.models.unet.eval_draws` seeded by ``noise_seed`` (None: 0) and
            ``timesteps`` None (uniform in [0, T), from the same draw), an int (one t for every input)
            or an (N,) int array. Features are the layer's mean ‖ std over space (``pool`` is not
            used). An error for models that are not UNets; ``attack`` is an error with a UNet.

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
    from reprsim.compare import extraction, references, sources
    from reprsim.compare.inputs import resolve_inputs
    from reprsim.compare.table import behaviour_table, check_behaviour_layers
    from reprsim.metrics.behavioural import NEEDS_LABELS
    from reprsim.metrics.prepare import resolve_prepare

    # ---- check everything cheap before any model runs ----------------------------------------
    names, behaviour = split_measures(measures)
    prep_fn, prep_desc = resolve_prepare(prepare)
    n_permutations, calibrate, n_boot, seed = check_table_options(
        n_permutations=n_permutations, calibrate=calibrate, n_boot=n_boot, seed=seed, level=level
    )
    spec_a, spec_b = _layer_specs(layers)
    atk = attack_mod.resolve_attack(attack)
    probe = resolve_inputs(inputs, labels)
    if atk is not None and probe.labels is None:
        raise ValueError(
            "attack= needs labels: pass labels=(N,) class ids, or inputs from a data source (which carry their labels)."
        )
    tokens = probe.is_text or (probe.data is not None and not probe.data.is_floating_point() and probe.data.dim() == 2)
    if set(behaviour) & set(NEEDS_LABELS) and probe.labels is None and not tokens:
        raise ValueError(
            f"{', '.join(m for m in behaviour if m in NEEDS_LABELS)} need labels: pass labels=(N,) class "
            "ids, or inputs from a data source (which carry their labels)."
        )
    if label_map is not None and atk is None:
        raise ValueError("label_map= is for attack transfer; pass attack= too (e.g. attack='mi_fgsm').")
    lmap = attack_mod.resolve_label_map(label_map, probe.labels) if label_map is not None else None
    torch_dtype = sources.resolve_dtype(dtype, device)
    bases = _per_side(base, "base")
    ref_a = references.load_model(model_a, weights_a, which="A", dtype=torch_dtype, base=bases[0], cache_dir=cache_dir)
    ref_b = references.load_model(model_b, weights_b, which="B", dtype=torch_dtype, base=bases[1], cache_dir=cache_dir)
    for ref, which, given in ((ref_a, "A", model_a), (ref_b, "B", model_b)):
        sources.apply_dtype(ref, torch_dtype, which, owned=not isinstance(given, torch.nn.Module))
    if input_size is not None:  # resizes the Hugging Face vision models among the two
        vision = [(r, w) for r, w in ((ref_a, "A"), (ref_b, "B")) if r.kind == "image"] or [(ref_a, "A")]
        for ref, which in vision:
            sources.apply_input_size(ref, input_size, which)
    from reprsim.compare import diffusion

    draws = diffusion.plan_draws([ref_a, ref_b], probe.data, noise_seed, timesteps, atk)
    unets = {w for r, w in ((ref_a, "A"), (ref_b, "B")) if draws is not None and diffusion.is_diffusion(r.module)}
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    notes: list[str] = [
        f"model {w} is not a diffusion UNet: it sees the clean inputs, not x_t"
        for w in ("A", "B")
        if unets and w not in unets
    ]

    # ---- features: one pass per model over the inputs ----------------------------------------
    feats: dict[str, dict[str, np.ndarray]] = {}
    shown: dict[str, list[str]] = {}
    plans = []
    for ref, spec, which in ((ref_a, spec_a, "A"), (ref_b, spec_b, "B")):  # both checked before the long passes
        fed = probe.data if which in unets else extraction.model_inputs(ref, probe, tokenizer, which)
        sample = extraction.sampler(fed, which=which, label=ref.label)
        try:
            resolved = extraction.resolve_layers(ref, spec, which, sample if spec == "all" else None)
            if which in unets:  # a UNet also takes t: checked on two x_t
                draws.features(ref, probe.data[:2], resolved, which, 2, device)
            elif spec != "all":
                sample(ref.module)  # a wrong input shape fails here, on two inputs, naming the model
        except ReprsimError as exc:
            if torch_dtype in (None, torch.float32) or not any(
                w in str(exc) for w in ("BFloat16", "Half", "bfloat16", "float16", "dtype")
            ):
                raise
            name = str(torch_dtype).removeprefix("torch.")
            raise ReprsimError(
                f"{exc} It runs in dtype={name!r}: this model or machine may not support {name} (use dtype='float32')."
            ) from exc
        plans.append((ref, which, fed, resolved))
    check_behaviour_layers(behaviour, list(plans[0][3]), list(plans[1][3]))
    if behaviour and unets:
        raise ValueError(
            f"{', '.join(behaviour)} compare output distributions of classifiers or language models; "
            f"model(s) {', '.join(sorted(unets))} are diffusion UNets, which give none."
        )
    for ref, which, fed, resolved in plans:
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if which in unets:
                feats[which.lower()] = draws.features(ref, probe.data, resolved, which, batch_size, device)
            else:
                feats[which.lower()] = extraction.model_features(
                    ref, fed, resolved, which=which, batch_size=batch_size, pool=pool, device=device, progress=progress
                )
        from reprsim.models import GPT

        causal = isinstance(ref.module, GPT)  # reprsim's GPTs are causal: right padding is exact, no note needed
        notes += sorted(
            {
                f"model {which}: {w.message}"
                for w in caught
                if not (causal and "takes no attention_mask" in str(w.message))
            }
        )
        timings[f"features_{which.lower()}"] = time.perf_counter() - t0
        cpu[f"features_{which.lower()}"] = time.process_time() - c0
        shown[which] = list(resolved)

    # ---- measures, each layer prepared once (the engine shared with compare_features) ----------
    measured = layer_table(
        feats["a"],
        feats["b"],
        prep_fn,
        names,
        params,
        n_permutations=n_permutations,
        n_boot=n_boot,
        level=level,
        seed=seed,
        progress=progress,
        device=device,
    )
    table = measured.table
    if calibrate and names:
        from reprsim.metrics.calibrate import calibrated_columns

        t0 = time.perf_counter()
        table = table.assign(**calibrated_columns(measured.engine, table, calibrate, seed))
        timings["calibrate"] = time.perf_counter() - t0
    notes += measured.notes
    timings |= measured.timings
    cpu |= measured.cpu
    if behaviour:  # the models' output distributions: one more pass per model
        t0 = time.perf_counter()
        (pa, ya), (pb, _) = (
            extraction.output_distributions(ref, fed, which=which, batch_size=batch_size, device=device)
            for ref, which, fed, _ in plans
        )
        rows = behaviour_table(
            pa, pb, probe.labels if ya is None else ya, behaviour, n_boot=n_boot, level=level, seed=seed
        )
        table = pd.concat([table, rows], ignore_index=True) if names else rows
        timings["behaviour"] = time.perf_counter() - t0

    # ---- consequences ------------------------------------------------------------------------
    transfer = summary = None
    if atk is not None:
        t0 = time.perf_counter()
        summary = attack_mod.run_transfer(ref_a, ref_b, probe, atk, seed, progress, label_map=lmap, device=device)
        transfer = attack_mod.transfer_frame(summary)
        timings["attack"] = time.perf_counter() - t0
    if notes:
        more = f" (+{len(notes) - 1} more in Comparison.warnings)" if len(notes) > 1 else ""
        warnings.warn(f"compare_models: {notes[0]}{more}", stacklevel=2)
    return Comparison(
        table=table,
        layers_a=shown["A"],
        layers_b=shown["B"],
        measures=names + behaviour,
        model_a=ref_a.label,
        model_b=ref_b.label,
        inputs=probe.description + (f"; {draws.description}" if draws else ""),
        n_inputs=probe.n,
        prepare=prep_desc,
        params=dict(params or {}),
        transfer=transfer,
        transfer_summary=summary,
        attack=atk.describe() if atk is not None else None,
        features=feats,
        timings=timings,
        cpu_timings=cpu,
        warnings=notes,
        engine=measured.engine,
    )
