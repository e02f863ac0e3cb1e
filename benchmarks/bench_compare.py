"""Benchmark: ``compare_models`` on two ResNet-18s, 2,000 inputs, 5 × 5 layer pairs, all measures.

Two zoo ``resnet18`` models (random init, seeds 0 and 1; 3×32×32 inputs, 10 classes) are
compared on 2,000 generated ``colorshapes`` images resized to 32×32, layers ``layer1``–``layer4``
and ``penultimate`` of each (25 layer pairs), every registered measure, the paper's preparation.

Printed: the total wall and CPU time of ``compare_models``, the share spent in feature
extraction (both models) and in the measures, ``compare_features`` on the same features saved with
``Comparison.save(features=True)`` (the measures' share only), and two baselines measured in the same run:

* **naive measures**: ``metrics.compute_all`` called once per layer pair on that pair's prepared
  features (a fresh Gram/neighbour/kernel computation for every pair, as a per-pair loop does);
* **naive extraction**: features extracted again for every pair (one pass of A and one of B per
  pair, one layer each). One such pair is timed and multiplied by 25 (every pass runs the whole
  network on all inputs, whichever layer is read; timing all 25 would take ~25 forward passes of
  two ResNet-18s over 2,000 images).

Run by hand: ``python benchmarks/bench_compare.py [--n 2000] [--threads 2] [--skip-naive-extraction]``.
Results: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-naive-extraction", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import warnings

    from reprsim import metrics, models
    from reprsim.compare import compare_models
    from reprsim.data import load
    from reprsim.features import extract

    data = load("colorshapes", n=args.n, seed=0)
    x = (
        torch.nn.functional.interpolate(
            torch.as_tensor(data.inputs), size=(32, 32), mode="bilinear", align_corners=False
        )
        .clamp_(0, 1)
        .numpy()
    )
    a = models.build("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=0).eval()
    b = models.build("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=1).eval()
    layers = ["layer1", "layer2", "layer3", "layer4", "penultimate"]
    n_params = sum(p.numel() for p in a.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average before: {load_average()}")
    print(
        f"models: 2 × resnet18 ({n_params / 1e6:.1f}M parameters each), inputs {x.shape}, layers {layers}, "
        f"{len(metrics.MEASURES)} measures"
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, c0 = time.perf_counter(), cpu_seconds()
        comp = compare_models(a, b, x, layers=layers, measures="all", progress=False)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    feat = comp.timings["features_a"] + comp.timings["features_b"]
    meas = comp.timings["measures"]
    feat_cpu = comp.cpu_timings["features_a"] + comp.cpu_timings["features_b"]
    meas_cpu = comp.cpu_timings["measures"]
    print(f"\ncompare_models: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(
        f"  feature extraction (A + B, one pass each): {feat:.1f} s wall ({feat / wall:.0%}), "
        f"{feat_cpu:.1f} s CPU ({feat_cpu / cpu:.0%})"
    )
    print(
        f"  measures (25 pairs x {len(comp.measures)}):           {meas:.1f} s wall ({meas / wall:.0%}), "
        f"{meas_cpu:.1f} s CPU ({meas_cpu / cpu:.0%})"
    )
    print(f"  other (loading, checks, table):            {wall - feat - meas:.1f} s wall")
    print(f"  cka(penultimate, penultimate) = {comp.matrix('cka').loc['penultimate', 'penultimate']:.4f}")

    # ---- compare_features on the saved features: the measures' share only -----------------------
    import tempfile

    from reprsim.compare import compare_features

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = comp.save(tmp, features=True)
        t0 = time.perf_counter()
        again = compare_features(paths["features_a"], paths["features_b"], measures="all", progress=False)
        feats_wall = time.perf_counter() - t0
    same = np.allclose(again.table["value"], comp.table["value"], rtol=1e-6, atol=1e-7, equal_nan=True)
    print(
        f"compare_features on the saved features: {feats_wall:.1f} s wall (loading {again.timings['load']:.1f} s; "
        f"the same table: {same})"
    )

    # ---- naive measures: compute_all per pair on that pair's prepared features ------------------
    prep = {("a", k): metrics.prepare(v) for k, v in comp.features["a"].items()}  # the paper's rule
    prep |= {("b", k): metrics.prepare(v) for k, v in comp.features["b"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, c0 = time.perf_counter(), cpu_seconds()
        worst = 0.0
        for la in layers:
            for lb in layers:
                vals = metrics.compute_all(prep[("a", la)], prep[("b", lb)], on_error="nan")
                for name, v in vals.items():
                    got = comp.matrix(name).loc[la, lb]
                    if np.isfinite(v) and np.isfinite(got):
                        worst = max(worst, abs(v - got))
        naive_meas, naive_meas_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(
        f"\nnaive measures (compute_all per pair): {naive_meas:.1f} s wall, {naive_meas_cpu:.1f} s CPU  → shared is "
        f"{naive_meas / meas:.1f}× faster by wall, {naive_meas_cpu / meas_cpu:.1f}× by CPU "
        f"(max |Δ value| vs compare_models: {worst:.1e})"
    )

    # ---- naive extraction: features again for every pair ----------------------------------------
    if not args.skip_naive_extraction:
        t0, c0 = time.perf_counter(), cpu_seconds()
        extract(a, x, layers=["layer2"])
        extract(b, x, layers=["layer3"])
        one_pair, one_pair_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        naive_total = 25 * one_pair + naive_meas
        naive_total_cpu = 25 * one_pair_cpu + naive_meas_cpu
        print(
            f"naive extraction: one pair {one_pair:.1f} s wall / {one_pair_cpu:.1f} s CPU, × 25 pairs = "
            f"{25 * one_pair:.1f} s wall / {25 * one_pair_cpu:.1f} s CPU"
        )
        print(
            f"naive total ≈ {naive_total:.1f} s wall / {naive_total_cpu:.1f} s CPU  → compare_models is "
            f"{naive_total / wall:.1f}× faster by wall, {naive_total_cpu / cpu:.1f}× by CPU"
        )
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
