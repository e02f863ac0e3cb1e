"""Value oracle for the llm kind: every similarity value recomputed from the cached adapters by another path.

A tiny sweep (a random Llama folder, data and task overlap) runs through the real pipeline. Then,
for each unit, the test reads model A's and B's cache entries (their keys are in the unit's
status), loads the base with ``transformers`` and the adapter with ``peft`` directly (not through
reprsim's wrapper), takes features with a forward hook on the LM head's input (the last hidden
state after the final norm) averaged over the window, prepares them as documented and calls
``metrics.compute``: the table's values must match. Probe windows come from the kind.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from test_llm_models import tiny_llama_dir  # noqa: E402

from reprsim import metrics, storage  # noqa: E402
from reprsim.data.text import list_domains  # noqa: E402
from reprsim.experiments import load_results, parse_config, run_experiment  # noqa: E402
from reprsim.experiments.composition import composition_of  # noqa: E402
from reprsim.experiments.grid import expand  # noqa: E402

DOMAINS = ["shakespeare", "bible", "python_code", "fortunes"]


def oracle_features(base_dir, adapter: dict, lora: dict, windows: torch.Tensor) -> np.ndarray:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=0.0,
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )
    state = {k.removeprefix("lm."): v for k, v in adapter.items()}
    result = peft_model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if "lora_" in k]
    captured = []
    handle = model.lm_head.register_forward_hook(lambda _m, args, _o: captured.append(args[0].mean(1)))
    peft_model.eval()
    with torch.no_grad():
        peft_model(input_ids=windows)
    handle.remove()
    return torch.cat(captured).numpy()


def expected(config, xa, xb, measure) -> float:
    prep = config.measures.prepare
    pa = metrics.prepare(xa, normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    pb = metrics.prepare(xb, normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    params = {k: v for k, v in config.measures.params.items() if k in metrics.MEASURES[measure].params}
    return float(metrics.compute(measure, pa, pb, **params))


def test_llm_values_match_the_oracle(tmp_path):
    if not set(DOMAINS) <= set(list_domains(available_only=True)):
        pytest.skip("needs the text domains: run scripts/setup.sh")
    base = tiny_llama_dir(tmp_path / "llama")
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}
    config = parse_config(
        {
            "name": "oracle-llm",
            "sources": [
                {"name": "text", "options": {"domains": DOMAINS, "max_bytes": 5000, "n_chunks": 8, "per_model": 2}}
            ],
            "probe_size": 20,
            "models": [{"hf": str(base), "lora": lora}],
            "train": {
                "block_size": 16,
                "max_steps": 8,
                "eval_interval": 8,
                "eval_batches": 1,
                "batch_size": 4,
                "optimizer": "adamw",
                "lr": 0.02,
            },
            "overlap": {"designs": [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [0.5]}]},
            "seeds": [0],
            "measures": {"names": ["cka", "mutual_knn", "cknna"], "params": {"k": 5}},
        }
    )
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    checked = 0
    for unit in expand(config):
        kind = composition_of(unit)
        status = json.loads((tmp_path / "run" / "units" / unit.unit_id / "status.json").read_text())
        adapters = {
            s: storage.read_verified_state_dict(
                tmp_path / "cache" / "models" / f"{status['artifacts'][f'model_{s}']}.rsv"
            )[0]
            for s in "ab"
        }
        assert not all(torch.equal(adapters["a"][k], adapters["b"][k]) for k in adapters["a"])
        pair = kind.pair(config, unit, cache_dir=None)
        for probe in kind.probes(config, unit, pair):
            rows = df[(df.unit_id == unit.unit_id) & (df.probe_set == probe.name)]
            if len(probe) == 0:
                assert rows["value"].isna().all()
                continue
            feats = {s: oracle_features(base, adapters[s], lora, probe.inputs) for s in "ab"}
            assert not np.allclose(feats["a"], feats["b"])
            for row in rows.itertuples():
                want = expected(config, feats["a"], feats["b"], row.measure)
                assert row.value == pytest.approx(want, rel=1e-4, abs=1e-5), (unit.unit_id, probe.name, row.measure)
                checked += 1
    assert checked == len(df.dropna(subset=["value"])) > 0
