"""Encrypting packed plaintexts and decrypting ciphertexts, in batches.

Two encryption methods produce the same kind of ciphertext (an ordinary
Paillier ciphertext that phe's private key decrypts):

* ``"djn"`` (default): ``(1 + m·n) · hs^a mod n²`` with a short random
  exponent and a fixed-base table (:mod:`hefed.primitives.djn`); about 13×
  faster per ciphertext at 2048 bits, resting on a short-exponent assumption
  on top of Paillier's (see THREAT_MODEL.md).
* ``"classic"``: ``(1 + m·n) · r^n mod n²`` with uniform ``r``, exactly as phe
  encrypts (:mod:`hefed.primitives.paillier`).

Batches big enough to pay for it run on a process pool (:mod:`hefed.parallel`).
The method used by :meth:`hefed.bundle.Bundle.seal` when none is named can be
set for a block of code with :func:`encryption_method`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

from phe import PaillierPrivateKey, PaillierPublicKey

from . import parallel
from .errors import UsageError
from .primitives import djn
from .primitives.paillier import decrypt_raw, encrypt_raw

METHODS = ("djn", "classic")
DEFAULT_METHOD = "djn"

# Each pool worker builds its own table (~0.2 s at 2048 bits), so a worker must get at least
# this many ciphertexts before the pool pays; below it everything stays in this process.
_MIN_ENCRYPTIONS_PER_WORKER = 512
# A CRT decryption is ~3 ms at 2048 bits: a few hundred are worth a worker start.
_MIN_DECRYPTIONS_PER_WORKER = 256

_METHOD: ContextVar[str] = ContextVar("hefed_encryption_method", default=DEFAULT_METHOD)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"encryption method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def current_method() -> str:
    """The method :meth:`~hefed.bundle.Bundle.seal` uses when none is named."""
    return _METHOD.get()


@contextlib.contextmanager
def encryption_method(method: str) -> Iterator[None]:
    """Use ``method`` ("djn" or "classic") for every bundle sealed inside the ``with`` block."""
    token = _METHOD.set(check_method(method))
    try:
        yield
    finally:
        _METHOD.reset(token)


def _encrypt_piece(plaintexts: Sequence[int], n: int, method: str) -> list[int]:
    if method == "djn":
        return djn.encrypt_many(n, plaintexts)
    public_key = PaillierPublicKey(n)
    return [encrypt_raw(public_key, p) for p in plaintexts]


def encrypt_plaintexts(
    public_key: PaillierPublicKey, plaintexts: Sequence[int], method: str | None = None
) -> list[int]:
    """Encrypt each plaintext in ``[0, n)``; large batches use every core."""
    method = check_method(method or current_method())
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
    """Decrypt each ciphertext to its plaintext in ``[0, n)``; large batches use every core."""
    ciphertexts = [int(c) for c in ciphertexts]
    workers = parallel.workers_for(len(ciphertexts), _MIN_DECRYPTIONS_PER_WORKER)
    if workers == 1:
        return [decrypt_raw(private_key, c) for c in ciphertexts]
    pieces = parallel.split(ciphertexts, workers)
    parts = parallel.map_pieces(_decrypt_piece, pieces, private_key.p, private_key.q)
    return [m for part in parts for m in part]
