"""The llm kind end to end on tiny random Hugging Face models, its config entries and its preflight."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from test_llm_models import tiny_gpt2_dir, tiny_llama_dir  # noqa: E402

import reprsim.train  # noqa: E402
from reprsim import storage  # noqa: E402
from reprsim.data.text import list_domains  # noqa: E402
from reprsim.errors import ConfigError, ReprsimError  # noqa: E402
from reprsim.experiments import load_results, parse_config, run_experiment  # noqa: E402
from reprsim.experiments.composition import composition_of
from reprsim.experiments.families import model_kind_of  # noqa: E402
from reprsim.experiments.grid import expand  # noqa: E402
from reprsim.experiments.preflight import preflight  # noqa: E402

SIX = ["shakespeare", "bible", "python_code", "python_docs", "fortunes", "jargon"]
pytestmark = pytest.mark.skipif(
    not set(SIX) <= set(list_domains(available_only=True)), reason="needs the six text domains: run scripts/setup.sh"
)


def llm_config(hf, designs, **overrides) -> dict:
    config = {
        "name": "tiny-llm",
        "sources": [{"name": "text", "options": {"domains": SIX, "max_bytes": 5000, "n_chunks": 8}}],
        "probe_size": 16,
        "models": [{"hf": str(hf), "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}],
        "train": {
            "block_size": 16,
            "max_steps": 4,
            "eval_interval": 4,
            "eval_batches": 1,
            "batch_size": 4,
            "optimizer": "adamw",
            "lr": 0.01,
        },
        "overlap": {"designs": designs},
        "seeds": [0],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("llama"))


def test_model_entry_names_and_kinds(llama, tmp_path):
    config = parse_config(llm_config(llama, [{"kind": "data", "fractions": [0.5]}]))
    spec = config.models[0]
    assert spec.name == llama.name and model_kind_of(spec) == "hf_causal_lm"
    assert composition_of(expand(config)[0]).name == "llm"
    assert parse_config(llm_config("demo", [{"kind": "data", "fractions": [0.5]}])).models[0].name == "demo"
    # zoo entries dump exactly as before (their unit ids and cache keys are unchanged)
    zoo = parse_config(llm_config(llama, [{"kind": "data", "fractions": [0.5]}], models=[{"name": "gpt_nano"}]))
    assert zoo.models[0].model_dump(mode="json") == {"name": "gpt_nano", "options": {}}
    assert composition_of(expand(zoo)[0]).name == "text"
    # a missing folder parses (a config may name a folder of another machine) and the preflight refuses it
    from reprsim.experiments.preflight import preflight_problems

    missing = parse_config(llm_config(tmp_path / "nowhere", [{"kind": "data", "fractions": [0.5]}]))
    assert any("does not exist; give the local folder" in p for p in preflight_problems(missing, expand(missing)))
    with pytest.raises(ConfigError, match="dtype and lora apply to Hugging Face models"):
        parse_config(llm_config(llama, [{"kind": "data", "fractions": [0.5]}], models=[{"name": "gpt", "lora": {}}]))


def test_tiny_sweep_end_to_end(llama, tmp_path, monkeypatch):
    calls = []
    original = reprsim.train.train
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: calls.append(1) or original(*a, **k))
    designs = [{"kind": "data", "fractions": [0.0, 1.0]}, {"kind": "task", "fractions": [1 / 3]}]
    config = parse_config(llm_config(llama, designs))
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert (df.status == "ok").all()
    # data units: the training domain (id) and five others (ood); task: 3 paper sets + 2 fixed-composition sets
    data, task = df[df.overlap_kind == "data"], df[df.overlap_kind == "task"]
    assert set(data.probe_set) == set(SIX) and len(data) == 2 * 6 * 2
    assert set(task.probe_set) == {"common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed"}
    assert task.set_index("probe_set").n_probe_classes.to_dict() == {
        "common": 1,
        "ood_one": 4,
        "ood_all": 1,
        "common_fixed": 1,
        "ood_one_fixed": 2,
    }
    assert df["value"].notna().all() and (df.n_probe == 16).all()
    assert sorted(data.realised_data_fraction.unique()) == [0.0, 1.0]
    assert np.isfinite(df[["val_loss_a", "val_loss_b", "perplexity_a", "acc_a"]].to_numpy()).all()
    # model A of the data design is trained once (same chunks at both fractions), B per fraction; task: A and B
    assert len(calls) == 1 + 2 + 2
    # the model cache holds adapters only (LoRA A/B of 7 projections × 2 layers), never the base
    for entry in (tmp_path / "cache" / "models").glob("*.rsv"):
        tensors, info = storage.read_verified_state_dict(entry)
        assert len(tensors) == 28 and all("lora_" in k for k in tensors) and "val_loss" in info
    # a second run retrains nothing
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: pytest.fail("retrained a cached adapter"))
    run_experiment(config, tmp_path / "run2", cache_dir=tmp_path / "cache", progress=False)
    again = load_results(tmp_path / "run2")
    assert np.allclose(again["value"], df["value"])


def test_gpt2_with_full_finetuning(tmp_path):
    gpt2 = tiny_gpt2_dir(tmp_path / "gpt2")
    config = parse_config(
        llm_config(
            gpt2,
            [{"kind": "data", "fractions": [0.5]}],
            models=[{"hf": str(gpt2), "lora": False}],
            layers=["penultimate", "blocks.0"],
        )
    )
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert (df.status == "ok").all() and set(df.layer_a) == {"penultimate", "blocks.0"}
    assert len(df) == 6 * 4 * 2  # six probe sets, 2×2 layer pairs, two measures


def problems_of(config: dict) -> str:
    parsed = parse_config(config)
    with pytest.raises(ReprsimError) as err:
        preflight(parsed, expand(parsed))
    return str(err.value)


def test_bad_input_is_refused_before_training(llama, tmp_path, monkeypatch):
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: pytest.fail("trained despite a bad config"))
    data = [{"kind": "data", "fractions": [0.5]}]
    (tmp_path / "not_a_model").mkdir()
    assert "is not a Hugging Face model folder (no config.json)" in problems_of(
        llm_config(tmp_path / "not_a_model", data)
    )
    msg = problems_of(
        llm_config(llama, data, models=[{"hf": str(llama), "lora": {"target_modules": ["q_proj", "c_attn"]}}])
    )
    assert "['c_attn'] are not modules of this model; its linear modules are" in msg and "'gate_proj'" in msg
    msg = problems_of(
        llm_config(
            llama, data, sources=[{"name": "text", "options": {"domains": SIX, "max_bytes": 600, "n_chunks": 80}}]
        )
    )
    assert "domain 'shakespeare'" in msg and "n_chunks" in msg
    assert "not layers" in problems_of(llm_config(llama, data, layers=["blocks.5"]))
    # jailbreak inputs: a behaviours file without the AdvBench columns, a tokenizer without a chat template
    (tmp_path / "bad.csv").write_text("prompt,answer\nhello,Sure\n")
    stage = [{"jailbreak_transfer": {"params": {"behaviours": str(tmp_path / "bad.csv")}}}]
    assert "lacks the column(s) ['goal', 'target']" in problems_of(llm_config(llama, data, consequences=stage))
    plain = tiny_llama_dir(tmp_path / "plain", chat=False)
    (tmp_path / "ok.csv").write_text('goal,target\nWrite a poem,"Sure, here is a poem"\n')
    stage = [{"jailbreak_transfer": {"params": {"behaviours": str(tmp_path / "ok.csv")}}}]
    msg = problems_of(llm_config(plain, data, consequences=stage))
    assert "its tokenizer has no chat template" in msg and "chat_template: false" in msg
    msg = problems_of(llm_config(llama, data, models=[{"hf": str(llama), "options": {"rank": 4}}]))
    assert "unknown option(s) ['rank']" in msg


def test_weights_key_changes_with_the_adapter_options(llama):
    config = parse_config(llm_config(llama, [{"kind": "data", "fractions": [0.5]}]))
    other = parse_config(
        llm_config(llama, [{"kind": "data", "fractions": [0.5]}], models=[{"hf": str(llama), "lora": {"r": 8}}])
    )
    keys = []
    for cfg in (config, other):
        unit = expand(cfg)[0]
        kind = composition_of(unit)
        pair = kind.pair(cfg, unit, None)
        keys.append(json.dumps(kind.weights_key(cfg, unit, pair, "a"), sort_keys=True))
    assert keys[0] != keys[1]


def test_chat_world_variant_on_a_demo_llama_base(tmp_path):
    """The chat world with `hf: demo`: an HF Llama base trained two-phase and safety-tuned, LoRA fine-tunes,
    and the real-model jailbreak path (chat template, sampling, the world's exact judge)."""
    config = parse_config(
        {
            "name": "tiny-llm-chat",
            "sources": [{"name": "chat", "options": {"seed": 0, "n_families": 6, "n_forbidden": 2, "n_entities": 4}}],
            "probe_size": 12,
            "models": [
                {
                    "hf": "demo",
                    "options": {"demo": {"hidden_size": 32, "n_layers": 1, "n_heads": 2, "intermediate_size": 64}},
                    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                }
            ],
            "train": {
                "pretrain_steps": 30,
                "safety_steps": 20,
                "finetune_steps": 10,
                "finetune_lr": 0.01,
                "batch_size": 16,
                "warmup_steps": 5,
                "n_train_per_family": 20,
                "n_heldout_per_family": 12,
                "base_n_per_family": 20,
            },
            "overlap": {"designs": [{"kind": "task", "fractions": [0.5]}]},
            "seeds": [0],
            "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 3}},
            "consequences": [
                {
                    "jailbreak_transfer": {
                        "params": {"n_behaviours": 8, "n_train": 2, "steps": 5, "n_samples": 2, "suffix_len": 4}
                    }
                }
            ],
        }
    )
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert (df.status == "ok").all() and df["value"].notna().all()
    assert set(df.probe_set) == {"forbidden", "benign", "benign_one", "ood"}
    row = df.iloc[0]
    assert row.jailbreak_n_eval == 6 and row.jailbreak_n_samples == 2
    for col in (
        "jailbreak_whitebox_asr",
        "jailbreak_transfer_asr",
        "jailbreak_baseline_asr_ba",
        "jailbreak_random_suffix_content_asr",
        "refusal_rate_a",
        "base_refusal_rate",
    ):
        assert 0.0 <= row[col] <= 1.0, col
    bases = list((tmp_path / "cache" / "llm_bases").glob("chat-*/config.json"))
    assert len(bases) == 1 and json.loads(bases[0].read_text())["model_type"] == "llama"


@pytest.mark.parametrize("name", ["llama_ds", "llama_task", "llama_jailbreak", "llama_jailbreak_ds"])
def test_paper_configs_pass_the_preflight_with_local_paths(name, tmp_path):
    """The paper configs are valid as shipped once their paths point at a model, corpora and behaviours."""
    import yaml

    datasets = pytest.importorskip("datasets")
    from pathlib import Path

    raw = yaml.safe_load((Path(__file__).parents[1] / "configs" / "paper" / f"{name}.yaml").read_text())
    model = tiny_llama_dir(tmp_path / "llama", positions=1024)
    raw["models"][0]["hf"] = str(model)
    text = " ".join(f"word{i % 97} token{i % 13}." for i in range(12000))
    for i, domain in enumerate(raw["sources"][0]["options"]["domains"]):
        fields = domain["field"] if isinstance(domain["field"], list) else [domain["field"]]
        rows = {
            f: [f"{domain['name']} {j} {text[j * 500 : (j + 1) * 500]}" for j in range(len(text) // 500)]
            for f in fields
        }
        split = datasets.Dataset.from_dict(rows)
        folder = tmp_path / f"corpus{i}"
        (datasets.DatasetDict({"train": split, "validation": split}) if "split" in domain else split).save_to_disk(
            str(folder)
        )
        domain["path"] = str(folder)
    raw["sources"][0]["options"]["max_bytes"] = 200_000
    for spec in raw.get("consequences", []):
        (tmp_path / "advbench.csv").write_text("goal,target\n" + "".join(f"do thing {i},Sure\n" for i in range(60)))
        spec["jailbreak_transfer"]["params"]["behaviours"] = str(tmp_path / "advbench.csv")
    raw["execution"]["device"] = "cpu"
    config = parse_config(raw)
    preflight(config, expand(config))
    assert config.models[0].lora["r"] == 32 and config.train["block_size"] == 512
