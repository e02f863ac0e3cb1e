"""The diffusion UNet (reprsim.models.unet) and what training it needs from the one loop:
a model-defined training loss and EMA weights (TrainConfig.ema_decay)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from reprsim import models
from reprsim.models.unet import (
    DiffusionUNet,
    MissingDiffusers,
    denoising_features,
    denoising_loss,
    eval_draws,
    mean_std_pool,
    stratified_draws,
)
from reprsim.train import TrainConfig, train
from reprsim.training.parts import EMA


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)


def _unet(k: int = 3, shape=(1, 12, 12), **kw) -> DiffusionUNet:
    return models.build("unet_tiny", input_shape=shape, num_classes=k, seed=0, **kw)


def _images(n=8, shape=(1, 12, 12), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


# ---- the model ---------------------------------------------------------------------------------
def test_zoo_unets_are_class_conditional_with_a_null_class():
    assert {"unet", "unet_tiny", "unet_small", "unet_paper"} <= set(models.available())
    assert models.zoo.model_kind("unet_small") == "unet"
    m = _unet(k=5)
    assert m.unet.config.class_embed_type == "timestep" and m.unet.config.num_class_embeds == 6
    assert m.null_class == 5 and m.num_classes == 5
    assert models.layers(m)[-1] == "penultimate" and models.default_layer(m) == "penultimate"
    assert models.resolve_layer(m, "penultimate") == (m.unet.conv_out, True)
    paper = models.build("unet_paper", input_shape=(3, 32, 32), num_classes=5)
    cfg = paper.unet.config
    assert tuple(cfg.block_out_channels) == (96, 192, 192) and cfg.layers_per_block == 2
    assert tuple(cfg.down_block_types) == ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    assert tuple(cfg.up_block_types) == ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    assert cfg.dropout == 0.1 and cfg.attention_head_dim == 8 and cfg.num_class_embeds == 6
    with pytest.raises(ValueError, match="unknown option"):
        models.build("unet_tiny", input_shape=(1, 12, 12), num_classes=3, width=4)
    with pytest.raises(ValueError, match="input_shape"):
        models.build("unet_tiny")


def test_forward_pads_to_the_unet_multiple_and_crops_back():
    three = {
        "block_out_channels": (4, 8, 8),
        "down_block_types": ("DownBlock2D",) * 3,
        "up_block_types": ("UpBlock2D",) * 3,
    }
    m = models.build("unet_tiny", input_shape=(3, 30, 30), num_classes=2, seed=0, **three).eval()
    assert m.padded_size == (32, 32)  # three levels: sizes must be multiples of 4
    assert models.build("unet_small", input_shape=(1, 28, 28), num_classes=2).padded_size == (28, 28)
    x = torch.randn(2, 3, 30, 30)
    out = m(x, torch.tensor([3, 900]), torch.tensor([0, 1]))
    assert out.shape == (2, 3, 30, 30)
    # no class label = the null class
    torch.testing.assert_close(m(x, torch.tensor([3, 900])), m(x, torch.tensor([3, 900]), torch.tensor([2, 2])))
    with pytest.raises(ValueError, match=r"\(N, 3, 30, 30\)"):
        m(torch.randn(2, 1, 30, 30), torch.tensor([1, 2]))


def test_add_noise_is_the_ddpm_forward_process_of_diffusers():
    from diffusers import DDPMScheduler

    m = _unet()
    x0, noise = torch.rand(4, 1, 12, 12) * 2 - 1, torch.randn(4, 1, 12, 12)
    t = torch.tensor([0, 10, 500, 999])
    want = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").add_noise(x0, noise, t)
    torch.testing.assert_close(m.add_noise(x0, noise, t), want)


def test_training_loss_draws_t_noise_and_dropout_from_the_generator_in_order():
    m = _unet(k=3).train()
    x, y = _images(), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss = m.training_loss(x, y, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (8,), generator=gen)
    noise = torch.randn((8, 1, 12, 12), generator=gen)
    drop = torch.rand(8, generator=gen) < 0.1
    labels = torch.where(drop, torch.full_like(y, 3), y)
    want = torch.nn.functional.mse_loss(m(m.add_noise(2 * x - 1, noise, t), t, labels), noise)
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    # label dropout replaces labels by the null class (id k) only in train mode
    all_null = _unet(k=3, label_dropout=0.999).train()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with torch.no_grad():
        dropped = all_null.training_loss(x, y, g1)
        gen_t = torch.randint(0, 1000, (8,), generator=g2)
        gen_n = torch.randn((8, 1, 12, 12), generator=g2)
        null = all_null(all_null.add_noise(2 * x - 1, gen_n, gen_t), gen_t, None)
    assert float(dropped) == pytest.approx(float(torch.nn.functional.mse_loss(null, gen_n)), rel=1e-6)
    with pytest.raises(ValueError, match="num_classes >= 4"):
        m.training_loss(x, torch.full((8,), 3), torch.Generator())


def test_mean_std_pool_is_channel_mean_then_population_std():
    t = torch.arange(2 * 2 * 4, dtype=torch.float32).reshape(2, 2, 2, 2)
    pooled = mean_std_pool(t)
    assert pooled.shape == (2, 4)
    # channel 0 of image 0 holds 0, 1, 2, 3: mean 1.5, population std sqrt(1.25)
    torch.testing.assert_close(pooled[0], torch.tensor([1.5, 5.5, 1.25**0.5, 1.25**0.5]))
    with pytest.raises(ValueError, match="spatial map"):
        mean_std_pool(torch.ones(2, 3))


def test_denoising_features_and_loss_use_the_given_draws():
    m = _unet(k=3)
    x = _images(6).numpy()
    noise, t = eval_draws(6, (1, 12, 12), seed=3)
    assert noise.dtype == np.float32 and t.dtype == np.int64 and t.min() >= 0 and t.max() < 1000
    feats = denoising_features(m, x, noise, t, layers=["penultimate", "mid"], batch_size=4)
    assert feats["penultimate"].shape == (6, 8) and feats["mid"].shape == (6, 16)  # 2 × 4 and 2 × 8 channels
    again = denoising_features(m, x, noise, t, layers=["penultimate"], batch_size=6)["penultimate"]
    np.testing.assert_allclose(again, feats["penultimate"], rtol=1e-5, atol=1e-6)  # batching does not matter
    # the loss: 3 noised copies per image, t stratified over [0, 333), [333, 666), [666, 1000)
    noise3, t3 = stratified_draws(6, 3, (1, 12, 12), seed=3)
    assert noise3.shape == (18, 1, 12, 12) and [int(v) // 334 for v in t3[:3]] == [0, 1, 2]
    labels = np.array([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        x0 = torch.from_numpy(np.repeat(2 * x - 1, 3, axis=0))
        eps = m(
            m.add_noise(x0, torch.from_numpy(noise3), torch.from_numpy(t3)),
            torch.from_numpy(t3),
            torch.from_numpy(np.repeat(labels, 3)),
        )
    want = float(((eps - torch.from_numpy(noise3)) ** 2).mean())
    assert denoising_loss(m, x, labels, seed=3, draws=3, batch_size=4) == pytest.approx(want, rel=1e-5)
    assert np.isnan(denoising_loss(m, x[:0], np.zeros(0), seed=3))
    with pytest.raises(ValueError, match="must be"):
        denoising_features(m, x, noise[:3], t, layers=["penultimate"])


def test_sampling_is_seeded_and_returns_pixels():
    m = _unet(k=2)
    a = m.sample([0, 1, 1], seed=4, steps=3)
    b = m.sample([0, 1, 1], seed=4, steps=3)
    assert a.shape == (3, 1, 12, 12) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, m.sample([0, 1, 1], seed=5, steps=3))


def test_the_ddim_sampler_recovers_the_image_of_an_exact_denoiser(monkeypatch):
    """For data holding one image x*, the optimal ε-prediction is (x_t − √ᾱ_t·x*) / √(1 − ᾱ_t): with it,
    deterministic DDIM (and guidance, as conditional = unconditional) must end exactly at x*."""
    m = _unet(k=2, shape=(1, 8, 8))
    target = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def exact(x_t, t, labels=None):
        ab = m.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * (2 * target - 1)) / (1 - ab).sqrt()

    monkeypatch.setattr(m, "forward", exact)
    samples = m.sample([0, 1, 1], seed=3, steps=10, guidance_scale=3.0)
    torch.testing.assert_close(samples, target.expand(3, 1, 8, 8), rtol=0, atol=1e-5)


def test_missing_diffusers_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(MissingDiffusers, match=r"pip install 'reprsim\[diffusion\]'"):
        models.build("unet_tiny", input_shape=(1, 12, 12), num_classes=3)


# ---- training: the model's own loss and EMA ----------------------------------------------------
CFG = {
    "epochs": 3,
    "batch_size": 8,
    "optimizer": "adamw",
    "lr": 0.003,
    "weight_decay": 0.0,
    "hflip": True,
    "grad_clip": 1.0,
    "num_threads": 1,
}


def _data(n=16):
    x = _images(n)
    return x, torch.arange(n) % 3


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_model_with_a_training_loss_trains_on_it_deterministically():
    data = _data()
    first = train(_unet(), data, CFG, seed=3, eval_dataset=_data(8), progress=False)
    second = train(_unet(), data, CFG, seed=3, eval_dataset=_data(8), progress=False)
    assert _same(first.model, second.model)
    assert not _same(first.model, _unet())
    assert first.train_accuracy is None and first.eval_accuracy is None
    assert all(h["train_accuracy"] is None and np.isfinite(h["train_loss"]) for h in first.history)
    assert first.eval_loss is not None and 0 < first.eval_loss < 2
    other = train(_unet(), data, CFG, seed=4, progress=False)
    assert not _same(first.model, other.model)


def test_ema_follows_the_diffusers_warm_up():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, 0.9)
    assert [ema.decay_at(u) for u in (1, 2, 3)] == [0.0, 2 / 11, 3 / 12]
    assert ema.decay_at(10_000) == 0.9
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model, 1)  # decay 0: the average is the weights
    assert float(ema.shadow["weight"]) == 2.0
    with torch.no_grad():
        model.weight.fill_(13.0)
    ema.update(model, 2)  # 2/11 · 2 + 9/11 · 13 = 11
    assert float(ema.shadow["weight"]) == pytest.approx(11.0)
    with ema.applied(model):
        assert model.weight.item() == pytest.approx(11.0)
    assert model.weight.item() == 13.0


def test_training_with_ema_returns_the_average_of_the_weights():
    """One step per epoch at a constant rate: EMA after 2 steps = 2/11 · w1 + 9/11 · w2."""
    x, y = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 2
    cfg = {"batch_size": 12, "optimizer": "adamw", "lr": 0.05, "schedule": "constant", "num_threads": 1}

    def mlp():
        return models.build("mlp", input_shape=(4,), num_classes=2, hidden=[8], seed=0)

    w1 = train(mlp(), (x, y), dict(cfg, epochs=1), seed=0, progress=False).model.state_dict()
    w2 = train(mlp(), (x, y), dict(cfg, epochs=2), seed=0, progress=False).model.state_dict()
    averaged = train(mlp(), (x, y), dict(cfg, epochs=2, ema_decay=0.99), seed=0, progress=False).model.state_dict()
    for name in w2:
        torch.testing.assert_close(averaged[name], 2 / 11 * w1[name] + 9 / 11 * w2[name])


def test_ema_training_resumes_bit_identically(tmp_path):
    cfg = dict(CFG, ema_decay=0.999)
    reference = train(_unet(), _data(), cfg, seed=1, progress=False)

    def stop(entry):
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_unet(), _data(), cfg, seed=1, checkpoint_dir=tmp_path, progress=False, callback=stop)
    resumed = train(_unet(), _data(), cfg, seed=1, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from_epoch == 1 and _same(reference.model, resumed.model)
    plain = train(_unet(), _data(), CFG, seed=1, progress=False)
    assert not _same(reference.model, plain.model)  # the EMA weights, not the last ones


def test_ema_decay_is_validated():
    assert TrainConfig.from_dict({"ema_decay": 0.999}).ema_decay == 0.999
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="ema_decay"):
            TrainConfig(ema_decay=bad)
