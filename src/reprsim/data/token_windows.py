"""Token windows of text corpora: the text source's options, each domain's token stream and its
training / validation parts, the source's tokenizer, and seeded window sampling.

The last ``val_fraction`` of every domain's byte stream is validation: never trained on, it gives
the probe windows and the held-out scores. The options are those of a sweep's ``text`` source
(:mod:`reprsim.experiments.text_pairs` documents them and builds the pairs' splits from these
streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from reprsim.data.corpora import CorpusSpec

if TYPE_CHECKING:
    from reprsim.data.corpora import TextTokenizer

__all__ = [
    "TextOptions",
    "corpus_stream",
    "domain_tokens",
    "sample_windows",
    "source_tokenizer",
    "text_options",
    "validation_tokens",
]

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


def text_options(source: Any) -> TextOptions:  # a config SourceSpec (``name``, ``options``)
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
        raise ValueError(
            f"sources.text.options.domains must be a non-empty list of domain names from {list_domains()} "
            "or corpus mappings {name, path, field}"
        )
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
            raise ValueError(
                f"sources.text.options.{key} must be an int >= {2 if key == 'n_chunks' else 1}, got {value!r}"
            )
    balance = opts.get("balance", "truncate")
    if balance not in _BALANCE:
        raise ValueError(f"sources.text.options.balance must be one of {list(_BALANCE)}, got {balance!r}")
    return TextOptions(
        tuple(domains),
        max_bytes,
        float(val_fraction),
        balance,
        int(opts.get("n_chunks", 80)),
        int(opts.get("per_model", 3)),
        corpora,
        bpe,
        fixed,
        hf_path,
    )


def _hf_tokenizer_path(tokenizer: Any) -> str | None:
    """The folder of a ``{type: hf, path: DIR}`` tokenizer option, else None; ValueError for a malformed one."""
    if not (isinstance(tokenizer, dict) and tokenizer.get("type") == "hf"):
        return None
    if set(tokenizer) != {"type", "path"} or not isinstance(tokenizer["path"], str) or not tokenizer["path"]:
        raise ValueError(
            f"sources.text.options.tokenizer: a Hugging Face tokenizer is {{type: hf, path: DIR}} "
            f"(a local folder, e.g. GPT-2's), got {tokenizer!r}"
        )
    return tokenizer["path"]


def _bpe_size(tokenizer: Any) -> int | None:
    if tokenizer in (None, "bytes"):
        return None
    if isinstance(tokenizer, dict) and tokenizer.get("type") == "bpe" and set(tokenizer) <= {"type", "vocab_size"}:
        size = tokenizer.get("vocab_size", 4096)
        if isinstance(size, int) and not isinstance(size, bool) and size >= 258:
            return size
    raise ValueError(
        f"sources.text.options.tokenizer must be 'bytes' (default), {{type: bpe, vocab_size: N}} "
        f"with N >= 258 or {{type: hf, path: DIR}}, got {tokenizer!r}"
    )


@lru_cache(maxsize=32)
def domain_tokens(name: str, max_bytes: int | None, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` uint8 byte tokens of one built-in domain: the last ``val_fraction`` is validation."""
    from reprsim.data.corpora import corpus_tokens

    return corpus_tokens(CorpusSpec(name), max_bytes, val_fraction, None)


def corpus_stream(
    opts: TextOptions, name: str, tokenizer: TextTokenizer | None = None
) -> tuple[np.ndarray, np.ndarray]:
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
        out[i] = docs[doc][start : start + length]
    return out


def validation_tokens(opts: TextOptions, names: list[str], tokenizer: TextTokenizer | None = None) -> list[np.ndarray]:
    """The validation token streams of domains ``names`` (never trained on)."""
    return [corpus_stream(opts, d, tokenizer)[1] for d in names]
