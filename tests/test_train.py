"""Tests for reprsim.train: config parsing, schedules, determinism, resume, early stopping, LMs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import reprsim.models as M
from reprsim.errors import ReprsimError
from reprsim.train import TrainConfig, evaluate, evaluate_lm, train
from reprsim.training.schedule import lr_at


def _blobs(n=240, classes=3, shape=(3, 8, 8), seed=0, noise=0.15):
    """Class templates plus noise: an easy, seeded image classification problem (pixels in [0, 1])."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).random((classes, *shape), dtype=np.float32)
    y = rng.integers(0, classes, n)
    x = np.clip(templates[y] + noise * rng.standard_normal((n, *shape)).astype(np.float32), 0, 1)
    return x.astype(np.float32), y


def _mlp(seed=0, classes=3):
    return M.build("mlp", input_shape=(3, 8, 8), num_classes=classes, hidden=(32, 16), seed=seed)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


CFG = dict(epochs=4, batch_size=32, lr=0.05, warmup_epochs=0.5, label_smoothing=0.1, num_threads=1)


# --- config -----------------------------------------------------------------------------------


def test_config_from_dict_accepts_aliases_and_rejects_unknown_keys():
    cfg = TrainConfig.from_dict({"epochs": 3, "augment": {"crop_padding": 4, "hflip": True}, "iterations": 50})
    assert (cfg.epochs, cfg.crop_padding, cfg.hflip, cfg.max_steps) == (3, 4, True, 50)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"'epoch'.*did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="early_stopping_patience"):
        TrainConfig(early_stopping_patience=0)
    with pytest.raises(ValueError, match="crop_padding"):
        TrainConfig.from_dict({"augment": {"crop_padding": -1}})
    with pytest.raises(ValueError, match="augment"):
        TrainConfig.from_dict({"augment": {"cutout": 4}})


def test_lr_schedules_known_values():
    kw = dict(base_lr=1.0, total_steps=110, warmup_steps=10, steps_per_epoch=10, epochs=11)
    assert lr_at(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(9, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(10, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(60, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_at(110, schedule="cosine", **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(60, schedule="cosine", min_lr_ratio=0.1, **kw) == pytest.approx(0.55)
    assert lr_at(35, schedule="triangular", **kw) == pytest.approx(0.75)
    assert lr_at(50, schedule="constant", **kw) == 1.0
    assert lr_at(45, schedule="step", step_size=2, step_gamma=0.5, **kw) == pytest.approx(0.25)


# --- classifiers ----------------------------------------------------------------------------


def test_same_seed_bit_identical_weights_other_seed_differs():
    data = _blobs()
    runs = [train(_mlp(), data, CFG, seed=s, progress=False).model for s in (0, 0, 1)]
    assert _same_weights(runs[0], runs[1])
    assert not _same_weights(runs[0], runs[2])


def test_cnn_learns_with_augmentation_and_reports_metrics():
    x, y = _blobs(n=320, shape=(3, 16, 16))
    model = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=0)
    result = train(
        model,
        (x, y),
        dict(CFG, epochs=3, crop_padding=2, hflip=True),
        seed=0,
        eval_dataset=_blobs(n=100, shape=(3, 16, 16), seed=5),
        progress=False,
    )
    assert result.train_accuracy > 0.9 and result.eval_accuracy > 0.9
    assert result.eval_accuracy == pytest.approx(evaluate(model, _blobs(n=100, shape=(3, 16, 16), seed=5)))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert {"lr", "train_accuracy", "eval_accuracy", "eval_loss", "seconds"} <= set(result.history[0])
    assert result.steps == 3 * math.ceil(320 / 32) and result.seconds > 0
    assert result.checkpoint_path is None and result.perplexity is None


def test_uint8_and_torch_dataset_inputs_match_float_inputs():
    x, y = _blobs(n=96)
    x8 = (x * 255).round().astype(np.uint8)
    a = train(_mlp(), (x8, y), dict(CFG, epochs=1), seed=0, progress=False).model
    b = train(_mlp(), (x8.astype(np.float32) / 255, y), dict(CFG, epochs=1), seed=0, progress=False).model
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x8.astype(np.float32) / 255), torch.from_numpy(y))
    c = train(_mlp(), ds, dict(CFG, epochs=1), seed=0, progress=False).model
    for other in (b, c):
        for p, q in zip(a.parameters(), other.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    data = _blobs()
    cfg = dict(CFG, epochs=5, optimizer="sgd", crop_padding=1, hflip=True)
    reference = train(_mlp(), data, cfg, seed=3, progress=False)

    def stop_after_two(entry):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_mlp(), data, cfg, seed=3, checkpoint_dir=tmp_path, progress=False, callback=stop_after_two)
    assert (tmp_path / "last.safetensors").is_file() and (tmp_path / "last.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    seen = []
    resumed = train(_mlp(), data, cfg, seed=3, checkpoint_dir=tmp_path, progress=False, callback=seen.append)
    assert resumed.resumed_from_epoch == 2 and [e["epoch"] for e in seen] == [3, 4, 5]
    assert _same_weights(reference.model, resumed.model)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in reference.history]
    assert resumed.checkpoint_path == tmp_path / "model.safetensors"
    assert (tmp_path / "model.json").is_file()
    # a finished run is loaded, not retrained
    seen.clear()
    again = train(_mlp(seed=9), data, cfg, seed=3, checkpoint_dir=tmp_path, progress=False, callback=seen.append)
    assert seen == [] and _same_weights(again.model, reference.model)
    assert again.train_accuracy == pytest.approx(reference.train_accuracy)
    with pytest.raises(ReprsimError, match="another run"):
        train(_mlp(), data, cfg, seed=4, checkpoint_dir=tmp_path, progress=False)


def test_resume_with_adamw_and_early_stopping_state(tmp_path):
    data, val = _blobs(), _blobs(n=60, seed=8)
    cfg = dict(CFG, epochs=4, optimizer="adamw", lr=3e-3, weight_decay=0.01, early_stopping_patience=3)
    reference = train(_mlp(), data, cfg, seed=1, eval_dataset=val, progress=False)

    def stop(entry):
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_mlp(), data, cfg, seed=1, eval_dataset=val, checkpoint_dir=tmp_path, progress=False, callback=stop)
    resumed = train(_mlp(), data, cfg, seed=1, eval_dataset=val, checkpoint_dir=tmp_path, progress=False)
    assert _same_weights(reference.model, resumed.model)


def test_early_stopping_restores_best_weights():
    x, _ = _blobs(n=200)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)  # random labels: held-out accuracy cannot keep improving
    cfg = dict(
        epochs=30,
        batch_size=32,
        lr=0.1,
        schedule="constant",
        early_stopping_patience=2,
        val_fraction=0.25,
        num_threads=1,
    )
    result = train(_mlp(), (x, y), cfg, seed=0, progress=False)
    assert result.stopped_early and len(result.history) < 30
    best = max(h["val_accuracy"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_accuracy"] == best
    assert result.metrics["val_accuracy"] == pytest.approx(best)
    with pytest.raises(ValueError, match="held-out"):
        train(_mlp(), (x, y), dict(cfg, val_fraction=0.0), seed=0, progress=False)


def test_bad_datasets_raise_clear_errors():
    x, y = _blobs(n=20)
    with pytest.raises(ValueError, match="num_classes"):
        train(_mlp(classes=2), (x, y), CFG, seed=0, progress=False)
    with pytest.raises(ValueError, match="labels"):
        train(_mlp(), (x, y[:10]), CFG, seed=0, progress=False)
    with pytest.raises(TypeError, match="tuple"):
        train(_mlp(), {"x": x}, CFG, seed=0, progress=False)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train(_mlp(), (bad, y), CFG, seed=0, progress=False)
    with pytest.raises(TypeError, match="seed"):
        train(_mlp(), (x, y), CFG, seed=1.5, progress=False)


def test_evaluate_known_accuracy_and_thread_setting_restored():
    class FirstPixel(nn.Module):
        def forward(self, x):
            return nn.functional.one_hot(x[:, 0].long(), 3).float()

    x = torch.tensor([[0.0], [1.0], [2.0], [2.0]])
    y = torch.tensor([0, 1, 1, 2])
    assert evaluate(FirstPixel(), (x, y), batch_size=3) == 0.75
    before = torch.get_num_threads()
    train(_mlp(), _blobs(n=64), dict(CFG, epochs=1, num_threads=1), seed=0, progress=False)
    assert torch.get_num_threads() == before


# --- language models --------------------------------------------------------------------------


def _gpt(seed=0):
    return M.build("gpt", vocab_size=12, block_size=16, preset="nano", seed=seed)


LM_CFG = dict(
    optimizer="adamw",
    lr=5e-3,
    batch_size=16,
    block_size=16,
    max_steps=60,
    eval_interval=20,
    eval_batches=2,
    warmup_steps=5,
    grad_clip=1.0,
    weight_decay=0.1,
    num_threads=1,
)


def test_gpt_learns_a_periodic_sequence_and_reports_perplexity():
    tokens = np.tile(np.arange(12), 100)
    result = train(_gpt(), [tokens[:600], tokens[600:]], LM_CFG, seed=0, eval_dataset=tokens[:300], progress=False)
    assert len(result.history) == 3 and result.steps == 60
    assert result.eval_loss < 0.3
    assert result.perplexity == pytest.approx(math.exp(result.eval_loss))
    assert result.eval_loss == pytest.approx(evaluate_lm(result.model, tokens[:300], 16, batch_size=16, batches=2))
    assert result.train_accuracy is None


def test_gpt_training_deterministic_and_resumable(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 12, 2000)
    a = train(_gpt(), tokens, LM_CFG, seed=2, progress=False).model
    b = train(_gpt(), tokens, LM_CFG, seed=2, progress=False).model
    assert _same_weights(a, b)

    def stop(entry):
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_gpt(), tokens, LM_CFG, seed=2, checkpoint_dir=tmp_path, progress=False, callback=stop)
    c = train(_gpt(), tokens, LM_CFG, seed=2, checkpoint_dir=tmp_path, progress=False).model
    assert _same_weights(a, c)
    assert c.lm_head.weight is c.wte.weight  # weight tying survives checkpoint loading


def test_lm_dataset_errors():
    with pytest.raises(ValueError, match="block_size"):
        train(_gpt(), np.arange(10) % 12, LM_CFG, seed=0, progress=False)
    with pytest.raises(ValueError, match="vocab_size"):
        train(_gpt(), np.arange(100), LM_CFG, seed=0, progress=False)


def _smooth_images(n, classes=10, seed=0):
    """Classes of smooth colour patterns (4x4 random grids upsampled to 32x32) plus noise."""
    grids = torch.rand(classes, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    templates = torch.nn.functional.interpolate(grids, size=32, mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = (templates[y] + 0.3 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(0, 1)
    return x.numpy(), y.numpy()


@pytest.mark.slow
def test_end_to_end_cnn_on_32px_images_with_checkpoints(tmp_path):
    x, y = _smooth_images(2000)
    xt, yt = _smooth_images(500, seed=1)
    cfg = dict(epochs=4, batch_size=64, lr=0.05, warmup_epochs=0.5, crop_padding=2, num_threads=1)
    model = M.build("cnn", input_shape=(3, 32, 32), num_classes=10, seed=0)
    result = train(model, (x, y), cfg, seed=0, eval_dataset=(xt, yt), checkpoint_dir=tmp_path, progress=False)
    assert result.eval_accuracy > 0.8
    from safetensors.torch import load_file

    weights = load_file(str(result.checkpoint_path))
    assert all(torch.equal(weights[k], v) for k, v in result.model.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_gpu_with_mixed_precision_learns():
    data = _blobs()
    result = train(_mlp(), data, dict(CFG, num_threads=None), seed=0, device="cuda", progress=False)
    assert result.train_accuracy > 0.9
    assert next(result.model.parameters()).device.type == "cuda"


def test_a_batch_norm_model_skips_a_last_batch_of_one_example() -> None:
    """n = batch_size + 1: the lone last example cannot be batch-normalised in training mode, so a
    model with BatchNorm takes one step per epoch (the other models still take two)."""
    from torch import nn

    from reprsim.train import TrainConfig, train

    torch.manual_seed(0)
    x, y = torch.randn(9, 4), torch.arange(9) % 2
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.01, eval_every=2)
    result = train(bn, (x, y), cfg, seed=0)
    assert result.steps == 2  # one batch of 8 per epoch; the ninth example is left out
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert train(plain, (x, y), cfg, seed=0).steps == 4  # without BatchNorm every example is used
