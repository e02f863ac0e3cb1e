"""The diffusion kind end to end on a tiny sweep (generated colorshapes, the tiny UNet preset):
the results table, the files of the unit folders, bit-identical inputs to both models, and a
value oracle that recomputes every number of the table from the cached models by an
independent path (its own probe subsets, noise, forward process, hook and pooling)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("diffusers")

from reprsim import metrics, models, storage
from reprsim.data import load
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.composition import composition_of
from reprsim.experiments.families import unet as dk
from reprsim.experiments.grid import expand

SOURCE = {
    "name": "colorshapes",
    "label": "color",
    "options": {"n": 120, "seed": 0, "image_size": 12, "cache": False},
    "test_options": {"n": 80},
}
TINY = {
    "name": "diffusion-tiny",
    "sources": [SOURCE],
    "probes": [{"name": "noise", "source": "noise", "options": {"n": 30, "shape": [3, 12, 12], "seed": 1}}],
    "probe_size": 30,
    "models": [{"name": "unet_tiny"}],
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 0.003,
        "weight_decay": 0.0,
        "ema_decay": 0.99,
        "grad_clip": 1.0,
    },
    # images: shared keeps this sweep's models (with disjoint images, one mid-layer kNN of the t = 0.8
    # pair is a float32 near-tie, which the oracle's float64 path may break the other way)
    "overlap": {
        "designs": [
            {"kind": "data", "fractions": [0.0, 1.0]},
            {"kind": "task", "fractions": [0.4, 0.8], "images": "shared"},
        ]
    },
    "seeds": [0],
    "layers": ["penultimate", "mid"],
    "measures": {"names": ["cka", "cknna", "mutual_knn"], "params": {"k": 4}},
}
TASK_SETS = {"common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed"}
RTOL, ATOL = 1e-5, 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diffusion")
    config = parse_config(TINY)
    with pytest.MonkeyPatch.context() as mp:  # small sample grids keep the test fast
        mp.setattr(dk, "SAMPLE_STEPS", 2)
        mp.setattr(dk, "SAMPLES_PER_CLASS", 2)
        summary = run_experiment(config, tmp / "run", cache_dir=tmp / "cache", progress=False)  # one thread per unit
    return config, summary, tmp / "run", tmp / "cache", load_results(tmp / "run")


def _trained(config, unit, run_dir: Path, cache: Path) -> dict[str, torch.nn.Module]:
    """Models A and B of a unit, rebuilt from the zoo and loaded from the model cache."""
    status = json.loads((run_dir / "units" / unit.unit_id / "status.json").read_text())
    pair = composition_of(unit).pair(config, unit, cache_dir=None)
    out = {}
    for side in "ab":
        stored = storage.read_verified_state_dict(cache / "models" / f"{status['artifacts'][f'model_{side}']}.rsv")
        assert stored is not None
        model = models.build("unet_tiny", input_shape=(3, 12, 12), num_classes=pair.num_classes(side))
        model.load_state_dict(stored[0])
        out[side] = model.eval()
    return out


# ---- the table and the unit folders -------------------------------------------------------------
def test_a_tiny_diffusion_sweep_runs_end_to_end(sweep):
    _, summary, run_dir, _, df = sweep
    assert set(summary.statuses.values()) == {"ok"} and df.unit_id.nunique() == 4
    assert set(df.source) == {"colorshapes"} and set(df.model) == {"unet_tiny"}
    data, task = df[df.overlap_kind == "data"], df[df.overlap_kind == "task"]
    assert set(data.probe_set) == {"test", "noise"}
    assert set(task.probe_set) == TASK_SETS | {"test", "noise"}
    assert set(zip(task.probe_set, task.probe_role)) == {(s, s) for s in TASK_SETS} | {("test", "id"), ("noise", "ood")}
    assert set(zip(df.layer_a, df.layer_b)) == {(a, b) for a in ("penultimate", "mid") for b in ("penultimate", "mid")}
    units = df.drop_duplicates("unit_id").set_index("unit_id")
    for col in ("denoise_loss_a", "denoise_loss_b", "train_denoise_loss_a", "train_denoise_loss_b"):
        assert ((units[col] > 0) & (units[col] < 2)).all(), col
    # model A trains on the same images at every data fraction: one model, one loss
    assert units.loc[units.overlap_kind == "data", "denoise_loss_a"].nunique() == 1
    assert "transfer_asr" not in df.columns and "acc_a" not in df.columns
    valued = df.dropna(subset=["value"])
    assert len(valued) and np.isfinite(valued["value"]).all()
    assert valued.loc[valued.measure != "cknna", "value"].between(-1e-6, 1 + 1e-6).all()
    # the fixed-composition sets hold the same test images at both task fractions; the plain ones do not
    sets = task.drop_duplicates(["unit_id", "probe_set"])
    n = sets.pivot(index="probe_set", columns="task_fraction", values="n_probe")
    assert n.loc["common_fixed"].nunique() == 1 and n.loc["ood_one_fixed"].nunique() == 1
    classes = sets.set_index(["probe_set", "task_fraction"])["n_probe_classes"]
    assert classes["common", 0.4] == 2 and classes["common", 0.8] == 4  # round(0.4·5), round(0.8·5) shared classes
    assert classes["common_fixed", 0.4] == classes["common_fixed", 0.8] == 2
    assert classes["ood_one", 0.4] == 6 and classes["ood_one_fixed", 0.8] == 2
    for unit_id in units.index:  # the sample grids of each model of each pair (first seed)
        folder = run_dir / "units" / unit_id
        rows = json.loads((folder / dk.SAMPLE_FILES["rows"]).read_text())
        for side in "ab":
            assert (folder / dk.SAMPLE_FILES[side]).stat().st_size > 0
            assert len(rows[side]) == (10 if units.loc[unit_id, "overlap_kind"] == "data" else 5)
    from PIL import Image

    data_unit = units.index[units.overlap_kind == "data"][0]
    with Image.open(run_dir / "units" / data_unit / dk.SAMPLE_FILES["a"]) as img:
        # 10 rows × 2 samples of 12 px shown at 5× with 2-pixel gaps
        assert img.size == (2 * 62 + 2, 10 * 62 + 2)


def test_both_models_receive_bit_identical_noised_inputs(sweep):
    config, _, run_dir, cache, _ = sweep
    unit = next(u for u in expand(config) if u.overlap_kind == "task" and u.task_fraction == 0.4)
    kind = composition_of(unit)
    pair = kind.pair(config, unit, cache_dir=None)
    trained = _trained(config, unit, run_dir, cache)
    seen: dict[str, list] = {"a": [], "b": []}
    handles = []
    for side in "ab":

        def capture(_module, args, kwargs, side=side):
            sample, timestep = args[:2]
            seen[side].append((sample.clone(), timestep.clone(), kwargs["class_labels"].clone()))

        handles.append(trained[side].unet.register_forward_pre_hook(capture, with_kwargs=True))
    try:
        probes = kind.probes(config, unit, pair)
        for probe in probes:
            feats = {side: kind.features(config, trained[side], probe) for side in "ab"}
            assert feats["a"]["penultimate"].shape == (len(probe), 8)  # mean ‖ std of conv_out's 4 input channels
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen["a"]) == len(seen["b"]) >= len(probes)
    for (xa, ta, ca), (xb, tb, cb) in zip(seen["a"], seen["b"]):
        assert torch.equal(xa, xb) and torch.equal(ta, tb) and torch.equal(ca, cb)
        assert (ca == 5).all()  # the null class: K = 5 classes per model, ids 0..4
    assert trained["a"].null_class == trained["b"].null_class == 5
    # the inputs are noised probe images: same image, same ε and t in every subset that holds it
    by_name = {p.name: p for p in probes}
    common, fixed = by_name["common"], by_name["common_fixed"]
    for i, image in enumerate(fixed.inputs):
        j = next(j for j, other in enumerate(common.inputs) if np.array_equal(other, image))
        assert np.array_equal(fixed.extra["noise"][i], common.extra["noise"][j])
        assert fixed.extra["timesteps"][i] == common.extra["timesteps"][j]


# ---- the value oracle ---------------------------------------------------------------------------
def _pick(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def _draws(n: int, shape, seed: int):
    noise_seq, t_seq = np.random.SeedSequence(seed).spawn(2)
    return (
        np.random.default_rng(noise_seq).standard_normal((n, *shape), dtype=np.float32),
        np.random.default_rng(t_seq).integers(0, 1000, size=n, dtype=np.int64),
    )


def _oracle_probes(config, unit) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Probe images with their noise and timesteps, rebuilt from the sources and the documented rules."""
    seeds = unit.seeds()
    test = load("colorshapes", split="test", n=80, seed=0, image_size=12, cache=False)
    train_labels = load("colorshapes", split="train", **SOURCE["options"]).labels["color"]
    labels = test.labels["color"]
    entropy = lambda name: int(np.random.SeedSequence([seeds["probe"], zlib.crc32(name.encode())]).generate_state(1)[0])
    noise, timesteps = _draws(len(labels), (3, 12, 12), entropy("test"))
    if unit.overlap_kind == "data":
        groups = {"test": np.arange(len(labels))}
    else:
        # the class order of a task split is the seeded permutation of the classes (K = 5 per model)
        order = [int(c) for c in np.random.default_rng(seeds["split"]).permutation(np.unique(train_labels))]
        k = round(unit.task_fraction * 5)
        a, b = set(order[:5]), set(order[:k] + order[5 : 10 - k])
        ks = [round(f * 5) for f in (0.4, 0.8)]
        sets = {
            "common": a & b,
            "ood_one": a ^ b,
            "ood_all": set(np.unique(labels)) - a - b,
            "common_fixed": set(order[: min(ks)]),
            "ood_one_fixed": set(order[max(ks) : 5]) | set(order[5 : 10 - max(ks)]),
        }
        groups = {name: np.flatnonzero(np.isin(labels, sorted(c))) for name, c in sets.items()}
        groups["test"] = np.arange(len(labels))  # task units also probe the whole test set
    out = {}
    for name, idx in groups.items():
        idx = idx[_pick(len(idx), config.probe_size, seeds["probe"])]
        out[name] = (test.inputs[idx], noise[idx], timesteps[idx])
    ood = load("noise", split="test", n=30, shape=[3, 12, 12], seed=1).inputs
    ood = ood[_pick(len(ood), config.probe_size, seeds["probe"])]
    out["noise"] = (ood, *_draws(len(ood), (3, 12, 12), entropy("noise")))
    return out


def _oracle_features(model, images, noise, timesteps) -> dict[str, np.ndarray]:
    """x_t by diffusers' DDPMScheduler.add_noise, the null label, hooks on conv_out's input and the
    mid block's output, pooled with numpy (channel mean, then population std)."""
    from diffusers import DDPMScheduler

    x_t = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").add_noise(
        torch.from_numpy(images) * 2 - 1, torch.from_numpy(noise), torch.from_numpy(timesteps)
    )
    grabbed = {}
    h1 = model.unet.conv_out.register_forward_hook(lambda m, args, out: grabbed.update(penultimate=args[0]))
    h2 = model.unet.mid_block.register_forward_hook(lambda m, args, out: grabbed.update(mid=out))
    try:
        with torch.no_grad():
            labels = torch.full((len(images),), model.num_classes)
            model.unet(x_t, torch.from_numpy(timesteps), class_labels=labels)
    finally:
        h1.remove()
        h2.remove()
    out = {}
    for layer, t in grabbed.items():
        flat = t.numpy().reshape(t.shape[0], t.shape[1], -1).astype(np.float64)
        out[layer] = np.concatenate([flat.mean(axis=2), flat.std(axis=2)], axis=1)
    return out


def _expected(config, xa, xb, measure) -> float:
    prep = config.measures.prepare
    pa = metrics.prepare(xa.astype(np.float32), normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    pb = metrics.prepare(xb.astype(np.float32), normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    params = {k: v for k, v in config.measures.params.items() if k in metrics.MEASURES[measure].params}
    return float(metrics.compute(measure, pa, pb, **params))


def test_every_value_matches_the_oracle(sweep):
    config, _, run_dir, cache, df = sweep
    checked = 0
    for unit in expand(config):
        trained = _trained(config, unit, run_dir, cache)
        for name, (images, noise, timesteps) in _oracle_probes(config, unit).items():
            rows = df[(df.unit_id == unit.unit_id) & (df.probe_set == name)]
            assert len(rows) == 12 and (rows["n_probe"] == len(images)).all(), (unit.unit_id, name)
            if len(images) <= config.measures.params["k"]:
                assert rows["value"].isna().all()
                continue
            feats = {side: _oracle_features(trained[side], images, noise, timesteps) for side in "ab"}
            assert not np.allclose(feats["a"]["penultimate"], feats["b"]["penultimate"])
            for row in rows.itertuples():
                want = _expected(config, feats["a"][row.layer_a], feats["b"][row.layer_b], row.measure)
                assert row.value == pytest.approx(want, rel=RTOL, abs=ATOL), (unit.unit_id, name, row.measure)
                checked += 1
    assert checked == len(df.dropna(subset=["value"])) > 0


def test_denoising_loss_columns_match_the_oracle(sweep):
    """ε-MSE on up to EVAL_N test (and training) images of the model's classes, conditioned on their
    training ids, EVAL_DRAWS noised copies each with t stratified over [0, 1000) (EVAL_SEED draws)."""
    config, _, run_dir, cache, df = sweep
    units = df.drop_duplicates("unit_id").set_index("unit_id")
    for unit in expand(config):
        pair = composition_of(unit).pair(config, unit, cache_dir=None)
        trained = _trained(config, unit, run_dir, cache)
        for side in "ab":
            for column, (x, y) in (("denoise_loss", pair.eval_set(side)), ("train_denoise_loss", pair.train_set(side))):
                idx = _pick(len(x), dk.EVAL_N, dk.EVAL_SEED)
                r = dk.EVAL_DRAWS
                noise_seq, t_seq = np.random.SeedSequence(dk.EVAL_SEED).spawn(2)
                noise = np.random.default_rng(noise_seq).standard_normal((len(idx) * r, *x.shape[1:]), dtype=np.float32)
                u = np.random.default_rng(t_seq).random((len(idx), r))
                t = np.floor((np.arange(r) + u) * 1000 / r).astype(np.int64).reshape(-1)
                images, labels = np.repeat(x[idx], r, axis=0), np.repeat(y[idx], r)
                model = trained[side]
                with torch.no_grad():
                    x0 = torch.from_numpy(images) * 2 - 1
                    x_t = model.add_noise(x0, torch.from_numpy(noise), torch.from_numpy(t))
                    eps = model.unet(x_t, torch.from_numpy(t), class_labels=torch.from_numpy(labels)).sample
                want = float(((eps.numpy() - noise) ** 2).mean())
                assert units.loc[unit.unit_id, f"{column}_{side}"] == pytest.approx(want, rel=1e-5), (column, side)


def test_rerunning_the_sweep_retrains_nothing_and_gives_the_same_table(sweep, tmp_path):
    config, _, _, cache, df = sweep
    before = {p.name for p in (cache / "models").glob("*.rsv")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dk, "SAMPLE_STEPS", 2)
        mp.setattr(dk, "SAMPLES_PER_CLASS", 1)
        run_experiment(config, tmp_path / "again", cache_dir=cache, progress=False)
    again = load_results(tmp_path / "again")
    assert {p.name for p in (cache / "models").glob("*.rsv")} == before
    keys = ["unit_id", "probe_set", "layer_a", "layer_b", "measure"]
    merged = pd.merge(df[keys + ["value"]], again[keys + ["value"]], on=keys)
    assert len(merged) == len(df)
    np.testing.assert_array_equal(merged["value_x"].to_numpy(), merged["value_y"].to_numpy())


def test_the_report_shows_both_models_samples_for_one_pair_per_overlap_point(sweep, tmp_path):
    from reprsim.analysis import build_report

    _, _, run_dir, _, df = sweep
    html = build_report(run_dir, out=tmp_path / "report", figures=False, n_boot=50, n_perm=50).read_text()
    points = df.drop_duplicates("unit_id")[["overlap_kind", "data_fraction", "task_fraction"]].drop_duplicates()
    assert f"Samples of the generative models ({len(points)} pairs, one per overlap point)" in html
    assert html.count(": model A.") == len(points) and html.count(": model B.") == len(points)
    assert html.count('<img src="data:image/png;base64,') == 2 * len(points)  # figures=False: only the samples
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.count(dk.SAMPLE_FILES["a"]) == len(points)
