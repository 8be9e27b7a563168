"""Paillier encryption on raw integers, compatible with python-paillier (``phe``).

With public key ``n`` and generator ``g = n + 1`` (phe's choice), a plaintext
``m`` in ``[0, n)`` encrypts as::

    c = (1 + m·n) · r^n  mod n²          with r uniform in Z*_n

and ciphertexts add plaintexts: ``D(c1·c2 mod n²) = m1 + m2 mod n``. Decryption
is phe's CRT implementation, so ciphertexts made here are ordinary phe
ciphertexts. Randomness comes from :mod:`secrets` only.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Sequence

import gmpy2
from phe import PaillierPrivateKey, PaillierPublicKey


def random_unit(n: int) -> int:
    """A uniform random element of Z*_n (1 <= r < n, gcd(r, n) = 1)."""
    while True:
        r = secrets.randbelow(n - 1) + 1
        if math.gcd(r, n) == 1:
            return r


def encrypt_raw(public_key: PaillierPublicKey, plaintext: int) -> int:
    """Classic Paillier encryption ``(1 + m·n) · r^n mod n²`` of ``0 <= plaintext < n``."""
    n = public_key.n
    if not 0 <= plaintext < n:
        raise ValueError("plaintext out of range [0, n)")
    nsquare = gmpy2.mpz(public_key.nsquare)
    obfuscator = gmpy2.powmod(random_unit(n), n, nsquare)
    return int(gmpy2.f_mod((1 + gmpy2.mpz(plaintext) * n) * obfuscator, nsquare))


def decrypt_raw(private_key: PaillierPrivateKey, ciphertext: int) -> int:
    """Decrypt to the plaintext in ``[0, n)`` (phe's CRT decryption)."""
    return int(private_key.raw_decrypt(ciphertext))


def decrypt_raw_many(private_key: PaillierPrivateKey, ciphertexts: Sequence[int], threads: bool = True) -> list[int]:
    """:func:`decrypt_raw` of each ciphertext, the p and q halves of the CRT in two threads.

    The same arithmetic as phe's ``raw_decrypt`` (``L(c^(p−1) mod p²)·hp mod p``, likewise for
    q, then phe's own ``crt``), so the plaintexts are identical; but each half raises every
    ciphertext with one ``gmpy2.powmod_base_list`` call, which releases the GIL, so with
    ``threads`` the halves run on two cores at once."""
    key = private_key
    bases = [gmpy2.mpz(c) for c in ciphertexts]
    half: list[list[gmpy2.mpz]] = []

    def p_half() -> None:
        half.append(gmpy2.powmod_base_list(bases, key.p - 1, key.psquare))

    thread = threading.Thread(target=p_half, name="hefed-crt") if threads and len(bases) > 1 else None
    if thread is not None:
        thread.start()
    q_powers = gmpy2.powmod_base_list(bases, key.q - 1, key.qsquare)
    if thread is not None:
        thread.join()
    else:
        p_half()
    if len(half) != 1:  # the thread failed (it printed why): decrypt as phe does
        return [decrypt_raw(key, int(c)) for c in ciphertexts]
    p, q, hp, hq = key.p, key.q, key.hp, key.hq
    return [int(key.crt((x - 1) // p * hp % p, (y - 1) // q * hq % q)) for x, y in zip(half[0], q_powers, strict=True)]


def is_valid_ciphertext(n: int, ciphertext: int) -> bool:
    """A Paillier ciphertext lies in [1, n²) and is coprime to n.

    1 and n² − 1 are refused too: they are the trivial encryptions of 0 (r = ±1), which an
    honest encryption yields with negligible probability, but a forger writes down for free.
    """
    nsq = n * n
    return 1 < ciphertext < nsq - 1 and gmpy2.gcd(ciphertext, n) == 1  # gmpy2: ~20x math.gcd here
