"""One thread for every pool, with numba's BLAS loaded first so that it is pinned too.

numba loads its own BLAS library (scipy's OpenBLAS) the first time a compiled function
multiplies matrices; a library loaded inside ``threadpool_limits(1)`` is not pinned and spins
its own threads. :func:`pinned` therefore runs a warm-up (a call of the compiled paths the
benchmark times) before it pins the pools.
"""

from __future__ import annotations

from typing import Callable

import numba
import torch
from threadpoolctl import threadpool_limits


def pinned(warm_up: Callable[[], object]) -> threadpool_limits:
    """Set torch's and numba's threads to one, run ``warm_up()``, and return ``threadpool_limits(1)`` (a context manager)."""
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    warm_up()
    return threadpool_limits(limits=1)
