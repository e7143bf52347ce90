"""One torch intra-op thread per task.

The checks run many small tensor operations (a few hundred rows, a handful of neurons).
With several intra-op threads on a loaded machine torch's thread pool spins and waits,
and each small matmul costs ~100× more (measured: 19 ms instead of 0.2 ms for a
442×10 by 10×2 product at load 11 on 2 cores). Parallelism comes from the task pool instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["single_thread"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)`` and float64 default, restoring both after."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
