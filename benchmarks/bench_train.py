"""Training / extraction speed benchmark (run by hand; results go in benchmarks/README.md).

    python benchmarks/bench_train.py                 # cnn pair on 10k 32x32 images + GPT tokens/s
    python benchmarks/bench_train.py --quick         # a 1-epoch smoke run

The image data are synthetic (no download): 10 classes of smooth random colour patterns,
each example randomly shifted, brightness-jittered and noised, so the task is learnable
but not trivial. Prints one table and a JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

import reprsim.models as M
from reprsim.features import extract
from reprsim.train import TrainConfig, train


def synthetic_images(n: int, classes: int = 10, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 (n, 3, size, size) in [0, 1], labels int64 (n,))."""
    gen = torch.Generator().manual_seed(1000)
    coarse = 0.5 + 0.5 * (torch.rand(classes, 3, 6, 6, generator=gen) - 0.5)
    templates = F.interpolate(coarse, size=size + 8, mode="bicubic", align_corners=False)
    rng = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=rng)
    dy, dx = torch.randint(0, 9, (2, n), generator=rng)
    rows = (dy[:, None] + torch.arange(size))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(size))[:, None, None, :]
    x = templates[y][torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    x = x * (0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=rng)) + 0.4 * torch.randn(x.shape, generator=rng)
    return x.clamp(0, 1).numpy().astype(np.float32), y.numpy()


def bench_cnn_pair(args: argparse.Namespace) -> dict:
    x, y = synthetic_images(args.n_train, seed=0)
    xt, yt = synthetic_images(2000, seed=1)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=0.05,
        warmup_epochs=0.5,
        label_smoothing=0.1,
        crop_padding=2,
        hflip=True,
        num_threads=args.threads,
    )
    out = {"runs": []}
    t_pair = time.perf_counter()
    for seed in (0, 1):
        model = M.build("cnn", input_shape=(3, 32, 32), num_classes=10, seed=seed)
        cpu0 = time.process_time()
        res = train(model, (x, y), cfg, seed=seed, eval_dataset=(xt, yt), progress=args.progress)
        epoch_s = [h["seconds"] for h in res.history]
        cpu_s = time.process_time() - cpu0
        out["runs"].append(
            {
                "seed": seed,
                "seconds": res.seconds,
                "cpu_seconds": cpu_s,
                "epochs_per_s": len(epoch_s) / sum(epoch_s),
                "images_per_s": args.n_train * len(epoch_s) / sum(epoch_s),
                "train_accuracy": res.train_accuracy,
                "test_accuracy": res.eval_accuracy,
            }
        )
    out["pair_seconds"] = time.perf_counter() - t_pair
    torch.set_num_threads(args.threads or torch.get_num_threads())
    t0 = time.perf_counter()
    extract(model, xt, layers="penultimate", batch_size=256, device="cpu")
    out["extract_images_per_s"] = len(xt) / (time.perf_counter() - t0)
    return out


def bench_gpt(args: argparse.Namespace, preset: str) -> dict:
    block, batch, steps = 128, 32, args.gpt_steps
    tokens = np.random.default_rng(0).integers(0, 256, 200_000)
    model = M.build("gpt", vocab_size=256, block_size=block, preset=preset, seed=0)
    cfg = TrainConfig(
        optimizer="adamw",
        lr=1e-3,
        batch_size=batch,
        block_size=block,
        max_steps=steps,
        eval_interval=steps,
        eval_batches=1,
        grad_clip=1.0,
        num_threads=args.threads,
    )
    res = train(model, tokens, cfg, seed=0, progress=args.progress)
    train_s = sum(h["seconds"] for h in res.history)
    return {
        "preset": preset,
        "params": model.num_parameters(),
        "steps": steps,
        "tokens_per_s": steps * batch * block / train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--gpt-steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 10 GPT steps")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.gpt_steps = 1, 10
    info = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads or torch.get_num_threads(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "n_train": args.n_train,
    }
    cnn = bench_cnn_pair(args)
    gpts = [bench_gpt(args, p) for p in ("nano", "micro")]
    print(f"cnn pair on {args.n_train} 32x32 images, {args.epochs} epochs: {cnn['pair_seconds']:.1f} s")
    for r in cnn["runs"]:
        print(
            f"  seed {r['seed']}: {r['seconds']:.1f} s wall ({r['cpu_seconds']:.1f} s CPU), "
            f"{r['epochs_per_s']:.3f} epochs/s, "
            f"{r['images_per_s']:.0f} img/s, train acc {r['train_accuracy']:.3f}, test acc {r['test_accuracy']:.3f}"
        )
    print(f"  extract penultimate: {cnn['extract_images_per_s']:.0f} img/s")
    for g in gpts:
        print(f"gpt {g['preset']} ({g['params'] / 1e6:.2f}M params): {g['tokens_per_s']:.0f} tokens/s (training)")
    print(json.dumps({"info": info, "cnn": cnn, "gpt": gpts}))


if __name__ == "__main__":
    main()
