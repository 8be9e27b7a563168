"""An exact least-squares reference for the tests, independent of hefed: normal equations formed from rows of
rationals and solved by Gauss–Jordan elimination in :class:`fractions.Fraction`.

Every float64 is a rational, so the coefficients these give are the exact solution of the float64 data, to
compare with hefed's integer for integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def normal_equations(
    rows: Sequence[Sequence[Fraction]], y: Sequence[Fraction],
) -> tuple[list[list[Fraction]], list[Fraction]]:
    """(ZᵀZ, Zᵀy) of the design rows ``rows`` (an intercept column included by the caller, if any)."""
    m = len(rows[0])
    a = [[sum((row[i] * row[j] for row in rows), Fraction(0)) for j in range(m)] for i in range(m)]
    b = [sum((row[i] * t for row, t in zip(rows, y, strict=True)), Fraction(0)) for i in range(m)]
    return a, b


def solve_or_none(a: Sequence[Sequence[Fraction]], b: Sequence[Fraction]) -> list[Fraction] | None:
    """x with a·x = b, by Gauss–Jordan elimination with (non-zero) pivoting; ``None`` when ``a`` is singular."""
    m = len(b)
    aug = [[*map(Fraction, row), Fraction(v)] for row, v in zip(a, b, strict=True)]
    for k in range(m):
        pivot = next((i for i in range(k, m) if aug[i][k] != 0), None)
        if pivot is None:
            return None
        aug[k], aug[pivot] = aug[pivot], aug[k]
        for i in range(m):
            if i != k and aug[i][k] != 0:
                f = aug[i][k] / aug[k][k]
                aug[i] = [u - f * v for u, v in zip(aug[i], aug[k], strict=True)]
    return [aug[k][m] / aug[k][k] for k in range(m)]


def gauss_solve(a: Sequence[Sequence[Fraction]], b: Sequence[Fraction]) -> list[Fraction]:
    """x with a·x = b exactly (``a`` must be non-singular)."""
    x = solve_or_none(a, b)
    if x is None:
        raise ZeroDivisionError("singular system in the exact reference")
    return x
