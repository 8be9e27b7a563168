"""Both cores for the big jobs, one process for the small ones.

Large batches of encryptions and decryptions, and the aggregation of many
bundle files, are split over a process pool. The pool is started on first use
and kept for the life of the process, so each worker builds its DJN table
(:mod:`hefed.primitives.djn`) once and reuses it across calls. Below a job
size where starting workers and building their tables costs more than it
saves, everything stays in the calling process: small cases never get slower.

A single bundle is too small for the pool (a ``ProcessPoolExecutor``'s feeder
thread waits for the GIL that the caller's gmpy2 loop holds, so the worker gets
its work late); :class:`PipeWorker` is one warm helper process fed through a
plain :func:`multiprocessing.Pipe` instead, which the caller talks to directly
(:mod:`hefed.primitives.encryption` gives it half of a bundle's ciphertexts).

``HEFED_WORKERS`` overrides the number of workers (``1`` turns the pool and the
helper off).
Workers are started with ``forkserver`` (``spawn`` where that is missing),
never plain ``fork``: forking a process that runs BLAS or Flower threads can
deadlock.
"""

from __future__ import annotations

import ast
import atexit
import functools
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from .errors import UsageError

T = TypeVar("T")

_POOL: ProcessPoolExecutor | None = None
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


#: Starting the pool (a fork server importing hefed, then the workers, each building its own
#: DJN table) costs about a second: a cold pool must be given this many times more work.
COLD_START_FACTOR = 4


def workers_for(jobs: int, min_jobs_per_worker: int) -> int:
    """How many workers ``jobs`` units of work deserve: 1 (no pool) unless every worker
    gets at least ``min_jobs_per_worker`` of them (``COLD_START_FACTOR`` times that while no
    pool is running), and never from a pool worker or a script that cannot be re-imported."""
    if _POOL is None:
        min_jobs_per_worker *= COLD_START_FACTOR
    workers = max(1, min(available_workers(), jobs // max(1, min_jobs_per_worker)))
    if workers > 1 and not _can_start_workers():
        return 1
    return workers


def _can_start_workers() -> bool:
    """Workers may start unless this is a daemonic process (a pool worker itself), or the main
    module is a script without an ``if __name__ == "__main__":`` guard: forkserver and spawn
    workers re-import ``__main__``, which would run such a script's top level again."""
    if multiprocessing.current_process().daemon:
        return False
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True  # interactive, or run with -m: re-imported under another name
    path = getattr(main, "__file__", None)
    if not path:
        return True
    return _has_main_guard(str(path))


@functools.lru_cache(maxsize=8)
def _has_main_guard(path: str) -> bool:
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
            consts = {n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)}
            if "__name__" in names and "__main__" in consts:
                return True
    return False


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # import hefed once in the server; workers fork from it ready to run
        context.set_forkserver_preload(["hefed.primitives.encryption", "hefed.roles._aggregator"])
    return context


def _pool() -> Executor:
    global _POOL
    with _LOCK:
        if _POOL is None:  # one pool of every available worker, kept for the life of the process
            _POOL = ProcessPoolExecutor(max_workers=available_workers(), mp_context=_context())
        return _POOL


@atexit.register
def shutdown(wait: bool = True) -> None:
    """Stop the pool's workers (also run at exit); the next big job starts a fresh pool."""
    global _POOL
    with _LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=wait, cancel_futures=True)
        _POOL = None


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
    there is more than one piece. ``function`` must be a module-level function without side
    effects: if the pool breaks (a worker killed, say), it is dropped and the pieces are
    done here instead."""
    if len(pieces) <= 1:
        return [function(piece, *args) for piece in pieces]
    try:
        pool = _pool()
        futures = [pool.submit(function, piece, *args) for piece in pieces]
        return [future.result() for future in futures]
    except RuntimeError as exc:  # BrokenProcessPool is one; so is a submit after shutdown
        if not isinstance(exc, BrokenProcessPool) and "shutdown" not in str(exc):
            raise
        shutdown(wait=False)
        return [function(piece, *args) for piece in pieces]


class PipeWorker:
    """One helper process running ``serve(connection)``, fed through a plain duplex Pipe.

    The caller sends picklable messages and receives the replies itself (no feeder thread,
    no futures). ``serve`` must be a module-level function that returns when it receives
    ``None`` (or the pipe closes). Started by :func:`start_pipe_worker`; stopped by
    :meth:`close` or, at the latest, at exit.
    """

    def __init__(self, serve: Callable[[Any], None]) -> None:
        context = _context()
        self.connection, child = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child,), daemon=True, name="hefed-helper")
        try:
            self.process.start()
        finally:
            child.close()  # the helper holds its end; a dead helper then reads as EOF here

    def send(self, message: Any) -> None:
        self.connection.send(message)

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.connection.poll(timeout))

    def recv(self) -> Any:
        return self.connection.recv()

    def close(self, timeout: float = 2.0) -> None:
        """Ask the helper to stop, wait ``timeout`` seconds, then terminate it."""
        try:
            self.connection.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        self.connection.close()
        with _LOCK:
            if self in _PIPE_WORKERS:
                _PIPE_WORKERS.remove(self)


_PIPE_WORKERS: list[PipeWorker] = []


def start_pipe_worker(serve: Callable[[Any], None]) -> PipeWorker | None:
    """A started :class:`PipeWorker`, or ``None`` where a second process cannot help or start:
    fewer than two workers available (one core, or ``HEFED_WORKERS=1``), a pool worker, an
    unguarded ``__main__`` script, or a failed start."""
    if available_workers() < 2 or not _can_start_workers():
        return None
    try:
        worker = PipeWorker(serve)
    except (OSError, RuntimeError, ValueError, EOFError):
        return None
    with _LOCK:
        _PIPE_WORKERS.append(worker)
    return worker


@atexit.register
def stop_pipe_workers() -> None:
    """Stop every helper process (also run at exit)."""
    with _LOCK:
        workers = list(_PIPE_WORKERS)
    for worker in workers:
        worker.close()
