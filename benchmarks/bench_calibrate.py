"""Calibrated scores (``metrics.calibrate``) against one raw ``compute_all`` and against the peers'
method, recomputing each measure on every permuted Y (``metrics.compute(name, X, Y[π])``).

Targets (issue 24): calibrated scores of all measures at n = 5,000, d = 512, K = 200 cost ≤ 10× one
raw ``compute_all``, and are ≥ 20× faster than recomputation. Recomputation is timed in the same
run on ``--recompute`` permutations per measure (the affordable subset) and scaled to K; the
engine's null is timed per measure on the same number of permutations, for the per-measure ratio.
Features are float32, prepared the paper's way (0.95-quantile clip, L2 rows). Usage::

    python benchmarks/bench_calibrate.py                       # n=5000, d=512, K=200, 2 threads
    python benchmarks/bench_calibrate.py --n 1000 --K 50       # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics import make_data  # noqa: E402  (same data as the measure benchmark)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--K", type=int, default=200, help="permutations of the calibration")
    ap.add_argument("--recompute", type=int, default=2, help="permutations recomputed per measure (peers' method)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measures", nargs="*", default=None, help="default: every registered measure")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()

    import torch

    from reprsim import metrics
    from reprsim.metrics.engine import SimilarityEngine
    from reprsim.metrics.calibrate import draw_permutations

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # rsa's subsample note at n > 3000
    names = args.measures or list(metrics.MEASURES)
    X, Y = make_data(args.n, args.d)
    print(f"n={args.n} d={args.d} K={args.K} threads={args.threads} measures={len(names)}", flush=True)

    t0 = time.perf_counter()
    metrics.compute_all(X, Y, names=names)
    raw = time.perf_counter() - t0
    print(f"raw compute_all: {raw:.2f} s", flush=True)

    t0 = time.perf_counter()
    recs = metrics.calibrate(names, X, Y, n_permutations=args.K, seed=0)
    cal = time.perf_counter() - t0
    print(
        f"calibrate (all measures, K={args.K}): {cal:.2f} s = {cal / raw:.1f}x one compute_all (target <= 10x)",
        flush=True,
    )

    P = draw_permutations(args.n, args.recompute, seed=1)
    rows, peers = [], 0.0
    print(f"\n{'measure':22s} {'engine s/perm':>13s} {'recompute s/perm':>16s} {'ratio':>7s}  calibrated", flush=True)
    for name in names:
        kw = {"k": 10} if "k" in metrics.MEASURES[name].params else {}
        eng = SimilarityEngine({"X": X}, {"Y": Y}, [name], kw, progress=False)
        eng.compute()
        t0 = time.perf_counter()
        for _ in eng.permuted_values(P):
            pass
        e = (time.perf_counter() - t0) / len(P)
        t0 = time.perf_counter()
        for p in P:
            metrics.compute(name, X, Y[p], **kw)
        r = (time.perf_counter() - t0) / len(P)
        peers += r * args.K
        rows.append(
            {
                "measure": name,
                "engine_s_per_perm": e,
                "recompute_s_per_perm": r,
                "ratio": r / e,
                "calibrated": recs[name]["calibrated"],
                "p_value": recs[name]["p_value"],
            }
        )
        print(f"{name:22s} {e:13.4f} {r:16.4f} {r / e:7.1f}  {recs[name]['calibrated']:.3f}", flush=True)
    print(f"\nrecompute each measure K={args.K} times (scaled from {args.recompute} per measure): {peers:.1f} s")
    print(f"calibrate vs recomputation: {peers / cal:.1f}x faster (target >= 20x)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "n": args.n,
                    "d": args.d,
                    "K": args.K,
                    "threads": args.threads,
                    "raw_s": raw,
                    "calibrate_s": cal,
                    "recompute_s": peers,
                    "measures": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
