"""Hostile models (issue 27, case 2 and the model half of case 6): Hugging Face folders that need their
own Python, pickle payloads in weights, MODULE:CALLABLE factories that exit or return no module.
Every test works in its own temporary folder; no planted code may run (a marker file proves it)."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest

from reprsim.cli import main
from reprsim.compare.references import load_model
from reprsim.errors import ConfigError, ReprsimError

transformers = pytest.importorskip("transformers")


class _Payload:
    """Unpickling this runs a shell command (it writes the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _with_custom_code(folder: Path, marker: Path) -> Path:
    """A model folder whose config asks for its own configuration/modeling code (which would touch
    ``marker``); no weights are needed, since it must be refused before anything is built."""
    folder.mkdir()
    cfg = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": 1,
        "n_embd": 8,
        "n_head": 2,
        "vocab_size": 16,
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.Evil"},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code)
    return folder


def test_a_folder_that_needs_custom_code_is_refused_before_anything_runs(tmp_path, capsys):
    import numpy as np

    from reprsim.models.hf_lm import model_dir_problems
    from reprsim.models.adapters import detect_hf_task, load_hf_model

    marker = tmp_path / "ran"
    folder = _with_custom_code(tmp_path / "evil", marker)
    with pytest.raises(ConfigError, match="auto_map.*trust_remote_code=False"):
        detect_hf_task(folder)
    with pytest.raises(ConfigError, match="auto_map"):
        load_hf_model(folder, task="causal-lm")
    with pytest.raises(ReprsimError, match="auto_map"):
        load_model(str(folder))
    assert any("auto_map" in p for p in model_dir_problems(folder))  # config validate / preflight
    np.save(tmp_path / "probe.npy", np.zeros((4, 6), dtype=np.int64))
    capsys.readouterr()
    assert main(["compare-models", str(folder), str(folder), "--probe", str(tmp_path / "probe.npy")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "auto_map" in line and "never runs code from a model folder" in line
    assert not marker.exists()


def test_a_pickle_payload_in_pytorch_model_bin_is_refused_unread(tmp_path, one_torch_thread):
    import torch

    from reprsim.models.adapters import load_hf_model

    marker = tmp_path / "ran"
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "architectures": ["GPT2LMHeadModel"],
                "n_layer": 1,
                "n_embd": 8,
                "n_head": 2,
                "vocab_size": 16,
                "n_positions": 8,
            }
        )
    )
    torch.save({"transformer.wte.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ReprsimError, match="pickle with more than tensors.*refused unread"):
        load_hf_model(folder, task="causal-lm")
    assert not marker.exists()


def test_every_hugging_face_load_passes_trust_remote_code_false():
    """Source check: no ``from_pretrained`` / ``AutoConfig`` call in reprsim omits the keyword."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "reprsim"
    missing = []
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        # peft adapters hold no code; a named diffusers class (UNet2DModel, DDPMScheduler) loads only its own
        # weights and config, never a folder's Python (diffusers has no trust_remote_code for them)
        for m in re.finditer(r"(?<!PeftModel)(?<!UNet2DModel)(?<!DDPMScheduler)\.from_pretrained\(", text):
            call = text[m.end() : m.end() + 400]
            depth, end = 1, 0
            for end, ch in enumerate(call):
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0:
                    break
            args = call[:end]
            if "trust_remote_code=False" not in args and "**kwargs" not in args:
                missing.append(f"{path.relative_to(src)}: {args[:60]}")
            elif "**kwargs" in args:  # the kwargs must set it just before
                before = text[max(0, m.start() - 600) : m.start()]
                if "trust_remote_code" not in before:
                    missing.append(f"{path.relative_to(src)}: **kwargs without trust_remote_code")
    assert missing == []


@pytest.mark.parametrize(
    ("factory", "expect"),
    [
        ("sys:exit", r"sys:exit\(\) failed: it called sys.exit"),
        ("os:getcwd", r"returned a str, not a torch.nn.Module"),
        ("hostile_factory_mod:explode", r"RuntimeError: boom"),
        ("hostile_exit_at_import:f", r"importing 'hostile_exit_at_import'.*sys.exit\(3\)"),
    ],
)
def test_module_callable_that_exits_or_returns_no_module_is_one_error(tmp_path, monkeypatch, factory, expect, capsys):
    monkeypatch.chdir(tmp_path)  # MODULE:CALLABLE imports from the current folder
    (tmp_path / "hostile_factory_mod.py").write_text("def explode():\n    raise RuntimeError('boom')\n")
    (tmp_path / "hostile_exit_at_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with pytest.raises(ReprsimError, match=expect):
        load_model(factory)
    # the CLI: exit 2 and one line on stderr, never exit 0 silently
    assert main(["compare-models", factory, factory, "--probe", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reprsim compare-models: error:")
    for name in ("hostile_factory_mod", "hostile_exit_at_import"):
        sys.modules.pop(name, None)


def test_the_module_callable_docs_say_it_runs_code():
    from reprsim.compare import references

    doc = references.__doc__
    assert "imports that module" in doc and "calls that callable" in doc and "os.abort" in doc


def test_pickle_payload_marker_helper_really_would_run(tmp_path):
    """The payload used above is live: plain ``pickle.loads`` runs it (so the refusal tests mean something)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))  # noqa: S301 - the point of the test
    assert marker.exists()


@pytest.mark.parametrize("source", ["colorshapes", "text"])  # the image kind's and the llm kind's preflight
def test_config_validate_refuses_a_folder_that_needs_custom_code(tmp_path, capsys, source):
    marker = tmp_path / "ran"
    folder = _with_custom_code(tmp_path / "evil", marker)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"sources: [{{name: {source}}}]\nmodels: [{{hf: {folder}}}]\n"
        "overlap: {designs: [{kind: data, fractions: [0.0, 1.0]}]}\nseeds: [0]\n"
    )
    assert main(["config", "validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "auto_map" in err and "trust_remote_code=False" in err and "cannot be trained" not in err
    assert not marker.exists()
