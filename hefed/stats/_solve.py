"""Exact solution of the (ridge-)normal equations from exact statistics.

With the integer Gram matrix ``G`` of ``Z̃ = [1, X·2^F, y·2^F]`` (see
:mod:`hefed.stats`), column scale exponents ``E`` and ridge penalty
``α = p/q`` (exact: every float is a dyadic rational), the coefficients
``θ`` of the pooled least-squares problem

    min ‖y − Xθ − θ₀‖² + α‖θ‖²         (θ₀ unpenalised; absent with no intercept)

satisfy, after substituting ``θ_a = ψ_a · 2^(E_a − E_y)``, the integer system

    Σ_b q·G_ab ψ_b + [a is a feature] p·2^(2E_a) ψ_a = q·G_ay.

hefed solves it with fraction-free elimination in exact integer arithmetic
and rounds once, at the very end, to float64: each reported coefficient is
the exact rational solution rounded to nearest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

from ..errors import SingularSystemError, UsageError
from ..primitives.exactsolve import SingularMatrixError, solve_exact
from ._gram import ONES, SufficientStatistics


def ridge_fraction(ridge: float | Fraction) -> Fraction:
    """A ridge penalty as the exact rational it is (every float is one); refused unless finite and >= 0."""
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, Fraction)):
        raise UsageError(f"ridge must be a number, got {ridge!r}", parameters=("ridge",))
    if isinstance(ridge, float) and not math.isfinite(ridge):
        raise UsageError("ridge must be finite", parameters=("ridge",))
    alpha = Fraction(ridge)
    if alpha < 0:
        raise UsageError("ridge must be non-negative", parameters=("ridge",))
    return alpha


def _describe(name: str) -> str:
    return "the intercept" if name == ONES else repr(name)


def solve_exact_coefficients(
    stats: SufficientStatistics,
    ridge: float | Fraction = 0.0,
    fit_intercept: bool = True,
    prior: Mapping[str, Fraction] | None = None,
    penalize_intercept: bool = False,
) -> tuple[list[Fraction], Fraction]:
    """Exact rational (coefficients in canonical feature order, intercept).

    Minimises ``‖y − Xθ − θ₀‖² + α‖θ − θ_prior‖²``: plain ridge with ``prior=None``
    (θ_prior = 0); a proximal fit toward a given model (local fine-tuning,
    FedProx-style updates) with ``prior`` mapping column names (and
    :data:`~hefed.stats.ONES` for the intercept) to exact values. The
    intercept is penalised only with ``penalize_intercept``.
    """
    alpha = ridge_fraction(ridge)
    cols, gram, scale = stats.columns, stats.gram, stats.scale_bits
    y = len(cols) - 1
    params = list(range(0 if fit_intercept else 1, y))
    if stats.n == 0:
        raise SingularSystemError("the statistics contain no rows", [])
    prior = prior or {}
    p, q = alpha.numerator, alpha.denominator
    matrix = []
    rhs: list[Fraction] = []
    for i, a in enumerate(params):
        row = [q * gram[a][b] for b in params]
        target = Fraction(q * gram[a][y])
        if a != 0 or penalize_intercept:
            row[i] += p << (2 * scale[a])
            # α·θ_prior_a in the scaled system: θ_a = ψ_a·2^(E_a − E_y), equation scaled by 2^(E_a + E_y)
            target += p * Fraction(prior.get(cols[a], 0)) * Fraction(2) ** (scale[a] + scale[y])
        matrix.append(row)
        rhs.append(target)
    denominator = math.lcm(*(v.denominator for v in rhs)) if rhs else 1
    if denominator != 1:
        matrix = [[v * denominator for v in row] for row in matrix]
    try:
        psi = solve_exact(matrix, [int(v * denominator) for v in rhs])
    except SingularMatrixError as exc:
        raise _singular_error(stats, params, exc) from None
    theta = [v * Fraction(2) ** (scale[a] - scale[y]) for v, a in zip(psi, params, strict=True)]
    if fit_intercept:
        return theta[1:], theta[0]
    return theta, Fraction(0)


def _singular_error(
    stats: SufficientStatistics, params: list[int], exc: SingularMatrixError
) -> SingularSystemError:
    cols, scale = stats.columns, stats.scale_bits
    names = [cols[params[i]] for i in exc.dependent]
    if exc.relation:
        dependent = params[max(exc.dependent)]
        terms = []
        for i, coef in sorted(exc.relation.items()):
            a = params[i]
            real = float(coef * Fraction(2) ** (scale[a] - scale[dependent]))
            terms.append(f"{real:.6g}" if a == 0 else f"{real:.6g}·{cols[a]}")
        relation = f" ({cols[dependent]} = {' + '.join(terms)})"
    else:
        relation = ""
    if len(names) == 1:
        what = f"{_describe(names[0])} is identically zero"
    elif len(names) == 2 and ONES in names:
        other = next(nm for nm in names if nm != ONES)
        what = f"{_describe(other)} is constant, so it is collinear with the intercept"
    else:
        what = "columns " + ", ".join(map(_describe, names)) + " are linearly dependent"
    hint = "" if stats.n > len(params) else f" (only {stats.n} rows for {len(params)} parameters)"
    return SingularSystemError(
        f"singular system: {what}{relation}{hint}; drop a column or use a ridge penalty",
        [nm for nm in names if nm != ONES],
    )


