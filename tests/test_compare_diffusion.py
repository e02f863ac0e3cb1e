"""``compare_models`` on diffusion UNets (reprsim.compare.diffusion): the sweep's protocol — both
models see the identical x_t = √ᾱ_t·(2x − 1) + √(1 − ᾱ_t)·ε, t and the null class label — for a
zoo DiffusionUNet (module or reprsim.train checkpoint) and a diffusers UNet2DModel folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDPMScheduler, UNet2DModel

from reprsim import metrics, models
from reprsim.cli import main
from reprsim.compare import compare_models
from reprsim.errors import ReprsimError
from reprsim.models.unet import eval_draws

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)

SHAPE, K, N = (1, 12, 12), 3, 24


def _zoo(seed: int = 0):
    return models.build("unet_tiny", input_shape=SHAPE, num_classes=K, seed=seed)


def _diffusers_folder(path, seed: int = 1):
    """A tiny class-conditional UNet2DModel (K classes + the null class), saved with save_pretrained."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=12,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        class_embed_type="timestep",
        num_class_embeds=K + 1,
    )
    unet.save_pretrained(path)
    return path


def _images(n: int = N) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(0))


def _hand_features(
    unet: UNet2DModel, alphas_cumprod: torch.Tensor, x: torch.Tensor, noise_seed: int = 0, t_fixed: int | None = None
) -> np.ndarray:
    """The input of ``conv_out`` (own hook) on x_t written out by hand, null label = K, pooled as
    per-channel spatial mean ‖ population std."""
    noise, t = eval_draws(len(x), SHAPE, noise_seed, 1000)
    t = torch.from_numpy(t) if t_fixed is None else torch.full((len(x),), t_fixed)
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * (2 * x - 1) + (1 - ab).sqrt() * torch.from_numpy(noise)
    seen = []
    handle = unet.conv_out.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        with torch.no_grad():
            unet.eval()(x_t, t, class_labels=torch.full((len(x),), K)).sample
    finally:
        handle.remove()
    flat = seen[0].flatten(2)
    return torch.cat([flat.mean(2), flat.std(2, unbiased=False)], dim=1).numpy()


def _cka(fa: np.ndarray, fb: np.ndarray) -> float:
    return metrics.compute("cka", metrics.prepare(fa), metrics.prepare(fb))


def test_cka_of_a_zoo_unet_and_a_diffusers_folder_is_cka_of_hand_noised_features(tmp_path):
    zoo, folder, x = _zoo(), _diffusers_folder(tmp_path / "hf"), _images()
    comp = compare_models(zoo, str(folder), x, measures=["cka"], progress=False)
    schedule = DDPMScheduler().alphas_cumprod  # a folder without scheduler_config.json: diffusers' default
    torch.testing.assert_close(zoo.alphas_cumprod, schedule.float())  # the zoo's schedule is the same one
    f_a = _hand_features(zoo.unet, zoo.alphas_cumprod, x)
    f_b = _hand_features(UNet2DModel.from_pretrained(str(folder)), schedule, x)
    np.testing.assert_allclose(comp.features["a"]["penultimate"], f_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(comp.features["b"]["penultimate"], f_b, rtol=1e-5, atol=1e-6)
    value = float(comp.table["value"].iloc[0])
    assert value == pytest.approx(_cka(f_a, f_b), abs=1e-6)
    assert value < 0.9  # two different models
    assert "noise_seed=0" in comp.inputs


def test_noise_seed_and_timesteps_set_the_draws(tmp_path):
    a, b, x = _zoo(0), _zoo(1), _images()
    first = compare_models(a, b, x, measures=["cka"], progress=False)
    base = first.table["value"].iloc[0]
    assert compare_models(a, b, x, measures=["cka"], noise_seed=0, progress=False).table["value"].iloc[0] == base
    seeded = compare_models(a, b, x, measures=["cka"], noise_seed=5, progress=False)
    other = seeded.table["value"].iloc[0]
    assert abs(other - base) > 1e-5  # untrained tiny UNets: a small but real change
    assert np.abs(seeded.features["a"]["penultimate"] - first.features["a"]["penultimate"]).max() > 1e-2
    expected = _cka(_hand_features(a.unet, a.alphas_cumprod, x, 5), _hand_features(b.unet, b.alphas_cumprod, x, 5))
    assert other == pytest.approx(expected, abs=1e-6)
    fixed = compare_models(a, b, x, measures=["cka"], noise_seed=2, timesteps=40, progress=False)
    expected = _cka(
        _hand_features(a.unet, a.alphas_cumprod, x, 2, 40), _hand_features(b.unet, b.alphas_cumprod, x, 2, 40)
    )
    assert fixed.table["value"].iloc[0] == pytest.approx(expected, abs=1e-6)
    per_input = compare_models(a, b, x, measures=["cka"], noise_seed=2, timesteps=np.full(N, 40), progress=False)
    assert per_input.table["value"].iloc[0] == fixed.table["value"].iloc[0]


def test_a_train_checkpoint_and_its_diffusers_export_read_the_same(tmp_path):
    from reprsim.train import train

    x = _images(16)
    cfg = {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "num_threads": 1}
    trained = train(
        _zoo(), (x, torch.arange(16) % K), cfg, seed=0, checkpoint_dir=tmp_path / "ck", progress=False
    ).model
    trained.unet.save_pretrained(tmp_path / "hf")
    comp = compare_models(str(tmp_path / "ck"), str(tmp_path / "hf"), x, layers="all", measures=["cka"], progress=False)
    assert comp.layers_a == ["down.0", "down.1", "mid", "up.0", "up.1", "penultimate"] == comp.layers_b
    for layer in comp.layers_a:  # the same weights and x_t: the same features
        np.testing.assert_array_equal(comp.features["a"][layer], comp.features["b"][layer])
    np.testing.assert_allclose(np.diag(comp.matrix("cka")), 1.0, atol=1e-5)
    f_a = _hand_features(trained.unet, trained.alphas_cumprod, x)
    np.testing.assert_allclose(comp.features["a"]["penultimate"], f_a, rtol=1e-5, atol=1e-6)


def test_bad_diffusion_options_are_one_clear_error(tmp_path):
    mlp = models.build("mlp", input_shape=SHAPE, num_classes=K, hidden=[8], seed=0)
    x, unet = _images(), _zoo()
    with pytest.raises(ValueError, match="noise_seed= / timesteps=.*diffusion UNets; neither model is one"):
        compare_models(mlp, mlp, x, noise_seed=1, progress=False)
    with pytest.raises(ValueError, match="no class output to attack"):
        compare_models(unet, unet, x, labels=np.arange(N) % K, attack="fgsm", progress=False)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 1000\).*1000"):
        compare_models(unet, unet, x, timesteps=1000, progress=False)
    with pytest.raises(ValueError, match=r"\(24,\) ints"):
        compare_models(unet, unet, x, timesteps=np.zeros(5, dtype=int), progress=False)
    with pytest.raises(ReprsimError, match=r"model A .* cannot take images of shape \(3, 12, 12\).*\(N, 1, 12, 12\)"):
        compare_models(unet, unet, torch.rand(N, 3, 12, 12), progress=False)
    with pytest.raises(ValueError, match="take images .* got texts"):
        compare_models(unet, unet, ["a text", "another"], progress=False)


def test_cli_diffusers_folders_and_one_line_errors(tmp_path, monkeypatch, capsys):
    a, b = _diffusers_folder(tmp_path / "a", 1), _diffusers_folder(tmp_path / "b", 2)
    x = _images()
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", np.arange(N) % K)
    assert (
        main(
            [
                "compare-models",
                str(a),
                str(b),
                "--probe",
                str(tmp_path / "x.npy"),
                "-m",
                "cka",
                "--noise-seed",
                "3",
                "--timestep",
                "7",
                "--format",
                "json",
                "--quiet",
            ]
        )
        == 0
    )
    value = json.loads(capsys.readouterr().out)[0]["value"]
    schedule = DDPMScheduler().alphas_cumprod
    expected = _cka(
        _hand_features(UNet2DModel.from_pretrained(str(a)), schedule, x, 3, 7),
        _hand_features(UNet2DModel.from_pretrained(str(b)), schedule, x, 3, 7),
    )
    assert value == pytest.approx(expected, abs=1e-6)

    assert (
        main(
            [
                "compare-models",
                str(a),
                str(b),
                "--probe",
                str(tmp_path / "x.npy"),
                "--labels",
                str(tmp_path / "y.npy"),
                "--attack",
                "fgsm",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no class output to attack" in err[0]

    (tmp_path / "mlps.py").write_text(
        "import reprsim.models as M\n\ndef mlp():\n"
        f"    return M.build('mlp', input_shape={SHAPE}, num_classes={K}, hidden=[8])\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["compare-models", "mlps:mlp", "mlps:mlp", "--probe", "x.npy", "--noise-seed", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--noise-seed" in err[0] and "neither model is one" in err[0]


def test_a_folder_s_scheduler_config_gives_its_schedule(tmp_path):
    a, b = _diffusers_folder(tmp_path / "a", 1), _diffusers_folder(tmp_path / "b", 2)
    scheduler = DDPMScheduler(beta_end=0.01)
    for folder in (a, b):
        scheduler.save_pretrained(folder)  # scheduler_config.json beside the UNet's config.json
    x = _images()
    comp = compare_models(str(a), str(b), x, measures=["cka"], timesteps=500, progress=False)
    f_a = _hand_features(UNet2DModel.from_pretrained(str(a)), scheduler.alphas_cumprod, x, t_fixed=500)
    np.testing.assert_allclose(comp.features["a"]["penultimate"], f_a, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="different noise schedules"):  # the zoo UNet: beta_end 0.02
        compare_models(_zoo(), str(a), x, progress=False)
