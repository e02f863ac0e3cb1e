"""Text pairs for language-model kinds: splits of the offline text domains, windows and probe sets.

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
gives the probe windows and the held-out scores.

Source options (``sources: [{name: text, options: {...}}]``): ``domains`` (a list of built-in
domain names and/or corpus mappings ``{name, path, field, split}`` for ``.txt`` / ``.jsonl`` files and
``datasets`` folders, :func:`reprsim.data.corpora.parse_corpus`), ``max_bytes`` (truncate each
domain first, for speed), ``val_fraction`` (default 0.1), ``balance`` (default ``"truncate"``),
``n_chunks`` (default 80), ``per_model`` (default 3), ``tokenizer`` (``text`` kind only: ``bytes``,
the default, ``{type: bpe, vocab_size: N}``, a byte-level BPE trained offline with
``tokenizers`` on the training parts of the listed domains, or ``{type: hf, path: DIR}``, a local
``transformers`` tokenizer folder such as GPT-2's; the ``llm`` kind always uses its
model's tokenizer) and ``fixed_probes`` (task overlap: add the fixed-composition probe sets
``common_fixed`` / ``ood_one_fixed``; default off for the ``text`` kind, on for ``llm``).

A pair is built with a :class:`~reprsim.data.corpora.TextTokenizer` (bytes unless given): windows,
chunks and probe windows are counted in its tokens.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reprsim.data.split_types import RealisedFractions
from reprsim.data.token_windows import TextOptions, corpus_stream, sample_windows, validation_tokens

__all__ = ["TextPair", "fixed_domains", "make_text_pair", "text_probes"]

if TYPE_CHECKING:
    from reprsim.data.corpora import TextTokenizer
    from reprsim.experiments.grid import Unit


@dataclass
class TextPair(RealisedFractions):
    """The split of one unit: each model's training documents, the domains it saw and the tokenizer."""

    split: Any  # reprsim.data.splits.Split (kind "chunk" or "corpus")
    train: dict[str, list[np.ndarray]]  # side -> training documents (1-D integer token arrays)
    domains: dict[str, list[str]]  # side -> domains trained on
    opts: TextOptions
    tokenizer: TextTokenizer | None = None  # None: bytes

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (256 for bytes)."""
        return 256 if self.tokenizer is None else int(self.tokenizer.vocab_size)


def make_text_pair(unit: Unit, opts: TextOptions, block_size: int, tokenizer: TextTokenizer | None = None) -> TextPair:
    """Split the text of ``unit`` (data: chunks of the first domain; task: domains) for models A and B.

    Tokens come from ``tokenizer`` (bytes when None); raises ValueError when a corpus is too small
    for the requested chunks or there are too few domains for the task split.
    """
    from reprsim.data.splits import chunk_bounds, chunk_split, corpus_split

    seed = unit.seeds()["split"]
    if unit.overlap_kind == "data":
        name = opts.domains[0]
        tokens = corpus_stream(opts, name, tokenizer)[0]
        try:
            split = chunk_split(
                len(tokens), unit.data_fraction, n_chunks=opts.n_chunks, seed=seed, block_size=block_size + 1
            )
        except ValueError as exc:
            raise ValueError(f"domain {name!r} ({len(tokens)} training tokens): {exc}; or raise max_bytes") from None
        train = {side: [tokens[s:e] for s, e in chunk_bounds(split, side)] for side in ("a", "b")}
        return TextPair(split, train, {"a": [name], "b": [name]}, opts, tokenizer)
    if unit.overlap_kind == "task":
        split = corpus_split(list(opts.domains), unit.task_fraction, per_model=opts.per_model, seed=seed)
        parts = {d: corpus_stream(opts, d, tokenizer)[0] for d in opts.domains}
        shortest, longest = min(len(t) for t in parts.values()), max(len(t) for t in parts.values())
        if opts.balance == "truncate":
            parts = {d: t[:shortest] for d, t in parts.items()}
        docs = {d: _repeat_to(t, longest, block_size) if opts.balance == "repeat" else [t] for d, t in parts.items()}
        domains = {
            side: [opts.domains[i] for i in classes]
            for side, classes in (("a", split.a_classes), ("b", split.b_classes))
        }
        train = {side: [doc for d in names for doc in docs[d]] for side, names in domains.items()}
        return TextPair(split, train, domains, opts, tokenizer)
    raise ValueError(f"the text source supports overlap kinds 'data' and 'task', not {unit.overlap_kind!r}")


def _repeat_to(tokens: np.ndarray, total: int, block_size: int) -> list[np.ndarray]:
    """``tokens`` listed whole ``total // len`` times plus a leading piece, ``total`` tokens in all.

    A piece too short for one training window (``<= block_size``) is dropped.
    """
    copies, rest = divmod(total, len(tokens))
    return [tokens] * copies + ([tokens[:rest]] if rest > block_size else [])


def fixed_domains(pair: TextPair) -> dict[str, list[str]]:
    """Task overlap: the domains whose role is the same at every fraction, for the split's seed.

    ``common_fixed``: the domains shared at every fraction > 0; ``ood_one_fixed``: the domains seen
    by exactly one model at every fraction < 1 (fractions j / per_model, those the domains allow).
    With the paper's 6 domains and 3 per model: one common domain, and one exclusive domain per model.
    """
    from reprsim.data.splits import corpus_split

    names, k = list(pair.opts.domains), pair.opts.per_model
    common: set[str] | None = None
    one: set[str] | None = None
    for j in range(k + 1):
        try:
            split = corpus_split(names, j / k, per_model=k, seed=pair.split.seed)
        except ValueError:  # too few domains for this fraction
            continue
        a, b = {names[i] for i in split.a_classes}, {names[i] for i in split.b_classes}
        if j > 0:
            common = a & b if common is None else common & a & b
        if j < k:
            one = a ^ b if one is None else one & (a ^ b)
    return {
        "common_fixed": [d for d in names if d in (common or set())],
        "ood_one_fixed": [d for d in names if d in (one or set())],
    }


def text_probes(
    unit: Unit, pair: TextPair, opts: TextOptions, n: int, length: int, seed: int, fixed: bool = False
) -> list[tuple[str, str, int, np.ndarray]]:
    """The unit's probe sets ``(name, role, n_domains, windows (n, length) int64)`` from validation text.

    Data overlap: the training domain (role ``id``) and every other listed domain (``ood``).
    Task overlap: ``common`` (domains of both models), ``ood_one`` (of exactly one) and
    ``ood_all`` (listed domains of neither); an empty group gives a (0, length) array. With
    ``fixed``, also ``common_fixed`` and ``ood_one_fixed`` (:func:`fixed_domains`), whose domains do
    not change with the fraction. Windows are in ``pair.tokenizer``'s tokens. Each set is drawn with
    its own stream of ``seed``, so adding a domain changes no other set.
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
        if fixed:
            groups += [(name, name, names) for name, names in fixed_domains(pair).items()]
    return [
        (
            name,
            role,
            len(names),
            sample_windows(
                validation_tokens(opts, names, pair.tokenizer), n, length, [seed, zlib.crc32(name.encode())]
            ),
        )
        for name, role, names in groups
    ]
