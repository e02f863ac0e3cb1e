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
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from reprsim.data.corpora import CorpusSpec
from reprsim.data.split_types import RealisedFractions

if TYPE_CHECKING:
    from reprsim.data.corpora import TextTokenizer
    from reprsim.experiments.config import SourceSpec
    from reprsim.experiments.grid import Unit

_OPTIONS = ("domains", "max_bytes", "val_fraction", "balance", "n_chunks", "per_model", "tokenizer", "fixed_probes")
_BALANCE = ("truncate", "repeat", "none")


@dataclass(frozen=True)
class TextOptions:
    """Validated options of a ``text`` source (``domains``: the corpus names, in config order)."""

    domains: tuple[str, ...]
    max_bytes: int | None = None
    val_fraction: float = 0.1
    balance: str = "truncate"  # truncate | repeat | none
    n_chunks: int = 80
    per_model: int = 3
    corpora: tuple[CorpusSpec, ...] = ()  # one per domain (built-in or file)
    bpe_vocab_size: int | None = None  # text kind: a BPE of this size instead of bytes
    fixed_probes: bool | None = None  # None: the kind's default
    hf_tokenizer: str | None = None  # text kind: a local transformers tokenizer folder instead of bytes

    @property
    def byte_level(self) -> bool:
        """True when the tokens are bytes (no BPE, no Hugging Face tokenizer)."""
        return self.bpe_vocab_size is None and self.hf_tokenizer is None

    def corpus(self, name: str) -> CorpusSpec:
        """The :class:`~reprsim.data.corpora.CorpusSpec` of domain ``name``."""
        return next((c for c in self.corpora if c.name == name), None) or CorpusSpec(name)


def text_options(source: SourceSpec) -> TextOptions:
    """Parse and check ``source.options``; raises ValueError naming the bad option and the fix."""
    from reprsim.data.corpora import parse_corpus
    from reprsim.data.text import list_domains

    opts = dict(source.options)
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"sources.text.options: unknown option(s) {unknown}; valid: {list(_OPTIONS)}")
    domains = opts.get("domains")
    if isinstance(domains, (str, dict)):
        domains = [domains]
    if not domains or not isinstance(domains, list):
        raise ValueError(f"sources.text.options.domains must be a non-empty list of domain names from {list_domains()} "
                         "or corpus mappings {name, path, field}")
    bad = [d for d in domains if isinstance(d, str) and d not in list_domains()]
    if bad:
        raise ValueError(f"sources.text.options.domains: unknown domain(s) {bad}; available: {list_domains()}")
    corpora = tuple(parse_corpus(d) for d in domains)
    domains = [c.name for c in corpora]
    if len(set(domains)) != len(domains):
        raise ValueError(f"sources.text.options.domains {domains} contains duplicates")
    raw_tokenizer = opts.get("tokenizer", "bytes")
    hf_path = _hf_tokenizer_path(raw_tokenizer)
    bpe = None if hf_path is not None else _bpe_size(raw_tokenizer)
    fixed = opts.get("fixed_probes")
    if fixed is not None and not isinstance(fixed, bool):
        raise ValueError(f"sources.text.options.fixed_probes must be true or false, got {fixed!r}")
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
                       int(opts.get("n_chunks", 80)), int(opts.get("per_model", 3)), corpora, bpe, fixed,
                       hf_path)  # fmt: skip


def _hf_tokenizer_path(tokenizer: Any) -> str | None:
    """The folder of a ``{type: hf, path: DIR}`` tokenizer option, else None; ValueError for a malformed one."""
    if not (isinstance(tokenizer, dict) and tokenizer.get("type") == "hf"):
        return None
    if set(tokenizer) != {"type", "path"} or not isinstance(tokenizer["path"], str) or not tokenizer["path"]:
        raise ValueError(f"sources.text.options.tokenizer: a Hugging Face tokenizer is {{type: hf, path: DIR}} "
                         f"(a local folder, e.g. GPT-2's), got {tokenizer!r}")
    return tokenizer["path"]


def _bpe_size(tokenizer: Any) -> int | None:
    if tokenizer in (None, "bytes"):
        return None
    if isinstance(tokenizer, dict) and tokenizer.get("type") == "bpe" and set(tokenizer) <= {"type", "vocab_size"}:
        size = tokenizer.get("vocab_size", 4096)
        if isinstance(size, int) and not isinstance(size, bool) and size >= 258:
            return size
    raise ValueError(f"sources.text.options.tokenizer must be 'bytes' (default), {{type: bpe, vocab_size: N}} "
                     f"with N >= 258 or {{type: hf, path: DIR}}, got {tokenizer!r}")


@lru_cache(maxsize=32)
def domain_tokens(name: str, max_bytes: int | None, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` uint8 byte tokens of one built-in domain: the last ``val_fraction`` is validation."""
    from reprsim.data.corpora import corpus_tokens

    return corpus_tokens(CorpusSpec(name), max_bytes, val_fraction, None)


def corpus_stream(opts: TextOptions, name: str, tokenizer: TextTokenizer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` tokens of domain ``name`` of ``opts`` with ``tokenizer`` (bytes when None)."""
    from reprsim.data.corpora import corpus_tokens

    return corpus_tokens(opts.corpus(name), opts.max_bytes, opts.val_fraction, tokenizer)


@lru_cache(maxsize=8)
def _bpe_for(corpora: tuple[CorpusSpec, ...], max_bytes: int | None, val_fraction: float, vocab_size: int):
    from reprsim.data.corpora import FastTokenizer, corpus_split_texts, train_bpe

    texts = [t for c in corpora for t in corpus_split_texts(c, max_bytes, val_fraction)[0]]
    return FastTokenizer(train_bpe(texts, vocab_size))


def source_tokenizer(opts: TextOptions) -> TextTokenizer:
    """The ``text`` kind's tokenizer for ``opts``: bytes, a local Hugging Face tokenizer folder (ValueError when
    it does not load), or the BPE trained offline on the training parts of the listed domains (the same for
    every unit of the source, so both models share it)."""
    from reprsim.data.corpora import ByteTokenizer, load_hf_tokenizer

    if opts.hf_tokenizer is not None:
        return load_hf_tokenizer(opts.hf_tokenizer)
    if opts.bpe_vocab_size is None:
        return ByteTokenizer()
    return _bpe_for(opts.corpora, opts.max_bytes, opts.val_fraction, opts.bpe_vocab_size)


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
            split = chunk_split(len(tokens), unit.data_fraction, n_chunks=opts.n_chunks, seed=seed,
                                block_size=block_size + 1)  # fmt: skip
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
        domains = {side: [opts.domains[i] for i in classes] for side, classes in (("a", split.a_classes), ("b", split.b_classes))}
        train = {side: [doc for d in names for doc in docs[d]] for side, names in domains.items()}
        return TextPair(split, train, domains, opts, tokenizer)
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


def validation_tokens(opts: TextOptions, names: list[str], tokenizer: TextTokenizer | None = None) -> list[np.ndarray]:
    """The validation token streams of domains ``names`` (never trained on)."""
    return [corpus_stream(opts, d, tokenizer)[1] for d in names]


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
    return {"common_fixed": [d for d in names if d in (common or set())],
            "ood_one_fixed": [d for d in names if d in (one or set())]}


def text_probes(unit: Unit, pair: TextPair, opts: TextOptions, n: int, length: int, seed: int,
                fixed: bool = False) -> list[tuple[str, str, int, np.ndarray]]:  # fmt: skip
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
    return [(name, role, len(names),
             sample_windows(validation_tokens(opts, names, pair.tokenizer), n, length,
                            [seed, zlib.crc32(name.encode())]))
            for name, role, names in groups]  # fmt: skip
