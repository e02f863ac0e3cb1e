"""The HTML report at 1280 px in headless Chromium (offline): it renders, the first claim table's
verdict colours are on the page, figures are drawn, and nothing spills into the page margins.

Skipped where Chromium is not installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

WIDTH, HEIGHT = 1280, 3200
MORE_SIMILAR = np.array([0xDC, 0xEF, 0xD8]) / 255  # tr.more background in the report's CSS


def _chromium() -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium)")


def test_report_renders_at_1280_px_in_headless_chromium(synthetic_report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        f"--window-size={WIDTH},{HEIGHT}",
        (synthetic_report / "report.html").resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"no screenshot; chromium exit {proc.returncode}: {proc.stderr[-2000:]}"
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))[..., :3]
    assert img.shape[:2] == (HEIGHT, WIDTH)
    assert np.mean(np.any(img < 0.9, axis=-1)) > 0.02, "screenshot looks blank"
    verdict = np.all(np.abs(img - MORE_SIMILAR) < 0.02, axis=-1)
    assert verdict.sum() > 2000, "no verdict-coloured table rows on the first screens"
    coloured = np.mean((img.max(axis=-1) - img.min(axis=-1)) > 0.3)
    assert coloured > 0.001, "no figure colours"
    margin = img[:, WIDTH - 40 :]
    assert np.all(margin > 0.97), "content spills into the right margin at 1280 px"
    left = img[:, :20]
    assert np.all(left > 0.97), "content spills into the left margin at 1280 px"
