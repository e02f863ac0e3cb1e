"""Two real `reprsim run` processes: on the same run folder (refused), and on one cache (no double training)."""

import os
import subprocess
import sys

import pandas as pd
import yaml

CONFIG = {
    "name": "concurrent",
    "sources": [{"name": "digits", "options": {}}],
    "probe_size": 60,
    "models": [{"name": "mlp", "options": {"hidden": [64, 32]}}],
    "train": {"epochs": 10, "batch_size": 32, "optimizer": "adamw", "lr": 0.003},
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 0.5, 1.0]}]},
    "seeds": [0],
    "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
}


def _start(config_path, out, cache):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reprsim.cli",
            "run",
            str(config_path),
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--quiet",
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_run_on_a_folder_another_process_runs_in_is_refused_at_once_with_its_pid(tmp_path):
    from reprsim.storage import RunLock

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with RunLock(tmp_path / "run"):  # this test process holds the folder, as a running sweep would
        second = _start(config, tmp_path / "run", tmp_path / "cache")
        out, err = second.communicate(timeout=300)
    assert second.returncode == 2, (out, err)
    assert str(os.getpid()) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cache" / "models").exists()  # refused before any training


def test_two_sweeps_on_one_cache_train_each_model_once_and_agree(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    procs = [_start(config, tmp_path / f"run{i}", tmp_path / "cache") for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    a, b = (pd.read_parquet(tmp_path / f"run{i}" / "results.parquet") for i in range(2))
    pd.testing.assert_frame_equal(a, b)
    # 1 model A (same data at every fraction) + 3 models B, each trained once: one cache entry each,
    # and no temporary file left behind
    models = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir() if not p.name.startswith("."))
    assert len(models) == 4 and all(name.endswith(".rsv") for name in models)
    logs = "".join(p.read_text() for p in tmp_path.glob("run*/units/*/log.txt"))
    assert logs.count(": training") == 4, logs  # the other sweep waited for the entry, then loaded it
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]
