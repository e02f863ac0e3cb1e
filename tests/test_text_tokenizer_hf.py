"""The text kind with a local Hugging Face tokenizer folder (``tokenizer: {type: hf, path: DIR}``).

The tokenizer is built here with ``tokenizers`` (a word-level model) and saved with
``transformers.PreTrainedTokenizerFast.save_pretrained``; the expected token streams are that tokenizer's
ids of the held-out split computed in the test (the last 10 % of the bytes is validation).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from reprsim.errors import ReprsimError  # noqa: E402
from reprsim.experiments import load_results, parse_config, run_experiment  # noqa: E402
from reprsim.experiments.grid import expand  # noqa: E402
from reprsim.experiments.preflight import preflight  # noqa: E402
from reprsim.data.token_windows import corpus_stream, source_tokenizer, text_options  # noqa: E402
from reprsim.experiments.text_pairs import make_text_pair  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "the a cat dog sat ran on under mat log and then it was red blue big small".split()


def _text(seed: int, n: int = 600) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def _tokenizer_dir(folder, extra: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", *WORDS, *extra])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")
    fast.save_pretrained(folder)
    return folder, fast


def _config(domains, tokenizer, fractions=(0.5,), kind="data"):
    return {
        "name": "hf-tok",
        "sources": [
            {"name": "text", "options": {"domains": domains, "n_chunks": 4, "per_model": 1, "tokenizer": tokenizer}}
        ],
        "probe_size": 12,
        "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
        "train": {
            "block_size": 8,
            "max_steps": 2,
            "eval_interval": 2,
            "eval_batches": 1,
            "batch_size": 4,
            "optimizer": "adamw",
            "lr": 0.003,
        },
        "overlap": {"designs": [{"kind": kind, "fractions": list(fractions)}]},
        "seeds": [0],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 3}},
    }


@pytest.fixture
def corpora(tmp_path):
    (tmp_path / "a.txt").write_text(_text(0))
    (tmp_path / "b.txt").write_text(_text(1))
    return [{"name": "a", "path": str(tmp_path / "a.txt")}, {"name": "b", "path": str(tmp_path / "b.txt")}]


def test_token_streams_are_the_folder_tokenizers_ids_of_the_split(tmp_path, corpora):
    folder, fast = _tokenizer_dir(tmp_path / "tok")
    config = parse_config(_config(corpora, {"type": "hf", "path": str(folder)}))
    opts = text_options(config.sources[0])
    tok = source_tokenizer(opts)
    assert tok.vocab_size == len(fast) == len(WORDS) + 2
    text = (tmp_path / "a.txt").read_text()
    cut = len(text) - round(len(text) * 0.1)  # ASCII: bytes = characters
    train, val = corpus_stream(opts, "a", tok)
    assert train.tolist() == fast(text[:cut], add_special_tokens=False)["input_ids"]
    assert val.tolist() == fast(text[cut:], add_special_tokens=False)["input_ids"]
    assert 1 not in train.tolist()  # one document: no end-of-text separator inside it
    unit = expand(config)[0]
    pair = make_text_pair(unit, opts, 8, tok)
    assert pair.vocab_size == len(fast)
    stream = train.tolist()
    for doc in pair.train["a"]:  # each training chunk is a contiguous run of the tokenised training part
        d = doc.tolist()
        assert any(stream[i : i + len(d)] == d for i in range(len(stream) - len(d) + 1))


def test_text_kind_trains_with_a_tokenizer_folder(tmp_path, corpora):
    folder, fast = _tokenizer_dir(tmp_path / "tok")
    config = parse_config(_config(corpora, {"type": "hf", "path": str(folder)}))
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert (df.status == "ok").all() and len(df)
    from reprsim.experiments.composition import composition_of

    unit = expand(config)[0]
    opts = text_options(unit.source)
    kind = composition_of(unit)
    assert (kind.name, kind.world.name, kind.family.name) == ("text", "text", "zoo_lm")
    pair = kind.pair(config, unit, None)
    model = kind.build(config, unit, pair, "a")
    assert model.get_input_embeddings().weight.shape[0] == len(fast)  # the model is built for this vocabulary
    key = kind.weights_key(config, unit, pair, "a")["text"]["tokenizer"]
    # another tokenizer folder (one more word) is another cache key
    other, _ = _tokenizer_dir(tmp_path / "tok2", extra=("zebra",))
    cfg2 = parse_config(_config(corpora, {"type": "hf", "path": str(other)}))
    pair2 = kind.pair(cfg2, expand(cfg2)[0], None)
    assert key.startswith("hf:") and kind.weights_key(cfg2, expand(cfg2)[0], pair2, "a")["text"]["tokenizer"] != key
    assert opts.hf_tokenizer == str(folder)


def test_a_tokenizer_folder_that_does_not_load_is_a_config_error(tmp_path, corpora):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    for path, message in ((tmp_path / "broken", "does not load"), (tmp_path / "missing", "is not a folder")):
        config = parse_config(_config(corpora, {"type": "hf", "path": str(path)}))
        with pytest.raises(ReprsimError, match=f"sources.text.options.tokenizer: tokenizer.path: .*{message}"):
            preflight(config, expand(config))
    with pytest.raises(ValueError, match=r"\{type: hf, path: DIR\}"):
        text_options(parse_config(_config(corpora, {"type": "hf"})).sources[0])
