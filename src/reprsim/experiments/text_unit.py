"""The unit of a text sweep (source ``text``): two byte-level GPTs trained on overlapping text.

The paper's nanoGPT experiments (PAPER.md §1c, §1d, §2D, §4), on the offline domains of
:mod:`reprsim.data.text`:

* **data overlap**: the first domain's training tokens are cut into ``n_chunks`` (80) chunks,
  each model gets half of them, ``round(f · n_chunks/2)`` shared
  (:func:`reprsim.data.splits.chunk_split`); training windows lie inside a model's chunks.
* **task overlap**: each model trains on ``per_model`` (3) of the domains, ``round(3f)`` shared
  (:func:`reprsim.data.splits.corpus_split`). The paper draws a uniform domain, then a uniform
  window; training draws uniform windows over all of a model's tokens, so ``balance`` evens the
  domains out: ``"truncate"`` (default, exact) cuts every domain's training part to the shortest
  listed one, ``"repeat"`` keeps all text and repeats each domain up to the longest one's
  length (whole copies plus a leading piece; uniform up to the window edges), ``"none"``
  samples domains in proportion to their length.

The last ``val_fraction`` of every domain's byte stream is validation: never trained on, it
gives the probe windows and the held-out scores. Representations are the configured layers
(default ``penultimate`` = the final LayerNorm of :class:`reprsim.models.gpt.GPT`), mean-pooled
over the window.

Source options (``sources: [{name: text, options: {...}}]``): ``domains`` (list of names),
``max_bytes`` (truncate each domain first, for speed), ``val_fraction`` (default 0.1),
``balance`` (default ``"truncate"``), ``n_chunks`` (default 80), ``per_model`` (default 3). The model is a
zoo language model (``gpt``, ``gpt_nano``, ...) built with ``vocab_size=256`` and
``block_size=train.block_size``.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprsim.errors import ReprsimError
from reprsim.experiments.config import ExperimentConfig, SourceSpec
from reprsim.experiments.grid import Unit, content_hash
from reprsim.experiments.similarity import probe_rows
from reprsim.experiments.weights import cached_model

VOCAB_SIZE = 256
EVAL_SEED = 0  # held-out scoring windows: the same for every model, so A and B are comparable
_OPTIONS = ("domains", "max_bytes", "val_fraction", "balance", "n_chunks", "per_model")
_BALANCE = ("truncate", "repeat", "none")


@dataclass(frozen=True)
class TextOptions:
    """Validated options of a ``text`` source."""

    domains: tuple[str, ...]
    max_bytes: int | None = None
    val_fraction: float = 0.1
    balance: str = "truncate"  # truncate | repeat | none
    n_chunks: int = 80
    per_model: int = 3


def text_options(source: SourceSpec) -> TextOptions:
    """Parse and check ``source.options``; raises ValueError naming the bad option and the fix."""
    from reprsim.data.text import list_domains

    opts = dict(source.options)
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"sources.text.options: unknown option(s) {unknown}; valid: {list(_OPTIONS)}")
    domains = opts.get("domains")
    if isinstance(domains, str):
        domains = [domains]
    if not domains or not all(isinstance(d, str) for d in domains):
        raise ValueError(f"sources.text.options.domains must be a non-empty list of domain names from {list_domains()}")
    bad = [d for d in domains if d not in list_domains()]
    if bad:
        raise ValueError(f"sources.text.options.domains: unknown domain(s) {bad}; available: {list_domains()}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"sources.text.options.domains {domains} contains duplicates")
    max_bytes = opts.get("max_bytes")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"sources.text.options.max_bytes must be a positive int or null, got {max_bytes!r}")
    val_fraction = opts.get("val_fraction", 0.1)
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"sources.text.options.val_fraction must lie in (0, 1), got {val_fraction!r}")
    for key in ("n_chunks", "per_model"):
        value = opts.get(key, TextOptions.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "n_chunks" else 1):
            raise ValueError(f"sources.text.options.{key} must be an int >= {2 if key == 'n_chunks' else 1}, got {value!r}")
    balance = opts.get("balance", "truncate")
    if balance not in _BALANCE:
        raise ValueError(f"sources.text.options.balance must be one of {list(_BALANCE)}, got {balance!r}")
    return TextOptions(tuple(domains), max_bytes, float(val_fraction), balance,
                       int(opts.get("n_chunks", 80)), int(opts.get("per_model", 3)))  # fmt: skip


@lru_cache(maxsize=32)
def domain_tokens(name: str, max_bytes: int | None, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` uint8 byte tokens of one domain: the last ``val_fraction`` is validation."""
    from reprsim.data.text import encode, load_domain

    tokens = encode(load_domain(name))
    if max_bytes is not None:
        tokens = tokens[:max_bytes]
    cut = len(tokens) - round(len(tokens) * val_fraction)
    return tokens[:cut], tokens[cut:]


@dataclass
class TextPair:
    """The split of one unit: each model's training documents and the domains it saw."""

    split: Any  # reprsim.data.splits.Split (kind "chunk" or "corpus")
    train: dict[str, list[np.ndarray]]  # side -> training documents (1-D uint8 arrays)
    domains: dict[str, list[str]]  # side -> domains trained on


def make_text_pair(unit: Unit, opts: TextOptions, block_size: int) -> TextPair:
    """Split the text of ``unit`` (data: chunks of the first domain; task: domains) for models A and B."""
    from reprsim.data.splits import chunk_bounds, chunk_split, corpus_split

    seed = unit.seeds()["split"]
    if unit.overlap_kind == "data":
        name = opts.domains[0]
        tokens = domain_tokens(name, opts.max_bytes, opts.val_fraction)[0]
        split = chunk_split(len(tokens), unit.data_fraction, n_chunks=opts.n_chunks, seed=seed, block_size=block_size + 1)
        train = {side: [tokens[s:e] for s, e in chunk_bounds(split, side)] for side in ("a", "b")}
        return TextPair(split, train, {"a": [name], "b": [name]})
    if unit.overlap_kind == "task":
        split = corpus_split(list(opts.domains), unit.task_fraction, per_model=opts.per_model, seed=seed)
        parts = {d: domain_tokens(d, opts.max_bytes, opts.val_fraction)[0] for d in opts.domains}
        shortest, longest = min(len(t) for t in parts.values()), max(len(t) for t in parts.values())
        if opts.balance == "truncate":
            parts = {d: t[:shortest] for d, t in parts.items()}
        docs = {d: _repeat_to(t, longest, block_size) if opts.balance == "repeat" else [t] for d, t in parts.items()}
        domains = {side: [opts.domains[i] for i in classes] for side, classes in (("a", split.a_classes), ("b", split.b_classes))}
        train = {side: [doc for d in names for doc in docs[d]] for side, names in domains.items()}
        return TextPair(split, train, domains)
    raise ValueError(f"the text source supports overlap kinds 'data' and 'task', not {unit.overlap_kind!r}")


def _repeat_to(tokens: np.ndarray, total: int, block_size: int) -> list[np.ndarray]:
    """``tokens`` listed whole ``total // len`` times plus a leading piece, ``total`` tokens in all.

    A piece too short for one training window (``<= block_size``) is dropped.
    """
    copies, rest = divmod(total, len(tokens))
    return [tokens] * copies + ([tokens[:rest]] if rest > block_size else [])


def sample_windows(docs: list[np.ndarray], n: int, length: int, seed: int | list[int]) -> np.ndarray:
    """``n`` windows of ``length`` tokens: a uniform document, then a uniform start inside it.

    Returns an int64 array of shape (n, length); (0, length) when ``docs`` is empty or ``n`` is 0.
    Documents shorter than ``length`` are skipped (all of them too short also gives (0, length)).
    """
    docs = [d for d in docs if len(d) >= length]
    if not docs or n == 0:
        return np.zeros((0, length), dtype=np.int64)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(docs), size=n)
    out = np.empty((n, length), dtype=np.int64)
    for i, doc in enumerate(which):
        start = rng.integers(len(docs[doc]) - length + 1)
        out[i] = docs[doc][start:start + length]
    return out


def _validation(opts: TextOptions, names: list[str]) -> list[np.ndarray]:
    return [domain_tokens(d, opts.max_bytes, opts.val_fraction)[1] for d in names]


@torch.no_grad()
def heldout_scores(model: torch.nn.Module, windows: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Next-token loss (nats), perplexity and accuracy of an LM on windows (n, T+1); NaN when n = 0."""
    if len(windows) == 0:
        return {"val_loss": math.nan, "perplexity": math.nan, "acc": math.nan}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for s in range(0, len(windows), batch_size):
            chunk = torch.from_numpy(windows[s:s + batch_size]).to(device)
            x, y = chunk[:, :-1], chunk[:, 1:]
            logits = model(x).float()
            flat = logits.reshape(-1, logits.shape[-1])
            loss_sum += float(torch.nn.functional.cross_entropy(flat, y.reshape(-1), reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    finally:
        model.train(was_training)
    loss = loss_sum / count
    return {"val_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "acc": correct / count}


def _build(unit: Unit, side: str, block_size: int) -> torch.nn.Module:
    from reprsim import models

    seed = unit.seeds()[f"init_{side}"] if side in ("a", "b") else None
    return models.build(unit.model.name, vocab_size=VOCAB_SIZE, block_size=block_size, seed=seed, **unit.model.options)


def trained_text_model(unit: Unit, side: str, pair: TextPair, opts: TextOptions, cache_dir: Path,
                       progress: bool) -> tuple[torch.nn.Module, dict[str, float]]:  # fmt: skip
    """Model ``side`` of the unit, trained or loaded from ``cache_dir/models``.

    Keyed by what determines the weights (model, recipe, seeds, training tokens), so model A of
    a sweep, whose data is the same at every fraction, is trained once per seed. Returns
    ``(model in eval mode, info)`` with ``val_loss``, ``perplexity`` and ``acc`` (next-token
    accuracy) on validation windows of the model's own domains, and ``seconds``.
    """
    from reprsim.train import TrainConfig, train

    cfg = TrainConfig.from_dict(unit.train)
    seeds = unit.seeds()
    digest = hashlib.sha256()
    for doc in pair.train[side]:
        digest.update(len(doc).to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(doc).tobytes())
    key = content_hash({
        "model": unit.model.model_dump(mode="json"), "train": unit.train, "init": seeds[f"init_{side}"],
        "order": seeds[f"order_{side}"], "tokens": digest.hexdigest(), "vocab": VOCAB_SIZE,
        "validation": [pair.domains[side], opts.max_bytes, opts.val_fraction],
    })  # fmt: skip
    validation = _validation(opts, pair.domains[side])

    def fit(model, checkpoint_dir):
        eval_set = [v for v in validation if len(v) > cfg.block_size] if cfg.early_stopping_patience is not None else None
        result = train(model, [np.asarray(d, dtype=np.int64) for d in pair.train[side]], cfg, seeds[f"order_{side}"],
                       eval_dataset=eval_set or None, checkpoint_dir=checkpoint_dir, progress=progress)  # fmt: skip
        n_eval = cfg.eval_batches * cfg.batch_size
        info = heldout_scores(result.model, sample_windows(validation, n_eval, cfg.block_size + 1, EVAL_SEED),
                              cfg.eval_batch_size) | {"seconds": float(result.seconds)}  # fmt: skip
        return result.model, info

    return cached_model(_build(unit, side, cfg.block_size), f"text-{key}", cache_dir, fit)


def text_probes(unit: Unit, pair: TextPair, opts: TextOptions, n: int, length: int,
                seed: int) -> list[tuple[str, str, np.ndarray]]:  # fmt: skip
    """The unit's probe sets ``(name, role, windows (n, length) int64)`` from validation text.

    Data overlap: the training domain (role ``id``) and every other listed domain (``ood``).
    Task overlap: ``common`` (domains of both models), ``ood_one`` (of exactly one) and
    ``ood_all`` (listed domains of neither); an empty group gives a (0, length) array.
    Each set is drawn with its own stream of ``seed``, so adding a domain changes no other set.
    """
    if unit.overlap_kind == "data":
        groups = [(d, "id" if i == 0 else "ood", [d]) for i, d in enumerate(opts.domains)]
    else:
        a, b = set(pair.domains["a"]), set(pair.domains["b"])
        groups = [
            ("common", "common", [d for d in opts.domains if d in a & b]),
            ("ood_one", "ood_one", [d for d in opts.domains if d in a ^ b]),
            ("ood_all", "ood_all", [d for d in opts.domains if d not in a | b]),
        ]
    return [(name, role, sample_windows(_validation(opts, names), n, length, [seed, zlib.crc32(name.encode())]))
            for name, role, names in groups]  # fmt: skip


def text_unit(config: ExperimentConfig, unit: Unit, cache_dir: Path, timings: dict, progress: bool) -> list[dict]:
    """Run one text unit; returns one row per (probe set, layer pair, measure).

    Each row holds ``unit.describe()``, ``status``, the realised fractions, ``acc_*``,
    ``val_loss_*``, ``perplexity_*`` (held-out, per model), ``domains_a``/``domains_b``,
    ``probe_set``, ``probe_role``, ``n_probe`` and the similarity columns (``layer_a``,
    ``layer_b``, ``measure``, ``value``, ``p_value``).
    """
    from reprsim.experiments.unit import timed_stage
    from reprsim.features import extract
    from reprsim.train import TrainConfig

    opts = text_options(unit.source)
    cfg = TrainConfig.from_dict(unit.train)
    seeds = unit.seeds()
    with timed_stage(timings, "split"):
        pair = make_text_pair(unit, opts, cfg.block_size)
    with timed_stage(timings, "train_a"):
        model_a, info_a = trained_text_model(unit, "a", pair, opts, cache_dir, progress)
    with timed_stage(timings, "train_b"):
        model_b, info_b = trained_text_model(unit, "b", pair, opts, cache_dir, progress)
    with timed_stage(timings, "features"):
        probes = text_probes(unit, pair, opts, config.probe_size, cfg.block_size, seeds["probe"])
        feats = {}
        for name, _, windows in probes:
            for side, model in (("a", model_a), ("b", model_b)):
                feats[name, side] = (
                    extract(model, torch.from_numpy(windows), layers=config.layers, pool="mean",
                            batch_size=cfg.eval_batch_size, cache_dir=cache_dir / "features")
                    if len(windows) else {}
                )  # fmt: skip
    with timed_stage(timings, "measures"):
        rows = [
            row
            for name, role, windows in probes
            for row in probe_rows(config.measures, name, role, len(windows), feats[name, "a"], feats[name, "b"],
                                  config.layers, seeds["probe"])  # fmt: skip
        ]
    common = unit.describe() | {
        "status": "ok",
        "realised_data_fraction": float(pair.split.realised_data_fraction),
        "realised_task_fraction": float(pair.split.realised_task_fraction),
        "acc_a": info_a["acc"], "acc_b": info_b["acc"],
        "val_loss_a": info_a["val_loss"], "val_loss_b": info_b["val_loss"],
        "perplexity_a": info_a["perplexity"], "perplexity_b": info_b["perplexity"],
        "domains_a": ",".join(pair.domains["a"]), "domains_b": ",".join(pair.domains["b"]),
    }  # fmt: skip
    return [common | row for row in rows]


def text_preflight(config: ExperimentConfig, units: list[Unit]) -> None:
    """Check options, domains, training recipe, model, layers and every split before training.

    Raises :class:`ReprsimError` naming the problem and the fix.
    """
    from reprsim.data.text import list_domains
    from reprsim.experiments.unit import check_layers
    from reprsim.train import TrainConfig

    if config.probes:
        raise ReprsimError("probes: the text source probes the validation text of its listed domains; "
                           "add out-of-distribution domains to sources[].options.domains instead")
    try:
        cfg = TrainConfig.from_dict(dict(config.train))
    except (TypeError, ValueError) as exc:
        raise ReprsimError(f"train: {exc}") from None
    checked: set[str] = set()
    for unit in units:
        if unit.source.test_options:
            raise ReprsimError("sources.text: test_options are not used (validation is the last val_fraction "
                               "of each domain); remove them")
        try:
            opts = text_options(unit.source)
        except ValueError as exc:
            raise ReprsimError(str(exc)) from None
        for name in opts.domains:
            if name in checked:
                continue
            try:
                train_part, val_part = domain_tokens(name, opts.max_bytes, opts.val_fraction)
            except ReprsimError as exc:
                raise ReprsimError(f"text domain {name!r} is not installed ({exc}); installed: "
                                   f"{list_domains(available_only=True)}") from None
            if len(val_part) <= cfg.block_size or len(train_part) <= cfg.block_size:
                raise ReprsimError(f"text domain {name!r}: {len(train_part)} training / {len(val_part)} validation "
                                   f"bytes, not more than train.block_size={cfg.block_size}; raise max_bytes or "
                                   "val_fraction, or lower block_size")
            checked.add(name)
        try:
            make_text_pair(unit, opts, cfg.block_size)
        except ValueError as exc:
            raise ReprsimError(f"unit {unit.unit_id}: {exc}") from None
    one_per_model = {json.dumps(u.model.model_dump(mode="json"), sort_keys=True): u for u in units}
    for unit in one_per_model.values():
        name = unit.model.name
        clash = sorted({"vocab_size", "block_size"} & set(unit.model.options))
        if clash:
            raise ReprsimError(f"models.{name}: options {clash} are set by the text source "
                               "(vocab 256, train.block_size); remove them")
        try:
            model = _build(unit, "", cfg.block_size)
        except (TypeError, ValueError) as exc:
            raise ReprsimError(f"models.{name}: {exc} (the text source needs a language model, "
                               "e.g. gpt or gpt_nano)") from None
        check_layers(model, config.layers, name)
