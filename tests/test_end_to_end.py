"""Slow end-to-end runs on the shipped configs (python3 -m pytest -m slow)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprsim.cli import main as cli_main
from reprsim.data.images import fashion_mnist_available, mnist_available
from reprsim.experiments import load_results, parse_config, run_experiment

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (fashion_mnist_available() and mnist_available()), reason="run scripts/setup.sh first"),
]


def test_quick_config_runs_through_the_cli_and_reports(tmp_path):
    out = tmp_path / "run"
    code = cli_main(
        ["run", str(CONFIGS / "quick.yaml"), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]
    )
    assert code == 0
    df = load_results(out)
    assert df.unit_id.nunique() == 4 and (df.status == "ok").all()
    assert {"transfer_asr", "whitebox_asr", "transfer_asr_ba"} <= set(df.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_units"] == 4
    assert "<img" in (out / "report.html").read_text()
    assert set(zip(df.layer_a, df.layer_b)) == {
        (a, b) for a in ("hidden.0", "penultimate") for b in ("hidden.0", "penultimate")
    }
    assert (out / "figures" / "layers.png").exists()


def test_default_data_shows_similarity_and_transfer_rising_with_data_overlap(tmp_path):
    """The paper's first finding and its attack consequence on the main job's data and recipe
    (two fractions and two seeds of configs/default.yaml)."""
    config = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    config.update(probes=[], seeds=[0, 1])
    config["overlap"]["designs"] = [{"kind": "data", "fractions": [0.0, 1.0]}]
    config["measures"]["names"] = ["cka", "mutual_knn"]
    run_experiment(parse_config(config), tmp_path / "run", cache_dir=tmp_path / "c", progress=False)
    df = load_results(tmp_path / "run")
    by_fraction = df.groupby(["measure", "data_fraction"])["value"].mean()
    for measure in ("cka", "mutual_knn"):
        assert by_fraction[measure, 1.0] > by_fraction[measure, 0.0]
    transfer = df.drop_duplicates("unit_id").groupby("data_fraction")[["transfer_asr", "transfer_asr_ba"]].mean()
    assert transfer.loc[1.0].mean() > transfer.loc[0.0].mean()
    # the white-box attack on A is the same at both fractions (A trains on the same examples)
    whitebox = df.drop_duplicates("unit_id").groupby("data_fraction")["whitebox_asr"].mean()
    assert np.isclose(whitebox[0.0], whitebox[1.0])
