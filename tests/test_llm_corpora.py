"""Text corpora from files and `datasets` folders, tokenizers, and the text kind's optional BPE."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reprsim.data.corpora import (
    ByteTokenizer,
    CorpusSpec,
    FastTokenizer,
    corpus_documents,
    corpus_split_texts,
    corpus_tokens,
    parse_corpus,
    train_bpe,
)
from reprsim.data.text import encode, list_domains, load_domain
from reprsim.errors import ReprsimError
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.grid import expand
from reprsim.experiments.preflight import preflight
from reprsim.data.token_windows import domain_tokens, source_tokenizer, text_options
from reprsim.experiments.text_pairs import fixed_domains, make_text_pair

DOCS = [f"document {i}: " + "lorem ipsum dolor sit amet " * (5 + i) for i in range(30)]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(DOCS))
    with open(tmp_path / "b.jsonl", "w") as fh:
        for i, d in enumerate(DOCS):
            fh.write(json.dumps({"prompt": f"q{i}", "response": d}) + "\n")
    return tmp_path


def test_builtin_bytes_are_unchanged():
    if "bible" not in list_domains(available_only=True):
        pytest.skip("needs the bible domain")
    train, val = corpus_tokens(CorpusSpec("bible"), 10_000, 0.1, None)
    raw = encode(load_domain("bible"))[:10_000]
    assert np.array_equal(np.concatenate([train, val]), raw) and len(val) == 1000
    assert np.array_equal(domain_tokens("bible", 10_000, 0.1)[0], train)


def test_txt_jsonl_and_datasets_corpora(files, tmp_path):
    txt = parse_corpus({"name": "a", "path": str(files / "a.txt")})
    jsonl = parse_corpus({"name": "b", "path": str(files / "b.jsonl"), "field": ["prompt", "response"]})
    assert txt.kind == "txt" and jsonl.kind == "jsonl"
    assert corpus_documents(txt) == ("\n\n".join(DOCS),)
    docs = corpus_documents(jsonl)
    assert len(docs) == 30 and docs[3] == "q3\n" + DOCS[3]
    # max_bytes reads only as many documents as needed
    assert len(corpus_documents(jsonl, 200)) < 30
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": DOCS, "n": list(range(30))}).save_to_disk(str(tmp_path / "ds"))
    ds = parse_corpus({"name": "c", "path": str(tmp_path / "ds")})
    assert ds.kind == "datasets" and corpus_documents(ds) == tuple(DOCS)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": DOCS})}).save_to_disk(str(tmp_path / "dd"))
    dd = parse_corpus({"name": "d", "path": str(tmp_path / "dd"), "field": "body", "split": "train"})
    assert corpus_documents(dd) == tuple(DOCS)
    # bytes: the documents joined by a blank line, the last val_fraction held out
    train, val = corpus_tokens(ds, None, 0.2, ByteTokenizer())
    assert np.array_equal(np.concatenate([train, val]), encode("\n\n".join(DOCS)))
    assert np.array_equal(train, corpus_tokens(txt, None, 0.2, None)[0])


def test_bad_corpora_name_the_fix(files, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        parse_corpus({"name": "x", "path": str(tmp_path / "missing.txt")})
    with pytest.raises(ValueError, match=r"for a file write \{name: notes, path: notes.txt\}"):
        parse_corpus("notes.txt")
    with pytest.raises(ValueError, match="unknown key"):
        parse_corpus({"name": "x", "path": str(files / "a.txt"), "column": "t"})
    bad = parse_corpus({"name": "b", "path": str(files / "b.jsonl"), "field": "text"})
    with pytest.raises(ReprsimError, match=r"no field\(s\) \['text'\]; its fields are \['prompt', 'response'\]"):
        corpus_documents(bad)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ReprsimError, match="line 2 is not JSON"):
        corpus_documents(parse_corpus({"name": "e", "path": str(tmp_path / "bad.jsonl")}))


def test_tokenised_split_holds_out_the_same_bytes(files):
    spec = parse_corpus({"name": "a", "path": str(files / "a.txt")})
    train_text, val_text = corpus_split_texts(spec, 3000, 0.25)
    joined = "\n\n".join(DOCS).encode()[:3000]
    assert "".join(train_text).encode() == joined[:2250] and "".join(val_text).encode() == joined[2250:]
    tok = FastTokenizer(train_bpe(["\n\n".join(DOCS)], 300))
    train, val = corpus_tokens(spec, 3000, 0.25, tok)
    assert tok.tokenizer.decode(train.tolist()) == train_text[0] and tok.tokenizer.decode(val.tolist()) == val_text[0]
    assert train.dtype == np.uint16 and tok.vocab_size <= 300
    # BPE training is deterministic: the same key twice
    assert FastTokenizer(train_bpe(["\n\n".join(DOCS)], 300)).key == tok.key


def _config(domains, **options):
    return {
        "name": "files",
        "sources": [{"name": "text", "options": {"domains": domains, "n_chunks": 4, "per_model": 1, **options}}],
        "probe_size": 12,
        "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
        "train": {
            "block_size": 16,
            "max_steps": 3,
            "eval_interval": 3,
            "eval_batches": 1,
            "batch_size": 4,
            "optimizer": "adamw",
            "lr": 0.003,
        },
        "overlap": {"designs": [{"kind": "data", "fractions": [0.5]}, {"kind": "task", "fractions": [0.0, 1.0]}]},
        "seeds": [0],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 3}},
    }


def test_text_kind_trains_on_files_with_a_bpe(files, tmp_path):
    domains = [
        {"name": "a", "path": str(files / "a.txt")},
        {"name": "b", "path": str(files / "b.jsonl"), "field": ["prompt", "response"]},
    ]
    config = parse_config(_config(domains, tokenizer={"type": "bpe", "vocab_size": 300}, fixed_probes=True))
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert (df.status == "ok").all()
    assert set(df.probe_set) == {"a", "b", "common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed"}
    assert set(df.domains_a) == {"a", "b"}
    unit = expand(config)[0]
    opts = text_options(unit.source)
    pair = make_text_pair(unit, opts, 16, source_tokenizer(opts))
    assert pair.vocab_size <= 300 and max(int(d.max()) for d in pair.train["a"]) < pair.vocab_size


def test_bad_tokenizer_option_and_small_corpus_fail_in_preflight(files):
    domains = [
        {"name": "a", "path": str(files / "a.txt")},
        {"name": "b", "path": str(files / "b.jsonl"), "field": "response"},
    ]
    with pytest.raises(ValueError, match="tokenizer must be 'bytes'"):
        text_options(parse_config(_config(domains, tokenizer="gpt2")).sources[0])
    config = parse_config(_config(domains, max_bytes=400, n_chunks=80))
    with pytest.raises(ReprsimError, match="domain 'a'.*training tokens.*n_chunks"):
        preflight(config, expand(config))


def test_fixed_composition_domains_are_the_same_at_every_fraction():
    if len(list_domains(available_only=True)) < 6:
        pytest.skip("needs the six text domains")
    six = ["shakespeare", "bible", "python_code", "python_docs", "fortunes", "jargon"]
    source = {"name": "text", "options": {"domains": six, "max_bytes": 4000}}
    cfg = _config(six) | {"sources": [source]}
    cfg["overlap"] = {"designs": [{"kind": "task", "fractions": [0.0, 1 / 3, 2 / 3, 1.0]}]}
    config = parse_config(cfg)
    fixed = []
    for unit in expand(config):
        pair = make_text_pair(unit, text_options(unit.source), 16)
        sets = fixed_domains(pair)
        a, b = set(pair.domains["a"]), set(pair.domains["b"])
        if unit.task_fraction > 0:
            assert set(sets["common_fixed"]) <= a & b
        if unit.task_fraction < 1:
            assert set(sets["ood_one_fixed"]) <= a ^ b
        fixed.append(sets)
    assert all(f == fixed[0] for f in fixed)
    assert len(fixed[0]["common_fixed"]) == 1 and len(fixed[0]["ood_one_fixed"]) == 2
