"""One interface for per-head work: in-process, a local process pool, or a Dask distributed cluster.

`make_executor(jobs=1)` runs in this process; `jobs>1` starts a spawn-context process pool whose workers pay the
numba/import warm-up once (initializer); `scheduler="tcp://host:port"` submits to a Dask cluster. All paths yield
results in input order, so a build's output never depends on where it ran. Items may come from a generator: they are
drawn only as workers need them, so a build can stream a model's layers through one map and the next layer's heads
start while the last ones of a layer finish. With `contain=(MemoryError,)`, an item
whose function raises one of those errors yields an `ItemFailed` in its place and the other items go on.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import InputError
from .extras import missing

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Executor", "LocalExecutor", "PoolExecutor", "DaskExecutor", "ItemFailed", "make_executor",
           "default_initializer"]


@dataclass(frozen=True)
class ItemFailed:
    """What `map` yields for an item whose function raised a contained error: its type and message, one line."""

    error: str


@dataclass(frozen=True)
class _Contained:
    """`fn` with the `errors` it raises turned into an `ItemFailed` (picklable: runs in any worker)."""

    fn: Callable[[Any], Any]
    errors: tuple[type[BaseException], ...]

    def __call__(self, item: Any) -> Any:
        try:
            return self.fn(item)
        except self.errors as e:
            message = " ".join(str(e).split()) or "no message"
            return ItemFailed(f"{type(e).__name__}: {message}"[:300])


def _guard(fn: Callable[[T], R], contain: tuple[type[BaseException], ...]) -> Callable[[T], Any]:
    return _Contained(fn, tuple(contain)) if contain else fn


class Executor(Protocol):
    """Maps a picklable function over items; results come back in input order."""

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", progress: bool = False,
        contain: tuple[type[BaseException], ...] = (), total: int | None = None,
    ) -> Iterator[R | ItemFailed]:
        """`fn` over `items` (drawn lazily), results in input order; `total` sizes the progress bar of a generator."""
        ...

    def close(self, abort: bool = False) -> None:
        """Release workers; `abort` (the build is failing or interrupted) stops running items at once."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


#: glibc's mallopt parameters, and the values that stand in for its adaptive thresholds (their maximum on 64 bits).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 64 << 20


def _heap_for_arrays() -> None:
    """Undo a fixed `MALLOC_TRIM_THRESHOLD_` (Dask's nanny starts workers with 65536): it turns glibc's adaptive
    mmap threshold off, so every array over 128 KiB is mapped and unmapped again, which cost 25% more CPU per head
    (benchmarks/bench_dask.py: 2.2 s of system time on 10 s). Arrays up to 32 MiB then come from the heap again,
    which keeps up to 64 MiB free (glibc's own limits for its adaptive thresholds); peak memory is unchanged."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc
        pass


def default_initializer() -> None:
    """Per-worker warm-up: one BLAS thread, glibc's heap for arrays (`_heap_for_arrays`), projection libraries
    imported and numba kernels loaded."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _heap_for_arrays()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    from atlas_build.project import warm_up

    warm_up()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (per item, with ETA) on a terminal; plain periodic lines when stderr is not a TTY."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc or None,
        unit="item",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5 if tty else 30.0,
        ascii=not tty,
    )


def _size(items: Iterable[Any], total: int | None) -> int | None:
    """The number of items for a progress bar: `total`, else the collection's length (None for a generator)."""
    return total if total is not None else (len(items) if hasattr(items, "__len__") else None)


def _next_result(pending: deque[Future[Any]], bar: Any) -> Any:
    """The oldest pending future's result (waiting for it), counted on the progress bar."""
    result = pending.popleft().result()
    bar.update(1)
    return result


class _Context:
    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


class LocalExecutor(_Context):
    """Runs every item in this process, in order (jobs=1). No warm-up: work starts immediately."""

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", progress: bool = False,
        contain: tuple[type[BaseException], ...] = (), total: int | None = None,
    ) -> Iterator[R | ItemFailed]:
        fn = _guard(fn, contain)
        with _progress(_size(items, total), desc, progress) as bar:
            for item in items:
                result = fn(item)
                bar.update(1)
                yield result

    def close(self, abort: bool = False) -> None:
        pass


class PoolExecutor(_Context):
    """A local process pool (spawn or forkserver start method) with a per-worker initializer.

    At most `2 * jobs` items are submitted and not yet yielded, so memory stays bounded.
    """

    def __init__(
        self, jobs: int, initializer: Callable[[], None] | None = default_initializer, start_method: str = "spawn"
    ):
        if start_method not in ("spawn", "forkserver"):
            raise ValueError("start_method must be 'spawn' or 'forkserver' (fork is unsafe with threads)")
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context(start_method), initializer=initializer
        )

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", progress: bool = False,
        contain: tuple[type[BaseException], ...] = (), total: int | None = None,
    ) -> Iterator[R | ItemFailed]:
        fn = _guard(fn, contain)
        pending: deque[Future[Any]] = deque()
        with _progress(_size(items, total), desc, progress) as bar:
            try:
                for item in items:
                    pending.append(self._pool.submit(fn, item))
                    if len(pending) == 2 * self.jobs:
                        yield _next_result(pending, bar)
                while pending:
                    yield _next_result(pending, bar)
            finally:
                for fut in pending:
                    fut.cancel()

    def close(self, abort: bool = False) -> None:
        if not abort:
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        processes = list((self._pool._processes or {}).values())  # the pool exposes no public handle on them
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(timeout=10)


class DaskExecutor(_Context):
    """Submits items to a dask.distributed cluster; the initializer runs once on every (current) worker.

    Each item is scattered to a worker and then submitted on its own, at most two per worker thread ahead of the one
    being yielded: memory stays bounded on the cluster, and no message carries more than one item.
    """

    def __init__(
        self, scheduler: str | Any, initializer: Callable[[], None] | None = default_initializer
    ):
        try:
            from distributed import Client
        except ImportError:
            raise InputError(missing("dask", f"the Dask scheduler {scheduler}")) from None

        self._own = not hasattr(scheduler, "submit")
        self.client = Client(scheduler) if self._own else scheduler
        if initializer is not None:
            self.client.run(initializer)

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", progress: bool = False,
        contain: tuple[type[BaseException], ...] = (), total: int | None = None,
    ) -> Iterator[R | ItemFailed]:
        fn = _guard(fn, contain)
        ahead = 2 * max(1, sum(self.client.nthreads().values()))
        pending: deque[tuple[Any, Any]] = deque()

        def submit(item: T) -> None:
            [data] = self.client.scatter([item], hash=False)
            # pure=False: never deduplicate equal items; keys are unique per call.
            pending.append((data, self.client.submit(fn, data, pure=False)))

        def collect(bar: Any) -> Any:
            data, fut = pending.popleft()
            result = fut.result()
            fut.release()
            data.release()
            bar.update(1)
            return result

        with _progress(_size(items, total), desc, progress) as bar:
            try:
                for item in items:
                    submit(item)
                    if len(pending) == ahead:
                        yield collect(bar)
                while pending:
                    yield collect(bar)
            finally:
                for data, fut in pending:
                    fut.cancel()
                    data.release()

    def close(self, abort: bool = False) -> None:
        if self._own:
            self.client.close()


def make_executor(
    jobs: int = 1,
    scheduler: str | None = None,
    *,
    initializer: Callable[[], None] | None = default_initializer,
) -> Executor:
    """jobs==1: in-process; jobs>1: spawn process pool of `jobs` workers; scheduler='tcp://…': Dask cluster.

    `initializer` runs once in each pool or Dask worker (default: BLAS to one thread + projection warm-up).
    """
    if scheduler:
        return DaskExecutor(scheduler, initializer)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return LocalExecutor()
    return PoolExecutor(jobs, initializer)
