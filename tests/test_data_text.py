"""Text domains (real offline files) and byte-level tokens."""

import numpy as np
import pytest

from reprsim.data import text
from reprsim.data.splits import chunk_split, corpus_split

AVAILABLE = text.list_domains(available_only=True)


def test_encode_decode_roundtrip():
    s = "To be, or not to be — ça va? 🙂"
    tokens = text.encode(s)
    assert tokens.dtype == np.uint8 and len(tokens) == len(s.encode("utf-8"))
    assert text.decode(tokens) == s
    assert text.decode(tokens[:-1]).endswith("\ufffd")  # a cut multi-byte character is replaced
    with pytest.raises(TypeError):
        text.encode(b"bytes")


@pytest.mark.skipif(len(AVAILABLE) < 5, reason="fewer than 5 text domains installed (run scripts/setup.sh)")
def test_at_least_five_real_domains_of_half_a_megabyte():
    sizes = {d: len(text.load_domain(d).encode("utf-8")) for d in AVAILABLE}
    assert sum(s >= 500_000 for s in sizes.values()) >= 5, sizes
    for d in AVAILABLE:
        assert text.DOMAINS[d].licence and text.DOMAINS[d].source


@pytest.mark.parametrize(
    "domain, phrase",
    [
        ("shakespeare", "To be, or not to be"),
        ("bible", "In the beginning God created the heaven"),
        ("python_code", "def "),
        ("jargon", "hacker"),
    ],
)
def test_domain_content(domain, phrase):
    if domain not in AVAILABLE:
        pytest.skip(f"{domain} not installed")
    assert phrase in text.load_domain(domain)


def test_unknown_domain():
    with pytest.raises(ValueError, match="choose from"):
        text.load_domain("klingon")


def test_text_splits_on_real_domain_names():
    split = corpus_split(text.list_domains(), 2 / 3, seed=0)
    assert len(split.common_classes) == 2
    assert chunk_split(len(text.encode("x" * 8000)), 0.5, seed=0).info["chunk_len"] == 100
