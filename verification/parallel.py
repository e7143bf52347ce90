"""Run independent tasks (seeds, configurations) serially, with joblib, or on a Dask cluster.

Every task is a top-level function and picklable arguments, so the three ways give the
same results; each task fixes its own seeds, so the order of execution does not matter.

Each task runs with one torch intra-op thread (:func:`single_thread`). The checks run many
small tensor operations (a few hundred rows, a handful of neurons); with several intra-op
threads on a loaded machine torch's thread pool spins and waits, and each small matmul
costs ~100× more (measured: 19 ms instead of 0.2 ms for a 442×10 by 10×2 product at load 11
on 2 cores). Parallelism comes from the task pool instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

__all__ = ["TaskPool", "single_thread"]


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


@dataclass(frozen=True)
class TaskPool:
    """Where tasks run.

    Attributes:
        jobs: worker processes on this machine (1: in this process, serially).
        scheduler: address of a Dask distributed scheduler (``tcp://host:port``); when set,
            tasks run on that cluster and ``jobs`` is ignored.
        connect_timeout: seconds to wait for that scheduler before giving up.
    """

    jobs: int = 1
    scheduler: str | None = None
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be an integer ≥ 1, got {self.jobs!r}.")

    def map(self, fn: Callable[..., Any], items: Iterable[tuple]) -> list[Any]:
        """``[fn(*item) for item in items]``, in order, wherever the pool runs tasks."""
        items = list(items)
        if self.scheduler is not None:
            return _dask_map(self.scheduler, fn, items, self.connect_timeout)
        if self.jobs == 1 or len(items) <= 1:
            return [fn(*item) for item in items]
        from joblib import Parallel, delayed

        return Parallel(n_jobs=self.jobs, backend="loky")(delayed(fn)(*item) for item in items)

    def run(self, tasks: Iterable[tuple[Callable[..., Any], tuple]]) -> list[Any]:
        """``[fn(*args) for fn, args in tasks]``, in order, wherever the pool runs them.

        Each task runs with one torch thread (:func:`single_thread`):
        parallelism comes from the pool, not from torch's intra-op threads.
        """
        return self.map(_call, tasks)


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    with single_thread():
        return fn(*args)


def _dask_map(address: str, fn: Callable[..., Any], items: list[tuple], timeout: float) -> list[Any]:
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        raise ValueError(f"--scheduler needs the 'distributed' package ({err}).") from None
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({type(err).__name__}).") from None
    try:
        futures = [client.submit(fn, *item, pure=False) for item in items]
        return client.gather(futures)
    finally:
        client.close()
