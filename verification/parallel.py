"""Run independent tasks (seeds, configurations) serially, with joblib, or on a Dask cluster.

Every task is a top-level function and picklable arguments, so the three ways give the
same results; each task fixes its own seeds, so the order of execution does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .threads import single_thread

__all__ = ["TaskPool"]


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

        Each task runs with one torch thread (:func:`~verification.threads.single_thread`):
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
