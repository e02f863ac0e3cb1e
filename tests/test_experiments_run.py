"""End-to-end behaviour of `reprsim run` on a tiny real-data sweep: results contract, resume,
caching, failure handling, executors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprsim.cli import main as cli_main
from reprsim.experiments import load_results, parse_config, plan, run_experiment
from reprsim.experiments import driver as driver_module

pytest.importorskip("reprsim.data.images")
from reprsim.data.images import fashion_mnist_available, mnist_available  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_available() and mnist_available()),
    reason="needs Fashion-MNIST and MNIST: run scripts/setup.sh",
)

CONTRACT = [
    "overlap_kind",
    "data_fraction",
    "task_fraction",
    "realised_data_fraction",
    "realised_task_fraction",
    "seed",
    "model",
    "probe_set",
    "layer_a",
    "layer_b",
    "measure",
    "value",
    "acc_a",
    "acc_b",
]


def tiny_config(**overrides) -> dict:
    config = {
        "name": "tiny",
        "sources": [{"name": "fashion_mnist", "options": {"per_class": 16, "seed": 0}}],
        "probes": [{"name": "mnist", "source": "mnist", "options": {"n": 60, "seed": 0}}],
        "probe_size": 60,
        "models": [{"name": "cnn", "options": {"channels": [8, 16], "penultimate_width": 16}}],
        "train": {"epochs": 1, "batch_size": 32, "optimizer": "adamw", "lr": 0.003},
        "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 1.0]}, {"kind": "task", "fractions": [0.4]}]},
        "seeds": [0],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
        "execution": {"workers": 1},
    }
    config.update(overrides)
    return config


def run(config: dict, out: Path, cache: Path, **kwargs):
    return run_experiment(parse_config(config), out, cache_dir=cache, progress=False, **kwargs)


def test_results_table_follows_the_contract(tmp_path):
    summary = run(tiny_config(), tmp_path / "run", tmp_path / "cache")
    df = load_results(tmp_path / "run")
    assert set(CONTRACT) <= set(df.columns)
    assert (df["status"] == "ok").all()
    assert summary.statuses and set(summary.statuses.values()) == {"ok"}
    # data units: probe sets test + mnist; task unit: common / ood_one / ood_all, the fixed-composition
    # common_fixed / ood_one_fixed, the whole test set, + mnist; 2 measures each
    assert len(df) == 2 * (2 * 2) + 1 * (7 * 2)
    data = df[df.overlap_kind == "data"]
    assert set(data.probe_set) == {"test", "mnist"}
    assert set(data.probe_role) == {"id", "ood"}
    assert np.allclose(sorted(data.realised_data_fraction.unique()), [0.0, 1.0])
    task = df[df.overlap_kind == "task"]
    assert set(task.probe_set) == {"common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed", "test", "mnist"}
    # the default task split is pure task overlap: disjoint images, no shared example
    assert (task.task_images == "disjoint").all() and (task.realised_data_fraction == 0).all()
    assert data.task_images.isna().all()
    # fraction 0.4 of K = 5 classes per model: round(2.0) = 2 shared, 2·3 = 6 seen by one model, 2 by
    # neither; one fraction, so the fixed sets hold that fraction's classes (the several-fraction case
    # is rebuilt class by class in test_value_oracle.py); 60 probes of ≥ 2000 images keep every class
    classes = task[task.measure == "cka"].set_index("probe_set").n_probe_classes.to_dict()
    assert classes == {
        "common": 2,
        "common_fixed": 2,
        "ood_one": 6,
        "ood_one_fixed": 6,
        "ood_all": 2,
        "test": 10,
        "mnist": 10,
    }
    assert task.realised_task_fraction.iloc[0] == pytest.approx(0.4)
    assert task.data_fraction.isna().all()
    assert df["value"].notna().all() and df["acc_a"].between(0, 1).all()
    # the CSV holds the same table
    csv = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(csv) == len(df)
    assert (tmp_path / "run" / "provenance.json").exists() and (tmp_path / "run" / "config.yaml").exists()


def test_rerun_skips_finished_units_and_changing_measures_retrains_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run(tiny_config(), tmp_path / "run", cache)
    before = load_results(tmp_path / "run")

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was retrained")

    again = run(tiny_config(), tmp_path / "run", cache)
    assert again.ran == []
    pd.testing.assert_frame_equal(load_results(tmp_path / "run"), before)

    # other measures → a new run folder, same cache: every model and feature comes from the cache
    import reprsim.train

    monkeypatch.setattr(reprsim.train, "train", no_training)
    other = tiny_config(measures={"names": ["cka", "svcca"], "params": {}})
    run(other, tmp_path / "run2", cache)
    df2 = load_results(tmp_path / "run2")
    cka_1 = before[before.measure == "cka"].sort_values(["unit_id", "probe_set"])["value"].to_numpy()
    cka_2 = df2[df2.measure == "cka"].sort_values(["unit_id", "probe_set"])["value"].to_numpy()
    assert np.allclose(cka_1, cka_2)


def test_failed_unit_is_recorded_and_retried_on_request(tmp_path, monkeypatch):
    original = driver_module.trained_model

    def flaky(kind, config, unit, *args, **kwargs):
        if unit.overlap_kind == "task":
            raise FloatingPointError("loss is NaN")
        return original(kind, config, unit, *args, **kwargs)

    monkeypatch.setattr(driver_module, "trained_model", flaky)
    summary = run(tiny_config(), tmp_path / "run", tmp_path / "cache")
    assert len(summary.failed) == 1
    status = (tmp_path / "run" / "units" / summary.failed[0] / "status.json").read_text()
    assert "loss is NaN" in status
    assert set(load_results(tmp_path / "run").overlap_kind) == {"data"}

    monkeypatch.setattr(driver_module, "trained_model", original)
    assert run(tiny_config(), tmp_path / "run", tmp_path / "cache").ran == []  # failed units wait for the flag
    retried = run(tiny_config(), tmp_path / "run", tmp_path / "cache", retry_failed=True)
    assert retried.ran == summary.failed
    assert set(load_results(tmp_path / "run").overlap_kind) == {"data", "task"}


def test_dry_run_lists_units_and_writes_nothing(tmp_path, capsys):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 units: 3 pending" in out
    assert not (tmp_path / "run").exists()
    assert list(plan(parse_config(tiny_config()), tmp_path / "run").status) == ["pending"] * 3


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["sources"][0]["options"].update(root="/nonexistent/fmnist"), "/nonexistent/fmnist"),
        (lambda c: c["sources"][0]["options"].update(per_class=1), "unit fashion_mnist-cnn-data"),
        (lambda c: c.update(layers=["conv99"]), "conv99"),
        (lambda c: c.update(sources=[{"name": "imagenet22k"}]), "imagenet22k"),
    ],
)
def test_bad_requests_stop_before_training_with_exit_code_2(tmp_path, capsys, mutate, message):
    import yaml

    config = tiny_config()
    mutate(config)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "units").exists()


@pytest.mark.slow
def test_sigkill_mid_run_loses_no_finished_unit_and_duplicates_no_row(tmp_path):
    import yaml

    config = tiny_config(overlap={"designs": [{"kind": "data", "fractions": [0.0, 0.25, 0.5, 0.75, 1.0]}]})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "reprsim.cli",
        "run",
        str(path),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--quiet",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("units/*/status.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name for p in out.glob("units/*/status.json")}
    assert 2 <= len(done_before) < 5
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    df = load_results(out)
    assert df.duplicated(["unit_id", "probe_set", "layer_a", "layer_b", "measure"]).sum() == 0
    assert df.unit_id.nunique() == 5


@pytest.mark.slow
def test_local_and_ray_executors_give_identical_results(tmp_path):
    pytest.importorskip("ray")
    from reprsim.experiments.executors import LocalExecutor, RayExecutor

    config = tiny_config()
    run(config, tmp_path / "local", tmp_path / "cache_local", executor=LocalExecutor(workers=2))
    ray_executor = RayExecutor(threads_per_unit=1, num_cpus=2)
    try:
        run(config, tmp_path / "ray", tmp_path / "cache_ray", executor=ray_executor)
    finally:
        import ray

        ray.shutdown()
    key = ["unit_id", "probe_set", "measure"]
    local = load_results(tmp_path / "local").sort_values(key).reset_index(drop=True)
    remote = load_results(tmp_path / "ray").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(local[key + ["value", "acc_a", "acc_b"]], remote[key + ["value", "acc_a", "acc_b"]])


def test_every_layer_pair_is_kept_and_permutation_p_values_are_recorded(tmp_path):
    config = tiny_config(
        layers=["block2", "penultimate"],
        probes=[],
        overlap={"designs": [{"kind": "data", "fractions": [1.0]}]},
        measures={"names": ["cka"], "params": {}, "permutations": 19},
    )
    run(config, tmp_path / "run", tmp_path / "cache")
    df = load_results(tmp_path / "run")
    assert sorted(zip(df.layer_a, df.layer_b)) == [
        ("block2", "block2"),
        ("block2", "penultimate"),
        ("penultimate", "block2"),
        ("penultimate", "penultimate"),
    ]
    # p = (1 + #{null ≥ observed}) / (K + 1) with K = 19
    assert df.p_value.between(1 / 20, 1).all()
    assert np.allclose((df.p_value * 20) % 1, 0)


def test_worker_processes_stream_each_units_stages(tmp_path):
    from reprsim.experiments.executors import LocalExecutor, UnitTask
    from reprsim.experiments.grid import expand

    config = parse_config(tiny_config(probes=[]))
    tasks = [UnitTask(config, unit, tmp_path / "cache") for unit in expand(config)[:2]]
    seen: dict[str, list[str]] = {}
    outcomes = list(
        LocalExecutor(workers=2).submit_all(tasks, on_stage=lambda uid, st: seen.setdefault(uid, []).append(st))
    )
    assert {task.unit.unit_id for task, _ in outcomes} == set(seen)
    for stages in seen.values():
        assert stages == ["split", "train_a", "train_b", "probes", "features", "measures"]
    assert all(outcome["status"]["status"] == "ok" for _, outcome in outcomes)
