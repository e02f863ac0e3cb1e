"""Text corpora for language models and their token streams: built-in domains, files, `datasets` folders.

A *corpus* is a list of documents (strings). It comes from one of

* a built-in offline domain of :mod:`reprsim.data.text` (``"shakespeare"``; one document);
* a ``.txt`` file (one document);
* a ``.jsonl`` file: one JSON object per line, the text in ``field`` (or several fields joined by a
  newline, e.g. ``[prompt, response]`` for tiny-codes);
* a Hugging Face ``datasets`` folder written by ``save_to_disk`` (a ``Dataset``, or a
  ``DatasetDict`` with ``split``), the text in ``field`` as above.

In a config a corpus is a domain name or a mapping ``{name: codes, path: /data/codes.jsonl,
field: [prompt, response]}`` (:func:`parse_corpus`). Nothing is downloaded.

Token streams (:func:`corpus_tokens`): the documents are joined (bytes: ``"\\n\\n"`` between them;
a real tokenizer: each document tokenised alone, the tokenizer's end-of-text id between them, as
the paper's Llama data), truncated to ``max_bytes`` UTF-8 bytes, and the last ``val_fraction`` of the
bytes is validation. The cut is placed in bytes for every tokenizer, so the same text is held out
whatever the tokenizer; for bytes the result is exactly the byte stream cut at that index.

Tokenizers (:class:`TextTokenizer`): :class:`ByteTokenizer` (default, ids 0..255),
:class:`FastTokenizer` (a ``tokenizers.Tokenizer``, e.g. a BPE trained offline with
:func:`train_bpe`) and :class:`PretrainedTokenizer` (a ``transformers`` tokenizer, e.g. a local
Llama's).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reprsim.errors import ReprsimError

__all__ = [
    "ByteTokenizer",
    "CorpusSpec",
    "FastTokenizer",
    "PretrainedTokenizer",
    "TextTokenizer",
    "corpus_documents",
    "corpus_problem",
    "corpus_split_texts",
    "corpus_tokens",
    "load_hf_tokenizer",
    "parse_corpus",
    "train_bpe",
]

_BYTES_SEPARATOR = b"\n\n"
_CORPUS_KEYS = ("name", "path", "field", "split")


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus: a built-in domain (``path`` None) or a file / ``datasets`` folder at ``path``."""

    name: str
    path: str | None = None
    field: tuple[str, ...] = ("text",)
    split: str | None = None

    @property
    def kind(self) -> str:
        """``builtin``, ``txt``, ``jsonl`` or ``datasets``."""
        if self.path is None:
            return "builtin"
        p = Path(self.path)
        if p.is_dir():
            return "datasets"
        return "jsonl" if p.suffix.lower() in (".jsonl", ".json") else "txt"

    def identity(self) -> dict[str, Any]:
        """What determines the corpus's text (for cache keys): name, path, size and mtime of a file."""
        out: dict[str, Any] = {"name": self.name}
        if self.path is not None:
            p = Path(self.path)
            files = sorted(p.rglob("*")) if p.is_dir() else [p]
            out |= {
                "path": str(p.resolve()),
                "field": list(self.field),
                "split": self.split,
                "files": [
                    [str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns]
                    for f in files
                    if f.is_file()
                ],
            }
        return out


def parse_corpus(entry: Any, where: str = "sources.text.options.domains") -> CorpusSpec:
    """A :class:`CorpusSpec` from a config entry (a domain name or a mapping); ValueError naming the fix."""
    from reprsim.data.text import list_domains

    if isinstance(entry, str):
        if entry not in list_domains():
            hint = (
                f"; for a file write {{name: {Path(entry).stem}, path: {entry}}}"
                if "/" in entry or entry.endswith((".txt", ".jsonl"))
                else ""
            )
            raise ValueError(f"{where}: unknown domain(s) {[entry]}; available: {list_domains()}{hint}")
        return CorpusSpec(entry)
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{where}: each entry is a domain name or a mapping {{name, path, field, split}}, got {entry!r}"
        )
    unknown = sorted(set(entry) - set(_CORPUS_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in {dict(entry)}; valid: {list(_CORPUS_KEYS)}")
    name, path = entry.get("name"), entry.get("path")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: a corpus mapping needs a name (used in probe-set names), got {dict(entry)}")
    if path is None:
        return parse_corpus(name, where)
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise ValueError(
            f"{where}: corpus {name!r}: {p} does not exist; give a .txt or .jsonl file or a folder "
            "written by datasets' save_to_disk"
        )
    if not p.is_dir() and not p.is_file():  # a FIFO or a device would block or never end
        raise ValueError(
            f"{where}: corpus {name!r}: {p} is not a regular file or a folder (a FIFO, socket or "
            "device); copy the text into a .txt or .jsonl file"
        )
    field = entry.get("field", "text")
    fields = (field,) if isinstance(field, str) else tuple(field) if isinstance(field, (list, tuple)) else ()
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"{where}: corpus {name!r}: field must be a column name or a list of them, got {field!r}")
    split = entry.get("split")
    if split is not None and not isinstance(split, str):
        raise ValueError(f"{where}: corpus {name!r}: split must be a split name such as train, got {split!r}")
    return CorpusSpec(name, str(p), fields, split)


# ---- documents ------------------------------------------------------------------------------
def _join_fields(row: Mapping[str, Any], spec: CorpusSpec, where: str) -> str:
    missing = [f for f in spec.field if f not in row]
    if missing:
        raise ReprsimError(
            f"corpus {spec.name!r} ({spec.path}): {where} has no field(s) {missing}; its fields are "
            f"{sorted(row)}; set field: to one of them"
        )
    not_text = [
        f"{f} ({'null' if row[f] is None else type(row[f]).__name__})"
        for f in spec.field
        if not isinstance(row[f], str)
    ]
    if not_text:  # str(None) / str([1, 2]) would silently become training text
        raise ReprsimError(
            f"corpus {spec.name!r} ({spec.path}): {where}: field(s) {', '.join(not_text)} are not "
            "text; every text field must be a JSON string (fix or drop that line)"
        )
    return "\n".join(row[f] for f in spec.field)


def _jsonl_rows(spec: CorpusSpec) -> Iterator[str]:
    with open(spec.path, encoding="utf-8") as fh:  # type: ignore[arg-type]
        lines = enumerate(fh, 1)
        while True:
            try:
                i, line = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise ReprsimError(
                    f"corpus {spec.name!r}: {spec.path} is not UTF-8 text (byte {exc.start} of a "
                    "line cannot be decoded); a .jsonl file holds one JSON object per line, in UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
                raise ReprsimError(
                    f"corpus {spec.name!r}: {spec.path} line {i} is not JSON ({exc}); a .jsonl file "
                    "holds one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise ReprsimError(
                    f"corpus {spec.name!r}: {spec.path} line {i} is a {type(row).__name__}, not a "
                    "JSON object with a text field"
                )
            yield _join_fields(row, spec, f"line {i}")


def _datasets_rows(spec: CorpusSpec) -> Iterator[str]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReprsimError("reading a datasets folder needs the 'datasets' package: pip install 'reprsim[hf]'") from exc
    try:
        ds = datasets.load_from_disk(spec.path)
    except (FileNotFoundError, ValueError) as exc:
        raise ReprsimError(
            f"corpus {spec.name!r}: {spec.path} is not a folder written by datasets' save_to_disk ({exc})"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        split = spec.split or ("train" if "train" in ds else None)
        if split not in ds:
            raise ReprsimError(f"corpus {spec.name!r}: {spec.path} holds splits {sorted(ds)}; choose one with split:")
        ds = ds[split]
    missing = [f for f in spec.field if f not in ds.column_names]
    if missing:
        raise ReprsimError(
            f"corpus {spec.name!r} ({spec.path}): no column(s) {missing}; its columns are "
            f"{ds.column_names}; set field: to one of them"
        )
    for batch in ds.select_columns(list(spec.field)).iter(batch_size=1000):
        for i in range(len(batch[spec.field[0]])):
            yield "\n".join(str(batch[f][i]) for f in spec.field)


def _limited(docs: Iterable[str], max_bytes: int | None) -> list[str]:
    """Documents in order until their UTF-8 size (with separators) reaches ``max_bytes``."""
    out, total = [], 0
    for doc in docs:
        out.append(doc)
        total += len(doc.encode("utf-8")) + len(_BYTES_SEPARATOR)
        if max_bytes is not None and total >= max_bytes:
            break
    return out


@lru_cache(maxsize=64)
def corpus_documents(spec: CorpusSpec, max_bytes: int | None = None) -> tuple[str, ...]:
    """The corpus's documents (enough of them to fill ``max_bytes`` when given); ReprsimError when unreadable/empty."""
    from reprsim.data.text import load_domain

    kind = spec.kind
    if kind == "builtin":
        docs = [load_domain(spec.name)]
    elif kind == "txt":
        try:
            docs = [Path(spec.path).read_text(encoding="utf-8", errors="replace")]  # type: ignore[arg-type]
        except OSError as exc:
            raise ReprsimError(f"corpus {spec.name!r}: cannot read {spec.path} ({exc})") from None
    elif kind == "jsonl":
        docs = _limited(_jsonl_rows(spec), max_bytes)
    else:
        docs = _limited(_datasets_rows(spec), max_bytes)
    if not any(docs):
        raise ReprsimError(f"corpus {spec.name!r} ({spec.path or 'built-in'}) holds no text")
    return tuple(docs)


def _byte_spans(docs: Sequence[bytes], max_bytes: int | None) -> tuple[int, list[tuple[int, int]]]:
    """Length of the joined (and truncated) byte stream and each document's [start, end) in it."""
    spans, pos = [], 0
    for i, d in enumerate(docs):
        if i:
            pos += len(_BYTES_SEPARATOR)
        spans.append((pos, pos + len(d)))
        pos += len(d)
    total = pos if max_bytes is None else min(pos, max_bytes)
    return total, spans


def corpus_split_texts(spec: CorpusSpec, max_bytes: int | None, val_fraction: float) -> tuple[list[str], list[str]]:
    """``(train documents, validation documents)``: the byte stream's last ``val_fraction`` is validation.

    A document cut by the boundary (or by ``max_bytes``) is split there (a broken UTF-8 character at a
    cut is dropped).
    """
    docs = [d.encode("utf-8") for d in corpus_documents(spec, max_bytes)]
    total, spans = _byte_spans(docs, max_bytes)
    cut = total - round(total * val_fraction)
    parts: tuple[list[str], list[str]] = ([], [])
    for doc, (start, end) in zip(docs, spans):
        for side, (lo, hi) in enumerate(((0, cut), (cut, total))):
            a, b = max(start, lo), min(end, hi)
            if b > a:
                parts[side].append(doc[a - start : b - start].decode("utf-8", errors="ignore"))
    return parts


# ---- tokenizers -----------------------------------------------------------------------------
class TextTokenizer:
    """Turns documents into one token stream; ``key`` identifies it (hashable, used in cache keys)."""

    key: str = ""
    vocab_size: int = 0

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        """One 1-D integer token array for ``docs``, with the end-of-text separator between documents."""
        raise NotImplementedError

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and other.key == self.key


class ByteTokenizer(TextTokenizer):
    """UTF-8 bytes (ids 0..255); documents joined with a blank line."""

    key = "bytes"
    vocab_size = 256

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        blob = _BYTES_SEPARATOR.join(d.encode("utf-8") for d in docs)
        return np.frombuffer(blob, dtype=np.uint8).copy()


def _stream(ids: Sequence[Sequence[int]], separator: int | None, vocab_size: int) -> np.ndarray:
    dtype = np.uint16 if vocab_size <= 2**16 else np.int32
    pieces: list[Sequence[int]] = []
    for i, doc in enumerate(ids):
        if i and separator is not None:
            pieces.append([separator])
        pieces.append(doc)
    flat = [t for piece in pieces for t in piece]
    return np.asarray(flat, dtype=dtype)


class FastTokenizer(TextTokenizer):
    """A ``tokenizers.Tokenizer`` (e.g. a BPE from :func:`train_bpe`); ``separator``: the end-of-text token."""

    def __init__(self, tokenizer: Any, separator: str | None = "<|endoftext|>") -> None:
        self.tokenizer = tokenizer
        self.separator = tokenizer.token_to_id(separator) if separator is not None else None
        self.vocab_size = int(tokenizer.get_vocab_size())
        self.key = "fast:" + hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:24]

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        ids = [e.ids for e in self.tokenizer.encode_batch(list(docs), add_special_tokens=False)]
        return _stream(ids, self.separator, self.vocab_size)


class PretrainedTokenizer(TextTokenizer):
    """A ``transformers`` tokenizer (a local model's); documents joined with its end-of-text id."""

    def __init__(self, tokenizer: Any, key: str) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.key = f"hf:{key}"
        eos = tokenizer.eos_token_id
        self.separator = int(eos) if eos is not None else None

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # "longer than the model's maximum length": we cut windows
        try:
            ids = self.tokenizer(list(docs), add_special_tokens=False)["input_ids"]
        finally:
            transformers.logging.set_verbosity(verbosity)
        return _stream(ids, self.separator, self.vocab_size)


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
)


@lru_cache(maxsize=8)
def load_hf_tokenizer(path: str) -> PretrainedTokenizer:
    """The ``transformers`` tokenizer saved in the folder ``path`` (local files only, e.g. GPT-2's) as a
    :class:`PretrainedTokenizer`; its key hashes the folder's tokenizer files (a changed file retokenises).
    Raises ValueError naming the folder and the loader's complaint when it does not load."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"tokenizer.path: {folder} is not a folder; give the folder that holds tokenizer.json "
            "(or vocab.json + merges.txt), e.g. what AutoTokenizer.save_pretrained writes"
        )
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # any loader error: one line naming the folder
        raise ValueError(
            f"tokenizer.path: the tokenizer in {folder} does not load ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); it needs tokenizer.json "
            "or vocab.json + merges.txt (what save_pretrained writes)"
        ) from exc
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return PretrainedTokenizer(tokenizer, digest.hexdigest()[:24])


def train_bpe(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str] = ("<|endoftext|>",)) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained offline on ``texts`` (GPT-2 style; deterministic)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257 + len(special_tokens):
        raise ValueError(
            f"BPE vocab_size must be an int >= {257 + len(special_tokens)} (256 bytes + special "
            f"tokens + merges), got {vocab_size!r}"
        )
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


# ---- token streams --------------------------------------------------------------------------
@lru_cache(maxsize=64)
def corpus_tokens(
    spec: CorpusSpec, max_bytes: int | None, val_fraction: float, tokenizer: TextTokenizer | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` 1-D token arrays of one corpus (see the module docstring)."""
    tokenizer = tokenizer or ByteTokenizer()
    if isinstance(tokenizer, ByteTokenizer):
        docs = corpus_documents(spec, max_bytes)
        tokens = tokenizer.encode_documents(docs)
        if max_bytes is not None:
            tokens = tokens[:max_bytes]
        cut = len(tokens) - round(len(tokens) * val_fraction)
        return tokens[:cut], tokens[cut:]
    train_docs, val_docs = corpus_split_texts(spec, max_bytes, val_fraction)
    return tokenizer.encode_documents(train_docs), tokenizer.encode_documents(val_docs)


def corpus_problem(
    spec: CorpusSpec, max_bytes: int | None, val_fraction: float, tokenizer: TextTokenizer | None, block_size: int
) -> str | None:
    """One line when the corpus cannot be read or has no more than ``block_size`` training or validation tokens."""
    try:
        train, val = corpus_tokens(spec, max_bytes, val_fraction, tokenizer)
    except ReprsimError as exc:
        return str(exc)
    if len(val) <= block_size or len(train) <= block_size:
        unit = "bytes" if tokenizer is None or isinstance(tokenizer, ByteTokenizer) else "tokens"
        return (
            f"text domain {spec.name!r}: {len(train)} training / {len(val)} validation {unit}, not more than "
            f"train.block_size={block_size}; raise max_bytes or val_fraction, or lower block_size"
        )
    return None
