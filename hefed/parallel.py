"""Both cores for the big jobs, one process for the small ones.

Large batches of encryptions and decryptions, and the aggregation of many
bundle files, are split over a process pool. The pool is started on first use
and kept for the life of the process, so each worker builds its DJN table
(:mod:`hefed.primitives.djn`) once and reuses it across calls. Below a job
size where starting workers and building their tables costs more than it
saves, everything stays in the calling process: small cases never get slower.

``HEFED_WORKERS`` overrides the number of workers (``1`` turns the pool off).
Workers are started with ``forkserver`` (``spawn`` where that is missing),
never plain ``fork``: forking a process that runs BLAS or Flower threads can
deadlock.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

from .errors import UsageError

T = TypeVar("T")

_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0
_LOCK = threading.Lock()


def available_workers() -> int:
    """Workers a pool would use: ``HEFED_WORKERS``, else the CPUs this process may run on."""
    raw = os.environ.get("HEFED_WORKERS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise UsageError(f"HEFED_WORKERS must be a positive integer, got {raw!r}")
        return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers_for(jobs: int, min_jobs_per_worker: int) -> int:
    """How many workers ``jobs`` units of work deserve: 1 (no pool) unless every worker
    gets at least ``min_jobs_per_worker`` of them."""
    return max(1, min(available_workers(), jobs // max(1, min_jobs_per_worker)))


def _pool(workers: int) -> Executor:
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if context.get_start_method() == "forkserver":
                # import hefed once in the server; workers fork from it ready to run
                context.set_forkserver_preload(["hefed.encryption", "hefed.aggregate"])
            _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            _POOL_SIZE = workers
        return _POOL


@atexit.register
def shutdown() -> None:
    """Stop the pool's workers (also run at exit)."""
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL, _POOL_SIZE = None, 0


def split(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """``items`` cut into ``parts`` contiguous, nearly equal, non-empty pieces (order kept)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(items[start:end])
        start = end
    return pieces


def map_pieces(function: Callable[..., T], pieces: Sequence[Any], *args: Any) -> list[T]:
    """``[function(piece, *args) for piece in pieces]``, one piece per pool worker when
    there is more than one piece. ``function`` must be a module-level function."""
    if len(pieces) <= 1:
        return [function(piece, *args) for piece in pieces]
    pool = _pool(len(pieces))
    futures = [pool.submit(function, piece, *args) for piece in pieces]
    return [future.result() for future in futures]
