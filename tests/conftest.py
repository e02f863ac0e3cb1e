import os

import pytest
import torch

# Keep the suite's speed predictable on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for a test of tiny models: on a busy 2-core machine a second thread only
    spins (small UNets and GPTs ran up to 10x slower with two); the previous count is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory):
    """A synthetic run folder (every overlap kind, 5 seeds, planted effects) with its report built
    once for the report tests (``test_report*.py``). Returns the run folder."""
    from test_analysis_fixture import write_run_dir

    from reprsim.analysis import build_report

    layers = (("conv1", "conv1"), ("penultimate", "penultimate"))
    root = write_run_dir(
        tmp_path_factory.mktemp("report") / "run", n_seeds=5, layer_pairs=layers, given_source_fooled=True
    )
    build_report(root, n_boot=200, n_perm=200)
    return root
