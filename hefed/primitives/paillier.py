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


def is_valid_ciphertext(n: int, ciphertext: int) -> bool:
    """A Paillier ciphertext lies in [1, n²) and is coprime to n.

    1 and n² − 1 are refused too: they are the trivial encryptions of 0 (r = ±1), which an
    honest encryption yields with negligible probability, but a forger writes down for free.
    """
    nsq = n * n
    return 1 < ciphertext < nsq - 1 and gmpy2.gcd(ciphertext, n) == 1  # gmpy2: ~20x math.gcd here
