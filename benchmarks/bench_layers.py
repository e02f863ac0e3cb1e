"""Cost of the sweep's similarity stage with one layer vs two layers (4 layer pairs), issue 23.

What it measures: ``experiments.similarity.similarity_rows`` (the stage every sweep unit runs per
probe set) on the default config's measure settings (every measure, ``k = 10``, the paper's
preparation: clip 0.95 quantile + L2 rows) and probe size (n = 1,000), with ``layers:
[penultimate]`` (1 pair) and ``layers: [hidden.0, penultimate]`` (4 pairs). The features are those
of the default config's MLP shape (784-512-256; ``hidden.0`` 512 wide, ``penultimate`` 256), read out
of two randomly initialised ReLU networks with shared first-layer weights plus noise, on Gaussian
inputs — realistic widths, sparsity and cross-layer relation, without training (a cold-cache default
run takes ≈ 14 CPU-minutes twice). The old path (one ``compute_all`` per layer pair, as the sweep did
before the layer-table engine) is timed in the same run on the same features.

Target (issue 23): the 4-pair stage ≤ 1.3× the 1-pair stage. Usage::

    python benchmarks/bench_layers.py [--n 1000] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs per figure")
    args = ap.parse_args()

    import torch

    from reprsim.experiments.config import MeasureSpec
    from reprsim.experiments.similarity import similarity_rows

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    spec = MeasureSpec(names="all", params={"k": 10}, prepare={"normalize": "l2", "clip_quantile": 0.95})
    fa, fb = mlp_features(args.n)
    one, two = ["penultimate"], ["hidden.0", "penultimate"]
    new1 = best_of(args.repeat, lambda: similarity_rows(spec, fa, fb, one, seed=0))
    new4 = best_of(args.repeat, lambda: similarity_rows(spec, fa, fb, two, seed=0))
    old1 = best_of(args.repeat, lambda: old_stage(spec, fa, fb, one))
    old4 = best_of(args.repeat, lambda: old_stage(spec, fa, fb, two))
    print(f"n={args.n} threads={args.threads} measures={len(spec.resolved_names())} (best of {args.repeat})")
    print(f"engine   1 pair: {new1:7.2f} s   4 pairs: {new4:7.2f} s   ratio {new4 / new1:.2f}x (target <= 1.3x)")
    print(f"per-pair 1 pair: {old1:7.2f} s   4 pairs: {old4:7.2f} s   ratio {old4 / old1:.2f}x")
    print(f"4 pairs: engine {old4 / new4:.2f}x faster than one compute_all per pair")
    return 0


if __name__ == "__main__":
    sys.exit(main())
