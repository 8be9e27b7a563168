"""Encrypting packed plaintexts and decrypting ciphertexts, in batches.

Two encryption methods produce the same kind of ciphertext (an ordinary
Paillier ciphertext that phe's private key decrypts):

* ``"djn"`` (default): ``(1 + m·n) · hs^a mod n²`` with a short random
  exponent and a fixed-base table (:mod:`hefed.primitives.djn`); 10–16× faster
  per ciphertext at 2048 bits, resting on a short-exponent assumption on top
  of Paillier's (see THREAT_MODEL.md).
* ``"classic"``: ``(1 + m·n) · r^n mod n²`` with uniform ``r``, exactly as phe
  encrypts (:mod:`hefed.primitives.paillier`).

Batches big enough to pay for it run on a process pool (:mod:`hefed._pool`).
A single bundle is too small for the pool; once a process has encrypted enough
under one key to want the widest DJN table (or after :func:`warm_up`), a warm
helper process (:class:`hefed._pool.PipeWorker`, where two cores exist) holds
its own table and encrypts part of each bundle while this process encrypts the
rest. The helper draws its exponents from ``os.urandom`` like this process;
ciphertexts from either are ordinary DJN ciphertexts under the same key.
Decryption runs the p and q halves of phe's CRT decryption in two threads.
The method is always named by the caller (no global or context state).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, get_args

from phe import PaillierPrivateKey, PaillierPublicKey

from .. import _pool as parallel
from ..errors import UsageError
from . import djn
from .paillier import decrypt_raw, decrypt_raw_many, encrypt_raw

#: How plaintexts are encrypted: DJN fixed-base (default) or phe's classic ``r^n``.
Encryption = Literal["djn", "classic"]
METHODS: tuple[str, ...] = get_args(Encryption)
DEFAULT_METHOD: Encryption = "djn"

# Each pool worker builds its own table (~0.2 s at 2048 bits), so a worker must get at least
# this many ciphertexts before the pool pays; below it everything stays in this process.
_MIN_ENCRYPTIONS_PER_WORKER = 512
# A CRT decryption is ~3 ms at 2048 bits: a few hundred are worth a worker start.
_MIN_DECRYPTIONS_PER_WORKER = 256
# The helper process starts once this process has encrypted this many ciphertexts under one key
# (a process that goes on encrypting: a Flower client, folds, evaluations), so a one-bundle
# command never pays for a second process and its 0.5 s table. The window-10 table pays for
# itself after ~1,400 ciphertexts (2048 bits).
_HELPER_AFTER = 512
# Bundles smaller than this stay in this process: a pipe round trip costs ~0.2 ms.
_MIN_HELPER_BATCH = 4


def check_method(method: object) -> Encryption:
    if method == "djn" or method == "classic":
        return method
    raise UsageError(f"encryption method must be one of {', '.join(METHODS)}, got {method!r}",
                     parameters=("encryption",))


def _serve(connection: Any) -> None:
    """The helper process: ``("prepare", n)`` builds the widest table for ``n`` and answers
    ``("ready", n)``; ``("encrypt", n, plaintexts)`` answers ``("result", ciphertexts)``;
    ``None`` (or a closed pipe) stops it. Any failure answers ``("error", message)``."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            if message[0] == "prepare":
                djn.prepare(message[1])
                connection.send(("ready", message[1]))
            else:  # ("encrypt", sequence number, n, plaintexts): the answer names the request it answers
                connection.send(("result", message[1], message[2], djn.encrypt_many(message[2], message[3])))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who encrypts itself
            try:
                connection.send(("error", f"{type(exc).__name__}: {exc}"))
            except (OSError, ValueError):
                return


class _Helper:
    """This process's side of the helper: which keys it has a table for, and the exchange."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: parallel.PipeWorker | None = None
        self.failed = False
        self.ready: OrderedDict[int, None] = OrderedDict()  # mirrors the helper's table cache (LRU)
        self.pending: set[int] = set()
        self.sequence = 0  # numbers each encryption request: a stale answer is never taken for a new one
        self.pid = os.getpid()

    def forget(self) -> None:
        """In a forked child: the helper and its pipe belong to the parent; never use (or close) them."""
        self.lock = threading.Lock()
        self.worker, self.failed, self.pid = None, False, os.getpid()
        self.ready = OrderedDict()
        self.pending = set()

    def _start(self) -> parallel.PipeWorker | None:
        if self.pid != os.getpid():
            self.forget()
        if self.worker is None and not self.failed:
            self.worker = parallel.start_pipe_worker(_serve)
            self.failed = self.worker is None
        return self.worker

    def _take(self, message: Any) -> Any:
        """Book a ``ready``/``error`` message; return a ``result``'s ciphertexts (else None)."""
        kind = message[0]
        if kind == "ready":
            self.pending.discard(message[1])
            self.ready[message[1]] = None
            self.ready.move_to_end(message[1])
            while len(self.ready) > djn.MAX_TABLES:
                self.ready.popitem(last=False)
            return None
        if kind == "error":
            raise RuntimeError(message[1])
        return message

    def drop(self) -> None:
        worker, self.worker, self.failed = self.worker, None, True
        self.ready.clear()
        self.pending.clear()
        if worker is not None:
            worker.close(timeout=0.5)

    def stop(self) -> None:
        """Stop the helper; the next eligible batch may start a fresh one."""
        with self.lock:
            self.drop()
            self.failed = False

    def prepare(self, n: int, wait: bool) -> bool:
        """Ask the helper (started if need be) to build its table for ``n``; with ``wait``,
        block until it has. True when the helper holds a table for ``n``."""
        with self.lock:
            worker = self._start()
            if worker is None:
                return False
            try:
                self._drain(worker)
                if n not in self.ready and n not in self.pending:
                    worker.send(("prepare", n))
                    self.pending.add(n)
                while wait and n in self.pending:
                    self._take(worker.recv())
            except (OSError, EOFError, ValueError, RuntimeError):
                self.drop()
                return False
            except BaseException:  # interrupted mid-exchange: the pipe's state is unknown, so it is not reused
                self.drop()
                raise
            return n in self.ready

    def _drain(self, worker: parallel.PipeWorker) -> None:
        while worker.poll():
            self._take(worker.recv())

    def encrypt(self, n: int, plaintexts: list[int]) -> list[int]:
        """Encrypt ``plaintexts``, part in the helper when it holds a table for ``n``."""
        count = len(plaintexts)
        if self.pid != os.getpid():
            return djn.encrypt_many(n, plaintexts)  # a forked child: the helper is the parent's
        if count < _MIN_HELPER_BATCH or not self.lock.acquire(blocking=False):
            return djn.encrypt_many(n, plaintexts)
        try:
            table = djn.table_for(n, count)
            worker = self.worker
            if worker is None:
                return table.encrypt_many(plaintexts)
            try:
                self._drain(worker)
            except (OSError, EOFError, ValueError, RuntimeError):
                self.drop()
                return table.encrypt_many(plaintexts)
            if n not in self.ready or self.pending:
                return table.encrypt_many(plaintexts)
            self.ready.move_to_end(n)
            # share by cost: one multiplication per window of the exponent in either process
            helper_rows = -(-table.bits // max(djn.WINDOWS))
            theirs = round(count * len(table.rows) / (len(table.rows) + helper_rows))
            self.sequence += 1
            sequence = self.sequence
            try:
                worker.send(("encrypt", sequence, n, plaintexts[:theirs]))
            except (OSError, ValueError):
                self.drop()
                return table.encrypt_many(plaintexts)
            try:
                mine = table.encrypt_many(plaintexts[theirs:])
                while True:
                    answer = self._take(worker.recv())
                    if answer is not None and answer[1] == sequence:
                        break
                if answer[2] != n or len(answer[3]) != theirs:
                    raise RuntimeError("the helper answered for another key or another number of ciphertexts")
                result = answer[3]
            except (OSError, EOFError, ValueError, RuntimeError):
                self.drop()
                result = table.encrypt_many(plaintexts[:theirs])
            except BaseException:  # interrupted (KeyboardInterrupt, a timeout): its answer must never be reused
                self.drop()
                raise
            return [*result, *mine]
        finally:
            self.lock.release()


_HELPER = _Helper()
os.register_at_fork(after_in_child=_HELPER.forget)
_USED: dict[int, int] = {}  # ciphertexts this process has encrypted in bundles, per key (bounded)
_USED_LOCK = threading.Lock()


def _encrypt_bundle(n: int, plaintexts: list[int]) -> list[int]:
    """One bundle's worth (too small for the pool): this process, with the helper once warm."""
    with _USED_LOCK:
        used = _USED.pop(n, 0) + len(plaintexts)
        _USED[n] = used
        while len(_USED) > djn.MAX_TABLES:
            _USED.pop(next(iter(_USED)), None)
    if used >= _HELPER_AFTER and len(plaintexts) >= _MIN_HELPER_BATCH:
        _HELPER.prepare(n, wait=False)  # started lazily; used from the bundle after it is ready
    return _HELPER.encrypt(n, plaintexts)


def _encrypt_piece(plaintexts: Sequence[int], n: int, method: str) -> list[int]:
    if method == "djn":
        return _encrypt_bundle(n, [int(p) for p in plaintexts])
    public_key = PaillierPublicKey(n)
    return [encrypt_raw(public_key, p) for p in plaintexts]


def warm_up(public_key: PaillierPublicKey, helper: bool = True) -> bool:
    """Make this process warm for ``public_key``: build the widest DJN table here and (with
    ``helper``, where two cores exist) start the helper process and wait until it holds its
    own. For a process that will encrypt many bundles (a benchmark, a long-lived client).
    True when the helper is ready."""
    djn.prepare(public_key.n)
    return helper and _HELPER.prepare(public_key.n, wait=True)


def stop_helper() -> None:
    """Stop the helper process (if any): the next warm batch starts a fresh, cold one."""
    _HELPER.stop()
    with _USED_LOCK:
        _USED.clear()


def encrypt_plaintexts(
    public_key: PaillierPublicKey, plaintexts: Sequence[int], method: Encryption = DEFAULT_METHOD
) -> list[int]:
    """Encrypt each plaintext in ``[0, n)``; large batches use every core."""
    method = check_method(method)
    for p in plaintexts:
        if not 0 <= p < public_key.n:
            raise ValueError("plaintext out of range [0, n)")
    plaintexts = [int(p) for p in plaintexts]
    workers = parallel.workers_for(len(plaintexts), _MIN_ENCRYPTIONS_PER_WORKER)
    pieces = parallel.split(plaintexts, workers)
    return [c for part in parallel.map_pieces(_encrypt_piece, pieces, public_key.n, method) for c in part]


def _decrypt_piece(ciphertexts: Sequence[int], p: int, q: int) -> list[int]:
    # Rebuilt for each batch and dropped with it: a worker keeps no key between batches.
    key = PaillierPrivateKey(PaillierPublicKey(p * q), p, q)
    return [decrypt_raw(key, c) for c in ciphertexts]


def decrypt_ciphertexts(private_key: PaillierPrivateKey, ciphertexts: Sequence[int]) -> list[int]:
    """Decrypt each ciphertext to its plaintext in ``[0, n)``; large batches use every core,
    smaller ones the p and q halves of the CRT in two threads."""
    ciphertexts = [int(c) for c in ciphertexts]
    workers = parallel.workers_for(len(ciphertexts), _MIN_DECRYPTIONS_PER_WORKER)
    if workers == 1:
        return decrypt_raw_many(private_key, ciphertexts, threads=parallel.available_workers() > 1)
    pieces = parallel.split(ciphertexts, workers)
    parts = parallel.map_pieces(_decrypt_piece, pieces, private_key.p, private_key.q)
    return [m for part in parts for m in part]
