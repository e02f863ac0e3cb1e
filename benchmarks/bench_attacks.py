"""Benchmark: MI-FGSM transfer on 1,000 32×32 images between two small CNNs (target ≤ 20 s, 2-core CPU).

Wall time on a shared machine depends on the other processes; the CPU time of this process
(all threads summed) is printed too, since it is much less sensitive to contention.

Run by hand: ``python benchmarks/bench_attacks.py [--n 1000] [--threads 2] [--batch-size 250]``.
Uses ``reprsim.models.build("cnn", ...)`` when the model zoo provides it, else a stand-in 3-block
conv net (32-64-128 channels, BN, ReLU, max-pool, linear head). Results: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from reprsim.attacks import make_attack, transfer


def stand_in_cnn(num_classes: int = 10, seed: int = 0) -> nn.Module:
    """3 blocks of conv3×3-BN-ReLU-maxpool (32, 64, 128 channels) + global pool + linear; (N,3,32,32) -> (N,k)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c_in = 3
    for c in (32, 64, 128):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes)]
    return nn.Sequential(*layers)


def build_cnn(num_classes: int, seed: int) -> tuple[nn.Module, str]:
    try:
        from reprsim.models import build  # type: ignore[attr-defined]

        model = build("cnn", input_shape=(3, 32, 32), num_classes=num_classes, seed=seed)
        return model, "reprsim.models.build('cnn', input_shape=(3, 32, 32))"
    except Exception:  # the zoo is written concurrently; fall back to the stand-in
        return stand_in_cnn(num_classes, seed), "stand-in 3-block CNN (32-64-128)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    a, what = build_cnn(10, 0)
    b, _ = build_cnn(10, 1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    print(f"models: {what}; {sum(p.numel() for p in a.parameters()):,} parameters each")
    print(
        f"inputs: {tuple(x.shape)}, threads={args.threads}, cpu_count={os.cpu_count()}, "
        f"load average={os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )
    attack = make_attack("mi_fgsm", eps=1 / 255, steps=3)
    transfer(a, b, x[:50], y[:50], attack, batch_size=args.batch_size)  # warm-up
    for both in (False, True):
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            s = transfer(a, b, x, y, attack, batch_size=args.batch_size, both_directions=both).summary()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        label = "both directions" if both else "one direction  "
        print(
            f"MI-FGSM transfer, {label}: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
            f"CPU time best {min(cpu):.2f} s (whitebox_asr={s['whitebox_asr']:.3f}, transfer_asr={s['transfer_asr']:.3f})"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
