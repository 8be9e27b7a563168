"""Exact solution of integer linear systems (fraction-free Bareiss elimination).

For an integer matrix ``A`` (m × m) and integer vector ``b``, Bareiss'
elimination keeps every intermediate entry an integer: step ``k`` replaces
``a_ij`` by ``(a_ij·a_kk − a_ik·a_kj) / p`` with ``p`` the previous pivot, and
the division is exact (Sylvester's identity). The solution ``x = A⁻¹b`` is then
returned as exact rationals; nothing is rounded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import gmpy2


class SingularMatrixError(ArithmeticError):
    """The matrix is singular. ``dependent`` lists column ``k`` and the earlier columns
    it is a linear combination of; ``relation`` the exact coefficients of that relation."""

    def __init__(self, dependent: list[int], relation: dict[int, Fraction]) -> None:
        super().__init__(f"singular matrix: columns {dependent} are linearly dependent")
        self.dependent = dependent
        self.relation = relation


def solve_exact(matrix: Sequence[Sequence[int]], rhs: Sequence[int]) -> list[Fraction]:
    """Exact solution of ``matrix · x = rhs`` for a non-singular integer matrix.

    Raises :class:`SingularMatrixError` naming a dependent set of columns when
    the matrix is singular.
    """
    m = len(matrix)
    a = [[gmpy2.mpz(v) for v in row] + [gmpy2.mpz(r)] for row, r in zip(matrix, rhs, strict=True)]
    perm = list(range(m))  # row order, to report dependencies in the caller's terms
    prev = gmpy2.mpz(1)
    for k in range(m):
        pivot = next((i for i in range(k, m) if a[i][k] != 0), None)
        if pivot is None:
            raise _dependency(matrix, k)
        if pivot != k:
            a[k], a[pivot] = a[pivot], a[k]
            perm[k], perm[pivot] = perm[pivot], perm[k]
        akk = a[k][k]
        for i in range(k + 1, m):
            aik = a[i][k]
            row_i, row_k = a[i], a[k]
            for j in range(k + 1, m + 1):
                row_i[j] = gmpy2.divexact(row_i[j] * akk - aik * row_k[j], prev)
            row_i[k] = gmpy2.mpz(0)
        prev = akk
    x = [gmpy2.mpq(0)] * m
    for i in range(m - 1, -1, -1):
        acc = gmpy2.mpq(a[i][m])
        for j in range(i + 1, m):
            acc -= a[i][j] * x[j]
        x[i] = acc / a[i][i]
    return [Fraction(int(v.numerator), int(v.denominator)) for v in x]


def _dependency(matrix: Sequence[Sequence[int]], k: int) -> SingularMatrixError:
    """Find the smallest leading set of columns containing a dependency, ending at some j >= k.

    Column ``j`` is the first whose leading (j+1)×(j+1) block is singular; the block
    of the columns before it is then non-singular and gives the exact relation.
    """
    m = len(matrix)
    for j in range(m):
        sub = [[matrix[r][c] for c in range(j + 1)] for r in range(m)]
        rank_before = _rank([row[:j] for row in sub])
        if _rank(sub) == rank_before:
            # column j = Σ c_i column_i over the earlier independent columns
            basis = _independent_columns([row[:j] for row in sub])
            coeffs = _least_squares_exact(
                [[row[c] for c in basis] for row in sub], [row[j] for row in sub]
            )
            relation = {c: v for c, v in zip(basis, coeffs, strict=True) if v != 0}
            return SingularMatrixError(sorted([j, *relation]), relation)
    return SingularMatrixError(list(range(k, m)), {})


def _rank(rows: Sequence[Sequence[int]]) -> int:
    if not rows or not rows[0]:
        return 0
    a = [[gmpy2.mpq(v) for v in row] for row in rows]
    rank, cols = 0, len(a[0])
    for c in range(cols):
        pivot = next((r for r in range(rank, len(a)) if a[r][c] != 0), None)
        if pivot is None:
            continue
        a[rank], a[pivot] = a[pivot], a[rank]
        for r in range(len(a)):
            if r != rank and a[r][c] != 0:
                f = a[r][c] / a[rank][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[rank], strict=True)]
        rank += 1
    return rank


def _independent_columns(rows: Sequence[Sequence[int]]) -> list[int]:
    chosen: list[int] = []
    for c in range(len(rows[0]) if rows else 0):
        if _rank([[row[i] for i in [*chosen, c]] for row in rows]) == len(chosen) + 1:
            chosen.append(c)
    return chosen


def _least_squares_exact(cols: Sequence[Sequence[int]], target: Sequence[int]) -> list[Fraction]:
    """Exact coefficients c with cols·c = target, for full-column-rank ``cols`` (consistent)."""
    if not cols or not cols[0]:
        return []
    n = len(cols[0])
    normal = [[sum(r[i] * r[j] for r in cols) for j in range(n)] for i in range(n)]
    rhs = [sum(r[i] * t for r, t in zip(cols, target, strict=True)) for i in range(n)]
    return solve_exact(normal, rhs)


def _mpq(value: Fraction | int) -> gmpy2.mpq:
    value = Fraction(value)
    return gmpy2.mpq(value.numerator, value.denominator)


def exact_inverse(matrix: Sequence[Sequence[Fraction | int]]) -> list[list[Fraction]] | None:
    """Exact inverse of a square rational matrix by Gauss-Jordan elimination in ``gmpy2.mpq``.

    Row-reduces ``[A | I]`` to ``[I | A⁻¹]``; every operation is exact rational
    arithmetic, so the result is ``A⁻¹`` exactly. Returns ``None`` when ``A`` is
    singular (a column has no non-zero pivot).
    """
    m = len(matrix)
    a = [[_mpq(v) for v in row] + [gmpy2.mpq(int(i == j)) for j in range(m)] for i, row in enumerate(matrix)]
    if any(len(row) != 2 * m for row in a):
        raise ValueError("exact_inverse needs a square matrix")
    for k in range(m):
        pivot = next((i for i in range(k, m) if a[i][k] != 0), None)
        if pivot is None:
            return None
        a[k], a[pivot] = a[pivot], a[k]
        inv_pivot = 1 / a[k][k]
        row_k = [v * inv_pivot for v in a[k]]
        a[k] = row_k
        for i in range(m):
            factor = a[i][k]
            if i != k and factor != 0:
                row_i = a[i]
                a[i] = [x - factor * y for x, y in zip(row_i, row_k, strict=True)]
    return [[Fraction(int(v.numerator), int(v.denominator)) for v in row[m:]] for row in a]
