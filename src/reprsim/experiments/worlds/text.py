"""The ``text`` world: overlapping text for language models (the paper's nanoGPT and Llama designs).

Splits, windows and probe sets: :mod:`reprsim.experiments.text_pairs` (built-in domains, ``.txt`` /
``.jsonl`` files and ``datasets`` folders): chunk-level data overlap on the first domain,
corpus-level task overlap. The tokenizer is the family's (:meth:`text_start`): bytes or a trained
BPE for models trained from scratch (``options.tokenizer``), the model's own for a pretrained LM.
Probes: validation windows of the training domains and the others (data), ``common`` / ``ood_one``
/ ``ood_all`` plus, with ``options.fixed_probes`` (default: the family's), the fixed-composition
``common_fixed`` / ``ood_one_fixed`` (task). Models train on their side's documents through
:func:`reprsim.train.train`; per-pair columns: held-out next-token loss, perplexity and accuracy on
validation windows of each model's own domains, and the domains. Consequence: ``jailbreak_transfer``
with a behaviours file, for families whose models take a tokenizer's prompt format (``prompt_format = "tokenizer"``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.data.token_windows import sample_windows, text_options, validation_tokens
from reprsim.experiments.text_pairs import TextPair, make_text_pair, text_probes
from reprsim.experiments.worlds.base import DataWorld, ProbeSet, Trained, train_config

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.families.base import ModelFamily
    from reprsim.experiments.grid import Unit

EVAL_SEED = 0  # held-out scoring windows: the same for every model, so A and B are comparable


@dataclass
class TokenPair:
    """A unit's text split and what its family's models start from (a pretrained base, or None)."""

    text: TextPair
    block_size: int
    start: Any = None
    fixed_probes: bool = False
    shared_base = False  # both models start from the family's base (or from scratch), never from a copy

    @property
    def realised_data_fraction(self) -> float:
        return self.text.realised_data_fraction

    @property
    def realised_task_fraction(self) -> float:
        return self.text.realised_task_fraction

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size


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
            chunk = to_model_device(model, torch.from_numpy(windows[s : s + batch_size]))
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


def unit_text_options(unit: Unit, problems: list[str]):  # noqa: ANN201 - TextOptions | None
    """The unit's text-source options, or None with the reason appended to ``problems`` (preflight)."""
    if unit.source.test_options:
        problems.append(
            "sources.text: test_options are not used (validation is the last val_fraction of each domain); remove them"
        )
    try:
        return text_options(unit.source)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def tokens_digest(docs: list[np.ndarray], dtype: Any = None) -> str:
    """A hash of a side's documents (length-prefixed token bytes, cast to ``dtype`` when given)."""
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(len(doc).to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(doc, dtype=dtype).tobytes())
    return digest.hexdigest()


class TextWorld(DataWorld):
    name = "text"
    overlap_kinds = ("data", "task")
    consequences = ("jailbreak_transfer",)

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, family: ModelFamily) -> TokenPair:
        opts = text_options(unit.source)
        tokenizer, start = family.text_start(config, unit, cache_dir, opts)
        text = make_text_pair(unit, opts, train_config(unit.train).block_size, tokenizer)
        fixed = family.fixed_text_probes if opts.fixed_probes is None else bool(opts.fixed_probes)
        return TokenPair(text, train_config(unit.train).block_size, start, fixed)

    def lm_shape(self, unit: Unit) -> tuple[int, int]:
        """(vocabulary size, block size) of a language model trained from scratch on the unit's source
        (256 bytes, or the trained BPE's size); ValueError / ReprsimError for bad source options."""
        from reprsim.data.token_windows import source_tokenizer

        opts = text_options(unit.source)
        vocab = 256 if opts.byte_level else int(source_tokenizer(opts).vocab_size)
        return vocab, train_config(unit.train).block_size

    def probes(self, config: ExperimentConfig, unit: Unit, pair: TokenPair) -> list[ProbeSet]:
        block = train_config(unit.train).block_size
        return [
            ProbeSet(name, role, torch.from_numpy(windows), n_domains)
            for name, role, n_domains, windows in text_probes(
                unit,
                pair.text,
                pair.text.opts,
                config.probe_size,
                block,
                unit.seeds()["probe"],
                fixed=pair.fixed_probes,
            )
        ]

    def feature_batch_size(self, config: ExperimentConfig) -> int | None:
        """Windows per feature batch for models trained from scratch: the recipe's ``eval_batch_size``."""
        return train_config(config.train).eval_batch_size

    def train_language_model(
        self,
        config: ExperimentConfig,
        unit: Unit,
        pair: TokenPair,
        side: str,
        model: nn.Module,
        checkpoint_dir: Path,
        device: torch.device,
        progress: bool,
    ) -> tuple[nn.Module, dict]:
        """Train on the side's documents (seed stream ``order_<side>``); info: ``val_loss``, ``perplexity``,
        ``acc`` (next-token accuracy) on validation windows of the model's own domains, and ``seconds``."""
        from reprsim.train import train

        cfg = train_config(unit.train)
        text = pair.text
        validation = validation_tokens(text.opts, text.domains[side], text.tokenizer)
        eval_set = (
            [np.asarray(v, dtype=np.int64) for v in validation if len(v) > cfg.block_size]
            if cfg.early_stopping_patience is not None
            else None
        )
        result = train(
            model,
            [np.asarray(d, dtype=np.int64) for d in text.train[side]],
            cfg,
            unit.seeds()[f"order_{side}"],
            eval_dataset=eval_set or None,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            device=device,
        )
        windows = sample_windows(validation, cfg.eval_batches * cfg.batch_size, cfg.block_size + 1, EVAL_SEED)
        info = heldout_scores(result.model, windows, cfg.eval_batch_size) | {"seconds": float(result.seconds)}
        return result.model, info

    def scratch_key(self, unit: Unit, pair: TokenPair, side: str) -> dict[str, Any]:
        """The world's part of the weights key of a model trained from scratch on the side's tokens."""
        text, seeds = pair.text, unit.seeds()
        key = {
            "train": unit.train,
            "init": seeds[f"init_{side}"],
            "tokens": tokens_digest(text.train[side]),
            "vocab": text.vocab_size,
            "validation": [text.domains[side], text.opts.max_bytes, text.opts.val_fraction],
        }
        if text.tokenizer is not None or any(c.path for c in text.opts.corpora):  # bytes of built-in domains: as before
            key["text"] = {
                "tokenizer": text.tokenizer.key if text.tokenizer is not None else "bytes",
                "validation": [text.opts.corpus(d).identity() for d in text.domains[side]],
            }
        return key

    def finetune_key(self, pair: TokenPair, side: str) -> dict[str, Any]:
        """The world's part of the weights key of a fine-tune of a pretrained base on the side's tokens."""
        text = pair.text
        return {
            "validation": [
                [text.opts.corpus(d).identity() for d in text.domains[side]],
                text.opts.max_bytes,
                text.opts.val_fraction,
            ],
            "data": tokens_digest(text.train[side], np.int64),
        }

    def columns(self, pair: TokenPair, a: Trained, b: Trained) -> dict[str, Any]:
        domains = pair.text.domains
        return {
            "acc_a": a.info["acc"],
            "acc_b": b.info["acc"],
            "val_loss_a": a.info["val_loss"],
            "val_loss_b": b.info["val_loss"],
            "perplexity_a": a.info["perplexity"],
            "perplexity_b": b.info["perplexity"],
            "domains_a": ",".join(domains["a"]),
            "domains_b": ",".join(domains["b"]),
        }

    def stages(self, family: ModelFamily) -> tuple[str, ...]:
        """Jailbreak transfer from a behaviours file needs models with a chat tokenizer (the hf stage)."""
        return self.consequences if getattr(family, "prompt_format", None) == "tokenizer" else ()

    def consequence(
        self,
        spec: Any,
        config: ExperimentConfig,
        unit: Unit,
        pair: TokenPair,
        a: Trained,
        b: Trained,
        seed: int,
        family: ModelFamily,
    ) -> dict[str, Any]:
        """Jailbreak transfer (:mod:`reprsim.attacks.jailbreak_transfer`) on the behaviours file, in the
        base tokenizer's prompt format."""
        from reprsim.attacks.jailbreak_options import parse_options
        from reprsim.attacks.jailbreak_prompts import PromptFormat, load_behaviours
        from reprsim.attacks.jailbreak_transfer import jailbreak_transfer

        opts = parse_options(spec.params, warn=False).resolve("hf_text")
        fmt = PromptFormat.from_options(pair.start.tokenizer, opts)
        return jailbreak_transfer(a.model, b.model, fmt, load_behaviours(opts.behaviours), opts, seed=seed)

    def check(self, config: ExperimentConfig, units: list[Unit], family: ModelFamily) -> list[str]:
        """No extra probe sources; every unit's options, domains (tokenised with the family's tokenizer) and split."""
        from reprsim.data.corpora import corpus_problem

        problems: list[str] = []
        if config.probes:
            problems.append(
                "probes: the text source probes the validation text of its listed domains; "
                "add out-of-distribution domains to sources[].options.domains instead"
            )
        try:
            cfg = train_config(config.train)
        except (TypeError, ValueError) as exc:
            return problems + [f"train: {exc}"]
        checked: set[tuple[str, str]] = set()
        for unit in units:
            opts = unit_text_options(unit, problems)
            if opts is None:
                continue
            usable, tokenizer, tokenizer_problems = family.text_tokenizer_check(config, unit, opts)
            problems += tokenizer_problems
            if not usable:
                continue
            for name in opts.domains:
                if (str(unit.model.hf), name) in checked:
                    continue
                checked.add((str(unit.model.hf), name))
                problem = family.domain_problem(opts, name) or corpus_problem(
                    opts.corpus(name), opts.max_bytes, opts.val_fraction, tokenizer, cfg.block_size
                )
                if problem:
                    problems.append(problem)
            try:
                make_text_pair(unit, opts, cfg.block_size, tokenizer)
            except (ValueError, ReprsimError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
        return list(dict.fromkeys(problems))
