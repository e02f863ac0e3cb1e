"""colorshapes: determinism, labels, attribute independence, cache, restrictions, OOD and match_shape."""

import logging
from pathlib import Path

import numpy as np
import pytest

from reprsim.data import load, match_shape, ood_probe_sets
from reprsim.data.colorshapes import CHUNK, default_cache_dir, generate, label_columns
from reprsim.storage import write_verified_arrays


def test_shapes_labels_and_determinism(tmp_path):
    ds = load("colorshapes", n=300, seed=3, cache_dir=tmp_path)
    assert ds.inputs.shape == (300, 3, 28, 28) and ds.inputs.dtype == np.float32
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    lab = ds.labels
    assert np.array_equal(lab["label"], lab["shape"] * 100 + lab["digit"] * 10 + lab["color"])
    assert ds.meta["num_classes"] == {
        "label": 800,
        "shape": 8,
        "digit": 10,
        "color": 10,
        "shape_digit": 80,
        "shape_color": 80,
        "digit_color": 100,
    }
    assert (
        ds.meta["class_names"]["label"][lab["label"][0]].split("_")[0]
        == ds.meta["class_names"]["shape"][lab["shape"][0]]
    )
    again, _ = generate(300, seed=3)
    assert np.array_equal(np.round(ds.inputs * 255).astype(np.uint8), again)  # cache == fresh
    other, _ = generate(300, seed=4)
    assert not np.array_equal(other, again)
    test, _ = generate(300, seed=3, split="test")
    assert not np.array_equal(test, again)


def test_prefix_property_and_cache_file(tmp_path):
    small, a_small = generate(CHUNK + 5, seed=1)
    big, a_big = generate(2 * CHUNK + 1, seed=1)
    assert np.array_equal(small, big[: CHUNK + 5]) and np.array_equal(a_small["digit"], a_big["digit"][: CHUNK + 5])
    ds = load("colorshapes", n=50, seed=1, cache_dir=tmp_path)
    files = list((tmp_path / "colorshapes").glob("*.npz.rsv"))
    assert len(files) == 1 and ds.meta["cache_path"] == str(files[0])
    write_verified_arrays(
        files[0],
        {
            "images": np.zeros((50, 3, 28, 28), np.uint8),
            "shape": np.zeros(50, int),
            "digit": np.zeros(50, int),
            "color": np.zeros(50, int),
        },
    )
    assert load("colorshapes", n=50, seed=1, cache_dir=tmp_path).inputs.max() == 0  # read from cache


def test_corrupt_cache_entry_is_moved_aside_and_regenerated(tmp_path, caplog):
    fresh = load("colorshapes", n=40, seed=2, cache_dir=tmp_path)
    path = Path(fresh.meta["cache_path"])
    path.write_bytes(path.read_bytes()[:-100])  # truncated, e.g. by a full disk or a killed copy
    with caplog.at_level(logging.WARNING, logger="reprsim.storage"):
        again = load("colorshapes", n=40, seed=2, cache_dir=tmp_path)
    assert np.array_equal(again.inputs, fresh.inputs)
    assert str(path) in caplog.text and "truncated" in caplog.text
    assert len(list(path.parent.glob(path.name + ".corrupt-*"))) == 1
    assert load("colorshapes", n=40, seed=2, cache_dir=tmp_path).meta["cache_path"] == str(path)


def test_cache_folder_follows_reprsim_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRSIM_CACHE", str(tmp_path / "shared"))
    monkeypatch.delenv("REPRSIM_CACHE_DIR", raising=False)
    ds = load("colorshapes", n=10, seed=0)
    assert Path(ds.meta["cache_path"]).parent == tmp_path / "shared" / "colorshapes"
    ds = load("colorshapes", n=10, seed=0, cache_dir=tmp_path / "explicit")  # the option wins
    assert Path(ds.meta["cache_path"]).parent == tmp_path / "explicit" / "colorshapes"
    monkeypatch.delenv("REPRSIM_CACHE")
    monkeypatch.setenv("REPRSIM_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="REPRSIM_CACHE_DIR is deprecated"):
        assert default_cache_dir() == tmp_path / "old" / "colorshapes"
    monkeypatch.delenv("REPRSIM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "reprsim" / "colorshapes"
    assert not load("colorshapes", n=10, seed=0, cache=False).meta["cache_path"]
    assert not (tmp_path / "home").exists()  # cache=False touches no disk


def test_attributes_are_uniform_and_independent():
    _, a = generate(20_000, seed=0)
    counts = np.bincount(a["shape"] * 10 + a["color"], minlength=80).reshape(8, 10)
    expected = 20_000 / 80
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 130  # 79 dof: the 99.99th percentile is about 130


def test_images_depend_on_attributes():
    x, a = generate(2000, seed=0)
    x = x.astype(np.float32)
    red = x[a["color"] == 0].mean(axis=(0, 2, 3))
    blue = x[a["color"] == 2].mean(axis=(0, 2, 3))
    assert red[0] > red[2] + 30 and blue[2] > blue[0] + 30
    # the centre pixel of a white-on-dark digit "1" differs from the background; circle covers the centre
    circle_cover = x[a["shape"] == 0][:, :, 12:16, 12:16].std()
    assert circle_cover > 10


def test_restricted_attributes_for_ood():
    ds = load("colorshapes", n=200, seed=0, shapes=["circle", "star"], colors=[0], cache=False)
    assert set(np.unique(ds.labels["shape"])) == {0, 6} and set(np.unique(ds.labels["color"])) == {0}
    with pytest.raises(ValueError, match="unknown shape"):
        load("colorshapes", n=10, shapes=["blob"], cache=False)


def test_image_size_option():
    ds = load("colorshapes", n=10, image_size=32, cache=False)
    assert ds.inputs.shape == (10, 3, 32, 32)


def test_label_columns_contiguous():
    cols = label_columns({"shape": np.array([7]), "digit": np.array([9]), "color": np.array([9])})
    assert cols["label"][0] == 799 and cols["shape_digit"][0] == 79 and cols["digit_color"][0] == 99


def test_match_shape_known_values():
    grey = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 15
    rgb = match_shape(grey, (3, 4, 4))
    assert rgb.shape == (1, 3, 4, 4) and np.array_equal(rgb[:, 0], rgb[:, 2]) and np.array_equal(rgb[:, 1], grey[:, 0])
    up = match_shape(np.ones((2, 1, 3, 3), np.float32) * 0.25, (1, 7, 7))
    assert up.shape == (2, 1, 7, 7) and np.allclose(up, 0.25)  # a constant image stays constant
    back = match_shape(np.stack([np.full((2, 2), v) for v in (1.0, 0.0, 0.0)])[None], (1, 2, 2))
    assert np.allclose(back, 0.299)
    half = match_shape(np.array([[[[0.0, 1.0]]]], np.float32), (1, 1, 4))
    assert np.allclose(half[0, 0, 0], [0.0, 0.25, 0.75, 1.0])  # bilinear, align_corners=False
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        match_shape(np.zeros((3, 28, 28)), (3, 32, 32))


def test_ood_probe_sets_shapes():
    sets = ood_probe_sets("cifar10", shape=(3, 32, 32), n=20, probes=["colorshapes", "noise", "digits"])
    assert set(sets) == {"colorshapes", "noise", "digits"}
    for ds in sets.values():
        assert ds.inputs.shape == (20, 3, 32, 32) and ds.meta["ood_for"] == "cifar10"
    noise = load("noise", n=5, shape=(1, 4, 4), kind="gaussian", seed=2)
    assert noise.inputs.shape == (5, 1, 4, 4) and np.array_equal(
        noise.inputs, load("noise", n=5, shape=(1, 4, 4), kind="gaussian", seed=2).inputs
    )
