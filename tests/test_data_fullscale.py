"""User-path loaders on small files the tests create: CIFAR pickles, TinyImageNet, image folder, numpy, torch."""

import pickle

import numpy as np
import pytest

from reprsim.data import load
from reprsim.errors import ReprsimError

plt = pytest.importorskip("matplotlib.pyplot")


def _cifar_batch(n, seed, fine=True):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    d = {b"data": data}
    if fine:
        d[b"fine_labels"] = list(rng.integers(0, 100, n))
        d[b"coarse_labels"] = list(rng.integers(0, 20, n))
    else:
        d[b"labels"] = list(rng.integers(0, 10, n))
    return d


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for i in range(1, 6):
        batches.append(_cifar_batch(4, i, fine=False))
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batches[-1], protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_batch(3, 9, fine=False), protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    ds = load("cifar10", root=tmp_path)  # the parent folder works too
    assert ds.inputs.shape == (20, 3, 32, 32)
    # CIFAR rows are 1024 R, then G, then B values in row-major order
    assert ds.inputs[0, 1, 0, 0] * 255 == pytest.approx(batches[0][b"data"][0, 1024])
    assert ds.label.tolist()[:4] == [int(v) for v in batches[0][b"labels"]]
    assert ds.meta["class_names"]["label"][3] == "c3"
    assert len(load("cifar10", split="test", root=folder)) == 3


def test_cifar100_pickle_and_missing_root(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = _cifar_batch(6, 0)
    (folder / "train").write_bytes(pickle.dumps(batch, protocol=2))
    ds = load("cifar100", root=folder)
    assert set(ds.labels) == {"label", "coarse"} and ds.meta["num_classes"] == {"label": 100, "coarse": 20}
    assert ds.labels["coarse"].tolist() == [int(v) for v in batch[b"coarse_labels"]]
    with pytest.raises(ReprsimError, match="root=DIR"):
        load("cifar100")
    with pytest.raises(FileNotFoundError, match="test"):
        load("cifar100", split="test", root=folder)


def _png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, rgb)


def test_tinyimagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids))
    (root / "words.txt").write_text("n01\tgoldfish\nn02\tsalamander\n")
    for k, w in enumerate(wnids):
        for j in range(2):
            _png(root / "train" / w / "images" / f"{w}_{j}.JPEG.png", np.full((64, 64, 3), 0.2 + 0.3 * k))
    _png(root / "val" / "images" / "val_0.png", np.full((64, 64, 3), 1.0))
    (root / "val" / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t10\t10\n")
    tr = load("tinyimagenet", root=tmp_path)
    assert tr.inputs.shape == (4, 3, 64, 64) and tr.label.tolist() == [0, 0, 1, 1]
    assert tr.inputs[2].mean() == pytest.approx(0.5, abs=0.01)
    assert tr.meta["class_names"]["label"] == ["goldfish", "salamander"]
    te = load("tinyimagenet", split="test", root=root)
    assert te.label.tolist() == [1] and te.inputs.max() == pytest.approx(1.0)


def test_image_folder(tmp_path):
    for name, value in (("cats", 0.0), ("dogs", 1.0)):
        _png(tmp_path / name / "a.png", np.full((10, 12, 3), value))
    _png(tmp_path / "dogs" / "big.png", np.full((20, 24, 3), 1.0))
    with pytest.raises(ValueError, match="image_size"):
        load("image_folder", root=tmp_path)
    ds = load("image_folder", root=tmp_path, image_size=8, grey=True)
    assert ds.inputs.shape == (3, 1, 8, 8) and ds.label.tolist() == [0, 1, 1]
    assert ds.meta["class_names"]["label"] == ["cats", "dogs"]


def test_numpy_source(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    y = np.array([0, 1, 0, 1, 2])
    ds = load("numpy", inputs=x, labels=y)
    assert ds.inputs.shape == (5, 3, 8, 8) and np.allclose(ds.inputs * 255, x.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "d.npz", train_x=x, train_y=y, test_x=x[:2], test_y=y[:2])
    assert len(load("numpy", split="test", path=tmp_path / "d.npz")) == 2
    feats = load("numpy", inputs=np.ones((4, 7)), labels={"label": np.arange(4), "group": np.zeros(4)})
    assert feats.inputs.shape == (4, 7) and set(feats.labels) == {"label", "group"}
    with pytest.raises(ValueError, match="labels= is required"):
        load("numpy", inputs=x)


def test_torch_dataset():
    import torch
    from torch.utils.data import TensorDataset

    x = torch.rand(9, 1, 6, 6)
    y = torch.arange(9) % 3
    ds = load("torch", dataset=TensorDataset(x, y), per_class=2, seed=0)
    assert ds.inputs.shape == (6, 1, 6, 6) and np.all(np.bincount(ds.label) == 2)
