"""The device rule: every stage moves its inputs to the device of the model they feed."""

import numpy as np
import pytest
import torch
from torch import nn

from reprsim.devices import model_device, resolve_device, to_model_device


def test_inputs_follow_a_model_that_lives_on_another_device():
    model = nn.Linear(3, 2).to("meta")  # parameters report a non-CPU device without a GPU
    assert model_device(model).type == "meta"
    x, y = to_model_device(model, np.zeros((4, 3), dtype=np.float32), torch.zeros(4, dtype=torch.long))
    assert x.device.type == "meta" and y.device.type == "meta" and x.shape == (4, 3)
    assert to_model_device(nn.Identity(), torch.ones(2)).device.type == "cpu"  # no parameters: CPU


def test_resolve_device_refuses_cuda_without_one():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
