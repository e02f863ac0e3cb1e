"""GPU smoke check: a 2-unit sweep forced onto CUDA must give the CPU run's table (within float tolerance).

Run by hand on a machine with a GPU::

    python benchmarks/gpu_smoke.py [--out DIR] [--measures-n 50000] [--measures-d 512] [--skip-sweep]

Two timings follow the sweep check, each on the GPU against the CPU path in the same run:

* every measure on one pair of random features, n = 50,000 × d = 512 (float32, the paper's
  preparation), through :func:`reprsim.compare.compare_features` with ``device="cuda"`` and
  ``device="cpu"``: seconds per measure on each, where each GPU row was computed (a measure that
  fails on the GPU falls back to the CPU), and |value cuda − value cpu| (expected ≤ 1e-5);
* :func:`reprsim.compare.compare_models` on two zoo ResNet-18s (2,000 images, layers ``layer1`` –
  ``penultimate``, every measure) with ``device="cuda"`` and ``device="cpu"``: per-stage seconds.

It runs the same tiny sweep (image kind: an MLP on Fashion-MNIST, data overlap 0 and 1, MI-FGSM
transfer) twice, with ``execution.device=cpu`` and ``execution.device=cuda``, each from an empty
cache, prints each unit's per-stage times on both devices, and compares every ``value`` and every
consequence column. Exits 0 when they match, 1 when they do not, and 0 with a message (nothing
checked) when no CUDA device is available.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIG = {
    "name": "gpu-smoke",
    "sources": [{"name": "fashion_mnist", "options": {"per_class": 200, "seed": 0}}],
    "probe_size": 500,
    "models": [{"name": "mlp", "options": {"hidden": [256, 128]}}],
    "train": {"epochs": 3, "batch_size": 128, "optimizer": "adamw", "lr": 0.002, "mixed_precision": False},
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 1.0]}]},
    "seeds": [0],
    "layers": ["hidden.0", "penultimate"],
    "measures": {"names": "all", "params": {"k": 10}},
    "consequences": [{"attack_transfer": {"n": 200, "eps_data": 0.05, "steps": 3}}],
}
# GPU kernels reorder sums: trained weights differ in the last bits and the differences grow over
# training, so values are compared with a tolerance that a wiring bug (a wrong model, no
# preparation, another probe set) exceeds by orders of magnitude.
VALUE_ATOL = 0.02
RATE_ATOL = 0.05


def run(device: str, root: Path):
    from reprsim.experiments import load_results, parse_config, run_experiment

    config = parse_config(CONFIG | {"execution": {"device": device}})
    t0 = time.perf_counter()
    run_experiment(config, root / f"run-{device}", cache_dir=root / f"cache-{device}", progress=False)
    seconds = time.perf_counter() - t0
    timings = {}
    for status in sorted((root / f"run-{device}" / "units").glob("*/status.json")):
        timings[status.parent.name] = json.loads(status.read_text())["timings"]
    return load_results(root / f"run-{device}"), timings, seconds


def time_measures(n: int, d: int) -> bool:
    """Every measure on one (n, d) pair on the GPU and on the CPU; True when they agree to 1e-5."""
    import warnings

    import torch

    from reprsim.compare import compare_features
    from reprsim.metrics import MEASURES

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    Y = X @ rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d) + rng.standard_normal((n, d), dtype=np.float32)
    print(f"\nmeasures at n={n}, d={d} (float32, paper preparation): seconds on cuda / cpu, |Δ value|")
    worst, ok = 0.0, True
    for name in MEASURES:
        row = {}
        for device in ("cuda", "cpu"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                comp = compare_features({"x": X}, {"y": Y}, measures=[name], device=device, progress=False)
                if device == "cuda":
                    torch.cuda.synchronize()
                row[device] = (
                    time.perf_counter() - t0,
                    float(comp.table["value"][0]),
                    comp.table["device"][0] if "device" in comp.table else "cpu",
                )
        diff = abs(row["cuda"][1] - row["cpu"][1])
        if np.isfinite(diff):
            worst = max(worst, diff)
            ok &= diff <= 1e-5
        print(
            f"  {name:<22} cuda {row['cuda'][0]:8.2f} s (ran on {row['cuda'][2]})   cpu {row['cpu'][0]:8.2f} s   "
            f"|Δ| {diff:.1e}"
        )
    print(f"  max |Δ value| = {worst:.1e} (expected <= 1e-5)")
    return ok


def time_compare_models(n: int = 2000) -> None:
    """compare_models on two zoo ResNet-18s on the GPU and on the CPU, per stage."""
    import warnings

    import torch

    from reprsim import models
    from reprsim.compare import compare_models

    x = np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32)
    layers = ["layer1", "layer2", "layer3", "layer4", "penultimate"]
    print(f"\ncompare_models, two resnet18s, {n} inputs, {len(layers)} x {len(layers)} layers, every measure:")
    for device in ("cuda", "cpu"):
        a = models.build("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=0).eval()
        b = models.build("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=1).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            comp = compare_models(a, b, x, layers=layers, measures="all", device=device, progress=False)
            if device == "cuda":
                torch.cuda.synchronize()
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in comp.timings.items())
        where = sorted(set(comp.table["device"])) if "device" in comp.table else ["cpu"]
        print(f"  {device}: {time.perf_counter() - t0:.1f} s ({stages}; measures ran on {', '.join(where)})")


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the two run folders here (default: a temporary folder)")
    parser.add_argument("--measures-n", type=int, default=50_000, help="rows of the measure timing (default 50000)")
    parser.add_argument("--measures-d", type=int, default=512, help="features of the measure timing (default 512)")
    parser.add_argument("--skip-sweep", action="store_true", help="only the two timings")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device is available here; nothing checked (run it on a machine with a GPU)")
        return 0
    root = args.out or Path(tempfile.mkdtemp(prefix="reprsim-gpu-smoke-"))
    print(f"gpu_smoke: {torch.cuda.get_device_name(0)}, torch {torch.__version__}; run folders in {root}")
    agree = time_measures(args.measures_n, args.measures_d)
    time_compare_models()
    if args.skip_sweep:
        return 0 if agree else 1
    cpu, cpu_times, cpu_s = run("cpu", root)
    gpu, gpu_times, gpu_s = run("cuda", root)
    print(f"total: cpu {cpu_s:.1f} s, cuda {gpu_s:.1f} s")
    for unit in cpu_times:
        stages = [s for s in cpu_times[unit] if s != "total"]
        print(f"{unit}:")
        for stage in stages + ["total"]:
            print(
                f"  {stage:<16} cpu {cpu_times[unit].get(stage, float('nan')):7.2f} s   "
                f"cuda {gpu_times[unit].get(stage, float('nan')):7.2f} s"
            )
    keys = ["unit_id", "probe_set", "layer_a", "layer_b", "measure"]
    merged = cpu.merge(gpu, on=keys, suffixes=("_cpu", "_cuda"))
    if len(merged) != len(cpu) or len(cpu) != len(gpu):
        print(f"FAIL: the tables differ in their rows ({len(cpu)} cpu, {len(gpu)} cuda, {len(merged)} matched)")
        return 1
    value_diff = np.nanmax(np.abs(merged["value_cpu"] - merged["value_cuda"]))
    rates = [c for c in ("whitebox_asr", "transfer_asr", "whitebox_asr_ba", "transfer_asr_ba") if c in cpu]
    rate_diff = max((np.nanmax(np.abs(merged[f"{c}_cpu"] - merged[f"{c}_cuda"])) for c in rates), default=0.0)
    nan_mismatch = int((merged["value_cpu"].isna() != merged["value_cuda"].isna()).sum())
    print(
        f"max |value cpu - cuda| = {value_diff:.2e} (tolerance {VALUE_ATOL}); "
        f"max |attack rate cpu - cuda| = {rate_diff:.3f} (tolerance {RATE_ATOL}); NaN mismatches: {nan_mismatch}"
    )
    ok = value_diff <= VALUE_ATOL and rate_diff <= RATE_ATOL and nan_mismatch == 0
    print("OK: the CUDA run reproduces the CPU table" if ok else "FAIL: the CUDA run differs from the CPU run")
    return 0 if ok and agree else 1


if __name__ == "__main__":
    sys.exit(main())
