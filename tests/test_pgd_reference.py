"""PGD against a reference written here from the paper's update rule (Madry et al. 2018), runnable offline.

Reference, per step (untargeted; a targeted attack descends the target's loss):

* L∞: ``x ← Π(x + α·sign(∇ₓ L))``;  L2: ``x ← Π(x + α·∇ₓ L / ‖∇ₓ L‖₂)`` (per example);
* Π: onto the ε-ball around the clean input (L∞: clamp each coordinate of δ to [−ε, ε]; L2: scale δ
  by min(1, ε/‖δ‖₂)), then onto the pixel range [0, 1];
* L = cross-entropy summed over the batch, α = 2.5·ε/steps unless given;
* random start, seeded as ``pgd`` documents (a ``torch.Generator`` seeded with ``seed``, drawn in the
  order the attack draws): L∞ δ ~ U[−ε, ε]^d; L2 δ = ε·r·u with u = g/‖g‖₂, g ~ N(0, I), r = U^(1/d)
  — the uniform distribution on the ball, whose radius has CDF P(‖δ‖/ε ≤ r) = r^d.

The last test checks that distribution on the attack's own start (a step size of 0 returns it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import nn

from reprsim.attacks.adversarial import make_attack, pgd

SHAPE = (2, 3, 3)  # (C, H, W): d = 18, so a radius drawn with the wrong d is visible


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(18, 32), nn.Tanh(), nn.Linear(32, 5)).double().eval()


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand((n, *SHAPE), generator=g, dtype=torch.float64)
    x[:4] = x[:4].round()  # some pixels at 0 and 1: the [0, 1] projection is active
    return x, torch.randint(0, 5, (n,), generator=g)


def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).reshape(-1, *([1] * (t.dim() - 1)))


def ref_project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    delta = x_adv - x
    if norm == "linf":
        delta = torch.clamp(delta, -eps, eps)
    else:
        n = _norm(delta)
        delta = delta * torch.minimum(torch.ones_like(n), eps / torch.clamp(n, min=1e-300))
    return torch.clamp(x + delta, 0.0, 1.0)


def ref_start(x: torch.Tensor, eps: float, norm: str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if norm == "linf":
        return (2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1) * eps
    g = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=gen, dtype=x.dtype) ** (1.0 / x[0].numel())
    return eps * r * g / _norm(g)


def ref_pgd(model, x, y, eps, *, steps, norm, random_start, seed=0, step_size=None, targeted=False):
    alpha = 2.5 * eps / steps if step_size is None else step_size
    x_adv = ref_project(x + ref_start(x, eps, norm, seed), x, eps, norm) if random_start else x.clone()
    for _ in range(steps):
        z = x_adv.clone().requires_grad_(True)
        loss = F.cross_entropy(model(z), y, reduction="sum")
        (grad,) = torch.autograd.grad(-loss if targeted else loss, z)
        step = grad.sign() if norm == "linf" else grad / _norm(grad)
        x_adv = ref_project(x_adv.detach() + alpha * step, x, eps, norm)
    return x_adv.detach()


@pytest.mark.parametrize("norm, eps", [("linf", 0.06), ("l2", 0.5)])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_equals_the_paper_update_rule(norm: str, eps: float, random_start: bool) -> None:
    model = _model()
    x, y = _batch()
    got = pgd(model, x, y, eps, steps=7, norm=norm, random_start=random_start, seed=3)
    want = ref_pgd(model, x, y, eps, steps=7, norm=norm, random_start=random_start, seed=3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the constraints, and an attack that works: the loss went up
    delta = got - x
    size = delta.abs().flatten(1).max(1).values if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert (size <= eps + 1e-12).all() and got.min() >= 0 and got.max() <= 1
    assert F.cross_entropy(model(got), y) > F.cross_entropy(model(x), y)


@pytest.mark.parametrize("norm, eps", [("linf", 0.06), ("l2", 0.5)])
def test_pgd_targeted_and_explicit_step_size_equal_the_reference(norm: str, eps: float) -> None:
    model = _model()
    x, _ = _batch()
    target = torch.arange(len(x)) % 5
    got = pgd(model, x, target, eps, steps=4, step_size=eps / 3, norm=norm, targeted=True, seed=9)
    want = ref_pgd(
        model, x, target, eps, steps=4, step_size=eps / 3, norm=norm, random_start=True, seed=9, targeted=True
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert F.cross_entropy(model(got), target) < F.cross_entropy(model(x), target)
    # the bound Attack object passes the same settings through
    bound = make_attack("pgd", eps=eps, steps=4, step_size=eps / 3, norm=norm, targeted=True, seed=9)
    torch.testing.assert_close(bound(model, x, target), got, rtol=0, atol=0)


def _start(norm: str, n: int, eps: float, seed: int) -> torch.Tensor:
    """The attack's random start: a step size of 0 leaves the iterate where the start put it."""
    x = torch.full((n, *SHAPE), 0.5, dtype=torch.float64)  # centre of the range: no clipping for eps <= 0.5/√d
    y = torch.zeros(n, dtype=torch.long)
    return pgd(_model(), x, y, eps, steps=1, step_size=0.0, norm=norm, random_start=True, seed=seed) - x


def test_l2_random_start_is_uniform_in_the_ball() -> None:
    d, eps, n = int(np.prod(SHAPE)), 0.1, 3000
    delta = _start("l2", n, eps, seed=0).flatten(1)
    r = (delta.norm(dim=1) / eps).numpy()
    assert r.max() <= 1 + 1e-12
    # radius: P(‖δ‖/ε ≤ r) = r^d, i.e. (‖δ‖/ε)^d ~ U(0, 1)
    assert sps.kstest(r**d, "uniform").pvalue > 1e-3
    # direction: uniform on the sphere — mean 0 and E[u uᵀ] = I/d
    u = (delta / delta.norm(dim=1, keepdim=True)).numpy()
    assert np.abs(u.mean(0)).max() < 4 / np.sqrt(n * d)
    assert np.abs(u.T @ u / n - np.eye(d) / d).max() < 8 / (d * np.sqrt(n))
    # ... and not only in its first two moments (a normalised uniform cube has those too): a coordinate
    # of a uniform unit vector follows (u_i + 1)/2 ~ Beta((d − 1)/2, (d − 1)/2), so E[u_i⁴] = 3/(d(d + 2))
    assert sps.kstest((u[:, 0] + 1) / 2, "beta", args=((d - 1) / 2, (d - 1) / 2)).pvalue > 1e-3
    fourth = (u**4).sum(1) / d  # one value per draw (the d coordinates of one draw are dependent)
    assert abs(fourth.mean() - 3 / (d * (d + 2))) < 5 * fourth.std() / np.sqrt(n)
    # the same seed gives the same start; another seed another one
    assert torch.equal(_start("l2", 50, eps, seed=0), _start("l2", 50, eps, seed=0))
    assert not torch.equal(_start("l2", 50, eps, seed=0), _start("l2", 50, eps, seed=1))


def test_linf_random_start_is_uniform_in_the_box() -> None:
    eps, n = 0.1, 400
    delta = _start("linf", n, eps, seed=0).flatten()
    assert delta.abs().max() <= eps
    assert sps.kstest((delta / eps).numpy(), "uniform", args=(-1, 2)).pvalue > 1e-3
    assert not torch.equal(_start("linf", 20, eps, seed=0), _start("linf", 20, eps, seed=1))
