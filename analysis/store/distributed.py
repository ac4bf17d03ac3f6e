"""Spreading per-batch work over a `dask.distributed` cluster, or running it here.

Batches are independent (a run's verdicts need only that run), so a worker derives a
batch's tables from the run folders and returns them; the client alone writes and
commits, so the crash-safety rule of layout.py holds however many workers there are.
Workers must see the run folders (and, to re-derive, the dataset) under the same
paths: a shared file system (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[tuple[Any, Any]]]
IN_FLIGHT_PER_WORKER = 2  # results waiting to be written cost memory: keep few


def local_map(fn: Callable[[Any], Any], args: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """(arg, fn(arg)) one after the other, in this process."""
    for arg in args:
        yield arg, fn(arg)


@contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[Mapper]:
    """A mapper over the cluster at `scheduler`, or over `workers` local worker processes;
    plain `local_map` with neither."""
    if scheduler is None and workers is None:
        yield local_map
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield _dask_map(client)
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local, Client(local) as client:
        yield _dask_map(client)


def _dask_map(client: Any) -> Mapper:
    def run(fn: Callable[[Any], Any], args: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """(arg, fn(arg)) in the order they finish, with a bounded number in flight."""
        from distributed import as_completed

        window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        todo = iter(args)
        arg_of = {}
        finished = as_completed()
        for arg in islice(todo, window):
            future = client.submit(fn, arg, pure=False)
            arg_of[future.key] = arg
            finished.add(future)
        for future in finished:
            result = future.result()  # a task's exception is raised here
            arg = arg_of.pop(future.key)
            future.release()
            for nxt in islice(todo, 1):
                following = client.submit(fn, nxt, pure=False)
                arg_of[following.key] = nxt
                finished.add(following)
            yield arg, result

    return run
