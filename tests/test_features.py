"""Tests for reprsim.features: pooling, batching invariance, modes, caching and hashing."""

import numpy as np
import pytest
import torch
from torch import nn

import reprsim.models as M
from reprsim.features import extract, inputs_hash, pool_features, state_hash


def _cnn(seed=0):
    return M.build("cnn", input_shape=(3, 16, 16), num_classes=4, seed=seed)


def _images(n=20, seed=0):
    return np.random.default_rng(seed).random((n, 3, 16, 16), dtype=np.float32)


def test_pool_features_known_values():
    seq = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    torch.testing.assert_close(pool_features(seq, "mean"), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))
    torch.testing.assert_close(pool_features(seq, "avg"), pool_features(seq, "mean"))
    torch.testing.assert_close(pool_features(seq, "last"), torch.tensor([[4.0, 5.0], [10.0, 11.0]]))
    torch.testing.assert_close(pool_features(seq, 0), torch.tensor([[0.0, 1.0], [6.0, 7.0]]))
    torch.testing.assert_close(pool_features(seq, -2), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))
    assert pool_features(seq, "flatten").shape == (2, 6)
    fmap = torch.ones(2, 3, 4, 5)
    fmap[:, 1] = 3.0
    torch.testing.assert_close(pool_features(fmap, "avg"), torch.tensor([[1.0, 3.0, 1.0]] * 2))
    assert pool_features(fmap, "flatten").shape == (2, 60)
    flat = torch.randn(3, 4)
    assert pool_features(flat, "avg") is flat
    with pytest.raises(ValueError, match="token sequence"):
        pool_features(fmap, "last")
    with pytest.raises(ValueError, match="outside"):
        pool_features(seq, 3)
    with pytest.raises(ValueError, match="already"):
        pool_features(flat, "last")
    with pytest.raises(ValueError, match="Unknown pool"):
        pool_features(seq, "max")
    with pytest.raises(TypeError):
        pool_features(seq, 1.5)


def test_batch_size_does_not_change_features_and_modes_are_restored():
    model = _cnn()
    model.train()
    x = _images(23)
    a = extract(model, x, layers=["block2", "penultimate"], batch_size=5)
    b = extract(model, x, layers=["block2", "penultimate"], batch_size=256)
    assert model.training  # restored
    for k in a:
        assert a[k].dtype == np.float32 and a[k].shape[0] == 23
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    # eval mode: BatchNorm uses running statistics, so one image alone gives the same row
    single = extract(model, x[3:4], layers="penultimate")["penultimate"]
    np.testing.assert_allclose(single[0], a["penultimate"][3], rtol=1e-5, atol=1e-6)
    assert a["block2"].shape == (23, 64)  # average-pooled spatial map
    flat = extract(model, x, layers="block2", pool="flatten")["block2"]
    assert flat.shape == (23, 64 * 4 * 4)
    np.testing.assert_allclose(flat.reshape(23, 64, 16).mean(-1), a["block2"], rtol=1e-5, atol=1e-6)


def test_per_layer_pool_mapping_and_default_layer():
    gpt = M.build("gpt", vocab_size=11, block_size=6, preset="nano", seed=0)
    ids = np.random.default_rng(0).integers(0, 11, (7, 6))
    default = extract(gpt, ids)
    assert list(default) == ["penultimate"] and default["penultimate"].shape == (7, 64)
    out = extract(gpt, ids, layers=["penultimate", "blocks.1"], pool={"penultimate": "last", "blocks.1": 2})
    gpt.eval()
    with torch.no_grad():
        hidden = {}
        h = gpt.ln_f.register_forward_hook(lambda m, i, o: hidden.setdefault("h", o))
        gpt(torch.from_numpy(ids))
        h.remove()
    np.testing.assert_allclose(out["penultimate"], hidden["h"][:, -1].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no entry"):
        extract(gpt, ids, layers=["penultimate", "blocks.0"], pool={"penultimate": "last"})


def test_uint8_images_are_scaled_and_dataset_inputs_work():
    model = _cnn()
    raw = np.random.default_rng(1).integers(0, 256, (9, 3, 16, 16), dtype=np.uint8)
    a = extract(model, raw)["penultimate"]
    b = extract(model, raw.astype(np.float32) / 255)["penultimate"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(raw.astype(np.float32) / 255), torch.zeros(9))
    c = extract(model, ds, batch_size=4)["penultimate"]
    np.testing.assert_allclose(c, b, rtol=1e-5, atol=1e-6)


def test_no_gradients_are_recorded():
    model = _cnn()
    x = torch.from_numpy(_images(4)).requires_grad_(True)
    extract(model, x)
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None


def test_cache_reuses_and_invalidates(tmp_path):
    model = _cnn()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    x = _images(10)
    first = extract(model, x, layers=["penultimate", "pool"], cache_dir=tmp_path)
    n_forward = len(calls)
    assert n_forward == 1
    again = extract(model, x, layers=["penultimate", "pool"], cache_dir=tmp_path)
    assert len(calls) == n_forward  # served from disk
    np.testing.assert_array_equal(first["penultimate"], again["penultimate"])
    extract(model, x, layers="penultimate", pool="flatten", cache_dir=tmp_path)  # pooling is in the key
    assert len(calls) == 2
    assert len(list(tmp_path.glob("*.npy"))) == 3
    extract(model, x[:5], layers="penultimate", cache_dir=tmp_path)  # new probe set
    assert len(calls) == 3
    with torch.no_grad():
        model.head.weight.add_(1.0)  # head is not in the penultimate path, but the state hash changes
    extract(model, x, layers="penultimate", cache_dir=tmp_path)
    assert len(calls) == 4
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x))
    with pytest.raises(ValueError, match="cache_key"):
        extract(model, ds, cache_dir=tmp_path)
    extract(model, ds, cache_dir=tmp_path, cache_key="probe-a")
    extract(model, ds, cache_dir=tmp_path, cache_key="probe-a")
    assert len(calls) == 5
    short = extract(model, x[:4], cache_dir=tmp_path, cache_key="probe-a")  # stale key: row count differs
    assert len(calls) == 6 and short["penultimate"].shape[0] == 4


def test_state_and_input_hashes():
    a, b, c = _cnn(0), _cnn(0), _cnn(1)
    assert state_hash(a) == state_hash(b) != state_hash(c)
    assert len(state_hash(a)) == 32
    x = _images(3)
    assert inputs_hash(x) == inputs_hash(torch.from_numpy(x.copy())) != inputs_hash(x[:2])


def test_errors_name_the_problem():
    model = _cnn()
    with pytest.raises(ValueError, match="valid names"):
        extract(model, _images(2), layers="block9")
    with pytest.raises(ValueError, match="batch_size"):
        extract(model, _images(2), batch_size=0)
    with pytest.raises(ValueError, match="distinct"):
        extract(model, _images(2), layers=["pool", "pool"])
    with pytest.raises(ValueError, match="non-empty"):
        extract(model, np.zeros((0, 3, 16, 16), dtype=np.float32))
    with pytest.raises(TypeError, match="nn.Module"):
        extract(lambda x: x, _images(2))
    with pytest.raises(RuntimeError, match="not called"):
        extract(_Unused(), np.zeros((2, 2), dtype=np.float32), layers="extra")


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(2, 2)
        self.extra = nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_and_cpu_features_agree():
    model = _cnn()
    x = _images(16)
    cpu = extract(model, x, layers=["block1", "penultimate"], device="cpu")
    gpu = extract(model, x, layers=["block1", "penultimate"], device="cuda")
    assert next(model.parameters()).device.type == "cpu"  # moved back
    for k in cpu:
        np.testing.assert_allclose(cpu[k], gpu[k], rtol=1e-3, atol=1e-4)


def test_pool_features_with_an_attention_mask_uses_real_tokens_only():
    seq = torch.arange(2 * 4 * 2, dtype=torch.float32).view(2, 4, 2)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(pool_features(seq, "mean", mask), torch.tensor([[1.0, 2.0], [11.0, 12.0]]))
    torch.testing.assert_close(pool_features(seq, "last", mask), torch.tensor([[2.0, 3.0], [14.0, 15.0]]))
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # left padding: the last real token is the last one
    torch.testing.assert_close(pool_features(seq, "last", left), torch.tensor([[6.0, 7.0], [14.0, 15.0]]))
    torch.testing.assert_close(pool_features(seq, 0, mask), seq[:, 0])  # positions ignore the mask
    fmap = torch.ones(2, 3, 4, 4)
    torch.testing.assert_close(pool_features(fmap, "avg", mask), torch.ones(2, 3))  # not a sequence: unchanged
    with pytest.raises(ValueError, match="no real token"):
        pool_features(seq, "mean", torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))


class _MaskedEncoder(nn.Module):
    """A bidirectional toy encoder: every position sees the mean of the (unmasked) others."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.mix = nn.Linear(6, 6)

    def forward(self, ids, attention_mask=None):
        h = self.embed(ids)
        w = torch.ones(ids.shape, dtype=h.dtype) if attention_mask is None else attention_mask.to(h.dtype)
        ctx = (h * w[..., None]).sum(1, keepdim=True) / w.sum(1, keepdim=True)[..., None]
        return self.mix(h + ctx)


def _padded(seqs, pad=0):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def test_padded_and_unpadded_batches_give_the_same_features():
    torch.manual_seed(0)
    model = _MaskedEncoder()
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10], [3, 3, 3, 3]]
    ids, mask = _padded(seqs, pad=11)
    batched = extract(model, {"input_ids": ids, "attention_mask": mask}, layers=["mix", "embed"], batch_size=3)
    same = extract(model, ids, layers=["mix", "embed"], attention_mask=mask, batch_size=3)
    for i, s in enumerate(seqs):
        alone = extract(model, torch.tensor([s]), layers=["mix", "embed"])
        for k in alone:
            np.testing.assert_allclose(batched[k][i], alone[k][0], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(same[k][i], alone[k][0], rtol=1e-6, atol=1e-6)
    unmasked = extract(model, ids, layers="mix")["mix"]  # the old behaviour: padding pooled in
    assert not np.allclose(unmasked[0], batched["mix"][0], atol=1e-3)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        extract(model, ids, attention_mask=mask[:, :2])
    with pytest.raises(ValueError, match="given twice"):
        extract(model, {"input_ids": ids, "attention_mask": mask}, attention_mask=mask)


def test_causal_model_without_a_mask_argument_is_padded_on_the_right(tmp_path):
    gpt = M.build("gpt", vocab_size=11, block_size=8, preset="nano", seed=0)
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    ids, mask = _padded(seqs)
    with pytest.warns(UserWarning, match="takes no attention_mask"):
        feats = extract(gpt, ids, attention_mask=mask, pool="mean")["penultimate"]
    with pytest.warns(UserWarning):
        last = extract(gpt, ids, attention_mask=mask, pool="last")["penultimate"]
    for i, s in enumerate(seqs):  # causal attention: the real tokens never see the padding after them
        np.testing.assert_allclose(
            feats[i], extract(gpt, torch.tensor([s]), pool="mean")["penultimate"][0], rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            last[i], extract(gpt, torch.tensor([s]), pool="last")["penultimate"][0], rtol=1e-5, atol=1e-5
        )
    # the mask is part of the cache key
    with pytest.warns(UserWarning):
        a = extract(gpt, ids, attention_mask=mask, cache_dir=tmp_path)["penultimate"]
    b = extract(gpt, ids, cache_dir=tmp_path)["penultimate"]
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not np.allclose(a, b)
