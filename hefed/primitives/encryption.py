"""Encrypting packed plaintexts and decrypting ciphertexts, in batches.

Two encryption methods produce the same kind of ciphertext (an ordinary
Paillier ciphertext that phe's private key decrypts):

* ``"djn"`` (default): ``(1 + m·n) · hs^a mod n²`` with a short random
  exponent and a fixed-base table (:mod:`hefed.primitives.djn`); about 13×
  faster per ciphertext at 2048 bits, resting on a short-exponent assumption
  on top of Paillier's (see THREAT_MODEL.md).
* ``"classic"``: ``(1 + m·n) · r^n mod n²`` with uniform ``r``, exactly as phe
  encrypts (:mod:`hefed.primitives.paillier`).

Batches big enough to pay for it run on a process pool (:mod:`hefed._pool`).
The method is always named by the caller (no global or context state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from phe import PaillierPrivateKey, PaillierPublicKey

from .. import _pool as parallel
from ..errors import UsageError
from . import djn
from .paillier import decrypt_raw, encrypt_raw

#: How plaintexts are encrypted: DJN fixed-base (default) or phe's classic ``r^n``.
Encryption = Literal["djn", "classic"]
METHODS: tuple[str, ...] = get_args(Encryption)
DEFAULT_METHOD: Encryption = "djn"

# Each pool worker builds its own table (~0.2 s at 2048 bits), so a worker must get at least
# this many ciphertexts before the pool pays; below it everything stays in this process.
_MIN_ENCRYPTIONS_PER_WORKER = 512
# A CRT decryption is ~3 ms at 2048 bits: a few hundred are worth a worker start.
_MIN_DECRYPTIONS_PER_WORKER = 256

def check_method(method: object) -> Encryption:
    if method == "djn" or method == "classic":
        return method
    raise UsageError(f"encryption method must be one of {', '.join(METHODS)}, got {method!r}",
                     parameters=("encryption",))


def _encrypt_piece(plaintexts: Sequence[int], n: int, method: str) -> list[int]:
    if method == "djn":
        return djn.encrypt_many(n, plaintexts)
    public_key = PaillierPublicKey(n)
    return [encrypt_raw(public_key, p) for p in plaintexts]


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
    """Decrypt each ciphertext to its plaintext in ``[0, n)``; large batches use every core."""
    ciphertexts = [int(c) for c in ciphertexts]
    workers = parallel.workers_for(len(ciphertexts), _MIN_DECRYPTIONS_PER_WORKER)
    if workers == 1:
        return [decrypt_raw(private_key, c) for c in ciphertexts]
    pieces = parallel.split(ciphertexts, workers)
    parts = parallel.map_pieces(_decrypt_piece, pieces, private_key.p, private_key.q)
    return [m for part in parts for m in part]
