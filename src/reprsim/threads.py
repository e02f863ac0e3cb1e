"""One thread count for every CPU library a computation uses: torch's and the BLAS under NumPy/SciPy.

``torch.set_num_threads`` does not reach NumPy's OpenBLAS, which by default runs one thread per core.
Two things follow when only torch is limited. A sweep's workers oversubscribe the cores (two workers
of one torch thread each ran four BLAS threads on two cores). And a value reduced by a threaded BLAS
call (a float64 dot product over more than ~10,000 entries, as rsa's over its RDM ranks) is summed in
per-thread partial sums, so its last bits depend on the machine's core count. Limiting both to ``n``
makes the values depend on ``n`` only, which the config states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits

__all__ = ["limited_threads"]


@contextlib.contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads and ``n`` BLAS threads (OpenBLAS, MKL, BLIS as loaded by
    NumPy and SciPy); both are restored afterwards. ``None`` changes nothing. Both settings are
    process-wide, so a block in one thread limits the others too."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"limited_threads: n must be ≥ 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)
