"""Shape adapters so a probe set can be fed to a model trained on images of another shape."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def match_shape(inputs: np.ndarray, shape: Sequence[int] = (3, 32, 32)) -> np.ndarray:
    """Convert images (n, C, H, W) to (n, C', H', W') = (n, *shape).

    Channels: grey → RGB repeats the channel; RGB → grey takes the luminance
    0.299 R + 0.587 G + 0.114 B; equal counts are kept. Size: bilinear resize (``align_corners=False``,
    no antialiasing, as ``torchvision.transforms.Resize`` on tensors), skipped when equal. The paper
    feeds MNIST resized to 32×32 and repeated to 3 channels to CIFAR models.

    Returns
    -------
    float32 array of shape (n, C', H', W').
    """
    arr = np.asarray(inputs)
    if arr.ndim != 4:
        raise ValueError(f"inputs must be images of shape (n, C, H, W), got {arr.shape}")
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be (C, H, W) with positive sizes, got {tuple(shape)}")
    c_out, h_out, w_out = (int(s) for s in shape)
    c_in = arr.shape[1]
    x = arr.astype(np.float32, copy=False)
    if c_in != c_out:
        if c_in == 1:
            x = np.repeat(x, c_out, axis=1)
        elif c_in == 3 and c_out == 1:
            x = np.tensordot(x, np.array([0.299, 0.587, 0.114], dtype=np.float32), axes=([1], [0]))[:, None]
        else:
            raise ValueError(
                f"cannot convert {c_in} channels to {c_out}: only grey↔RGB (1↔3) and grey→any are supported"
            )
    if x.shape[2:] != (h_out, w_out):
        t = torch.from_numpy(np.ascontiguousarray(x))
        x = F.interpolate(t, size=(h_out, w_out), mode="bilinear", align_corners=False).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
