"""limited_threads: torch's and the BLAS's thread counts, set together and restored; a sweep unit runs
under execution.threads_per_unit of both."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from reprsim.experiments import driver, parse_config
from reprsim.experiments.grid import expand
from reprsim.threads import limited_threads


def blas_threads() -> set[int]:
    """The thread counts of the BLAS libraries loaded (NumPy's and SciPy's OpenBLAS)."""
    np.ones((2, 2)) @ np.ones((2, 2))  # NumPy's BLAS is loaded by now
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.fixture
def two_threads():
    """torch and the BLAS at 2 threads (OpenBLAS may cap a request at its build's or the machine's
    count: the test reads back what it got)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        yield blas_threads()
    torch.set_num_threads(previous)


def test_limited_threads_sets_both_and_restores_both(two_threads):
    assert blas_threads(), "no BLAS library found: the test would check nothing"
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        assert blas_threads() == {1}
    assert torch.get_num_threads() == 2
    assert blas_threads() == two_threads


def test_limited_threads_restores_after_an_error(two_threads):
    with pytest.raises(RuntimeError, match="inside"):
        with limited_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2
    assert blas_threads() == two_threads


def test_none_changes_nothing_and_a_bad_count_is_refused(two_threads):
    with limited_threads(None):
        assert torch.get_num_threads() == 2
        assert blas_threads() == two_threads
    with pytest.raises(ValueError, match="≥ 1"):
        with limited_threads(0):
            pass


def test_a_unit_runs_with_threads_per_unit_of_torch_and_blas(two_threads, tmp_path, monkeypatch):
    config = parse_config(
        {
            "name": "threads",
            "sources": [{"name": "fashion_mnist", "options": {"per_class": 4, "seed": 0}}],
            "probes": [{"name": "mnist", "source": "mnist", "options": {"n": 10, "seed": 0}}],
            "probe_size": 10,
            "models": [{"name": "mlp"}],
            "overlap": {"designs": [{"kind": "data", "fractions": [0.5]}]},
            "seeds": [0],
            "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
            "execution": {"workers": 1, "threads_per_unit": 1},
        }
    )
    seen = {}

    def fake_run_unit(*args, **kwargs):
        seen["torch"], seen["blas"] = torch.get_num_threads(), blas_threads()
        return []

    monkeypatch.setattr(driver, "run_unit", fake_run_unit)
    result = driver.execute_unit(config, expand(config)[0], tmp_path)
    assert result["status"]["status"] == "ok"
    assert seen == {"torch": 1, "blas": {1}}
    assert torch.get_num_threads() == 2
    assert blas_threads() == two_threads


def test_compare_features_runs_the_blas_on_torchs_thread_count(two_threads, monkeypatch):
    from reprsim.compare import compare_features
    import importlib

    calibrate_module = importlib.import_module(
        "reprsim.metrics.calibrate"
    )  # the package exports a function of that name
    from reprsim.metrics.engine import SimilarityEngine

    seen = []
    compute, engine_null = SimilarityEngine.compute, calibrate_module.engine_null

    def recording_compute(self):
        seen.append(("compute", torch.get_num_threads(), blas_threads()))
        return compute(self)

    def recording_null(*args, **kwargs):
        seen.append(("calibrate", torch.get_num_threads(), blas_threads()))
        return engine_null(*args, **kwargs)

    monkeypatch.setattr(SimilarityEngine, "compute", recording_compute)
    monkeypatch.setattr(calibrate_module, "engine_null", recording_null)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    torch.set_num_threads(1)  # the caller's setting; the BLAS is at 2 outside
    compare_features({"l": x}, {"l": x + 0.1 * rng.standard_normal((40, 6))}, measures=["cka", "rsa"], calibrate=3)
    assert seen and all(t == 1 and b == {1} for _, t, b in seen), seen
    assert {what for what, _, _ in seen} == {"compute", "calibrate"}
    assert blas_threads() == two_threads
