"""The ``text`` kind: two byte-level GPTs trained from scratch on overlapping text (the paper's nanoGPT design).

Splits, windows and probe sets: :mod:`reprsim.experiments.text_pairs` (built-in domains, ``.txt`` /
``.jsonl`` files and ``datasets`` folders). Tokens are bytes, or with ``options.tokenizer: {type: bpe,
vocab_size: N}`` a byte-level BPE trained offline on the training parts of the listed domains, or with
``{type: hf, path: DIR}`` a local ``transformers`` tokenizer folder (the paper used GPT-2's BPE). The model is a zoo language model (``gpt``, ``gpt_nano``, ...) built with the
tokenizer's ``vocab_size`` (256 for bytes) and ``block_size=train.block_size``;
representations are the configured layers (default ``penultimate`` = the final LayerNorm),
mean-pooled over the window. Per-model columns: held-out next-token loss, perplexity and
accuracy on validation windows of the model's own domains.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.kinds.base import Kind, Probe, Trained, layer_problems, train_config
from reprsim.experiments.text_pairs import (
    TextPair,
    make_text_pair,
    sample_windows,
    source_tokenizer,
    text_options,
    text_probes,  # fmt: skip
    validation_tokens,
)

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

VOCAB_SIZE = 256  # bytes (the default tokenizer); a BPE source gives its own size
EVAL_SEED = 0  # held-out scoring windows: the same for every model, so A and B are comparable


@torch.no_grad()
def heldout_scores(model: nn.Module, windows: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Next-token loss (nats), perplexity and accuracy of an LM on windows (n, T+1); NaN when n = 0."""
    from reprsim.devices import to_model_device

    if len(windows) == 0:
        return {"val_loss": math.nan, "perplexity": math.nan, "acc": math.nan}
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for s in range(0, len(windows), batch_size):
            chunk = to_model_device(model, torch.from_numpy(windows[s:s + batch_size]))
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


def _vocab_size(opts) -> int:  # noqa: ANN001 - TextOptions
    """The vocabulary of the source's tokenizer (256 bytes, or the trained BPE's size)."""
    return VOCAB_SIZE if opts.byte_level else int(source_tokenizer(opts).vocab_size)


def unit_text_options(unit: Unit, problems: list[str]):  # noqa: ANN201 - TextOptions | None
    """The unit's text-source options, or None with the reason appended to ``problems`` (preflight)."""
    if unit.source.test_options:
        problems.append("sources.text: test_options are not used (validation is the last val_fraction "
                        "of each domain); remove them")
    try:
        return text_options(unit.source)
    except ValueError as exc:
        problems.append(str(exc))
        return None


class TextKind(Kind):
    name = "text"
    overlap_kinds = ("data", "task")
    model_kinds = ("lm",)
    consequences = ()
    feature_pool = "mean"

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> TextPair:
        opts = text_options(unit.source)
        tokenizer = None if opts.byte_level else source_tokenizer(opts)
        return make_text_pair(unit, opts, train_config(unit.train).block_size, tokenizer)

    def probes(self, config: ExperimentConfig, unit: Unit, pair: TextPair) -> list[Probe]:
        cfg = train_config(unit.train)
        return [Probe(name, role, torch.from_numpy(windows), n_domains)
                for name, role, n_domains, windows in text_probes(unit, pair, pair.opts, config.probe_size,
                                                                  cfg.block_size, unit.seeds()["probe"],
                                                                  fixed=bool(pair.opts.fixed_probes))]  # fmt: skip

    def features(self, config: ExperimentConfig, model: nn.Module, probe: Probe) -> dict[str, np.ndarray]:
        from reprsim.features import extract

        return extract(model, probe.inputs, layers=config.layers, pool=self.feature_pool,
                       batch_size=train_config(config.train).eval_batch_size)  # fmt: skip

    def build(self, config: ExperimentConfig, unit: Unit, pair: TextPair | None, side: str) -> nn.Module:
        from reprsim import models

        seed = unit.seeds()[f"init_{side}"] if side in ("a", "b") else None
        vocab = pair.vocab_size if pair is not None else _vocab_size(text_options(unit.source))
        return models.build(unit.model.name, vocab_size=vocab, block_size=train_config(unit.train).block_size,
                            seed=seed, **unit.model.options)  # fmt: skip

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: TextPair, side: str) -> dict[str, Any]:
        seeds = unit.seeds()
        digest = hashlib.sha256()
        for doc in pair.train[side]:
            digest.update(len(doc).to_bytes(8, "little"))
            digest.update(np.ascontiguousarray(doc).tobytes())
        key = {"model": unit.model.model_dump(mode="json"), "train": unit.train, "init": seeds[f"init_{side}"],
                "order": seeds[f"order_{side}"], "tokens": digest.hexdigest(), "vocab": pair.vocab_size,
                "validation": [pair.domains[side], pair.opts.max_bytes, pair.opts.val_fraction]}  # fmt: skip
        if pair.tokenizer is not None or any(c.path for c in pair.opts.corpora):  # bytes of built-in domains: as before
            key["text"] = {"tokenizer": pair.tokenizer.key if pair.tokenizer is not None else "bytes",
                           "validation": [pair.opts.corpus(d).identity() for d in pair.domains[side]]}
        return key

    def fit(self, config: ExperimentConfig, unit: Unit, pair: TextPair, side: str, model: nn.Module,
            checkpoint_dir: Path, device: torch.device, progress: bool) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
        """Train on the side's documents; info: ``val_loss``, ``perplexity``, ``acc`` (next-token
        accuracy) on validation windows of the model's own domains, and ``seconds``."""
        from reprsim.train import train

        cfg = train_config(unit.train)
        validation = validation_tokens(pair.opts, pair.domains[side], pair.tokenizer)
        eval_set = [v for v in validation if len(v) > cfg.block_size] if cfg.early_stopping_patience is not None else None
        result = train(model, [np.asarray(d, dtype=np.int64) for d in pair.train[side]], cfg,
                       unit.seeds()[f"order_{side}"], eval_dataset=eval_set or None, checkpoint_dir=checkpoint_dir,
                       progress=progress, device=device)  # fmt: skip
        n_eval = cfg.eval_batches * cfg.batch_size
        windows = sample_windows(validation, n_eval, cfg.block_size + 1, EVAL_SEED)
        info = heldout_scores(result.model, windows, cfg.eval_batch_size) | {"seconds": float(result.seconds)}
        return result.model, info

    def pair_columns(self, pair: TextPair, a: Trained, b: Trained) -> dict[str, Any]:
        return {"acc_a": a.info["acc"], "acc_b": b.info["acc"],
                "val_loss_a": a.info["val_loss"], "val_loss_b": b.info["val_loss"],
                "perplexity_a": a.info["perplexity"], "perplexity_b": b.info["perplexity"],
                "domains_a": ",".join(pair.domains["a"]), "domains_b": ",".join(pair.domains["b"])}  # fmt: skip

    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """Options, domains, training recipe, model, layers and every split, before training."""
        from reprsim.data.corpora import corpus_problem
        from reprsim.data.text import list_domains
        from reprsim.experiments.text_pairs import domain_tokens

        problems: list[str] = []
        if config.probes:
            problems.append("probes: the text source probes the validation text of its listed domains; "
                            "add out-of-distribution domains to sources[].options.domains instead")
        try:
            cfg = train_config(config.train)
        except (TypeError, ValueError) as exc:
            return problems + [f"train: {exc}"]
        checked: set[str] = set()
        for unit in units:
            opts = unit_text_options(unit, problems)
            if opts is None:
                continue
            try:
                tokenizer = None if opts.byte_level else source_tokenizer(opts)
            except (ValueError, ReprsimError) as exc:
                problems.append(f"sources.text.options.tokenizer: {exc}")
                continue
            for name in opts.domains:
                if name in checked:
                    continue
                checked.add(name)
                spec = opts.corpus(name)
                if spec.path is None:
                    try:
                        domain_tokens(name, opts.max_bytes, opts.val_fraction)
                    except ReprsimError as exc:
                        problems.append(f"text domain {name!r} is not installed ({exc}); installed: "
                                        f"{list_domains(available_only=True)}")
                        continue
                problem = corpus_problem(spec, opts.max_bytes, opts.val_fraction, tokenizer, cfg.block_size)
                if problem:
                    problems.append(problem)
            try:
                make_text_pair(unit, opts, cfg.block_size, tokenizer)
            except (ValueError, ReprsimError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
        one_per_model = {json.dumps(u.model.model_dump(mode="json"), sort_keys=True): u for u in units}
        for unit in one_per_model.values():
            name = unit.model.name
            clash = sorted({"vocab_size", "block_size"} & set(unit.model.options))
            if clash:
                problems.append(f"models.{name}: options {clash} are set by the text source "
                                "(the tokenizer's vocabulary, train.block_size); remove them")
                continue
            try:
                model = self.build(config, unit, None, "")
            except (TypeError, ValueError) as exc:
                problems.append(f"models.{name}: {exc} (the text source needs a language model, e.g. gpt or gpt_nano)")
                continue
            problems += layer_problems(model, config.layers, name)
        return list(dict.fromkeys(problems))

