"""Run-folder bookkeeping: atomic per-unit writes, statuses, assembly, refusal to overwrite."""

import json

import pandas as pd
import pytest

from reprsim.errors import ReprsimError
from reprsim.experiments.store import RunStore, atomic_write_json
from reprsim.results import load_results


def _rows(uid, n=2):
    return [{"unit_id": uid, "measure": f"m{i}", "value": float(i)} for i in range(n)]


def test_unit_is_done_only_once_its_status_is_written(tmp_path):
    store = RunStore(tmp_path / "run")
    store.prepare("name: x\n")
    assert store.status("u1") == "pending"
    store.write_unit("u1", {"unit_id": "u1"}, _rows("u1"), {"status": "ok"})
    store.write_unit("u2", {"unit_id": "u2"}, None, {"status": "failed", "error": "NaN loss"})
    # a unit whose rows exist but whose status was never written (killed mid-way) is pending
    (store.unit_dir("u3")).mkdir(parents=True)
    pd.DataFrame(_rows("u3")).to_parquet(store.unit_dir("u3") / "rows.parquet")
    assert [store.status(u) for u in ("u1", "u2", "u3")] == ["ok", "failed", "pending"]
    table = store.assemble(["u1", "u2", "u3"])
    assert list(table["unit_id"]) == ["u1", "u1"]


def test_assemble_orders_columns_by_contract(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_unit("a", {}, [{"value": 1.0, "extra": 3, "unit_id": "a", "measure": "cka"}], {"status": "ok"})
    table = store.assemble()
    assert list(table.columns) == ["unit_id", "measure", "value", "extra"]


def test_a_different_config_never_overwrites_a_run(tmp_path):
    store = RunStore(tmp_path / "run")
    store.prepare("name: a\n")
    store.prepare("name: a\n")  # same config: resume
    with pytest.raises(ReprsimError, match="never overwritten"):
        store.prepare("name: b\n")


def test_a_foreign_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("...")
    with pytest.raises(ReprsimError, match="not empty"):
        RunStore(tmp_path).prepare("name: a\n")


def test_unwritable_output_folder_is_reported(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a folder")
    with pytest.raises(ReprsimError, match="cannot write to output folder"):
        RunStore(target / "run").prepare("name: a\n")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_load_results_explains_a_non_run_folder(tmp_path):
    with pytest.raises(ReprsimError, match="holds no results table"):
        load_results(tmp_path)
