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


def _cifar_archive(path, inner, files):
    """A .tar.gz laid out like the published CIFAR archives: ``inner/<name>`` pickles."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, obj in files.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{inner}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cifar10_archive_as_published(tmp_path):
    batches = {f"data_batch_{i}": _cifar_batch(3, i, fine=False) for i in range(1, 6)}
    files = {
        **batches,
        "test_batch": _cifar_batch(2, 9, fine=False),
        "batches.meta": {b"label_names": [f"c{i}".encode() for i in range(10)]},
    }
    archive = _cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    ds = load("cifar10", root=archive)
    assert ds.inputs.shape == (15, 3, 32, 32) and ds.inputs.dtype == np.float32
    assert ds.inputs[0, 2, 0, 0] * 255 == pytest.approx(batches["data_batch_1"][b"data"][0, 2048])
    assert ds.label.tolist()[3:6] == [int(v) for v in batches["data_batch_2"][b"labels"]]
    assert ds.meta["class_names"]["label"][7] == "c7"
    assert len(load("cifar10", split="test", root=tmp_path)) == 2  # a folder holding the archive works too


def test_cifar100_archive_and_the_message_when_neither_is_found(tmp_path):
    train, test = _cifar_batch(5, 0), _cifar_batch(4, 1)
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"g{i}".encode() for i in range(20)],
    }
    archive = _cifar_archive(
        tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", {"train": train, "test": test, "meta": meta}
    )
    ds = load("cifar100", split="test", root=archive)
    assert len(ds) == 4 and ds.labels["coarse"].tolist() == [int(v) for v in test[b"coarse_labels"]]
    assert ds.meta["class_names"]["label"][42] == "f42" and ds.meta["class_names"]["coarse"][3] == "g3"
    assert np.array_equal(
        load("cifar100", root=archive).inputs * 255, train[b"data"].reshape(-1, 3, 32, 32).astype(np.float32)
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError,
        match="holds neither the extracted cifar-100-python folder nor the cifar-100-python.tar.gz archive",
    ):
        load("cifar100", root=empty)
    broken = tmp_path / "broken" / "cifar-10-python.tar.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"not a tar file")
    with pytest.raises(ReprsimError, match="cannot read the archive"):
        load("cifar10", root=broken)
    wrong = _cifar_archive(
        tmp_path / "wrong.tar.gz", "cifar-10-batches-py", {"data_batch_1": _cifar_batch(2, 0, False)}
    )
    with pytest.raises(FileNotFoundError, match="has no data_batch_2"):
        load("cifar10", root=wrong)


def _svhn_mat(path, labels, seed=0):
    from scipy.io import savemat

    x = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    savemat(path, {"X": x, "y": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)})
    return x


def test_svhn_mat_files_as_published(tmp_path):
    x = _svhn_mat(tmp_path / "train_32x32.mat", [10, 1, 2, 10, 9, 5])
    _svhn_mat(tmp_path / "test_32x32.mat", [3, 10, 7], seed=1)
    ds = load("svhn", root=tmp_path)
    assert ds.inputs.shape == (6, 3, 32, 32) and ds.inputs.dtype == np.float32
    assert ds.label.dtype == np.int64 and ds.label.tolist() == [0, 1, 2, 0, 9, 5]  # 10 is the digit 0
    # X is (H, W, C, N): pixel (h, w) of channel c of image i is X[h, w, c, i]
    assert ds.inputs[4, 2, 5, 7] * 255 == pytest.approx(x[5, 7, 2, 4])
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    assert ds.meta["num_classes"] == {"label": 10}
    # as a probe set: the test split, subsampled with n and seed like every source
    probe = load("svhn", split="test", root=tmp_path, n=2, seed=0)
    assert len(probe) == 2 and set(probe.label.tolist()) <= {3, 0, 7}
    assert load("svhn", split="test", root=tmp_path / "test_32x32.mat").label.tolist() == [3, 0, 7]


def test_svhn_bad_input_names_the_fix(tmp_path):
    with pytest.raises(ReprsimError, match="root=DIR"):
        load("svhn")
    with pytest.raises(FileNotFoundError, match="has no test_32x32.mat"):
        load("svhn", split="test", root=tmp_path)
    with pytest.raises(ValueError, match="other split"):
        _svhn_mat(tmp_path / "train_32x32.mat", [1])
        load("svhn", split="test", root=tmp_path / "train_32x32.mat")
    from scipy.io import savemat

    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 2), np.uint8), "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(ValueError, match=r"X of shape \(32, 32, 3, N\)"):
        load("svhn", split="test", root=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="cannot read"):
        load("svhn", split="test", root=tmp_path)
