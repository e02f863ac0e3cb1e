"""`reprsim run` as a command: exit codes, the list of failed units, resuming with other execution
settings, --dry-run on a folder of another config, a full disk. The sweep itself is replaced by a
stand-in that keeps the runner's contract (prepare the folder, write unit statuses), so these tests
take no training."""

import errno
import json
from pathlib import Path

import pytest
import yaml

from reprsim.cli import main as cli_main
from reprsim.errors import ReprsimError
from reprsim.experiments import runner
from reprsim.experiments.config import dump_config
from reprsim.experiments.grid import expand, unit_record
from reprsim.experiments.store import RunStore

QUICK = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"


@pytest.fixture
def fake_sweep(monkeypatch):
    """Replace run_experiment: units whose overlap kind is in ``fail`` fail with a two-line error."""
    calls = []

    def fake(config, run_dir, *, executor=None, cache_dir=None, retry_failed=False, progress=True, **kwargs):
        calls.append({"config": config, "retry_failed": retry_failed})
        store = RunStore(run_dir)
        store.prepare(dump_config(config))
        units = expand(config)
        wanted = {"pending", "failed"} if retry_failed else {"pending"}
        for unit in units:
            if store.status(unit.unit_id) not in wanted:
                continue
            bad = unit.overlap_kind in fake.fail
            status = (
                {"status": "failed", "error": "FloatingPointError: loss is NaN\n  at epoch 2"}
                if bad
                else {"status": "ok"}
            )
            store.write_unit(unit.unit_id, unit_record(unit), None, status)
        return runner.RunSummary(Path(run_dir), units, {u.unit_id: store.status(u.unit_id) for u in units})

    fake.fail = set()
    fake.calls = calls
    monkeypatch.setattr(runner, "run_experiment", fake)
    return fake


def test_failed_units_are_listed_with_one_line_errors_and_exit_1(tmp_path, capsys, fake_sweep):
    out = tmp_path / "run"
    fake_sweep.fail = {"task"}
    assert cli_main(["run", str(QUICK), "--out", str(out), "--quiet", "--no-report", "seeds=[0,1]"]) == 1
    captured = capsys.readouterr()
    assert "4/8 units done" in captured.out
    err = captured.err.splitlines()
    failed = sorted(u.unit_id for u in expand(fake_sweep.calls[0]["config"]) if u.overlap_kind == "task")
    assert err[0] == "4 of 8 unit(s) failed:"
    assert sorted(line.split(":")[0].strip() for line in err[1:5]) == failed
    assert all(line.endswith("FloatingPointError: loss is NaN at epoch 2") for line in err[1:5])
    assert "--retry-failed" in err[5] and "'seeds=[0,1]'" in err[5]
    # --dry-run shows the same failures; --retry-failed reruns exactly them
    assert cli_main(["run", str(QUICK), "--out", str(out), "--dry-run", "seeds=[0,1]"]) == 0
    assert "4 failed, 4 ok" in capsys.readouterr().out
    fake_sweep.fail = set()
    assert (
        cli_main(["run", str(QUICK), "--out", str(out), "--quiet", "--no-report", "seeds=[0,1]", "--retry-failed"]) == 0
    )
    assert fake_sweep.calls[-1]["retry_failed"] is True
    assert {json.loads(p.read_text())["status"] for p in out.glob("units/*/status.json")} == {"ok"}


def test_the_run_folder_records_the_resolved_config(tmp_path, fake_sweep):
    out = tmp_path / "run"
    assert (
        cli_main(["run", str(QUICK), "--out", str(out), "--quiet", "--no-report", "train.epochs=2", "--workers", "2"])
        == 0
    )
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["train"]["epochs"] == 2 and recorded["execution"]["workers"] == 2


def test_resuming_with_other_execution_settings_is_not_another_config(tmp_path, capsys, fake_sweep):
    out = tmp_path / "run"
    assert cli_main(["run", str(QUICK), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert (
        cli_main(
            [
                "run",
                str(QUICK),
                "--out",
                str(out),
                "--quiet",
                "--no-report",
                "--workers",
                "3",
                "execution.threads_per_unit=2",
            ]
        )
        == 0
    )
    execution = yaml.safe_load((out / "config.yaml").read_text())["execution"]
    assert execution["workers"] == 3 and execution["threads_per_unit"] == 2  # the new settings are recorded
    assert cli_main(["run", str(QUICK), "--out", str(out), "--dry-run", "--workers", "4"]) == 0
    assert "4 units: 4 ok" in capsys.readouterr().out
    # another config is refused by the run and by --dry-run alike, naming what differs
    for extra in ([], ["--dry-run"]):
        assert cli_main(["run", str(QUICK), "--out", str(out), "--quiet", "train.epochs=9", "seeds=[5]", *extra]) == 2
        err = capsys.readouterr().err
        assert "holds a run of a different config (it differs in train.epochs, seeds.0)" in err
        assert len(err.strip().splitlines()) == 1


def test_prepare_compares_configs_without_their_execution_section(tmp_path):
    store = RunStore(tmp_path / "run")
    store.prepare("name: a\ntrain: {epochs: 1}\nexecution: {workers: 1}\n")
    store.prepare("name: a\ntrain: {epochs: 1}\nexecution: {workers: 2}\n", check_only=True)
    assert "workers: 1" in (tmp_path / "run" / "config.yaml").read_text()  # check_only writes nothing
    store.prepare("name: a\ntrain: {epochs: 1}\nexecution: {workers: 2}\n")
    assert "workers: 2" in (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(ReprsimError, match=r"differs in train\.epochs, train\.lr\)"):
        store.prepare("name: a\ntrain: {epochs: 2, lr: 0.1}\nexecution: {workers: 2}\n", check_only=True)
    with pytest.raises(ReprsimError, match="not empty"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("mine")
        RunStore(tmp_path / "other").prepare("name: a\n", check_only=True)
    RunStore(tmp_path / "fresh").prepare("name: a\n", check_only=True)
    assert not (tmp_path / "fresh").exists()


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "results.parquet"))

    monkeypatch.setattr(runner, "run_experiment", full)
    assert cli_main(["run", str(QUICK), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no space left on the device while writing" in err and "results.parquet" in err
    assert "rerun the same command" in err and f"--out {tmp_path / 'run'}" in err


def test_help_documents_overrides_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = capsys.readouterr().out
    assert "KEY=VALUE" in text and "exit status:" in text
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in text
