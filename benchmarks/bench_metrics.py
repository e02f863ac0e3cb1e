"""Speed and peak memory of reprsim's similarity measures against a naive reference.

The naive reference follows the paper's code (PAPER.md §5–6): dense n×n Gram matrices with an
explicit centring matrix (three n×n matmuls per HSIC), the full K̃L̃ product for the unbiased HSIC,
a full argsort of the n×n similarity matrix recomputed for every kNN measure, Python-loop
LCS / edit distance, and SVCCA via a randomised rank-10 SVD plus sklearn's iterative CCA.

Every measurement runs in a fresh subprocess (peak RSS from ``resource.getrusage``), on float32
features prepared the paper's way (0.95-quantile clip, row L2 normalisation), with a fixed number
of torch threads. Usage::

    python benchmarks/bench_metrics.py --n 5000 --d 512 --naive          # the 20× target
    python benchmarks/bench_metrics.py --n 50000 --d 512                 # all measures, 120 s / 3 GB
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER = ["cka", "unbiased_cka", "mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna", "svcca"]


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related float32 representations, prepared like the paper (clip 0.95, L2 rows)."""
    from reprsim.metrics import prepare

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    W = rng.standard_normal((d, d), dtype=np.float32) / np.float32(math.sqrt(d))
    Y = np.tanh(X @ W) + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    return prepare(X, clip_quantile=0.95), prepare(Y.astype(np.float32), clip_quantile=0.95)


# ----------------------------------------------------------------------------- naive reference
def _naive(name: str, X, Y, k: int = 10) -> float:
    import torch

    def knn(F):
        S = F @ F.T
        S.fill_diagonal_(-1e8)
        return S.argsort(dim=1, descending=True)[:, :k]

    def hsic(K, L):
        n = K.shape[0]
        H = torch.eye(n) - torch.ones(n, n) / n
        return torch.trace(K @ H @ L @ H)

    def hsic_u(K, L):
        n = K.shape[0]
        Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
        return (torch.sum(Kt * Lt.T) + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2)) - 2 * torch.sum(Kt @ Lt) / (n - 2)) / (
            n * (n - 3)
        )

    n = X.shape[0]
    if name in ("cka", "unbiased_cka"):
        K, L = X @ X.T, Y @ Y.T
        h = hsic if name == "cka" else hsic_u
        return float(h(K, L) / (torch.sqrt(h(K, K) * h(L, L)) + 1e-6))
    if name == "cknna":
        K, L = X @ X.T, Y @ Y.T

        def sim(K, L):
            Kh, Lh = K.clone().fill_diagonal_(-math.inf), L.clone().fill_diagonal_(-math.inf)
            mk = torch.zeros(n, n).scatter_(1, Kh.topk(k, dim=1)[1], 1)
            ml = torch.zeros(n, n).scatter_(1, Lh.topk(k, dim=1)[1], 1)
            m = mk * ml
            return hsic_u(m * K, m * L)

        return float(sim(K, L) / (torch.sqrt(sim(K, K) * sim(L, L)) + 1e-6))
    if name == "svcca":
        from sklearn.cross_decomposition import CCA

        def z(F):
            return (F - F.mean(0)) / (F.std(0) + 1e-8)

        torch.manual_seed(0)
        ux = torch.svd_lowrank(z(X), q=10)[0]
        uy = torch.svd_lowrank(z(Y), q=10)[0]
        a, b = CCA(n_components=10).fit(ux.numpy(), uy.numpy()).transform(ux.numpy(), uy.numpy())
        return float(np.mean([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(10)]))
    ka, kb = knn(X), knn(Y)
    if name == "mutual_knn":
        r = torch.arange(n).unsqueeze(1)
        ma, mb = torch.zeros(n, n), torch.zeros(n, n)
        ma[r, ka] = 1.0
        mb[r, kb] = 1.0
        return float(((ma * mb).sum(1) / k).mean())
    if name == "cycle_knn":
        hop = ka[kb]
        return float((hop == torch.arange(n).view(-1, 1, 1)).float().view(n, -1).max(1).values.mean())
    a, b = ka.tolist(), kb.tolist()
    if name == "lcs_knn":
        tot = 0
        for p, q in zip(a, b):
            T = [[0] * (k + 1) for _ in range(k + 1)]
            for i in range(1, k + 1):
                for j in range(1, k + 1):
                    T[i][j] = T[i - 1][j - 1] + 1 if p[i - 1] == q[j - 1] else max(T[i - 1][j], T[i][j - 1])
            tot += T[k][k]
        return tot / n / k
    if name == "edit_distance_knn":
        tot = 0
        for p, q in zip(a, b):
            prev = list(range(k + 1))
            for i in range(1, k + 1):
                cur = [i] + [0] * k
                for j in range(1, k + 1):
                    cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (p[i - 1] != q[j - 1]))
                prev = cur
            tot += prev[k]
        return 1 - tot / n / k
    raise ValueError(name)


# ----------------------------------------------------------------------------- child processes
def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    X = torch.from_numpy(np.load(args.data + "_X.npy"))
    Y = torch.from_numpy(np.load(args.data + "_Y.npy"))
    names = [nm for nm in args.names.split(",") if nm]
    out: dict = {"times": {}}
    import sklearn.cross_decomposition  # noqa: F401  (imports are not timed)

    import reprsim.metrics.registry  # noqa: F401

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if args.child == "naive":
        for name in names:
            t = time.perf_counter()
            out.setdefault("values", {})[name] = _naive(name, X, Y)
            out["times"][name] = time.perf_counter() - t
    else:
        import warnings

        from reprsim.metrics._pair import make_pair
        from reprsim.metrics._validate import check_paired_features
        from reprsim.metrics.registry import MEASURES, plan_pair, resolve_params

        Xt, Yt = check_paired_features(X, Y)
        pair = make_pair(Xt, Yt)
        resolved = {nm: resolve_params(MEASURES[nm], Xt.shape[0], {}) for nm in names}
        t = time.perf_counter()
        plan_pair(pair, names, resolved)
        out["times"]["(shared pass: neighbours + RBF kernels)"] = time.perf_counter() - t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in names:
                t = time.perf_counter()
                out.setdefault("values", {})[name] = float(MEASURES[name].fn(pair, **resolved[name]))
                out["times"][name] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def spawn(kind: str, names: list[str], data: str, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--names",
        ",".join(names),
        "--data",
        data,
        "--threads",
        str(threads),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive", action="store_true", help="also run the naive reference (n ≤ ~10k)")
    ap.add_argument(
        "--per-measure",
        action="store_true",
        help="also run each reprsim measure alone in its own process (time, peak RSS)",
    )
    ap.add_argument("--all", action="store_true", help="every registered measure, not only the paper's 8")
    ap.add_argument("--child", choices=["reprsim", "naive", "data"], help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "data":  # generated in a child so the parent's peak RSS stays small
        X, Y = make_data(args.n, args.d)
        np.save(args.data + "_X.npy", X)
        np.save(args.data + "_Y.npy", Y)
        return
    if args.child:
        child(args)
        return
    from reprsim.metrics import MEASURES

    names = list(MEASURES) if args.all else PAPER
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "feats")
        subprocess.run(
            [sys.executable, __file__, "--child", "data", "--data", data, "--n", str(args.n), "--d", str(args.d)],
            check=True,
        )
        base = spawn("reprsim", [], data, args.threads)["maxrss_mb"]  # interpreter + torch + data
        print(
            f"n={args.n} d={args.d} float32, torch threads={args.threads}, cpus={os.cpu_count()}, "
            f"baseline RSS (python+torch+data) {base:.0f} MB"
        )
        together = spawn("reprsim", names, data, args.threads)
        print(
            f"\nreprsim compute_all ({len(names)} measures, one process): total {together['total']:.2f} s wall, "
            f"{together['cpu']:.1f} s CPU (user+sys, all threads), peak RSS {together['maxrss_mb']:.0f} MB"
        )
        rows = []
        naive = {}
        if args.naive:
            for name in names:
                if name in PAPER:
                    naive[name] = spawn("naive", [name], data, args.threads)
        single = {name: spawn("reprsim", [name], data, args.threads) for name in names} if args.per_measure else {}
        print(
            "\n| measure | reprsim value | in compute_all (s) | alone (s) | alone peak RSS (MB) | naive (s) | naive peak RSS (MB) | speed-up |"
        )
        print("|---|---|---|---|---|---|---|---|")
        shared = together["times"].pop("(shared pass: neighbours + RBF kernels)")
        print(f"| (shared pass) | | {shared:.2f} | | | | | |")
        for name in names:
            s = single.get(name)
            nv = naive.get(name)
            alone = s["total"] if s else None
            ratio = (nv["total"] / alone) if (nv and alone) else None
            rows.append((name, together["values"][name]))

            def fmt(v, spec):
                return "" if v is None else format(v, spec)

            cells = [
                name,
                fmt(together["values"][name], ".4f"),
                fmt(together["times"][name], ".2f"),
                fmt(alone, ".2f"),
                fmt(s and s["maxrss_mb"], ".0f"),
                fmt(nv and nv["total"], ".2f"),
                fmt(nv and nv["maxrss_mb"], ".0f"),
                "" if ratio is None else f"{ratio:.1f}×",
            ]
            print("| " + " | ".join(cells) + " |")
        if naive:
            tot_naive = sum(v["total"] for v in naive.values())
            cpu_naive = sum(v["cpu"] for v in naive.values())
            print(
                f"\npaper's 8 measures: naive total {tot_naive:.1f} s wall / {cpu_naive:.1f} s CPU (sum of separate "
                f"runs), reprsim compute_all {together['total']:.2f} s wall / {together['cpu']:.1f} s CPU -> "
                f"{tot_naive / together['total']:.1f}× faster (wall), {cpu_naive / together['cpu']:.1f}× (CPU); "
                f"naive peak RSS max {max(v['maxrss_mb'] for v in naive.values()):.0f} MB"
            )
            diffs = {k: abs(v["values"][k] - together["values"][k]) for k, v in naive.items()}
            print(
                "|reprsim − naive| per measure (svcca differs by definition; naive adds 1e-6 to denominators):",
                ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
            )


if __name__ == "__main__":
    main()
