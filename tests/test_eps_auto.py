"""``eps: auto`` for ``attack_transfer``: one ε per design, the smallest grid ε at which the source
model's white-box success reaches the target; stored in the run folder, recorded on every row."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reprsim.attacks.transfer import attack_transfer_stage
from reprsim.errors import ConfigError
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.attack_eps import (
    ATTACK_EPS_FILE,
    GRID_POINTS,
    eps_grid,
    smallest_eps,
)
from reprsim.experiments.composition import composition_of
from reprsim.experiments.driver import trained_model
from reprsim.experiments.grid import expand
from reprsim.experiments.worlds.image import ImageWorld

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(attack: dict, designs: list | None = None, seeds=(0,)) -> dict:
    return {
        "name": "eps",
        "sources": [{"name": "digits"}],
        "models": [{"name": "mlp", "options": {"hidden": [16]}}],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
        "overlap": {"designs": designs or [{"kind": "data", "fractions": [1.0, 0.0]}]},
        "seeds": list(seeds),
        "probe_size": 100,
        "measures": {"names": ["cka"], "params": {}},
        "consequences": [{"attack_transfer": {"steps": 3, "n": 120, **attack}}],
        "execution": {"workers": 1},
    }


# ---- the search ----------------------------------------------------------------------------------
def test_grid_and_bisection_find_the_smallest_grid_eps_reaching_the_target():
    grid = eps_grid(0.3)
    assert len(grid) == GRID_POINTS and grid[0] == pytest.approx(0.3 / 32) and grid[-1] == pytest.approx(0.3)
    for threshold in (0.0001, 0.05, 0.1, 0.2999, 0.3):
        eps, tried = smallest_eps(lambda e, t=threshold: float(e >= t), grid, 0.5)
        assert eps == min(g for g in grid if g >= threshold)  # brute force over the grid
        assert len(tried) <= 1 + int(np.log2(GRID_POINTS)) and tried[0][0] == pytest.approx(0.3)
    eps, tried = smallest_eps(lambda e: 0.2, grid, 0.5)
    assert eps is None and tried == [(pytest.approx(0.3), 0.2)]


class Planted(nn.Module):
    """Logits (−w·x/2, w·x/2) with w = (1, 1, −1, −1): the class is the sign of w·x."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2, bias=False)
        w = torch.tensor([1.0, 1.0, -1.0, -1.0])
        with torch.no_grad():
            self.head.weight.copy_(torch.stack([-w / 2, w / 2]))

    def forward(self, x):
        return self.head(x)


class StubPair:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def attack_set(self):
        return self.x, self.y, None


def test_eps_auto_on_a_linear_model_with_known_margins():
    # x = 0.5 + u·w gives w·x = 4u: label 1 iff u > 0, and the margin between the two logits is 4|u|.
    # An L∞ attack of size ε moves w·x by at most ε‖w‖₁ = 4ε (MI-FGSM's sign steps all point along −w
    # for label 1, +w for label 0, and stay inside [0, 1] here), so the model is fooled iff |u| < ε:
    # white-box success(ε) = mean(|u| < ε). The |u| are kept off the grid (no ties).
    rng = np.random.default_rng(4)
    grid = eps_grid(0.3)
    u = rng.uniform(0.002, 0.29, size=60)
    u = u[np.min(np.abs(u[:, None] - grid[None, :]), axis=1) > 1e-3]
    signs = np.where(np.arange(len(u)) % 2 == 0, 1.0, -1.0)
    w = np.array([1.0, 1.0, -1.0, -1.0])
    x = (0.5 + (signs * u)[:, None] * w[None, :]).astype(np.float32)
    y = (signs > 0).astype(np.int64)
    by_hand = lambda eps: float(np.mean(u < eps))  # noqa: E731
    spec = parse_config(config({"eps": "auto", "target_whitebox": 0.6, "n": 500})).consequences[0]
    unit = expand(parse_config(config({"eps": "auto"})))[0]
    kind, planted = ImageWorld(), Planted()
    source = type("T", (), {"model": planted})()
    for eps in (grid[3], grid[15], grid[27]):
        assert kind.whitebox_asr(spec, unit, StubPair(x, y), source, float(eps)) == pytest.approx(by_hand(eps))
    for target in (0.25, 0.6, 0.9):
        want = min(g for g in grid if by_hand(g) >= target)
        got, _ = smallest_eps(lambda e: kind.whitebox_asr(spec, unit, StubPair(x, y), source, e), grid, target)
        assert got == pytest.approx(want)
    assert kind.whitebox_asr(spec, unit, StubPair(x[:0], y[:0]), source, 0.1) is None


# ---- the sweep -----------------------------------------------------------------------------------
def test_eps_auto_in_a_sweep_is_chosen_once_per_design_stored_and_recorded(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    parsed = parse_config(config({"eps": "auto", "target_whitebox": 0.5, "eps_max": 0.3}, seeds=(0, 1)))
    run_experiment(parsed, out, cache_dir=cache, progress=False)
    records = json.loads((out / ATTACK_EPS_FILE).read_text())
    assert list(records) == ["overlap.designs.0|digits|mlp"]
    record = records["overlap.designs.0|digits|mlp"]
    eps = record["eps"]
    # the reference unit: the design's first seed (0) at its lowest fraction (0.0, listed second)
    reference = next(u for u in expand(parsed) if u.seed == 0 and u.data_fraction == 0.0)
    assert record["reference_unit"] == reference.unit_id
    df = load_results(out)
    assert df["attack_eps"].notna().all() and (df["attack_eps"] == eps).all()
    # recompute from model A reloaded from the cache: ε reaches the target, the grid point below does not
    kind = composition_of(reference)
    pair = kind.pair(parsed, reference, cache)
    a = trained_model(kind, parsed, reference, pair, "a", cache, torch.device("cpu"), False)
    inputs, labels, _ = pair.attack_set()

    def whitebox(e):
        return attack_transfer_stage(
            a.model,
            a.model,
            inputs,
            labels,
            attack="mi_fgsm",
            eps=e,
            steps=3,
            n=120,
            seed=reference.seeds()["attack"],
            both_directions=False,
        )["whitebox_asr"]

    grid = list(eps_grid(0.3))
    k = grid.index(eps)
    assert whitebox(eps) >= 0.5 and record["whitebox_asr"] == pytest.approx(whitebox(eps))
    assert k == 0 or whitebox(grid[k - 1]) < 0.5
    row = df[df.unit_id == reference.unit_id].iloc[0]
    assert row["whitebox_asr"] == pytest.approx(whitebox(eps))  # the unit attacked A with that ε

    # a resumed run uses the stored ε (planted here), not a fresh choice
    records["overlap.designs.0|digits|mlp"]["eps"] = 0.123
    (out / ATTACK_EPS_FILE).write_text(json.dumps(records))
    other = next(u for u in expand(parsed) if u.seed == 1 and u.data_fraction == 1.0)
    (out / "units" / other.unit_id / "status.json").unlink()
    run_experiment(parsed, out, cache_dir=cache, progress=False)
    df = load_results(out)
    assert (df[df.unit_id == other.unit_id]["attack_eps"] == 0.123).all()
    assert (df[df.unit_id != other.unit_id]["attack_eps"] == eps).all()


def test_fixed_eps_is_recorded_on_every_row(tmp_path):
    designs = [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [0.4]}]
    parsed = parse_config(config({"eps_data": 0.04, "eps_task": 0.07}, designs, seeds=(0,)))
    run_experiment(parsed, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert not (tmp_path / "run" / ATTACK_EPS_FILE).exists()
    want = df["overlap_kind"].map({"data": 0.04, "task": 0.07})
    pd.testing.assert_series_equal(df["attack_eps"], want, check_names=False)


def test_an_unreachable_target_is_one_error_naming_the_design_before_any_unit_runs(tmp_path):
    parsed = parse_config(config({"eps": "auto", "target_whitebox": 1.0, "eps_max": 0.001}, seeds=(0,)))
    with pytest.raises(ConfigError) as info:
        run_experiment(parsed, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert "overlap.designs.0 (source 'digits', model 'mlp'): eps: auto cannot reach white-box success 1" in message
    best = float(message.split("is ")[1].split(" ")[0])  # the best success reached, reported
    assert 0 < best < 1
    assert not (tmp_path / "run").exists()  # nothing but the lock was written, and it is removed


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ({"target_whitebox": 0.4}, r"\['target_whitebox'\] apply with eps: auto only"),
        ({"eps_max": 0.2}, r"\['eps_max'\] apply with eps: auto only"),
        ({"eps": "auto", "eps_data": 0.1}, r"eps: auto chooses ε itself; drop \['eps_data'\]"),
        ({"eps": "max"}, r"consequences\.0\.attack_transfer\.eps: Input should be 'auto'"),
        ({"eps": "auto", "target_whitebox": 0.0}, r"target_whitebox: Input should be greater than 0"),
        ({"eps": "auto", "target_whitebox": 1.5}, r"target_whitebox: Input should be less than or equal to 1"),
        ({"eps": "auto", "eps_max": 0.0}, r"eps_max: Input should be greater than 0"),
    ],
)
def test_bad_eps_options_are_config_errors(attack, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config(attack))
