"""``reprsim compare-models``: outputs, files written with --out, and one-line errors (exit 2)."""

import io
import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from reprsim.cli import main

torch.set_num_threads(1)

FACTORY = """
import reprsim.models as M

def small():
    return M.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16, 8), seed=0)

def other():
    return M.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(12, 8), seed=1)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "climodels.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "climodels", raising=False)  # each test imports its own copy
    x = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "probe.npy", x)
    torch.save(torch.from_numpy(x), tmp_path / "probe.pt")
    np.save(tmp_path / "labels.npy", np.arange(40) % 10)
    return tmp_path


def test_json_records_have_the_table_columns(project, capsys):
    assert (
        main(
            [
                "compare-models",
                "climodels:small",
                "climodels:other",
                "--probe",
                "probe.npy",
                "-m",
                "cka",
                "-m",
                "mutual_knn",
                "--k",
                "5",
                "--layers",
                "hidden.0",
                "penultimate",
                "--format",
                "json",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 2 * 2 * 2
    assert set(records[0]) == {"layer_a", "layer_b", "measure", "value"}
    assert {r["measure"] for r in records} == {"cka", "mutual_knn"}
    same = [r for r in records if r["layer_a"] == r["layer_b"] == "penultimate" and r["measure"] == "cka"]
    assert 0 < same[0]["value"] < 1


def test_table_csv_and_out_folder_with_attack_and_permutations(project, capsys):
    out = project / "out"
    assert (
        main(
            [
                "compare-models",
                "climodels:small",
                "climodels:small",
                "--probe",
                "digits:n=60",
                "--measure",
                "cka",
                "--attack",
                "fgsm",
                "--eps",
                "0.05",
                "--permutations",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr()
    assert "penultimate (A) vs penultimate (B)" in text.out and "attack transfer" in text.out
    assert "wrote" in text.err
    frame = pd.read_parquet(out / "comparison.parquet")
    assert {"layer_a", "layer_b", "measure", "value", "p_value", "ci_low", "ci_high"} <= set(frame.columns)
    assert frame.loc[frame["measure"] == "cka", "value"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert {"whitebox_asr_a_to_b", "transfer_asr_b_to_a"} <= set(frame["measure"])
    assert (out / "comparison.html").read_text().startswith("<!DOCTYPE html>")
    assert len(pd.read_csv(out / "comparison.csv")) == len(frame)
    assert (
        main(
            [
                "compare-models",
                "climodels:small",
                "climodels:other",
                "--probe",
                "probe.pt",
                "-m",
                "cka",
                "--layers",
                "all",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(csv) == 3 * 3  # hidden.0, penultimate, logits of each model
    assert (
        main(
            [
                "compare-models",
                "climodels:small",
                "climodels:other",
                "--probe",
                "probe.npy",
                "--labels",
                "labels.npy",
                "-m",
                "cka",
                "--attack",
                "fgsm",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert any(r["measure"] == "transfer_asr_a_to_b" for r in json.loads(capsys.readouterr().out))


def test_text_probe_file(project, tmp_path, capsys):
    (project / "texts.txt").write_text("the cat sat\n\na dog ran on the mat\nhello world, again\n")
    assert (
        main(
            [
                "compare-models",
                "gpt_factory:build",
                "gpt_factory:build",
                "--probe",
                "texts.txt",
                "--tokenizer",
                "bytes",
                "-m",
                "cka",
                "-m",
                "procrustes",
                "--format",
                "json",
            ]
        )
        == 2
    )  # no such module yet
    capsys.readouterr()
    (project / "gpt_factory.py").write_text(
        "import reprsim.models as M\n\ndef build():\n    return M.build('gpt', vocab_size=256, block_size=32, "
        "preset='nano', seed=0)\n"
    )
    assert (
        main(
            [
                "compare-models",
                "gpt_factory:build",
                "gpt_factory:build",
                "--probe",
                "texts.txt",
                "--tokenizer",
                "bytes",
                "-m",
                "cka",
                "-m",
                "procrustes",
                "--format",
                "json",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert [r["measure"] for r in records] == ["cka", "procrustes"]
    assert records[0]["value"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["climodels:small", "climodels:small", "--probe", "probe.npy", "--layers", "block9"],
            "model A (climodels:small) has no layer 'block9'; available layers: hidden.0, penultimate, logits",
        ),
        (["nothing/here", "climodels:small", "--probe", "probe.npy"], "model A: 'nothing/here' is neither"),
        (["climodels:small", "climodels:small", "--probe", "probe.npy", "--attack", "fgsm"], "attack= needs labels"),
        (["climodels:small", "climodels:small", "--probe", "nosuchsource"], "not a data source"),
        (
            ["climodels:small", "climodels:small", "--probe", "probe.npy", "--eps", "0.1"],
            "--eps/--steps/--attack-n need --attack",
        ),
        (["climodels:small", "climodels:small", "--probe", "probe.npy", "-m", "nope"], "unknown measure 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project, capsys, argv, message):
    assert main(["compare-models", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reprsim compare-models: error: ")
    assert message in err[0]


def test_wrong_shape_names_the_model(project, capsys):
    np.save(project / "rgb.npy", np.zeros((10, 3, 16, 16), np.float32))
    assert main(["compare-models", "climodels:small", "climodels:other", "--probe", "rgb.npy"]) == 2
    err = capsys.readouterr().err
    assert "model A (climodels:small) cannot take the inputs of shape (10, 3, 16, 16)" in err
