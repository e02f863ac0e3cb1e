"""The HTML report renders in headless Chromium (offline) and the screenshot is not blank.

Chromium is Debian's ``chromium`` package; when it is absent and the tests run as root it is
installed with apt-get, otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_analysis_fixture import write_run_dir

from reprsim.analysis import build_report


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, timeout=900, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium could not be installed with apt-get ({exc})")
    path = shutil.which("chromium")
    if not path:
        pytest.skip("apt-get reported success but no chromium binary is on PATH")
    return path


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    root = write_run_dir(tmp_path / "run", n_seeds=2)
    report = build_report(root, n_boot=100)
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,1600",
           report.resolve().as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"no screenshot; chromium exit {proc.returncode}: {proc.stderr[-2000:]}"
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))[..., :3]
    assert img.shape[:2] == (1600, 1200)
    non_white = np.mean(np.any(img < 0.9, axis=-1))
    assert non_white > 0.02, f"screenshot looks blank ({non_white:.3%} non-white pixels)"
    assert img.std() > 0.05
    # colour from the embedded figures (Okabe-Ito blue/orange), not only black text
    coloured = np.mean((np.max(img, axis=-1) - np.min(img, axis=-1)) > 0.3)
    assert coloured > 0.001
