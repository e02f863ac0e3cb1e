"""Throughput of the colorshapes generator on one core (target: >= 5,000 images/s at 28×28).

Run: ``python benchmarks/bench_colorshapes.py [--n 50000] [--size 28]``. Prints images/s for the
fresh generation (no disk cache) and for reading the disk cache back, best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target states

import numpy as np  # noqa: E402

from reprsim.data.colorshapes import generate, load_colorshapes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    generate(100, image_size=args.size)  # build the mask banks once
    best = np.inf
    for r in range(args.repeat):
        t0 = time.perf_counter()
        generate(args.n, seed=r, image_size=args.size)
        best = min(best, time.perf_counter() - t0)
    print(f"generate   n={args.n} size={args.size}: {args.n / best:,.0f} images/s (best of {args.repeat})")
    with tempfile.TemporaryDirectory() as tmp:
        load_colorshapes(n=args.n, image_size=args.size, cache_dir=tmp)
        t0 = time.perf_counter()
        load_colorshapes(n=args.n, image_size=args.size, cache_dir=tmp)
        dt = time.perf_counter() - t0
    print(f"cache read n={args.n} size={args.size}: {args.n / dt:,.0f} images/s (incl. float32 conversion)")


if __name__ == "__main__":
    main()
