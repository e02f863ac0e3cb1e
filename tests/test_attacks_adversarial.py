"""Attacks against closed forms, bounds, shapes, determinism and error messages."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from reprsim.attacks.adversarial import fgsm, make_attack, mi_fgsm, pgd

MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.3, 0.25)


def linear_model(d: int = 12, k: int = 4, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    m = nn.Linear(d, k).double()
    return m


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


class SeqModel(nn.Module):
    """(N, T, D) embeddings -> mean-pooled MLP logits (N, 3)."""

    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(x)).mean(dim=1))


def closed_form_fgsm(
    model: nn.Linear,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    mean=0.0,
    std=1.0,
    targeted: bool = False,
    clip=(0.0, 1.0),
) -> np.ndarray:
    """x + eps·sign(∇) for softmax regression z = W((x−m)/s) + b: ∇_x CE = Wᵀ(p − onehot(y)) / s."""
    W = model.weight.detach().numpy()
    b = model.bias.detach().numpy()
    z = ((x - mean) / std) @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    grad = (p @ W) / std
    if targeted:
        grad = -grad
    out = x + eps * np.sign(grad)
    return out if clip is None else np.clip(out, *clip)


@pytest.fixture
def lin_data():
    g = np.random.default_rng(1)
    x = g.uniform(0.1, 0.9, size=(64, 12))
    y = g.integers(0, 4, size=64)
    return x, y


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_closed_form_on_linear_softmax(lin_data, targeted):
    x, y = lin_data
    m = linear_model()
    got = fgsm(m, torch.tensor(x), torch.tensor(y), 0.05, targeted=targeted).numpy()
    np.testing.assert_allclose(got, closed_form_fgsm(m, x, y, 0.05, targeted=targeted), atol=1e-12)


def test_fgsm_closed_form_with_normalization_and_clipping(lin_data):
    x, y = lin_data
    m = linear_model()
    mean, std = 0.3, 0.7
    eps = 0.2  # large enough that clipping to [0, 1] is active for some coordinates
    got = fgsm(m, torch.tensor(x), torch.tensor(y), eps, normalization=(mean, std)).numpy()
    want = closed_form_fgsm(m, x, y, eps, mean, std)
    assert ((x + eps > 1) | (x - eps < 0)).any()
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_mi_fgsm_one_step_no_momentum_equals_fgsm(lin_data):
    x, y = (torch.tensor(a) for a in lin_data)
    m = linear_model()
    a = mi_fgsm(m, x, y, 0.03, steps=1, decay=0.0)
    np.testing.assert_array_equal(a.numpy(), fgsm(m, x, y, 0.03).numpy())
    # also on a conv net with a per-channel normalisation
    net = small_cnn()
    xi = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    yi = torch.arange(8) % 5
    kw = dict(normalization=(MEAN, STD))
    torch.testing.assert_close(
        mi_fgsm(net, xi, yi, 2 / 255, steps=1, decay=0.0, **kw), fgsm(net, xi, yi, 2 / 255, **kw)
    )


def test_mi_fgsm_matches_reference_recursion(lin_data):
    """Three steps of g ← μg + ∇/‖∇‖₁, x ← Π(x + α·sign(g)) written out with the closed-form gradient."""
    x, y = lin_data
    m = linear_model()
    eps, T, mu = 0.06, 3, 1.0
    W, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    xa, g = x.copy(), np.zeros_like(x)
    for _ in range(T):
        z = xa @ W.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        grad = p @ W
        g = mu * g + grad / np.abs(grad).sum(1, keepdims=True)
        xa = np.clip(np.clip(xa + eps / T * np.sign(g), x - eps, x + eps), 0, 1)
    got = mi_fgsm(m, torch.tensor(x), torch.tensor(y), eps, steps=T, decay=mu).numpy()
    np.testing.assert_allclose(got, xa, atol=1e-12)


def test_eps_zero_returns_inputs(lin_data):
    x, y = (torch.tensor(a) for a in lin_data)
    m = linear_model()
    for out in (fgsm(m, x, y, 0.0), pgd(m, x, y, 0.0), pgd(m, x, y, 0.0, norm="l2"), mi_fgsm(m, x, y, 0.0)):
        torch.testing.assert_close(out, x, rtol=0, atol=0)


# ----------------------------------------------------------------------------- bounds and shapes


@pytest.mark.parametrize("attack", ["fgsm", "pgd_linf", "pgd_l2", "mi_fgsm"])
def test_pixel_perturbation_bounded_with_normalization(attack):
    net = small_cnn()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 3, 8, 8, generator=gen)
    x[0] = 0.0  # corners of the valid range must stay valid
    x[1] = 1.0
    y = torch.arange(16) % 5
    eps = 8 / 255 if attack != "pgd_l2" else 0.5
    kw = dict(normalization=(MEAN, STD))
    if attack == "fgsm":
        adv = fgsm(net, x, y, eps, **kw)
    elif attack == "mi_fgsm":
        adv = mi_fgsm(net, x, y, eps, steps=5, **kw)
    else:
        adv = pgd(net, x, y, eps, steps=5, norm=attack[4:], **kw)
    delta = (adv - x).flatten(1)
    if attack == "pgd_l2":
        assert delta.norm(dim=1).max().item() <= eps * (1 + 1e-5)
        assert delta.norm(dim=1).max().item() > 0.5 * eps
    else:
        assert delta.abs().max().item() <= eps + 1e-6
        assert delta.abs().max().item() >= eps - 1e-6  # the budget is used
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    assert adv.shape == x.shape and adv.dtype == x.dtype


@pytest.mark.parametrize(
    "shape,model_fn",
    [
        ((10, 12), lambda: linear_model().float()),
        ((10, 3, 8, 8), small_cnn),
        ((10, 7, 6), SeqModel),
    ],
)
@pytest.mark.parametrize("name", ["fgsm", "pgd", "mi_fgsm"])
def test_shapes_mlp_image_sequence(shape, model_fn, name):
    torch.manual_seed(0)
    model = model_fn()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x).argmax(1)
    clip = None if len(shape) == 3 else (0.0, 1.0)
    eps = 0.1
    adv = make_attack(name, eps=eps, clip=clip)(model, x, y)
    assert adv.shape == x.shape
    assert (adv - x).abs().max().item() <= eps + 1e-6
    with torch.no_grad():
        loss_clean = nn.functional.cross_entropy(model(x), y)
        loss_adv = nn.functional.cross_entropy(model(adv), y)
    assert loss_adv > loss_clean  # the attack ascends the loss


def test_sequence_embeddings_unclipped_range():
    """With clip=None the inputs may lie outside [0, 1] (embeddings), and stay unclipped."""
    torch.manual_seed(0)
    model = SeqModel()
    x = torch.randn(6, 5, 6) * 3
    y = torch.zeros(6, dtype=torch.long)
    adv = pgd(model, x, y, 0.2, clip=None)
    assert (adv - x).abs().max().item() <= 0.2 + 1e-6
    with pytest.raises(ValueError, match="outside clip"):
        pgd(model, x, y, 0.2)


def test_targeted_attacks_reach_target(lin_data):
    x, _ = (torch.tensor(a) for a in lin_data)
    m = linear_model()
    target = torch.full((x.shape[0],), 2)
    adv = pgd(m, x, target, 1.0, steps=40, step_size=0.05, clip=None, targeted=True)
    with torch.no_grad():
        assert (m(adv).argmax(1) == target).float().mean().item() >= 0.95
        before = nn.functional.cross_entropy(m(x), target, reduction="none")
        f = fgsm(m, x, target, 0.02, targeted=True)
        after = nn.functional.cross_entropy(m(f), target, reduction="none")
    assert (after < before).all()  # linear model: one targeted sign step lowers every target loss
    adv_mi = mi_fgsm(m, x, target, 1.0, steps=10, clip=None, targeted=True)
    with torch.no_grad():
        assert (m(adv_mi).argmax(1) == target).float().mean().item() >= 0.95


def test_untargeted_pgd_l2_fools_linear_model(lin_data):
    x, y = (torch.tensor(a) for a in lin_data)
    m = linear_model()
    adv = pgd(m, x, y, 5.0, steps=30, norm="l2", clip=None)
    with torch.no_grad():
        assert (m(adv).argmax(1) != y).float().mean().item() >= 0.95


# ----------------------------------------------------------------------------- model state, determinism


def test_model_eval_mode_and_requires_grad_unchanged():
    net = nn.Sequential(nn.Linear(12, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 4))
    net[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in net.parameters()]
    net.train()
    x = torch.rand(10, 12)
    y = torch.zeros(10, dtype=torch.long)
    a1 = pgd(net, x, y, 0.1, seed=1)
    assert not net.training
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    net.train()
    a2 = pgd(net, x, y, 0.1, seed=1)  # dropout off during the attack -> deterministic
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    assert not x.requires_grad


def test_pgd_seed_determinism():
    net = small_cnn()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 5
    a = pgd(net, x, y, 4 / 255, steps=2, seed=7)
    b = pgd(net, x, y, 4 / 255, steps=2, seed=7)
    c = pgd(net, x, y, 4 / 255, steps=2, seed=8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    d = pgd(net, x, y, 4 / 255, steps=2, random_start=False, seed=1)
    e = pgd(net, x, y, 4 / 255, steps=2, random_start=False, seed=2)
    torch.testing.assert_close(d, e, rtol=0, atol=0)


def test_batched_equals_per_example_for_deterministic_attacks():
    net = small_cnn()
    net_copy = copy.deepcopy(net)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 5
    full = mi_fgsm(net, x, y, 2 / 255)
    parts = torch.cat([mi_fgsm(net_copy, x[i : i + 2], y[i : i + 2], 2 / 255) for i in range(0, 6, 2)])
    torch.testing.assert_close(full, parts, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_make_attack_errors_and_binding():
    with pytest.raises(ValueError, match="valid names: fgsm, mi_fgsm, pgd"):
        make_attack("cw", eps=0.1)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_attack("fgsm", eps=0.1, steps=3)
    with pytest.raises(ValueError, match="needs eps"):
        make_attack("pgd")
    with pytest.raises(ValueError, match="eps must be"):
        make_attack("pgd", eps=-1.0)
    atk = make_attack("mi_fgsm", eps=0.1, targeted=True)
    assert atk.targeted and atk.name == "mi_fgsm"


def test_input_errors(lin_data):
    x, y = (torch.tensor(a) for a in lin_data)
    m = linear_model()
    with pytest.raises(ValueError, match="y must have shape"):
        fgsm(m, x, y[:-1], 0.1)
    with pytest.raises(TypeError, match="integer class labels"):
        fgsm(m, x, y.double(), 0.1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        fgsm(m, x, y + 4, 0.1)
    with pytest.raises(ValueError, match="outside clip"):
        fgsm(m, x * 5, y, 0.1)
    with pytest.raises(ValueError, match="eps must be"):
        fgsm(m, x, y, float("nan"))
    with pytest.raises(ValueError, match="norm must be"):
        pgd(m, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="steps must be"):
        mi_fgsm(m, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="decay"):
        mi_fgsm(m, x, y, 0.1, decay=-1.0)
    with pytest.raises(ValueError, match="does not broadcast|aligned with dimension 1"):
        fgsm(m, x, y, 0.1, normalization=((0.1, 0.2), (1.0, 1.0)))
    with pytest.raises(ValueError, match="std must be > 0"):
        fgsm(m, x, y, 0.1, normalization=(0.0, 0.0))
    with pytest.raises(ValueError, match="NaN or inf"):
        fgsm(m, x * float("nan"), y, 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        fgsm(m, (x > 0.5).long(), y, 0.1)
    with pytest.raises(ValueError, match="logits of shape"):
        fgsm(nn.Flatten(0), x, y, 0.1)


# ----------------------------------------------------------------------------- optional ART comparison


def test_fgsm_and_pgd_match_art():
    art = pytest.importorskip("art")
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    m = linear_model(k=4).float()
    g = np.random.default_rng(0)
    x = g.uniform(0.1, 0.9, size=(32, 12)).astype(np.float32)
    y = g.integers(0, 4, size=32)
    clf = PyTorchClassifier(
        model=m, loss=nn.CrossEntropyLoss(), input_shape=(12,), nb_classes=4, clip_values=(0.0, 1.0)
    )
    ref = FastGradientMethod(clf, eps=0.05).generate(x, y=np.eye(4)[y])
    ours = fgsm(m, torch.tensor(x), torch.tensor(y), 0.05).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    ref = ProjectedGradientDescent(clf, eps=0.05, eps_step=0.01, max_iter=5, num_random_init=0, verbose=False).generate(
        x, y=np.eye(4)[y]
    )
    ours = pgd(m, torch.tensor(x), torch.tensor(y), 0.05, steps=5, step_size=0.01, random_start=False).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert art is not None
