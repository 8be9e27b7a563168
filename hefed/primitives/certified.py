"""Certified float64 results from ball arithmetic, and exact rational solves (FLINT, via python-flint).

Ball arithmetic (``arb``) carries every real as a midpoint and a radius that
is a rigorous bound on the error of everything computed so far. When all the
reals of a ball round to the same float64 (to nearest, ties to even), that
float64 *is* the correctly rounded value of the exact result, without the
exact result ever being formed. :func:`certified_floats` evaluates a
computation at rising working precision until every requested value is
certified that way.

Two things a ball cannot settle, and how callers settle them:

* an exact zero: a ball around 0 keeps containing 0 however far the
  precision is raised. Callers substitute the exact value (from
  :func:`solve_rational`) where a ball contains 0;
* an exact rounding tie (a dyadic value with 54 significant bits): callers
  can give an exact rational fallback for such a value (``exact`` below).

The exact solver is FLINT's Dixon p-adic lifting on the integer system
(``fmpq_mat.solve(algorithm="dixon")``): an exact rational solution at a cost
close to that of a floating-point solve times the output size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import flint

#: Working precision of the first evaluation (bits); doubled until every value is certified.
START_BITS = 128
#: Beyond this precision, values still uncertified take an exact fallback or their midpoint.
MAX_BITS = 8192


def _dyadic_to_float(mantissa: int, exponent: int) -> float:
    """mantissa·2^exponent rounded to nearest float64 (CPython's int division is correctly rounded)."""
    try:
        if exponent >= 0:
            return float(mantissa << exponent)
        return mantissa / (1 << -exponent)
    except OverflowError:
        return float("inf") if mantissa > 0 else float("-inf")


def _man_exp(exact: Any) -> tuple[int, int]:
    mantissa, exponent = exact.man_exp()  # FLINT integers
    return int(mantissa), int(exponent)


def rounded(ball: Any) -> float | None:
    """The float64 every real in ``ball`` rounds to, or None when the ball straddles a rounding boundary."""
    if not ball.is_finite():
        return None
    if ball.is_exact():
        return _dyadic_to_float(*_man_exp(ball))
    mid_m, mid_e = _man_exp(ball.mid())
    rad_m, rad_e = _man_exp(ball.rad())
    e = min(mid_e, rad_e)
    mid, rad = mid_m << (mid_e - e), rad_m << (rad_e - e)
    lo, hi = _dyadic_to_float(mid - rad, e), _dyadic_to_float(mid + rad, e)
    return lo if lo == hi else None


def rounded_or_midpoint(ball: Any) -> float:
    """:func:`rounded` where the ball certifies a float64, else its midpoint's (a value shown, not certified)."""
    value = rounded(ball)
    return midpoint(ball) if value is None else value


def midpoint(ball: Any) -> float:
    """The float64 nearest the ball's midpoint (NaN for a non-finite ball)."""
    if not ball.is_finite():
        return float("nan")
    return _dyadic_to_float(*_man_exp(ball.mid()))


def exact_ball(value: Fraction | int) -> Any:
    """A ball holding ``value``: exact for a dyadic rational, else as tight as the working precision allows."""
    value = Fraction(value)
    if value.denominator & (value.denominator - 1) == 0:  # a power of two
        return flint.arb((value.numerator, 1 - value.denominator.bit_length()))
    return flint.arb(flint.fmpq(value.numerator, value.denominator))


def dyadic_ball(mantissa: int, exponent: int) -> Any:
    """The exact ball mantissa·2^exponent."""
    return flint.arb((mantissa, exponent))


class Certified:
    """The outcome of :func:`certified_floats`: ``values[name][i]`` is a float64, ``balls`` the last
    evaluation (for quantities derived later at the same precision), ``bits`` the precision that
    certified them, ``uncertified`` the names of values that took a fallback instead."""

    def __init__(self, values: dict[str, list[float]], balls: Mapping[str, Sequence[Any]], bits: int,
                 uncertified: set[str]) -> None:
        self.values = values
        self.balls = balls
        self.bits = bits
        self.uncertified = uncertified


def certified_floats(
    evaluate: Callable[[int], Mapping[str, Sequence[Any]]],
    exact: Mapping[str, Callable[[int], Fraction]] | None = None,
    start_bits: int = START_BITS,
    max_bits: int = MAX_BITS,
) -> Certified:
    """Evaluate ``evaluate(bits)`` (named lists of balls) at ``start_bits``, 2·``start_bits``, … until
    every ball rounds to one float64.

    From 4·``start_bits`` on, a value named in ``exact`` that is still uncertified takes
    ``float(exact[name](i))`` (an exact rational, correctly rounded): this settles exact rounding
    ties. At ``max_bits`` the rest take the midpoint (listed in ``uncertified``).
    """
    exact = exact or {}
    bits = start_bits
    settled: dict[tuple[str, int], float] = {}
    while True:
        with flint.ctx.workprec(bits):
            balls = evaluate(bits)
            values: dict[str, list[float]] = {}
            missing: list[tuple[str, int]] = []
            for name, seq in balls.items():
                row = []
                for i, ball in enumerate(seq):
                    value = settled.get((name, i))
                    if value is None:
                        value = rounded(ball)
                    if value is None:
                        missing.append((name, i))
                        value = float("nan")
                    row.append(value)
                values[name] = row
        if not missing:
            return Certified(values, balls, bits, set())
        if bits >= 4 * start_bits:
            for name, i in missing:
                if name in exact:
                    settled[(name, i)] = values[name][i] = float(exact[name](i))
            missing = [(name, i) for name, i in missing if name not in exact]
            if not missing:
                return Certified(values, balls, bits, set())
        if bits >= max_bits:
            for name, i in missing:
                values[name][i] = midpoint(balls[name][i])
            return Certified(values, balls, bits, {name for name, _ in missing})
        bits *= 2


# --- exact rational linear algebra ---------------------------------------------------------------
def _fraction(q: Any) -> Fraction:
    return Fraction(int(q.p), int(q.q))


def solve_rational(matrix: Sequence[Sequence[int]], rhs: Sequence[Sequence[int | Fraction]]) -> list[list[Fraction]]:
    """Exact ``X`` with ``matrix · X = rhs`` (columns of ``rhs`` given as lists) for a non-singular
    integer matrix; raises ``ZeroDivisionError`` when it is singular."""
    m = len(matrix)
    a = flint.fmpq_mat(m, m, [v for row in matrix for v in row])
    cols = len(rhs)
    b = flint.fmpq_mat(m, cols, [_fmpq(rhs[c][r]) for r in range(m) for c in range(cols)])
    x = a.solve(b, algorithm="dixon")  # type: ignore[call-arg]  # (the stubs lag the library)
    return [[_fraction(x[r, c]) for r in range(m)] for c in range(cols)]


def _fmpq(value: int | Fraction) -> Any:
    value = Fraction(value)
    return flint.fmpq(value.numerator, value.denominator)


def integer_rank(matrix: Sequence[Sequence[int]]) -> int:
    """Exact rank of an integer matrix (FLINT's multimodular rank)."""
    rows = len(matrix)
    cols = len(matrix[0]) if rows else 0
    if rows == 0 or cols == 0:
        return 0
    return int(flint.fmpz_mat(rows, cols, [v for row in matrix for v in row]).rank())


def rational_inverse(matrix: Sequence[Sequence[Fraction | int]]) -> list[list[Fraction]] | None:
    """Exact inverse of a square rational matrix, or None when it is singular."""
    m = len(matrix)
    if any(len(row) != m for row in matrix):
        raise ValueError("rational_inverse needs a square matrix")
    if m == 0:
        return []
    a = flint.fmpq_mat(m, m, [_fmpq(v) for row in matrix for v in row])
    try:
        inv = a.inv()
    except ZeroDivisionError:
        return None
    return [[_fraction(inv[i, j]) for j in range(m)] for i in range(m)]
