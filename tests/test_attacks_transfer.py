"""Transfer measurement: definitions, invariances (self / identical copies), task overlap, stage."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from reprsim.attacks.adversarial import make_attack
from reprsim.attacks.stats import wilson_interval
from reprsim.attacks.transfer import (
    FirstKLogits,
    TransferResult,
    apply_label_map,
    attack_transfer_stage,
    probe_subset,
    random_targets,
    transfer,
)

RATES = ["whitebox_asr", "transfer_asr", "transfer_asr_conditional", "victim_clean_error", "source_clean_error"]


def small_cnn(seed: int, k: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, k),
    )


def blobs(n: int = 300, d: int = 10, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian class blobs squashed into [0, 1] (an easy but not trivial task)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.sigmoid(centres[y] + 0.8 * torch.randn(n, d, generator=g))
    return x, y


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, k: int = 4, epochs: int = 60) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, k))
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m


def colour_images(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 8, 8) images in [0, 1] whose class sets a faint colour/position pattern."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(k, 3, 8, 8, generator=g)
    y = torch.arange(n) % k
    x = (0.6 * torch.rand(n, 3, 8, 8, generator=g) + 0.4 * patterns[y]).clamp(0, 1)
    return x, y


def train_cnn(x: torch.Tensor, y: torch.Tensor, seed: int, k: int, steps: int = 40) -> nn.Module:
    m = small_cnn(seed, k)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def images():
    """40 probe images (5 classes) after training two different CNNs on 200 others."""
    x, y = colour_images(240, 5)
    nets = (train_cnn(x[40:], y[40:], 0, 5), train_cnn(x[40:], y[40:], 1, 5))
    return x[:40], y[:40], nets


@pytest.fixture(scope="module")
def images6():
    """Same with 6 classes (for the task-overlap tests)."""
    x, y = colour_images(240, 6, seed=1)
    nets = (train_cnn(x[40:], y[40:], 0, 6), train_cnn(x[40:], y[40:], 1, 6))
    return x[:40], y[:40], nets


def same(s1: dict, s2: dict) -> None:
    """Summaries are equal (NaN == NaN)."""
    assert s1.keys() == s2.keys()
    np.testing.assert_equal(s1, s2)


# ----------------------------------------------------------------------------- definitions


def test_summary_known_values():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    src_clean = np.array([0, 1, 2, 3, 0, 1, 0, 0])  # correct on 0..5
    vic_clean = np.array([0, 1, 2, 0, 0, 1, 2, 3])  # correct on all but 3
    src_adv = np.array([1, 1, 0, 0, 1, 0, 0, 0])  # wrong on 0, 2, 3, 4, 5, 6, 7 -> 7/8
    vic_adv = np.array([1, 1, 2, 3, 0, 0, 2, 0])  # wrong on 0, 5, 7 -> 3/8
    r = TransferResult(labels, src_clean, vic_clean, src_adv, vic_adv)
    s = r.summary()
    assert s["attack_n"] == 8 and s["n_both_correct"] == 5  # rows 0, 1, 2, 4, 5
    assert s["whitebox_asr"] == 7 / 8
    assert s["transfer_asr"] == 3 / 8
    assert s["transfer_asr_conditional"] == 2 / 5  # rows 0 and 5 among {0, 1, 2, 4, 5}
    assert s["victim_clean_error"] == 1 / 8 and s["source_clean_error"] == 2 / 8
    assert (s["transfer_asr_low"], s["transfer_asr_high"]) == pytest.approx(wilson_interval(3, 8))
    assert not any(k.endswith("_ba") or k.startswith("targeted") for k in s)
    np.testing.assert_array_equal(r.fooled_victim, vic_adv != labels)
    cp = r.summary(interval="clopper_pearson")
    assert cp["transfer_asr"] == s["transfer_asr"] and cp["transfer_asr_low"] < s["transfer_asr_low"]


def test_conditional_rate_is_nan_without_commonly_correct_inputs():
    z = np.zeros(4, dtype=int)
    r = TransferResult(z, z + 1, z, z, z)  # the source is always wrong on clean inputs
    s = r.summary()
    assert math.isnan(s["transfer_asr_conditional"]) and math.isnan(s["transfer_asr_conditional_low"])
    assert s["n_both_correct"] == 0


# ----------------------------------------------------------------------------- invariances


def test_self_transfer_equals_whitebox(images):
    x, y, (net, _) = images
    assert (net(x).argmax(1) == y).float().mean() > 0.6  # the fixture models did learn
    r = transfer(net, net, x, y, make_attack("mi_fgsm", eps=8 / 255), batch_size=16)
    s = r.summary()
    assert s["whitebox_asr"] > s["source_clean_error"]  # the attack does something
    assert s["transfer_asr"] == s["whitebox_asr"] and s["transfer_asr_ba"] == s["whitebox_asr_ba"]
    np.testing.assert_array_equal(r.victim_adv_pred, r.source_adv_pred)
    assert s["transfer_asr_conditional"] == pytest.approx(r.fooled_source[r.clean_correct_source].mean())


@pytest.mark.parametrize("name", ["fgsm", "pgd", "mi_fgsm"])
def test_identical_copies_transfer_equals_whitebox(images, name):
    x, y, (_, a) = images
    b = copy.deepcopy(a)
    s = transfer(a, b, x, y, make_attack(name, eps=4 / 255)).summary()
    for key in ("asr", "asr_low", "asr_high"):
        assert s[f"transfer_{key}"] == s[f"whitebox_{key}"]
        assert s[f"transfer_{key}_ba"] == s[f"whitebox_{key}_ba"]
    assert s["whitebox_asr"] == s["whitebox_asr_ba"]


def test_identically_trained_models_transfer_equals_whitebox():
    x, y = blobs()
    a, b = train_mlp(x, y, seed=3), train_mlp(x, y, seed=3)
    attack = make_attack("mi_fgsm", eps=0.1, clip=(0.0, 1.0))
    s = transfer(a, b, x, y, attack).summary()
    assert s["source_clean_error"] < 0.2  # the models did learn
    assert s["transfer_asr"] == s["whitebox_asr"]


def test_eps_zero_success_equals_clean_error(images):
    x, y, (a, b) = images
    s = transfer(a, b, x, y, make_attack("pgd", eps=0.0)).summary()
    assert s["whitebox_asr"] == s["source_clean_error"]
    assert s["transfer_asr"] == s["victim_clean_error"]
    assert s["n_both_correct"] > 0 and s["transfer_asr_conditional"] == 0.0
    assert s["transfer_asr_ba"] == s["source_clean_error"]


def test_batch_size_does_not_change_deterministic_attacks(images):
    x, y, (a, b) = images
    atk = make_attack("mi_fgsm", eps=4 / 255)
    r1 = transfer(a, b, x, y, atk, batch_size=7)
    r2 = transfer(a, b, x.double().numpy(), y.numpy(), atk)  # float64 numpy -> the model dtype
    np.testing.assert_array_equal(r1.victim_adv_pred, r2.victim_adv_pred)
    np.testing.assert_array_equal(r1.reverse.victim_adv_pred, r2.reverse.victim_adv_pred)


def test_normalization_passes_through_transfer(images):
    x, y, (net, _) = images
    atk = make_attack("mi_fgsm", eps=2 / 255, normalization=((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)))
    s = transfer(net, copy.deepcopy(net), x, y, atk, both_directions=False).summary()
    assert s["transfer_asr"] == s["whitebox_asr"] and "transfer_asr_ba" not in s


# ----------------------------------------------------------------------------- targeted


def test_targeted_transfer_keys_and_success():
    x, y = blobs(n=120)
    a = train_mlp(x, y, seed=0)
    t = random_targets(y, 4, seed=0)
    assert (t != y).all() and t.min() >= 0 and t.max() <= 3
    attack = make_attack("pgd", eps=1.0, steps=30, step_size=0.05, targeted=True, clip=(0.0, 1.0))
    s = transfer(a, copy.deepcopy(a), x, y, attack, targets=t).summary()
    assert s["targeted_whitebox_asr"] >= 0.9
    assert s["targeted_transfer_asr"] == s["targeted_whitebox_asr"]
    assert "targeted_transfer_asr_high_ba" in s
    with pytest.raises(ValueError, match="pass targets"):
        transfer(a, a, x, y, attack)
    with pytest.raises(ValueError, match="untargeted"):
        transfer(a, a, x, y, make_attack("fgsm", eps=0.1), targets=t)


# ----------------------------------------------------------------------------- task overlap


def test_label_map_restricts_to_shared_classes_in_shared_space(images6):
    x, y, (a, b) = images6
    label_map = {0: 0, 3: 1, 5: 2}  # original classes 0, 3, 5 are shared; 1, 2, 4 are not
    atk = make_attack("mi_fgsm", eps=8 / 255)
    r = transfer(a, b, x, y, atk, label_map=label_map)
    keep = (y == 0) | (y == 3) | (y == 5)
    assert r.labels.size == int(keep.sum())
    assert set(np.unique(r.labels)) == {0, 1, 2}
    assert max(r.source_clean_pred.max(), r.victim_adv_pred.max()) <= 2  # predictions in the shared space
    # Same as filtering and remapping by hand with both heads cut to the first 3 logits.
    y_shared = torch.tensor([{0: 0, 3: 1, 5: 2}[int(c)] for c in y[keep]])
    manual = transfer(FirstKLogits(a, 3), FirstKLogits(b, 3), x[keep], y_shared, atk)
    same(r.summary(), manual.summary())
    # the array form of the map (-1 = not shared) gives the same
    r2 = transfer(a, b, x, y, atk, label_map=np.array([0, -1, -1, 1, -1, 2]))
    same(r2.summary(), r.summary())


def test_label_map_and_shared_class_errors(images):
    x, y, (net, _) = images
    atk = make_attack("fgsm", eps=0.01)
    with pytest.raises(ValueError, match="one-to-one onto 0..k-1"):
        apply_label_map(x, y, {0: 0, 1: 2})
    with pytest.raises(ValueError, match="no input belongs"):
        apply_label_map(x[y != 4], y[y != 4], {4: 0})
    with pytest.raises(ValueError, match="only 5 outputs"):
        transfer(net, net, x, y, atk, num_shared_classes=7)
    with pytest.raises(ValueError, match="integer >= 1"):
        transfer(net, net, x, y, atk, num_shared_classes=0)


def test_transfer_argument_errors(images):
    x, y, (net, _) = images
    with pytest.raises(TypeError, match="make_attack"):
        transfer(net, net, x, y, "mi_fgsm")
    with pytest.raises(ValueError, match="batch_size"):
        transfer(net, net, x, y, make_attack("fgsm", eps=0.1), batch_size=0)
    with pytest.raises(ValueError, match="labels must be integer"):
        transfer(net, net, x, y[:-1], make_attack("fgsm", eps=0.1))
    with pytest.raises(ValueError, match="class ids >= 0"):
        transfer(net, net, x, y - 1, make_attack("fgsm", eps=0.1))


# ----------------------------------------------------------------------------- sweep stage


def test_stage_is_seeded_and_returns_table_columns(images):
    x, y, (a, b) = images
    s1 = attack_transfer_stage(a, b, x, y, eps=8 / 255, n=25, seed=0)
    s2 = attack_transfer_stage(a, b, x, y, eps=8 / 255, n=25, seed=0)
    same(s1, s2)
    assert s1["attack_n"] == 25
    for key in RATES:
        assert {key, f"{key}_low", f"{key}_high", f"{key}_ba"} <= set(s1)
        assert all(isinstance(s1[k], float) for k in s1)
    # the subset is the seeded one: same numbers as transfer() on it
    idx = torch.as_tensor(probe_subset(40, 25, 0))
    direct = transfer(a, b, x[idx], y[idx], make_attack("mi_fgsm", eps=8 / 255, steps=3)).summary()
    same(direct, s1)
    assert not np.array_equal(probe_subset(40, 25, 0), probe_subset(40, 25, 1))
    assert attack_transfer_stage(a, b, x, y, n=1000)["attack_n"] == 40


def test_stage_other_attacks_and_task_overlap(images6):
    x, y, (a, b) = images6
    s = attack_transfer_stage(a, b, x, y, attack="fgsm", eps=2 / 255, n=10, label_map={0: 0, 3: 1, 5: 2})
    assert s["attack_n"] == 10
    s = attack_transfer_stage(
        a, b, x, y % 5, attack="pgd", eps=2 / 255, steps=2, n=10, num_shared_classes=5, norm="l2", both_directions=False
    )
    assert "transfer_asr_ba" not in s
    s = attack_transfer_stage(a, b, x.double().numpy(), y.numpy(), attack="mi_fgsm", eps=8 / 255, n=20, targeted=True)
    assert s["targeted_whitebox_asr"] > 0 and "targeted_transfer_asr_ba" in s
    with pytest.raises(ValueError, match="valid names"):
        attack_transfer_stage(a, b, x, y, attack="gcg")
    with pytest.raises(ValueError, match="unknown parameter"):
        attack_transfer_stage(a, b, x, y, decay_rate=0.5)


# ----------------------------------------------------------------------------- planted victim


def threshold_model(w0: float, w1: float) -> nn.Module:
    """A linear 2-class model on (N, 2) inputs: class 1 iff w0·(x0 − ½) + w1·(x1 − ½) > 0."""
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0, 0.0], [w0, w1]]))
        m.bias.copy_(torch.tensor([0.0, -0.5 * (w0 + w1)]))
    return m.eval()


def test_transfer_crafts_on_the_source_and_judges_on_the_victim():
    """Planted linear models with a known FGSM step. The source S looks at x0 only, so its gradient
    sign is (±1, 0): FGSM moves x0 by eps towards the other class and leaves x1 alone. The victim V
    looks mostly at x1 and a little at x0 the other way round, so its own step moves x1 and moves x0
    the opposite way. Every rate is recomputed from that rule; the six rates differ, so crafting on
    the victim (the planted wiring slip), or judging on the wrong model, gives other numbers."""
    grid = np.array([0.05, 0.2, 0.35, 0.45, 0.55, 0.65, 0.8, 0.95])
    x = np.array([(a, b) for a in grid for b in grid], dtype=np.float32)  # (64, 2)
    y = ((x[:, 0] > 0.5) & (x[:, 1] > 0.5)).astype(np.int64)  # neither model is always right
    source, victim = threshold_model(1.0, 0.0), threshold_model(-0.25, 1.0)
    eps = 0.2

    def predict(w0, w1, z):
        margin = w0 * (z[:, 0] - 0.5) + w1 * (z[:, 1] - 0.5)
        assert np.abs(margin).min() > 0.01  # no input on a boundary: float32 rounding cannot flip a class
        return (margin > 0).astype(np.int64)

    def fgsm_by_hand(w0, w1, z):
        # 2-class CE gradient w.r.t. x: p_other · (w_other − w_true); its sign is ±sign(w) (0 stays 0)
        away = np.where(y == 1, -1.0, 1.0)[:, None]  # towards class 0 for class-1 inputs, and back
        return np.clip(z + eps * away * np.sign([w0, w1]), 0.0, 1.0)

    s_adv, v_adv = fgsm_by_hand(1.0, 0.0, x), fgsm_by_hand(-0.25, 1.0, x)
    want = {
        "whitebox_asr": np.mean(predict(1.0, 0.0, s_adv) != y),
        "transfer_asr": np.mean(predict(-0.25, 1.0, s_adv) != y),
        "victim_clean_error": np.mean(predict(-0.25, 1.0, x) != y),
        "source_clean_error": np.mean(predict(1.0, 0.0, x) != y),
        "whitebox_asr_ba": np.mean(predict(-0.25, 1.0, v_adv) != y),
        "transfer_asr_ba": np.mean(predict(1.0, 0.0, v_adv) != y),
    }
    crafted_on_victim = np.mean(predict(-0.25, 1.0, v_adv) != y)  # what A → B would read if crafted on B
    assert all(0 < v < 1 for v in want.values()), want
    assert want["transfer_asr"] != crafted_on_victim and len(set(want.values())) == len(want)
    s = transfer(source, victim, x, y, make_attack("fgsm", eps=eps)).summary()
    for key, value in want.items():
        assert s[key] == pytest.approx(value, abs=1e-12), key
