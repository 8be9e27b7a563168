"""Shamir secret sharing over a prime field (t-of-n), for the drop-out recovery of masked rounds.

A secret ``s`` in ``[0, p)`` is the constant term of a random polynomial ``f`` of degree ``t − 1``
over GF(p); participant ``i`` (1-based index) holds ``f(i)``. Any ``t`` shares give ``s`` back by
Lagrange interpolation at 0; any ``t − 1`` shares are jointly uniform whatever ``s`` is
(information-theoretically: every value of ``s`` is consistent with exactly one polynomial through
them). Coefficients come from :mod:`secrets` only.

:data:`PRIME` = 2^256 + 297, the smallest prime above 2^256, so any 32-byte secret (an X25519
private key, a 256-bit seed) is a field element; a share is 33 bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

PRIME = 2**256 + 297
#: Bytes of one share of :data:`PRIME` (big-endian).
SHARE_BYTES = (PRIME.bit_length() + 7) // 8

__all__ = ["PRIME", "SHARE_BYTES", "combine", "combine_bytes", "lagrange_at_zero", "split", "split_bytes"]


def _check(threshold: int, count: int, prime: int) -> None:
    if not 1 <= threshold <= count:
        raise ValueError(f"threshold {threshold} must lie between 1 and the number of shares {count}")
    if count >= prime:
        raise ValueError("more shares than the field has non-zero points")


def split(secret: int, threshold: int, count: int, prime: int = PRIME) -> dict[int, int]:
    """Shares ``{i: f(i)}`` for ``i = 1 … count`` of ``secret`` (``0 <= secret < prime``); any
    ``threshold`` of them reconstruct it."""
    _check(threshold, count, prime)
    if not 0 <= secret < prime:
        raise ValueError("the secret must lie in [0, prime)")
    coefficients = [secret] + [secrets.randbelow(prime) for _ in range(threshold - 1)]
    shares = {}
    for x in range(1, count + 1):
        y = 0
        for a in reversed(coefficients):  # Horner
            y = (y * x + a) % prime
        shares[x] = y
    return shares


def lagrange_at_zero(indexes: Sequence[int], prime: int = PRIME) -> list[int]:
    """The Lagrange coefficients ``λ_j`` with ``f(0) = Σ λ_j f(x_j)`` for the points ``indexes`` (distinct,
    non-zero): computed once, they combine the shares of any number of secrets held at the same points."""
    points = [x % prime for x in indexes]
    if not points:
        raise ValueError("no shares to combine")
    if any(x == 0 for x in points) or len(set(points)) != len(points):
        raise ValueError("share indexes must be distinct and non-zero")
    coefficients = []
    for j, xj in enumerate(points):
        numerator, denominator = 1, 1
        for m, xm in enumerate(points):
            if m != j:
                numerator = numerator * xm % prime
                denominator = denominator * (xm - xj) % prime
        coefficients.append(numerator * pow(denominator, -1, prime) % prime)
    return coefficients


def combine(shares: Mapping[int, int], prime: int = PRIME, coefficients: Sequence[int] | None = None) -> int:
    """The secret from shares ``{index: value}`` (at least the threshold many; indexes distinct, non-zero),
    optionally with the points' :func:`lagrange_at_zero` coefficients already computed (in the same order).

    With fewer than the threshold the result is a uniformly random field element, not an error:
    callers check what they reconstruct (a commitment, a public key).
    """
    weights = lagrange_at_zero(list(shares), prime) if coefficients is None else coefficients
    if len(weights) != len(shares):
        raise ValueError("one coefficient per share")
    return sum(w * (y % prime) for w, y in zip(weights, shares.values(), strict=True)) % prime


def split_bytes(secret: bytes, threshold: int, count: int) -> dict[int, int]:
    """:func:`split` for a secret of at most 32 bytes (read big-endian)."""
    if len(secret) > 32:
        raise ValueError("at most 32 bytes can be shared in one field element")
    return split(int.from_bytes(secret, "big"), threshold, count)


def combine_bytes(shares: Mapping[int, int], length: int = 32, coefficients: Sequence[int] | None = None) -> bytes:
    """:func:`combine` back to ``length`` bytes; a value that does not fit means wrong shares."""
    value = combine(shares, PRIME, coefficients)
    if value.bit_length() > 8 * length:
        raise ValueError("the shares do not combine to a secret of that length")
    return value.to_bytes(length, "big")
