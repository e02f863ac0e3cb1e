"""Hostile folders (issue 27, cases 1, 3, 4): planted symlinks and hard links, foreign --out folders,
path-like names. Each test works in its own temporary folder; a symlink target is always a COPY of
a system file (never the file itself), and the test checks that the copy is unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_analysis_fixture import make_results

from reprsim import storage
from reprsim.analysis import build_report
from reprsim.analysis.plots import slug
from reprsim.cli import main
from reprsim.errors import ConfigError, ReprsimError
from reprsim.safe_paths import path_name_problem

FAST = {"n_boot": 100, "n_perm": 100, "figures": False}


def _victim(tmp_path: Path) -> tuple[Path, bytes]:
    """A copy of a system file (what an attacker would point a link at) and its bytes."""
    source = Path("/etc/passwd") if Path("/etc/passwd").is_file() else Path(os.__file__)
    copy = tmp_path / "victim" / "passwd-copy"
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    return copy, copy.read_bytes()


def _small_table(n_seeds: int = 2) -> pd.DataFrame:
    return make_results(n_seeds=n_seeds, kinds=("data",), consequences=False)


# ---- case 1: lock files and written files never follow a planted link ---------------------------
def test_run_lock_refuses_a_symlinked_lock_file_and_leaves_its_target(tmp_path):
    victim, before = _victim(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / storage.RUN_LOCK_FILE).symlink_to(victim)
    with pytest.raises(ReprsimError, match=r"\.reprsim-run\.lock.*symbolic link"):
        storage.RunLock(run).acquire()
    assert victim.read_bytes() == before and victim.stat().st_size > 0


def test_key_lock_refuses_a_symlink_or_hard_link_in_a_shared_cache(tmp_path):
    victim, before = _victim(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / "features.rsv"
    storage.lock_path(entry).symlink_to(victim)
    with pytest.raises(ReprsimError, match="symbolic link"), storage.key_lock(entry):
        pass
    entry2 = cache / "other.rsv"
    os.link(victim, storage.lock_path(entry2))  # a hard link: the same file under the lock's name
    with pytest.raises(ReprsimError, match="2 hard links"), storage.key_lock(entry2):
        pass
    assert victim.read_bytes() == before


def test_lock_on_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / ".x.lock"
    os.mkfifo(fifo)
    with pytest.raises(ReprsimError, match="not a regular file"), storage.key_lock(tmp_path / "x"):
        pass


def test_atomic_write_refuses_a_symlinked_target_and_ignores_a_planted_temp_name(tmp_path, monkeypatch):
    victim, before = _victim(tmp_path)
    target = tmp_path / "results.csv"
    target.symlink_to(victim)
    with pytest.raises(ReprsimError, match="results.csv.*symbolic link"):
        storage.atomic_write_bytes(target, b"x")
    assert victim.read_bytes() == before and target.is_symlink()
    # a symlink planted at the temporary name the writer will try first is skipped (O_EXCL | O_NOFOLLOW)
    names = iter(["aaaa0000", "bbbb1111"])
    monkeypatch.setattr(storage.secrets, "token_hex", lambda n: next(names))
    planted = tmp_path / f".out.bin.{os.getpid()}.aaaa0000.tmp"
    planted.symlink_to(victim)
    storage.atomic_write_bytes(tmp_path / "out.bin", b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"new" and victim.read_bytes() == before


def test_cache_reads_follow_no_symlink_and_never_block_on_a_fifo(tmp_path):
    victim, before = _victim(tmp_path)
    good = tmp_path / "elsewhere.rsv"
    storage.write_verified(good, b"planted payload")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "a.rsv").symlink_to(good)
    (cache / "b.rsv").symlink_to(victim)
    os.mkfifo(cache / "c.rsv")
    for name in ("a.rsv", "b.rsv", "c.rsv"):
        assert storage.read_verified(cache / name) is None  # moved aside, recomputed by the caller
        assert not os.path.lexists(cache / name)
    assert storage.read_verified(good) == b"planted payload" and victim.read_bytes() == before


def test_normal_locks_and_writes_still_work(tmp_path):
    with storage.RunLock(tmp_path / "run"):
        assert (tmp_path / "run" / storage.RUN_LOCK_FILE).is_file()
    assert storage.cached(tmp_path / "c" / "e.rsv", lambda: b"v") == b"v"
    assert storage.read_verified(tmp_path / "c" / "e.rsv") == b"v"


# ---- case 3: the report trusts neither the folder it writes to nor what it reads -----------------
def test_report_refuses_symlinked_report_files_and_figures_folder(tmp_path):
    victim, before = _victim(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    _small_table().to_csv(run / "results.csv", index=False)
    for name in ("summary.json", "report.html", "report.md"):
        (run / name).symlink_to(victim)
        with pytest.raises(ReprsimError, match=f"{name}.*symbolic link"):
            build_report(run, **FAST)
        (run / name).unlink()
    assert victim.read_bytes() == before
    # a symlinked figures/ pointing at a folder of someone else's images: refused, nothing deleted
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "holiday.png").write_bytes(b"png")
    (run / "figures").symlink_to(pictures, target_is_directory=True)
    with pytest.raises(ReprsimError, match="figures.*symbolic link"):
        build_report(run, **FAST)
    assert (pictures / "holiday.png").read_bytes() == b"png"


def test_report_out_refuses_a_foreign_folder_and_deletes_only_its_own_figures(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _small_table().to_csv(run / "results.csv", index=False)
    home = tmp_path / "Documents"
    (home / "figures").mkdir(parents=True)
    (home / "figures" / "thesis.png").write_bytes(b"mine")
    with pytest.raises(ReprsimError, match="neither a reprsim run nor a reprsim report"):
        build_report(run, out=home, **FAST)
    assert main(["report", str(run), "--out", str(home), "--no-figures", "--n-boot", "100", "--n-perm", "100"]) == 2
    assert (home / "figures" / "thesis.png").read_bytes() == b"mine"
    # a report folder reprsim made: a new report deletes the figures its summary.json lists, nothing else
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    listed = ["figures/overlap-old.png", "figures/../../../outside.png", "/etc/x.png", "figures/sub/dir.png"]
    (out / "summary.json").write_text(json.dumps({"status": "ok", "run": {}, "figures": [{"png": p} for p in listed]}))
    for name in ("overlap-old.png", "overlap-old.svg", "notes.png", "notes.svg"):
        (out / "figures" / name).write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"keep")
    build_report(run, out=out, **FAST)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["notes.png", "notes.svg"]
    assert (tmp_path / "outside.png").read_bytes() == b"keep"


def test_sample_grids_are_read_from_inside_the_run_folder_only(tmp_path):
    from reprsim.analysis.report import _own_file, _unit_dirs
    from reprsim.analysis.load import load_runs

    run = tmp_path / "run"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "samples_a.png").write_bytes(b"secret")
    df = _small_table()
    df.loc[df["unit_id"] == df["unit_id"].iloc[0], "unit_id"] = "../../outside"
    df.loc[df["unit_id"] == df["unit_id"].iloc[-1], "unit_id"] = str(outside)
    run.mkdir()
    df.to_csv(run / "results.csv", index=False)
    unit = run / "units" / "u1"
    unit.mkdir(parents=True)
    (unit / "samples_b.png").symlink_to(outside / "samples_a.png")
    (run / "units" / "u2").symlink_to(outside, target_is_directory=True)
    dirs = _unit_dirs(load_runs([run]))
    assert "../../outside" not in dirs and str(outside) not in dirs  # path-like ids get no folder
    assert _own_file(unit, "samples_b.png") is None  # a symlinked grid is not read
    assert _own_file(run / "units" / "u2", "samples_a.png") is None  # nor one in a symlinked unit folder


# ---- case 4: names that become paths --------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "m\x00", "tab\there", "back\\slash"])
def test_config_refuses_model_and_source_names_that_are_paths(name):
    from reprsim.experiments.config import parse_config

    base = {
        "sources": [{"name": "colorshapes"}],
        "models": [{"name": "mlp"}],
        "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 1.0]}]},
        "seeds": [0],
    }
    parse_config(base)  # the valid config passes
    with pytest.raises(ConfigError, match=r"folder names; models\.0\.name"):
        parse_config({**base, "models": [{"name": name}]})
    with pytest.raises(ConfigError, match=r"sources\.0\.name"):
        parse_config({**base, "sources": [{"name": name}]})


def test_run_store_refuses_a_path_like_unit_id(tmp_path):
    from reprsim.experiments.store import RunStore

    store = RunStore(tmp_path / "run")
    assert store.unit_dir("cnn-u001") == tmp_path / "run" / "units" / "cnn-u001"
    with pytest.raises(ReprsimError, match="path separator"):
        store.unit_dir("../../escaped")


def test_figure_slugs_never_collide_for_distinct_names():
    names = ["m<1>", "m 1", "m-1", "m_1", "m1", "a-b", "a", "b-c", "x" * 200, "x" * 201]
    pairs = [("overlap", "src", n) for n in names] + [("overlap", "a-b", "c"), ("overlap", "a", "b-c")]
    slugs = [slug(*p) for p in pairs]
    assert len(set(slugs)) == len(slugs)
    assert slug("overlap", "mnist", "cnn", "data") == "overlap-mnist-cnn-data"  # plain names: unchanged
    for s in slugs:
        assert path_name_problem(s) is None and len(s) <= 120 and not s.startswith(".")


def test_checkpoints_and_feature_caches_ignore_links_at_the_old_guessable_temp_names(tmp_path):
    import torch

    from reprsim.training.checkpoint import save_weights

    victim, before = _victim(tmp_path)
    folder = tmp_path / "cache" / "unit"
    folder.mkdir(parents=True)
    for name in (f"model.safetensors.tmp{os.getpid()}", f"model.json.tmp{os.getpid()}"):
        (folder / name).symlink_to(victim)  # where the writer used to put its temporary file
    model = torch.nn.Linear(3, 2)
    path = save_weights(model, {"epoch": 1}, folder)
    assert victim.read_bytes() == before
    from safetensors.torch import load_file

    assert torch.equal(load_file(path)["weight"], model.weight.detach())


def test_a_deeply_nested_config_yaml_is_one_line(tmp_path):
    from reprsim.analysis.load import load_run

    run = tmp_path / "run"
    run.mkdir()
    _small_table().to_csv(run / "results.csv", index=False)
    (run / "config.yaml").write_text("[" * 20_000 + "]" * 20_000)
    with pytest.raises(ReprsimError, match="config.yaml is not valid YAML"):
        load_run(run)
