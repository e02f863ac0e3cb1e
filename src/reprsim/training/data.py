"""In-memory training data: classification tensors, batched augmentation, LM token windows.

Everything is indexed with tensors (no per-sample Python loops) and all randomness comes from
an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ClassificationData",
    "MaskedTokens",
    "TokenData",
    "as_classification",
    "as_tokens",
    "is_lm_dataset",
    "random_crop",
    "random_hflip",
]


def _to_tensor(a: Any, what: str) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach().cpu()
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be a numpy array or a torch tensor, got {type(a).__name__}.") from exc


@dataclass
class ClassificationData:
    """Inputs (N, ...) (uint8 images are scaled to [0, 1] per batch) and int64 labels (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Return the float (or integer-token) inputs and labels at ``idx`` on ``device``."""
        xb = self.x[idx].to(device, non_blocking=True)
        if xb.dtype == torch.uint8 and xb.dim() == 4:
            xb = xb.float().div_(255.0)
        elif xb.dtype == torch.float64:
            xb = xb.float()
        return xb, self.y[idx].to(device, non_blocking=True)

    def split(self, fraction: float, generator: torch.Generator) -> tuple[ClassificationData, ClassificationData]:
        """Split off a random held-out part of ``fraction``; returns (train, held_out)."""
        n_val = int(round(len(self) * fraction))
        if n_val < 1 or n_val >= len(self):
            raise ValueError(f"val_fraction={fraction} leaves no examples on one side of {len(self)} examples.")
        perm = torch.randperm(len(self), generator=generator)
        tr, va = perm[n_val:], perm[:n_val]
        return ClassificationData(self.x[tr], self.y[tr]), ClassificationData(self.x[va], self.y[va])


def as_classification(dataset: Any, what: str = "dataset") -> ClassificationData:
    """Convert ``(inputs, labels)`` or a torch Dataset yielding ``(x, y)`` to :class:`ClassificationData`."""
    if isinstance(dataset, ClassificationData):
        return dataset
    if isinstance(dataset, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(dataset, batch_size=1024, shuffle=False)
        xs, ys = [], []
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(f"{what}: a torch Dataset for classification must yield (x, y) pairs.")
            xs.append(batch[0])
            ys.append(torch.as_tensor(batch[1]))
        if not xs:
            raise ValueError(f"{what} is empty.")
        dataset = (torch.cat(xs), torch.cat(ys))
    if not isinstance(dataset, tuple) or len(dataset) != 2:
        raise TypeError(
            f"{what} must be a tuple (inputs, labels), a torch Dataset of (x, y), a 1-D token array or a list "
            f"of token arrays; got {type(dataset).__name__}."
        )
    x = _to_tensor(dataset[0], f"{what} inputs")
    y = _to_tensor(dataset[1], f"{what} labels")
    if y.dim() != 1 or x.dim() < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{what}: inputs must be (N, ...) and labels (N,); got inputs {tuple(x.shape)} and labels {tuple(y.shape)}."
        )
    if y.shape[0] == 0:
        raise ValueError(f"{what} is empty.")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        if not torch.equal(y, y.round()):
            raise ValueError(f"{what}: labels must be integer class ids, got non-integer values.")
    y = y.long()
    if int(y.min()) < 0:
        raise ValueError(f"{what}: labels must be >= 0, got minimum {int(y.min())}.")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: inputs contain NaN or inf.")
    return ClassificationData(x, y)


def is_lm_dataset(dataset: Any) -> bool:
    """True for a 1-D token array/tensor or a list of them (a language-model dataset)."""
    if isinstance(dataset, (np.ndarray, Tensor)):
        return dataset.ndim == 1
    if isinstance(dataset, list) and dataset:
        return all(isinstance(d, (np.ndarray, Tensor)) and d.ndim == 1 for d in dataset)
    return False


@dataclass
class TokenData:
    """Token documents concatenated in ``tokens`` (1-D int64) with document boundaries ``starts``/``lengths``."""

    tokens: Tensor
    starts: Tensor
    lengths: Tensor

    def windows(self, n: int, block_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Sample ``n`` random windows inside documents; returns (x, y), each (n, block_size) int64."""
        counts = (self.lengths - block_size).clamp(min=0)
        cum = counts.cumsum(0)
        total = int(cum[-1])
        u = torch.randint(0, total, (n,), generator=generator)
        doc = torch.searchsorted(cum, u, right=True)
        offset = u - (cum[doc] - counts[doc])
        pos = (self.starts[doc] + offset).unsqueeze(1) + torch.arange(block_size + 1)
        chunk = self.tokens[pos]
        return chunk[:, :-1], chunk[:, 1:]

    def split_tail(self, fraction: float) -> tuple[TokenData, TokenData]:
        """Hold out the last ``fraction`` of every document; returns (train, held_out)."""
        docs = [self.tokens[s : s + n] for s, n in zip(self.starts.tolist(), self.lengths.tolist())]
        cut = [len(d) - int(round(len(d) * fraction)) for d in docs]
        return _pack([d[:c] for d, c in zip(docs, cut)]), _pack([d[c:] for d, c in zip(docs, cut)])


def _pack(docs: Sequence[Tensor]) -> TokenData:
    lengths = torch.tensor([len(d) for d in docs], dtype=torch.long)
    starts = torch.cumsum(lengths, 0) - lengths
    return TokenData(torch.cat(list(docs)).long(), starts, lengths)


def as_tokens(dataset: Any, block_size: int, vocab_size: int | None = None, what: str = "dataset") -> TokenData:
    """Convert a 1-D token array or a list of them to :class:`TokenData`, checking lengths and ids."""
    docs = [dataset] if not isinstance(dataset, list) else dataset
    tensors = []
    for i, d in enumerate(docs):
        t = _to_tensor(d, f"{what}[{i}]")
        if t.dim() != 1 or t.dtype.is_floating_point:
            raise ValueError(f"{what}[{i}] must be a 1-D array of integer token ids, got {t.dtype} {tuple(t.shape)}.")
        tensors.append(t.long())
    data = _pack(tensors)
    if int((data.lengths - block_size).clamp(min=0).sum()) < 1:
        raise ValueError(
            f"{what}: every document is shorter than block_size + 1 = {block_size + 1} tokens; "
            "lower TrainConfig.block_size or give longer documents."
        )
    if data.tokens.numel() and int(data.tokens.min()) < 0:
        raise ValueError(f"{what}: token ids must be >= 0.")
    if vocab_size is not None and int(data.tokens.max()) >= vocab_size:
        raise ValueError(f"{what}: token id {int(data.tokens.max())} >= the model's vocab_size {vocab_size}.")
    return data


#: Target id that carries no loss (``F.cross_entropy``'s default ``ignore_index``).
IGNORE_INDEX = -100


@dataclass
class MaskedTokens:
    """Fixed rows of token ids ``ids`` (N, T) whose loss is taken only where ``targets`` (N, T) is not -100.

    ``targets[i, t]`` is the token the model must predict after position ``t`` (a prompt's
    answer tokens), or -100 where nothing is predicted (the prompt, the padding): a chat model
    learns its answers, not its users' questions. Training draws ``batch_size`` rows uniformly
    with replacement per step (like random windows of a token stream).
    """

    ids: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        self.ids = _to_tensor(self.ids, "MaskedTokens.ids").long()
        self.targets = _to_tensor(self.targets, "MaskedTokens.targets").long()
        if self.ids.dim() != 2 or self.ids.shape != self.targets.shape or self.ids.shape[0] == 0:
            raise ValueError(
                f"MaskedTokens: ids and targets must both be (N, T) with N >= 1, got "
                f"{tuple(self.ids.shape)} and {tuple(self.targets.shape)}."
            )
        if not bool((self.targets != IGNORE_INDEX).any()):
            raise ValueError("MaskedTokens: every target is -100, so no token carries a loss.")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def windows(self, n: int, block_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` rows drawn uniformly with replacement: (ids, targets), each (n, T) int64 (``block_size``: unused)."""
        idx = torch.randint(0, len(self), (n,), generator=generator)
        return self.ids[idx], self.targets[idx]

    def check(self, block_size: int, vocab_size: int | None) -> None:
        """Raise ValueError when rows exceed ``block_size`` or ids / targets exceed the vocabulary."""
        if self.ids.shape[1] > block_size:
            raise ValueError(f"MaskedTokens rows have {self.ids.shape[1]} tokens, more than block_size={block_size}.")
        real = self.targets[self.targets != IGNORE_INDEX]
        if int(self.ids.min()) < 0 or int(real.min()) < 0:
            raise ValueError("MaskedTokens: token ids must be >= 0 (and targets >= 0 or -100).")
        top = max(int(self.ids.max()), int(real.max()))
        if vocab_size is not None and top >= vocab_size:
            raise ValueError(f"MaskedTokens: token id {top} >= the model's vocab_size {vocab_size}.")


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad (N, C, H, W) by ``padding`` and crop a random H x W window per image (same shape out)."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Flip each image of (N, C, H, W) left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)
