"""Out-of-distribution probe sets for a source: other registered sources (and noise), reshaped to its inputs."""

from __future__ import annotations

from collections.abc import Sequence

from reprsim.data.dataset import Dataset
from reprsim.data.ood import DEFAULT_PROBES, OOD_PROBES, load_noise
from reprsim.data.registry import load
from reprsim.data.transforms import match_shape
from reprsim.errors import ReprsimError

__all__ = ["ood_probe_sets"]


def ood_probe_sets(
    name: str,
    shape: Sequence[int],
    n: int = 1000,
    seed: int = 0,
    probes: Sequence[str] | None = None,
    skip_unavailable: bool = True,
) -> dict[str, Dataset]:
    """Out-of-distribution probe sets for models trained on source ``name`` with inputs of ``shape``.

    Each probe's test split is subsampled to ``n`` (seeded) and converted with
    :func:`reprsim.data.transforms.match_shape`. Sources that are not installed are skipped (or raise,
    with ``skip_unavailable=False``).

    Returns
    -------
    dict probe name -> Dataset with inputs float32 (n, *shape).
    """
    chosen = list(probes) if probes is not None else OOD_PROBES.get(name, DEFAULT_PROBES)
    out: dict[str, Dataset] = {}
    for probe in chosen:
        if probe == name:
            continue
        try:
            if probe == "noise":
                ds = load_noise("test", n=n, shape=tuple(shape), seed=seed)
            elif probe == "colorshapes":
                ds = load("colorshapes", split="test", n=n, seed=seed, cache=False)
            else:
                ds = load(probe, split="test", n=n, seed=seed)
        except (ReprsimError, FileNotFoundError):
            if skip_unavailable:
                continue
            raise
        ds.inputs = match_shape(ds.inputs, shape)
        ds.meta["ood_for"] = name
        out[probe] = ds
    return out
