"""The text-LM unit (source ``text``): byte-level GPT pairs with chunk (data) and corpus (task) overlap."""

import numpy as np
import pytest

import reprsim.train
from reprsim.data.text import list_domains
from reprsim.errors import ReprsimError
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.grid import expand
from reprsim.experiments.preflight import preflight
from reprsim.data.token_windows import domain_tokens, sample_windows, text_options
from reprsim.experiments.text_pairs import make_text_pair


def text_preflight(config, units):
    preflight(config, units)


DOMAINS = ["shakespeare", "bible", "python_code", "python_docs", "fortunes", "jargon"]

# the six domains ship with installed packages (scripts/setup.sh)
_INSTALLED = set(list_domains(available_only=True))
pytestmark = pytest.mark.skipif(
    not set(DOMAINS) <= _INSTALLED, reason="needs the six text domains: run scripts/setup.sh"
)


def tiny_config(designs, domains=DOMAINS, **overrides) -> dict:
    config = {
        "name": "tiny-text",
        "sources": [{"name": "text", "options": {"domains": list(domains), "max_bytes": 6000, "n_chunks": 8}}],
        "probe_size": 24,
        "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
        "train": {
            "block_size": 16,
            "max_steps": 3,
            "eval_interval": 3,
            "eval_batches": 2,
            "batch_size": 8,
            "optimizer": "adamw",
            "lr": 0.003,
        },
        "overlap": {"designs": designs},
        "seeds": [0],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
    }
    config.update(overrides)
    return config


def run(config: dict, tmp_path, name="run"):
    run_experiment(parse_config(config), tmp_path / name, cache_dir=tmp_path / "cache", progress=False)
    return load_results(tmp_path / name)


def test_data_overlap_rows_and_model_a_reused(tmp_path, monkeypatch):
    calls = []
    original = reprsim.train.train
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: calls.append(1) or original(*a, **k))
    df = run(
        tiny_config([{"kind": "data", "fractions": [0.0, 0.5, 1.0]}], domains=["shakespeare", "bible", "jargon"]),
        tmp_path,
    )
    assert (df["status"] == "ok").all()
    # 3 units × 3 probe sets × 2 measures × 1 layer pair
    assert len(df) == 3 * 3 * 2
    assert set(zip(df.probe_set, df.probe_role)) == {("shakespeare", "id"), ("bible", "ood"), ("jargon", "ood")}
    assert (df.n_probe == 24).all() and df["value"].notna().all()
    assert sorted(df.realised_data_fraction.unique()) == [0.0, 0.5, 1.0]  # 4 chunks per model: 0, 2, 4 shared
    assert (df.realised_task_fraction == 1.0).all() and (df.layer_a == "penultimate").all()
    for col in ("acc_a", "acc_b"):
        assert df[col].between(0, 1).all()
    assert np.isfinite(df[["val_loss_a", "val_loss_b", "perplexity_a"]].to_numpy()).all()
    assert np.allclose(df.perplexity_a, np.exp(df.val_loss_a))
    # model A trains on the same chunks at every fraction: trained once, then loaded (1 A + 3 B)
    assert len(calls) == 4
    assert df.groupby("unit_id").val_loss_a.first().nunique() == 1
    # measures are deterministic and the same probe windows go to both models: identical
    # data (fraction 1) still differs by init and order, so values stay below 1
    cka = df[(df.measure == "cka") & (df.probe_set == "shakespeare")]
    assert cka.value.between(0, 1).all()


def test_task_overlap_probe_groups(tmp_path):
    df = run(tiny_config([{"kind": "task", "fractions": [0.0, 2 / 3, 1.0]}]), tmp_path)
    assert (df["status"] == "ok").all()
    assert set(zip(df.probe_set, df.probe_role)) == {
        ("common", "common"),
        ("ood_one", "ood_one"),
        ("ood_all", "ood_all"),
    }
    assert df.data_fraction.isna().all()
    n = df.groupby(["task_fraction", "probe_set"]).n_probe.first().unstack()
    # f=0: no common domain, all six seen by one model; f=1: all three common, three unseen
    assert n.loc[0.0].to_dict() == {"common": 0, "ood_all": 0, "ood_one": 24}
    assert n.loc[1.0].to_dict() == {"common": 24, "ood_all": 24, "ood_one": 0}
    assert n.loc[2 / 3].to_dict() == {"common": 24, "ood_all": 24, "ood_one": 24}
    empty = df[df.n_probe == 0]
    assert len(empty) and empty["value"].isna().all()
    assert df[df.n_probe > 0]["value"].notna().all()
    assert df.realised_task_fraction.round(6).tolist() == df.task_fraction.round(6).tolist()
    one = df[df.task_fraction == 1.0].iloc[0]
    assert one.domains_a.split(",") == one.domains_b.split(",")


def test_splits_follow_the_paper_rules():
    config = parse_config(tiny_config([{"kind": "data", "fractions": [0.5]}, {"kind": "task", "fractions": [1 / 3]}]))
    data_unit, task_unit = expand(config)
    opts = text_options(data_unit.source)
    pair = make_text_pair(data_unit, opts, block_size=16)
    a = {d.tobytes() for d in pair.train["a"]}
    b = {d.tobytes() for d in pair.train["b"]}
    assert len(a) == len(b) == 4 and len(a & b) == 2
    task = make_text_pair(task_unit, opts, block_size=16)
    assert len(set(task.domains["a"]) & set(task.domains["b"])) == 1 and len(task.domains["a"]) == 3
    # balance: every domain contributes the same number of training bytes
    assert len({len(d) for d in task.train["a"] + task.train["b"]}) == 1


@pytest.mark.parametrize("balance", ["truncate", "repeat", "none"])
def test_task_balance_evens_out_domains(balance):
    source = {
        "name": "text",
        "options": {"domains": DOMAINS, "max_bytes": 40000 if balance == "truncate" else None, "balance": balance},
    }
    config = parse_config(tiny_config([{"kind": "task", "fractions": [0.0]}], sources=[source]))
    unit = expand(config)[0]
    opts = text_options(unit.source)
    pair = make_text_pair(unit, opts, block_size=16)
    totals = {}
    for side in ("a", "b"):
        for doc in pair.train[side]:  # documents of one domain are whole copies or leading pieces of it
            name = next(d for d in pair.domains[side] if _is_prefix(doc, d, opts))
            totals[name] = totals.get(name, 0) + len(doc)
    assert set(totals) == set(DOMAINS)
    full = {d: len(domain_tokens(d, opts.max_bytes, opts.val_fraction)[0]) for d in DOMAINS}
    if balance == "none":
        assert totals == full
    else:  # every domain contributes as many training bytes as the target length
        target = min(full.values()) if balance == "truncate" else max(full.values())
        assert set(totals.values()) == {target}


def _is_prefix(doc, name, opts) -> bool:
    tokens = domain_tokens(name, opts.max_bytes, opts.val_fraction)[0]
    return len(doc) <= len(tokens) and np.array_equal(tokens[: len(doc)], doc)


def test_sample_windows_are_seeded_contiguous_and_inside_documents():
    docs = [np.arange(0, 50, dtype=np.uint8), np.arange(100, 120, dtype=np.uint8), np.arange(200, 205, dtype=np.uint8)]
    w = sample_windows(docs, 200, 10, seed=3)
    assert w.shape == (200, 10) and w.dtype == np.int64
    assert (np.diff(w, axis=1) == 1).all()  # contiguous
    assert not (w >= 200).any()  # the 5-token document cannot hold a window
    assert ((w[:, 0] >= 100) & (w[:, -1] < 120)).any() and (w[:, -1] < 50).any()
    assert np.array_equal(w, sample_windows(docs, 200, 10, seed=3))
    assert sample_windows([], 5, 10, seed=0).shape == (0, 10)


def test_preflight_names_bad_domains_and_infeasible_splits():
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['wikitext'\]; available: \[.*shakespeare"):
        text_options(parse_config(tiny_config([{"kind": "data", "fractions": [0.5]}], domains=["wikitext"])).sources[0])
    config = parse_config(tiny_config([{"kind": "data", "fractions": [0.5]}], domains=["shakespeare", "wikitext"]))
    with pytest.raises(ReprsimError, match="wikitext"):
        text_preflight(config, expand(config))
    # two domains cannot give 3 per model with nothing shared
    config = parse_config(tiny_config([{"kind": "task", "fractions": [0.0]}], domains=["shakespeare", "bible"]))
    with pytest.raises(ReprsimError, match="too few"):
        text_preflight(config, expand(config))
    config = parse_config(tiny_config([{"kind": "data", "fractions": [0.5]}], layers=["blocks.7"]))
    with pytest.raises(ReprsimError, match="not layers"):
        text_preflight(config, expand(config))
    source = {"name": "text", "options": {"domains": ["shakespeare"], "max_bytes": 100}}
    config = parse_config(tiny_config([{"kind": "data", "fractions": [0.5]}], sources=[source]))
    with pytest.raises(ReprsimError, match="raise max_bytes"):
        text_preflight(config, expand(config))


def test_run_fails_before_training_on_a_bad_domain(tmp_path, monkeypatch):
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: pytest.fail("trained despite a bad config"))
    with pytest.raises(ReprsimError, match="unknown domain"):
        run(tiny_config([{"kind": "data", "fractions": [0.5]}], domains=["shakespeare", "tinystories"]), tmp_path)


def test_a_models_own_train_overrides_are_checked_by_the_kinds_recipe():
    from reprsim.experiments.preflight import preflight_problems

    config = tiny_config([{"kind": "data", "fractions": [0.0]}])
    config["models"] = [{**config["models"][0], "train": {"max_step": 5}}]  # a typo of max_steps
    parsed = parse_config(config)
    problems = preflight_problems(parsed, expand(parsed))
    assert len(problems) == 1 and problems[0].startswith("models.gpt.train:") and "max_step" in problems[0]
    config["models"][0]["train"] = {"max_steps": 5}
    parsed = parse_config(config)
    assert preflight_problems(parsed, expand(parsed)) == []
    assert {u.train["max_steps"] for u in expand(parsed)} == {5}
