"""DJN encryption: Paillier ciphertexts from a short exponent of a fixed base.

Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key system
with applications to electronic voting", IJIS 2010, section 4.2) encrypt under
the same public key ``n`` (``g = n + 1``) as::

    h  = −x² mod n            for one random unit x (once per table)
    hs = h^n mod n²
    c  = (1 + m·n) · hs^a mod n²     with a uniform random exponent a of |n|/2 bits

Because ``hs^a = (h^a)^n`` is an n-th power, ``c`` is an ordinary Paillier
ciphertext of ``m``: phe's private key decrypts it unchanged. The gain is that
``hs`` is a fixed base: with a table of ``hs^(d·2^(w·i))`` for every window
``i`` and digit ``d`` (the fixed-base windowed method), ``hs^a`` costs one
modular multiplication per ``w``-bit window of ``a`` instead of a full
``|n|``-bit exponentiation. Intel's Paillier library (IPCL) and Ant Group's
HEU ("ZPaillier") encrypt this way.

Security: beyond Paillier's decisional composite residuosity assumption, DJN
relies on a short-exponent assumption (that ``hs^a`` with a |n|/2-bit ``a``
is indistinguishable from a uniform n-th residue). Callers that do not want
that extra assumption use :func:`hefed.primitives.paillier.encrypt_raw`
(classic ``r^n``). ``x`` comes from :mod:`secrets`; the exponent ``a`` is
drawn straight from :func:`os.urandom` as its ``w``-bit window digits (one
system call per batch, no big-integer-to-digits conversion per ciphertext):
uniform digits give a uniform ``a`` in ``[0, 2^bits)``, exactly as
``secrets.randbits(bits)`` would.

Tables are kept per public key per process (:func:`table_for`), so repeated
calls in one process (ten factories simulated in a benchmark, a Flower client,
a pool worker) build them once. The window grows with the number of
encryptions a process has asked for, so one small bundle does not pay for a
52 MiB table it would never use (at 2048 bits a window-6 table takes 0.05 s
and 0.9 ms per ciphertext; window 10 takes 0.5 s and 0.55 ms). The widest
window is 10: window 11 is 5–10% faster per ciphertext but doubles the build
time and the memory (94 MiB per process at 2048 bits, 210 MiB at 3072), which
pays only after ~9,000 ciphertexts, and batches that large go to the process
pool anyway. :func:`prepare` builds the widest table at once (a warm process).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import gmpy2
import numpy as np

from .paillier import random_unit

#: Windows the table may use. The widest pay only for thousands of encryptions
#: (a 10-bit table is 52 MiB at 2048 bits and takes ~0.5 s to build). Digits are drawn as
#: 16-bit words, so a window never exceeds 16 bits.
WINDOWS = range(2, 11)
#: Largest table allowed, per key and process: window 10 at 3072 bits (116 MiB) fits.
MAX_TABLE_BYTES = 128 << 20
#: An expected use that makes :func:`best_window` choose the widest window that fits.
WARM = 1 << 30
#: Tables kept per process (least recently used dropped first).
MAX_TABLES = 2
_MIN_EXPECTED = 256


def exponent_bits(n: int) -> int:
    """Bits of the random exponent ``a``: half the modulus' bits, as DJN, IPCL and HEU use."""
    return (n.bit_length() + 1) // 2


def _cost(window: int, bits: int, count: int) -> int:
    """Modular multiplications to build a ``window`` table and raise it to ``count`` exponents."""
    rows = -(-bits // window)
    return rows * ((1 << window) - 2) + count * rows


def table_bytes(window: int, bits: int, modulus_bytes: int) -> int:
    """Memory of a table: one residue mod n² per window position and digit."""
    return -(-bits // window) * (1 << window) * modulus_bytes


def best_window(bits: int, count: int) -> int:
    """The window that minimises table building plus ``count`` fixed-base exponentiations,
    among those whose table fits in :data:`MAX_TABLE_BYTES` (``bits`` is the exponent's:
    half the modulus', so a residue mod n² takes ``bits / 2`` bytes)."""
    fits = [w for w in WINDOWS if table_bytes(w, bits, bits // 2) <= MAX_TABLE_BYTES]
    return min(fits, key=lambda w: _cost(w, bits, count))


class FixedBaseTable:
    """``hs^a mod n²`` for any ``a < 2^bits`` by one table look-up and multiplication per window.

    ``rows[i][d] = hs^(d · 2^(window·i)) mod n²`` for ``d`` in ``1 .. 2^window − 1``
    (index 0 unused), so ``hs^a = Π_i rows[i][digit_i(a)]``.
    """

    def __init__(self, n: int, window: int, hs: int | None = None) -> None:
        if window not in WINDOWS:
            raise ValueError(f"window must be in {WINDOWS.start}..{WINDOWS.stop - 1}")
        self.n = n
        self.nsquare = gmpy2.mpz(n) * n
        self.bits = exponent_bits(n)
        self.window = window
        if hs is None:
            x = random_unit(n)
            h = (-(x * x)) % n
            hs = int(gmpy2.powmod(h, n, self.nsquare))
        self.hs = gmpy2.mpz(hs)
        self.rows: list[list[gmpy2.mpz]] = []
        base = self.hs
        for _ in range(-(-self.bits // window)):
            row = [gmpy2.mpz(1), base]
            for _ in range((1 << window) - 2):
                row.append(row[-1] * base % self.nsquare)
            self.rows.append(row)
            base = row[-1] * base % self.nsquare  # hs^(2^(window·(i+1)))
        # the last window holds only the exponent's remaining top bits
        top = self.bits - window * (len(self.rows) - 1)
        self._masks = np.array([(1 << window) - 1] * (len(self.rows) - 1) + [(1 << top) - 1], dtype=np.uint16)

    def random_digits(self, count: int) -> list[list[int]]:
        """``count`` uniform random exponents of :attr:`bits` bits, each as its window digits
        (least significant first), from one :func:`os.urandom` call: the low ``w`` bits of a
        uniform 16-bit word are uniform, and so is the exponent they spell."""
        words = np.frombuffer(os.urandom(2 * count * len(self.rows)), dtype=np.uint16)
        digits: list[list[int]] = (words.reshape(count, len(self.rows)) & self._masks).tolist()
        return digits

    def _power_digits(self, start: gmpy2.mpz, digits: Sequence[int]) -> gmpy2.mpz:
        """``start · hs^a mod n²`` for the exponent ``a`` whose window digits are ``digits``."""
        nsquare, result = self.nsquare, start
        for row, digit in zip(self.rows, digits, strict=True):
            if digit:
                result = result * row[digit] % nsquare
        return result

    def power(self, exponent: int) -> gmpy2.mpz:
        """``hs^exponent mod n²`` for ``0 <= exponent < 2^bits``."""
        if not 0 <= exponent < (1 << self.bits):
            raise ValueError("exponent out of range")
        mask, window, nsquare = (1 << self.window) - 1, self.window, self.nsquare
        result = gmpy2.mpz(1)
        e = gmpy2.mpz(exponent)
        for row in self.rows:
            digit = int(e & mask)
            if digit:
                result = result * row[digit] % nsquare
            e >>= window
        return result

    def random_nth_power(self) -> gmpy2.mpz:
        """``hs^a`` for a fresh uniform ``a`` of :attr:`bits` bits (the DJN obfuscator)."""
        return self._power_digits(gmpy2.mpz(1), self.random_digits(1)[0])

    def encrypt(self, plaintext: int) -> int:
        """DJN encryption ``(1 + m·n) · hs^a mod n²`` of ``0 <= plaintext < n``."""
        return self.encrypt_many([plaintext])[0]

    def encrypt_many(self, plaintexts: Sequence[int]) -> list[int]:
        """DJN-encrypt each plaintext in ``[0, n)``, each with a fresh exponent."""
        n = self.n
        for p in plaintexts:
            if not 0 <= p < n:
                raise ValueError("plaintext out of range [0, n)")
        digits = self.random_digits(len(plaintexts))
        # 1 + m·n < n² for m < n, so it needs no reduction before the first multiplication
        return [int(self._power_digits(1 + gmpy2.mpz(p) * n, d)) for p, d in zip(plaintexts, digits, strict=True)]


class _TableCache:
    """At most a few tables per process, keyed by the public modulus; thread safe."""

    def __init__(self) -> None:
        self._tables: OrderedDict[int, FixedBaseTable] = OrderedDict()
        self._used: dict[int, int] = {}
        self._lock = threading.Lock()

    def get(self, n: int, count: int) -> FixedBaseTable:
        with self._lock:
            table = self._tables.get(n)
            # Expect the process to go on encrypting about as much as it already has, and at
            # least a few bundles' worth: a 256-encryption table costs ~20 ms more than the
            # cheapest one for a single 33-ciphertext bundle, and pays for itself from the
            # third bundle (folds, evaluations, simulations of several factories).
            expected = max(count + self._used.get(n, 0), _MIN_EXPECTED)
            self._used[n] = expected
            bits = exponent_bits(n)
            window = best_window(bits, expected)
            if table is None or (
                window > table.window
                and _cost(window, bits, expected) < expected * math.ceil(bits / table.window)
            ):
                table = FixedBaseTable(n, window)
                self._tables[n] = table
            self._tables.move_to_end(n)
            while len(self._tables) > MAX_TABLES:
                old, _ = self._tables.popitem(last=False)
                self._used.pop(old, None)
            return table

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._used.clear()


_CACHE = _TableCache()


def table_for(n: int, count: int = 1) -> FixedBaseTable:
    """This process's table for modulus ``n``, built or widened for ``count`` more encryptions."""
    return _CACHE.get(n, count)


def prepare(n: int) -> FixedBaseTable:
    """Build (or keep) the widest table for ``n`` now: the table a warm process encrypts with."""
    return _CACHE.get(n, WARM)


def clear_tables() -> None:
    """Forget every cached table (tests; or to drop the memory)."""
    _CACHE.clear()


def encrypt_many(n: int, plaintexts: Sequence[int]) -> list[int]:
    """DJN-encrypt each plaintext in ``[0, n)`` with this process's table for ``n``."""
    return table_for(n, len(plaintexts)).encrypt_many([int(p) for p in plaintexts])
