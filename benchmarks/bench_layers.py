"""Cost of one layer (1 layer pair) vs two layers (4 layer pairs), issue 23: the similarity stage and
the whole default run.

Stage: ``experiments.similarity.similarity_rows`` (what every sweep unit runs per probe set) with the
default config's measure settings (``configs/default.yaml``: every measure, ``k = 10``, the paper's
preparation, calibration of CKA and CKNNA with 50 permutations and the best-layer rows) and probe
size (n = 1,000), with ``layers: [penultimate]`` and ``layers: [hidden.0, penultimate]``. The
features are those of the default config's MLP shape (784-512-256; ``hidden.0`` 512 wide,
``penultimate`` 256), read out of two randomly initialised ReLU networks with shared first-layer
weights plus noise, on Gaussian inputs. The old path (one ``compute_all`` per layer pair, as the
sweep did before the layer-table engine, uncalibrated) is timed in the same run.

Whole run (``--runs R``): ``reprsim run configs/default.yaml`` with ``--seeds S`` seeds (default 2;
the config has 10) and the data design only (the cnn of the task design has no ``hidden.0``), each from an empty cache, one layer and
two layers alternating R times; prints each wall time, the machine's load and the ratio of the means.

Target (issue 23): the default config with 4 layer pairs costs ≤ 1.3× the one-layer run. Usage::

    python benchmarks/bench_layers.py [--n 1000] [--threads 2] [--repeat 2] [--runs 0] [--seeds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def mlp_features(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """{hidden.0: (n, 512), penultimate: (n, 256)} float32 of two related random ReLU MLPs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 784), dtype=np.float32)
    W1 = rng.standard_normal((784, 512), dtype=np.float32) / np.float32(28.0)
    W2 = rng.standard_normal((512, 256), dtype=np.float32) / np.float32(np.sqrt(512))
    out = []
    for noise in (0.0, 0.7):
        V1 = W1 + noise * rng.standard_normal(W1.shape, dtype=np.float32) / np.float32(28.0)
        V2 = W2 + noise * rng.standard_normal(W2.shape, dtype=np.float32) / np.float32(np.sqrt(512))
        h = np.maximum(x @ V1, 0)
        out.append({"hidden.0": h, "penultimate": np.maximum(h @ V2, 0)})
    return out[0], out[1]


def old_stage(spec, fa, fb, layers):  # noqa: ANN001, ANN201  the sweep's path before the engine
    from reprsim import metrics

    names = spec.resolved_names()
    prep = {
        w: {
            layer: metrics.prepare(f[layer], normalize=spec.prepare.normalize, clip_quantile=spec.prepare.clip_quantile)
            for layer in layers
        }
        for w, f in (("a", fa), ("b", fb))
    }
    return {
        (la, lb): metrics.compute_all(prep["a"][la], prep["b"][lb], names=names, on_error="nan", **spec.params)
        for la in layers
        for lb in layers
    }


def best_of(repeat: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


DATA_DESIGN = (
    "overlap.designs=[{kind: data, fractions: [0.0, 0.5, 1.0], align: [0.0, 8.0], sources: [fashion_mnist], "
    "models: [mlp]}]"
)


def whole_run(layers: str, seeds: int, root: Path) -> float:
    """Wall seconds of the default's data design with ``seeds`` seeds and ``layers`` from an empty cache
    under ``root``."""
    out, cache = root / "run", root / "cache"
    shutil.rmtree(root, ignore_errors=True)
    cmd = [sys.executable, "-m", "reprsim.cli", "run", str(REPO / "configs" / "default.yaml"), "--out", str(out)]
    cmd += ["--cache-dir", str(cache), "--quiet", f"seeds={list(range(seeds))}", DATA_DESIGN, f"layers={layers}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs per stage figure")
    ap.add_argument("--runs", type=int, default=0, help="also time R pairs of whole runs (minutes each)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the whole runs (the default config has 10)")
    args = ap.parse_args()

    import torch

    from reprsim.experiments.overrides import load_config
    from reprsim.experiments.similarity import similarity_rows

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    spec = load_config(REPO / "configs" / "default.yaml").measures
    fa, fb = mlp_features(args.n)
    one, two = ["penultimate"], ["hidden.0", "penultimate"]
    new1 = best_of(args.repeat, lambda: similarity_rows(spec, fa, fb, one, seed=0))
    new4 = best_of(args.repeat, lambda: similarity_rows(spec, fa, fb, two, seed=0))
    old1 = best_of(args.repeat, lambda: old_stage(spec, fa, fb, one))
    old4 = best_of(args.repeat, lambda: old_stage(spec, fa, fb, two))
    print(f"n={args.n} threads={args.threads} measures={len(spec.resolved_names())} (best of {args.repeat})")
    print(
        f"stage, engine (calibrated as the default): 1 pair {new1:6.2f} s  4 pairs {new4:6.2f} s  ratio {new4 / new1:.2f}x"
    )
    print(
        f"stage, one compute_all per pair (no calibration): 1 pair {old1:6.2f} s  4 pairs {old4:6.2f} s  ratio {old4 / old1:.2f}x"
    )
    if args.runs:
        walls: dict[str, list[float]] = {"[penultimate]": [], "[hidden.0,penultimate]": []}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.runs):
                for layers in walls if r % 2 == 0 else reversed(walls):
                    before = load()
                    walls[layers].append(whole_run(layers, args.seeds, Path(tmp) / "r"))
                    print(f"whole run layers={layers}: {walls[layers][-1]:6.1f} s (load {before} -> {load()})")
        m1, m4 = (statistics.mean(w) for w in walls.values())
        print(
            f"whole run, mean of {args.runs}: 1 pair {m1:.1f} s  4 pairs {m4:.1f} s  ratio {m4 / m1:.2f}x (target <= 1.3x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
