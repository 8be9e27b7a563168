"""Exact solution of integer linear systems, and naming the columns of a singular one.

For an integer matrix ``A`` (m × m) and integer vector ``b``, ``x = A⁻¹b`` is
returned as exact rationals, computed by FLINT's Dixon p-adic lifting
(:func:`hefed.primitives.certified.solve_rational`); nothing is rounded here.
A singular ``A`` is reported with the first column that depends on the ones
before it and the exact relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import flint

from .certified import integer_rank, rational_inverse, solve_rational


class SingularMatrixError(ArithmeticError):
    """The matrix is singular. ``dependent`` lists column ``k`` and the earlier columns
    it is a linear combination of; ``relation`` the exact coefficients of that relation."""

    def __init__(self, dependent: list[int], relation: dict[int, Fraction]) -> None:
        super().__init__(f"singular matrix: columns {dependent} are linearly dependent")
        self.dependent = dependent
        self.relation = relation


def solve_exact(matrix: Sequence[Sequence[int]], rhs: Sequence[int]) -> list[Fraction]:
    """Exact solution of ``matrix · x = rhs`` for a non-singular integer matrix (FLINT's Dixon solver).

    Raises :class:`SingularMatrixError` naming a dependent set of columns when
    the matrix is singular.
    """
    if not matrix:
        return []
    try:
        return solve_rational(matrix, [list(rhs)])[0]
    except ZeroDivisionError:
        raise _dependency(matrix) from None


def _dependency(matrix: Sequence[Sequence[int]]) -> SingularMatrixError:
    """The first column ``j`` that is a combination of the columns before it, and that combination.

    The leading columns are independent up to ``j`` (their rank grows one by one), so a binary search
    on the rank of the leading column blocks finds ``j``; the relation is the exact least-squares
    solution of column ``j`` on the columns before it (consistent, so exact).
    """
    m = len(matrix)

    def independent(j: int) -> bool:  # are the first j columns independent?
        return integer_rank([row[:j] for row in matrix]) == j

    lo, hi = 0, m  # independent(lo) holds; the first dependent prefix length is in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if independent(mid) else (lo, mid)
    j = hi - 1
    if j == 0:
        return SingularMatrixError([0], {})
    cols = flint.fmpz_mat(m, j, [row[c] for row in matrix for c in range(j)])
    target = flint.fmpz_mat(m, 1, [row[j] for row in matrix])
    normal, moment = cols.transpose() * cols, cols.transpose() * target
    coeffs = solve_rational(
        [[int(normal[r, c]) for c in range(j)] for r in range(j)], [[int(moment[r, 0]) for r in range(j)]])[0]
    relation = {c: v for c, v in enumerate(coeffs) if v != 0}
    return SingularMatrixError(sorted([j, *relation]), relation)



def exact_inverse(matrix: Sequence[Sequence[Fraction | int]]) -> list[list[Fraction]] | None:
    """Exact inverse of a square rational matrix (FLINT's Dixon solver on ``A·X = I``), or ``None``
    when ``A`` is singular."""
    return rational_inverse(matrix)
