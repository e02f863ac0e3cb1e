"""Options that must have an effect, recomputed here by a path that does not share the product's code.

* ``label_smoothing``: the loss the training loop optimises and reports is
  ``F.cross_entropy(logits, y, label_smoothing=ε)`` of the batches it actually drew (captured with a
  forward pre-hook together with the weights they met), and the first SGD step follows its gradient.
* ``bootstrap_ci``: honours ``level`` and excludes bootstrap copies as documented; compared with a
  bootstrap written here (same resampling: ``default_rng(seed).integers(0, n, n)`` per replicate)
  with its own neighbour lists, unbiased HSIC and RSA.
* regression intervals: ``linear_fit``'s slope interval is the textbook OLS one, t(n − 2); the
  combined grid's coefficients are averaged over seeds with the textbook one-sample interval,
  t(n_seeds − 1) — both computed here with numpy least squares and ``scipy.stats.t``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import nn
from torch.func import functional_call

from reprsim.analysis import combined_grid
from reprsim.analysis.stats import linear_fit
from reprsim.metrics import bootstrap_ci
from reprsim.train import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)


# ============================================================================ label smoothing
def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.random((40, 5)).astype(np.float32)  # distinct rows: a batch row identifies its label
    y = rng.integers(0, 4, 40)
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))


def _run(eps: float, batch_size: int = 8, lr: float = 0.5):
    """Train one epoch with plain SGD; returns (history, [(batch inputs, weights before the step)], model0)."""
    x, y = _data()
    model = _model()
    model0 = _model()  # the same initial weights, never trained
    seen: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []

    def pre_hook(module: nn.Module, args: tuple) -> None:
        if module.training:  # training steps only (evaluation runs in eval mode)
            seen.append((args[0].detach().clone(), {k: v.detach().clone() for k, v in module.named_parameters()}))

    model.register_forward_pre_hook(pre_hook)
    history: list[dict] = []
    cfg = {
        "epochs": 1,
        "batch_size": batch_size,
        "optimizer": "sgd",
        "lr": lr,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "label_smoothing": eps,
    }
    train(model, (x, y), cfg, seed=3, progress=False, device="cpu", callback=history.append)
    return history, seen, model0


def _labels_of(xb: torch.Tensor) -> torch.Tensor:
    x, y = _data()
    row = {tuple(r.tolist()): int(label) for r, label in zip(x, y)}
    return torch.as_tensor([row[tuple(r.tolist())] for r in xb.numpy()])


def _smoothed_ce_by_hand(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 − ε)·(−log p_y) + ε·mean_k(−log p_k): the definition F.cross_entropy documents."""
    logp = torch.log_softmax(logits, dim=1)
    return ((1 - eps) * -logp[torch.arange(len(y)), y] - eps * logp.mean(dim=1)).mean()


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_label_smoothing_is_the_loss_that_is_optimised_and_reported(eps: float) -> None:
    history, seen, model0 = _run(eps)
    assert len(seen) == 5  # 40 examples, batches of 8, one epoch
    x0, w0 = seen[0]
    y0 = _labels_of(x0)
    params0 = dict(model0.named_parameters())
    assert all(torch.equal(w0[k], params0[k]) for k in w0), "the first step must meet the initial weights"

    # step 0: the loss of the first batch from the initial weights, and the SGD step it implies
    logits0 = model0(x0)
    want0 = F.cross_entropy(logits0, y0, label_smoothing=eps)
    assert float(want0.detach()) == pytest.approx(float(_smoothed_ce_by_hand(logits0, y0, eps).detach()), rel=1e-6)
    grads = torch.autograd.grad(want0, list(params0.values()))
    w1 = seen[1][1]
    for (name, p), g in zip(params0.items(), grads):
        torch.testing.assert_close(w1[name], p.detach() - 0.5 * g, rtol=1e-5, atol=1e-6)

    # the reported epoch loss: the example-weighted mean of every step's loss at the weights it met
    total, count = 0.0, 0
    for xb, w in seen:
        with torch.no_grad():
            loss = F.cross_entropy(functional_call(model0, w, (xb,)), _labels_of(xb), label_smoothing=eps)
        total += float(loss) * len(xb)
        count += len(xb)
    assert history[0]["train_loss"] == pytest.approx(total / count, rel=1e-5)


def test_label_smoothing_changes_the_step0_loss() -> None:
    """Same seed, same initial weights, same first batch: only ε differs, and so does the loss."""
    h0, seen0, _ = _run(0.0, batch_size=40)
    h3, seen3, model0 = _run(0.3, batch_size=40)
    assert torch.equal(seen0[0][0], seen3[0][0])
    x0 = seen0[0][0]
    y0 = _labels_of(x0)
    with torch.no_grad():
        plain = float(F.cross_entropy(model0(x0), y0))
        smooth = float(F.cross_entropy(model0(x0), y0, label_smoothing=0.3))
    assert abs(plain - smooth) > 1e-3
    # one batch per epoch: the reported loss *is* the step-0 loss
    assert h0[0]["train_loss"] == pytest.approx(plain, rel=1e-5)
    assert h3[0]["train_loss"] == pytest.approx(smooth, rel=1e-5)


# ============================================================================ bootstrap_ci
N_BOOT = 40


def _features(name: str) -> tuple[np.ndarray, np.ndarray]:
    """kNN: small-integer features, so inner products are exact and neighbour ties break the same way
    everywhere. The others: continuous features (no ties but those between copies of one stimulus)."""
    rng = np.random.default_rng(8)
    if name == "mutual_knn":
        X = rng.integers(-3, 4, (24, 5)).astype(np.float64)
        Y = (X @ rng.integers(-1, 2, (5, 4)) + rng.integers(-2, 3, (24, 4))).astype(np.float64)
    else:
        X = rng.standard_normal((24, 5))
        Y = X @ rng.standard_normal((5, 4)) + rng.standard_normal((24, 4))
    assert (X.std(1) > 0).all() and (Y.std(1) > 0).all()  # no constant rows (RSA needs row variance)
    return X, Y


def _knn(F_: np.ndarray, groups: np.ndarray, k: int, exclude_copies: bool) -> list[set[int]]:
    S = F_ @ F_.T
    out = []
    for i in range(len(F_)):
        cand = [j for j in range(len(F_)) if j != i and not (exclude_copies and groups[j] == groups[i])]
        cand.sort(key=lambda j: (-S[i, j], j))  # largest inner product first, ties by row index
        out.append(set(cand[:k]))
    return out


# Each reference gets the original stimuli X0, Y0 and one resample ``idx`` (row r = stimulus idx[r]).
def ref_mutual_knn(X0, Y0, idx, exclude_copies, k=4) -> float:
    a, b = _knn(X0[idx], idx, k, exclude_copies), _knn(Y0[idx], idx, k, exclude_copies)
    return float(np.mean([len(p & q) / k for p, q in zip(a, b)]))


def _hsic_u(K: np.ndarray, L: np.ndarray, mask: np.ndarray) -> float:
    """Song et al. 2012 unbiased HSIC with K̃, L̃ zeroed on ``mask`` (the diagonal, and copy pairs)."""
    n = len(K)
    Kt, Lt = np.where(mask, 0.0, K), np.where(mask, 0.0, L)
    one = np.ones(n)
    return float(
        (
            np.trace(Kt @ Lt)
            + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2 * (one @ Kt @ Lt @ one) / (n - 2)
        )
        / (n * (n - 3))
    )


def ref_unbiased_cka(X0, Y0, idx, exclude_copies) -> float:
    X, Y = X0[idx], Y0[idx]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)  # documented: computed from the (resample's) centred features
    K, L = Xc @ Xc.T, Yc @ Yc.T
    mask = np.eye(len(X), dtype=bool) | ((idx[:, None] == idx[None, :]) if exclude_copies else False)
    return _hsic_u(K, L, mask) / math.sqrt(_hsic_u(K, K, mask) * _hsic_u(L, L, mask))


def _corr_distance(F_: np.ndarray) -> np.ndarray:
    Z = F_ - F_.mean(1, keepdims=True)
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    D = 1.0 - Z @ Z.T
    return (D + D.T) / 2  # exactly symmetric: one dissimilarity per pair of stimuli


def ref_rsa(X0, Y0, idx, exclude_copies) -> float:
    """RDM entries of the resample looked up in the stimuli's RDMs, so that pairs made of copies tie
    exactly (ties get average ranks, as documented)."""
    i, j = np.triu_indices(len(idx), 1)
    keep = idx[i] != idx[j] if exclude_copies else np.ones(len(i), dtype=bool)
    dx = _corr_distance(X0)[idx[i], idx[j]][keep]
    dy = _corr_distance(Y0)[idx[i], idx[j]][keep]
    return float(sps.spearmanr(dx, dy).statistic)


def ref_cka(X0, Y0, idx, exclude_copies) -> float:  # biased CKA: copies are ordinary weights
    X, Y = X0[idx], Y0[idx]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return float(np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


REFS = {"mutual_knn": ref_mutual_knn, "unbiased_cka": ref_unbiased_cka, "rsa": ref_rsa, "cka": ref_cka}


def ref_bootstrap(name: str, X, Y, level: float, seed: int, exclude_copies: bool = True) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [REFS[name](X, Y, rng.integers(0, len(X), len(X)), exclude_copies) for _ in range(N_BOOT)]
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _ci(name: str, X, Y, level: float, seed: int) -> tuple[float, float]:
    params = {"k": 4} if name == "mutual_knn" else {}
    return bootstrap_ci(name, X, Y, n_boot=N_BOOT, level=level, seed=seed, **params)


@pytest.mark.parametrize("name", sorted(REFS))
def test_bootstrap_ci_equals_a_bootstrap_written_here(name: str) -> None:
    X, Y = _features(name)
    for level in (0.5, 0.95):
        got = _ci(name, X, Y, level, seed=2)
        assert got == pytest.approx(ref_bootstrap(name, X, Y, level, seed=2), rel=1e-9, abs=1e-12), level
    if name != "cka":  # the exclusion is visible: ignoring it gives another interval
        naive = ref_bootstrap(name, X, Y, 0.95, seed=2, exclude_copies=False)
        assert max(abs(a - b) for a, b in zip(naive, _ci(name, X, Y, 0.95, seed=2))) > 1e-4


@pytest.mark.parametrize("name", ["mutual_knn", "unbiased_cka"])
def test_bootstrap_ci_level_nests_the_intervals(name: str) -> None:
    X, Y = _features(name)
    lo50, hi50 = _ci(name, X, Y, 0.5, seed=4)
    lo95, hi95 = _ci(name, X, Y, 0.95, seed=4)
    assert lo95 < lo50 < hi50 < hi95, "the 50 % interval must lie strictly inside the 95 % one"
    assert _ci(name, X, Y, 0.95, seed=5) != (lo95, hi95), "the seed must change the resamples"


# ============================================================================ regression intervals
def _textbook_slope_interval(x: np.ndarray, y: np.ndarray, level: float) -> tuple[float, float, float]:
    """OLS on [1, x]: s² = RSS/(n − p), Cov(β) = s²(XᵀX)⁻¹, β₁ ± t_{n−p}·√Cov₁₁, p = 2."""
    design = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    n, p = design.shape
    rss = float(np.sum((y - design @ beta) ** 2))
    se = math.sqrt(rss / (n - p) * np.linalg.inv(design.T @ design)[1, 1])
    t = sps.t.ppf(0.5 + level / 2, n - p)
    return float(beta[1]), float(beta[1] - t * se), float(beta[1] + t * se)


@pytest.mark.parametrize("n", [3, 4, 12])
@pytest.mark.parametrize("level", [0.5, 0.95])
def test_linear_fit_interval_is_the_textbook_t_n_minus_2_interval(n: int, level: float) -> None:
    rng = np.random.default_rng(n)
    x = np.linspace(0, 1, n)
    y = 0.3 + 0.2 * x + rng.normal(0, 0.05, n)
    fit = linear_fit(x, y, level=level)
    slope, low, high = _textbook_slope_interval(x, y, level)
    assert (fit.slope, fit.slope_low, fit.slope_high) == pytest.approx((slope, low, high), rel=1e-9)
    assert fit.n == n


def _t_interval(v: np.ndarray) -> tuple[float, float, float, float]:
    """Mean of per-seed estimates ± t_{n−1}·s/√n and the two-sided one-sample t-test p."""
    n = v.size
    se = v.std(ddof=1) / math.sqrt(n)
    t = sps.t.ppf(0.975, n - 1)
    return (
        float(v.mean()),
        float(v.mean() - t * se),
        float(v.mean() + t * se),
        float(2 * sps.t.sf(abs(v.mean() / se), n - 1)),
    )


@pytest.mark.parametrize("n_seeds", [3, 4])
def test_combined_grid_intervals_are_textbook_over_seeds(n_seeds: int) -> None:
    from test_analysis_fixture import make_results

    table = make_results(
        n_seeds=n_seeds,
        kinds=("combined",),
        layer_pairs=(("penultimate", "penultimate"),),
        consequences=False,
        noise=0.02,
    )
    grid = combined_grid(table)
    assert len(grid) > 0
    checked = 0
    for row in grid.itertuples():
        cell = table[
            (table.measure == row.measure)
            & (table.probe_set == row.probe_set)
            & (table.layer_a == row.layer_a)
            & (table.layer_b == row.layer_b)
        ]
        coefs, gains = [], []
        for _, g in cell.groupby("seed"):
            d, t, v = g.data_fraction.to_numpy(float), g.task_fraction.to_numpy(float), g.value.to_numpy(float)
            design = np.column_stack([np.ones_like(d), d, t, d * t])
            coefs.append(np.linalg.lstsq(design, v, rcond=None)[0])
            at = {(a, b): float(v[(d == a) & (t == b)].mean()) for a in (0.0, 1.0) for b in (0.0, 1.0)}
            gains.append([at[1, 0] - at[0, 0], at[0, 1] - at[0, 0], at[1, 1] - at[0, 0]])
        coefs, gains = np.array(coefs), np.array(gains)
        want = {f"coef_{name}": coefs[:, j] for j, name in enumerate(("intercept", "data", "task", "interaction"))}
        want |= {f"gain_{name}": gains[:, j] for j, name in enumerate(("data", "task", "both"))}
        best = 1 if gains[:, 1].mean() > gains[:, 0].mean() else 0
        want["gain_both_minus_best_single"] = gains[:, 2] - gains[:, best]
        for col, values in want.items():
            est, low, high, p = _t_interval(values)
            got = (getattr(row, col), getattr(row, f"{col}_low"), getattr(row, f"{col}_high"), getattr(row, f"{col}_p"))
            assert got == pytest.approx((est, low, high, p), rel=1e-7, abs=1e-12), (row.measure, row.probe_set, col)
            checked += 1
        assert row.n_seeds == n_seeds
    assert checked == 8 * len(grid)
