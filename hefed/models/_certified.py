"""Certified inference for the pooled linear model: ball arithmetic on the exact integer Gram matrix.

The statistics hold the exact integer Gram matrix ``Z`` of ``[1, X·2^F, y·2^F]``.
With ``P`` the parameter columns (the ones, when there is an intercept, then the
features), ``G = Z_PP``, ``b = Z_Py``, ``E`` the columns' scale exponents and a
ridge penalty ``α = p/q``, the coefficients are ``θ_a = ψ_a·2^(E_a − E_y)`` where

    M ψ = q·b,    M = q·G + p·diag(2^(2E_a) for penalised a)

(see :mod:`hefed.stats`). Everything here is computed in FLINT's ball
arithmetic (``arb``) from those exact integers:

    A     = D M D with D = diag(2^−f_a), f_a = ⌊bits(M_aa)/2⌋   (an exact, power-of-two equilibration)
    ψ     = D A⁻¹ D q·b
    SSR   = 2^(−2E_y) · vᵀ Z_{P∪y} v   with v = (ψ, −1)            (the residual sum of squares)
    (XᵀX)⁻¹_ab = 2^(E_a + E_b − f_a − f_b) (A⁻¹)_ab                  (OLS: M = G)

and the statistics of :mod:`hefed.models._inference` from these. Each ball's
radius bounds all rounding so far; the working precision is doubled until every
reported value rounds to one float64 (:func:`hefed.primitives.certified.certified_floats`):
the result is the exact value correctly rounded, as if it had been computed in
rationals, at the cost of a floating-point solve.

Exact zeros (a coefficient, the SSR of a perfect fit, an entry of ``(XᵀX)⁻¹`` of
an orthogonal design, an explained sum of squares) keep a ball around 0 at
every precision: where a ball contains 0, the exact value is computed instead
(FLINT's exact solver) and used in its place, so a zero is detected exactly,
not chased.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import flint
import numpy as np

from ..errors import SingularSystemError
from ..primitives.certified import (
    MAX_BITS,
    Certified,
    certified_floats,
    dyadic_ball,
    exact_ball,
    integer_rank,
    midpoint,
    solve_rational,
)
from ..stats import ONES, SufficientStatistics, solve_exact_coefficients

_NAN = float("nan")


def _half_bits(value: int) -> int:
    return abs(value).bit_length() // 2


@dataclass(frozen=True)
class Weighting:
    """Weighted least squares (statsmodels ``WLS``): the statistics' Gram matrix is ``Σ (w·2^bits)·z zᵀ`` in their
    units (:class:`~hefed.stats.WeightedStatistics`). Coefficients, standard errors, t, R² and F do not depend on the
    weights' overall scale; the sums of squares (SSR, TSS, ESS, σ̂²) and (XᵀWX)⁻¹ are brought back to real units
    by ``2^−bits`` and ``2^bits``. ``nobs`` is the rows (statsmodels' nobs and df_resid count rows, not Σw);
    ``log_weights`` is ``Σ ln w`` (the llf adds half of it), None when a weight is 0 (llf −inf, AIC and BIC +inf,
    as statsmodels); ``column`` names the weights column."""

    nobs: int
    bits: int
    log_weights: Fraction | None
    column: str


class PooledLeastSquares:
    """The pooled (ridge) least-squares problem of some statistics, in their exact integer units.

    Parameters are in display order (``param_names``: the intercept first when fitted, then
    ``stats.features``). Exact values are computed only when asked (``exact_params`` …).
    """

    def __init__(self, stats: SufficientStatistics, ridge: Fraction, fit_intercept: bool, *,
                 absorbed: int = 0, totals: tuple[int, Fraction, Fraction] | None = None,
                 weighting: Weighting | None = None) -> None:
        """``absorbed``: parameters the statistics were demeaned for (``G`` plant intercepts of a fixed-effects
        fit, whose within statistics are given with ``fit_intercept=False``); ``totals``: ``(n, Σy, Σy²)`` of
        the undemeaned rows, for the total sums of squares of the dummy model's R² and F; ``weighting``: WLS
        (:class:`Weighting`)."""
        self.stats, self.ridge, self.fit_intercept = stats, ridge, fit_intercept
        self.weighting = weighting
        #: The Gram is 2^wbits times the real weighted one (0 unweighted); the ridge solved is scaled alike.
        self.wbits = weighting.bits if weighting is not None else 0
        self._solve_ridge = ridge * (1 << self.wbits)
        self.absorbed = absorbed
        #: Parameters that are constants (the intercept, or the plant intercepts of a fixed-effects fit).
        self.k_constant = 1 if absorbed else int(fit_intercept)
        cols = stats.columns
        y = len(cols) - 1
        self.param_names = ([ONES] if fit_intercept else []) + list(stats.features)
        index = [cols.index(nm) for nm in self.param_names]
        gram, scale = stats.gram, stats.scale_bits
        self.k, self.n = len(index), stats.n if weighting is None else weighting.nobs
        self.E = [scale[a] for a in index]
        self.Ey = scale[y]
        self.G = [[gram[a][c] for c in index] for a in index]
        self.b = [gram[a][y] for a in index]
        self.Z = [[gram[a][c] for c in [*index, y]] for a in [*index, y]]
        p, q = self._solve_ridge.numerator, self._solve_ridge.denominator
        self.M = [[q * v for v in row] for row in self.G]
        for i, a in enumerate(index):
            if a != 0:  # the intercept is not penalised
                self.M[i][i] += p << (2 * scale[a])
        self.rhs = [q * v for v in self.b]
        self.fM = [_half_bits(self.M[i][i]) for i in range(self.k)]
        self.fG = [_half_bits(self.G[i][i]) for i in range(self.k)]
        sy, syy = stats.exact(ONES, stats.target), stats.exact(stats.target, stats.target)
        if totals is not None:  # the undemeaned rows' sums (fixed effects)
            _, sy, syy = totals
        self.uncentered_tss = syy
        self.centered_tss = syy - sy * sy / self.n if self.n else Fraction(0)
        if weighting is not None:  # Σw(y − ȳ_w)² = Σwy² − (Σwy)²/Σw, as statsmodels' WLS centered_tss
            unit = Fraction(1, 1 << self.wbits)
            total = stats.gram[0][0]
            self.uncentered_tss = syy * unit
            self.centered_tss = (syy - sy * sy / total) * unit if total else Fraction(0)
        self._theta: list[Fraction] | None = None
        self._ssr: Fraction | None = None
        self._inverse_columns: dict[int, list[Fraction]] = {}

    # --- exact values, on request -----------------------------------------------------------
    def exact_params(self) -> list[Fraction]:
        """The exact rational coefficients in display order (FLINT's exact solver)."""
        if self._theta is None:
            coef_sorted, intercept = solve_exact_coefficients(self.stats, self._solve_ridge, self.fit_intercept)
            by_column = dict(zip(self.stats.columns[1:-1], coef_sorted, strict=True))
            by_column[ONES] = intercept
            self._theta = [by_column[nm] for nm in self.param_names]
        return self._theta

    def exact_ssr(self) -> Fraction:
        """The exact residual sum of squares at the exact coefficients."""
        if self._ssr is None:
            theta = dict(zip(self.param_names, self.exact_params(), strict=True))
            intercept = theta.pop(ONES, Fraction(0))
            self._ssr = self.stats.residual_sum_of_squares(theta, intercept) / (1 << self.wbits)
        return self._ssr

    def exact_inverse_column(self, j: int) -> list[Fraction]:
        """Column ``j`` of the exact ``(XᵀX)⁻¹`` in real units."""
        if j not in self._inverse_columns:
            unit = [int(i == j) for i in range(self.k)]
            column = solve_rational(self.G, [unit])[0]
            self._inverse_columns[j] = [v * Fraction(2) ** (self.E[i] + self.E[j] + self.wbits)
                                        for i, v in enumerate(column)]
        return self._inverse_columns[j]

    def exact_inverse(self) -> list[list[Fraction]]:
        """The exact ``(XᵀX)⁻¹`` in real units (k exact solves: slow for many features)."""
        columns = [self.exact_inverse_column(j) for j in range(self.k)]
        return [[columns[j][i] for j in range(self.k)] for i in range(self.k)]

    def is_singular(self, matrix: Sequence[Sequence[int]]) -> bool:
        return integer_rank(matrix) < len(matrix)

    # --- balls ------------------------------------------------------------------------------------
    def _inverse_ball(self, matrix: list[list[int]], f: list[int]) -> Any:
        """A⁻¹ for the equilibrated A = D·matrix·D, or None when ball arithmetic cannot separate it from
        singular at this precision."""
        k = self.k
        a = flint.arb_mat(k, k, [dyadic_ball(matrix[i][j], -(f[i] + f[j])) for i in range(k) for j in range(k)])
        try:
            return a.inv()
        except ZeroDivisionError:
            return None

    def balls(self, bits: int) -> dict[str, Any]:
        """ψ-derived balls at the working precision: ``theta`` (list), ``ssr``, ``xtx_inv`` (k×k list of
        lists, OLS only), with exact values substituted where a ball contains 0. Raises
        :class:`SingularSystemError` for a singular system."""
        k = self.k
        ainv = self._inverse_ball(self.M, self.fM)
        if ainv is None:
            if self.is_singular(self.M):
                self.exact_params()  # raises the SingularSystemError that names the columns
                raise SingularSystemError("singular system: XᵀX is not invertible", [])
            return {}  # not separated from singular at this precision: the caller raises it
        r = flint.arb_mat(k, 1, [dyadic_ball(self.rhs[i], -self.fM[i]) for i in range(k)])
        psi_a = ainv * r
        psi = [psi_a[i, 0] * dyadic_ball(1, -self.fM[i]) for i in range(k)]
        theta = [psi[i] * dyadic_ball(1, self.E[i] - self.Ey) for i in range(k)]
        for i in range(k):
            if theta[i].contains(0):
                exact = self.exact_params()[i]
                theta[i] = exact_ball(exact)
                psi[i] = exact_ball(exact * Fraction(2) ** (self.Ey - self.E[i]))
        v = flint.arb_mat(k + 1, 1, [*psi, flint.arb(-1)])
        zmat = flint.arb_mat(k + 1, k + 1, [flint.arb(x) for row in self.Z for x in row])
        ssr = (v.transpose() * zmat * v)[0, 0] * dyadic_ball(1, -2 * self.Ey - self.wbits)
        if ssr.contains(0):
            ssr = exact_ball(self.exact_ssr())
        if ssr < 0:  # only statistics that are not a Gram matrix (noised ones) have a negative SSR
            raise NegativeResidualError
        out: dict[str, Any] = {"theta": theta, "ssr": ssr}
        if self.ridge == 0:
            inv = [[ainv[i, j] * dyadic_ball(1, self.E[i] + self.E[j] - self.fM[i] - self.fM[j] + self.wbits)
                    for j in range(k)] for i in range(k)]
            for i in range(k):
                for j in range(i, k):
                    if inv[i][j].contains(0):
                        inv[i][j] = inv[j][i] = exact_ball(self.exact_inverse_column(j)[i])
            out["xtx_inv"] = inv
        return out

    def design_inverse_floats(self) -> np.ndarray | None:
        """(XᵀX)⁻¹ of the design rounded to float64 (for the condition number of a ridge fit), or None
        when XᵀX is singular."""
        bits = 128
        while bits <= 8192:
            with flint.ctx.workprec(bits):
                ainv = self._inverse_ball(self.G, self.fG)
                if ainv is not None:
                    return np.array([[midpoint(ainv[i, j]) * 2.0 ** (self.E[i] + self.E[j] - self.fG[i] - self.fG[j]
                                                                     + self.wbits)
                                      for j in range(self.k)] for i in range(self.k)])
            if self.is_singular(self.G):
                return None
            bits *= 2
        return None

    def gram_floats(self) -> np.ndarray:
        """XᵀX in real units, each entry correctly rounded to float64."""
        return np.array([[self.G[i][j] / (1 << (self.E[i] + self.E[j] + self.wbits)) for j in range(self.k)]
                         for i in range(self.k)])


def condition_number(gram: np.ndarray, inverse: np.ndarray | None) -> float:
    """√(λ_max(G)/λ_min(G)) = ‖X‖₂·‖X⁺‖₂, statsmodels' ``condition_number``.

    ``λ_max(G)`` comes from the eigenvalues of ``G`` rounded to float64 and
    ``λ_min(G) = 1/λ_max(G⁻¹)`` from those of the certified inverse: a symmetric
    eigensolver finds the largest eigenvalue to about machine precision
    relative, while the smallest one of a rounded ``G`` would carry an error of
    order ``ε·λ_max``. Infinite when ``G`` is exactly singular.
    """
    if inverse is None or not np.isfinite(inverse).all():
        return math.inf
    lam_max = float(np.linalg.eigvalsh(gram)[-1])
    inv_lam_min = float(np.linalg.eigvalsh(inverse)[-1])
    if not (lam_max > 0 and inv_lam_min > 0):
        return math.inf
    return math.sqrt(lam_max) * math.sqrt(inv_lam_min)


#: Scalar statistics certified (OLS); ridge certifies the subset in ``_RIDGE_SCALARS``.
_OLS_SCALARS = ("ssr", "ess", "rsquared", "r2_centered", "rsquared_adj", "mse_model", "mse_resid",
                "resid_std_err", "fvalue", "llf", "aic", "bic")
_RIDGE_SCALARS = ("ssr", "ess", "rsquared", "r2_centered", "llf")


def certified_inference(problem: PooledLeastSquares) -> tuple[dict[str, Any], Certified]:
    """Certified float64 values of the pooled fit's statistics (statsmodels' names).

    Returns ``values`` (params, bse, tvalues: lists; the scalars; ``cov_params``: a k×k array for OLS, and
    ``xtx_inv_balls``: the balls of (XᵀX)⁻¹) and the :class:`Certified` outcome (its balls feed confidence intervals).
    Values with no meaning (ridge) or no finite value (a perfect fit) are set explicitly, not certified.
    """
    k, n = problem.k, problem.n
    ols = problem.ridge == 0
    k0 = problem.k_constant
    k_all = k + problem.absorbed  # every parameter of the fit, the absorbed plant intercepts included
    df_model, df_resid = k_all - k0, n - k_all
    tss = problem.centered_tss if (k0 or not ols) else problem.uncentered_tss
    weighting = problem.weighting
    log_weights = weighting.log_weights if weighting is not None else None
    state: dict[str, Any] = {}
    upper = [(i, j) for i in range(k) for j in range(i, k)]

    def evaluate(bits: int) -> dict[str, list[Any]]:
        balls = problem.balls(bits)
        if not balls:  # not separated from singular at this precision: try a higher one
            if bits >= MAX_BITS:
                raise NotSeparatedError
            return {"separated": [flint.arb.nan()]}
        theta, ssr = balls["theta"], balls["ssr"]
        ssr_zero = ssr.is_zero()
        out: dict[str, list[Any]] = {"params": theta, "ssr": [ssr]}
        tss_ball = exact_ball(tss)
        ess = tss_ball - ssr
        if ess.contains(0):
            ess = exact_ball(tss - problem.exact_ssr())
        out["ess"] = [ess]
        out["rsquared"] = [] if tss == 0 else [1 - ssr / tss_ball]
        out["r2_centered"] = [] if problem.centered_tss == 0 else [1 - ssr / exact_ball(problem.centered_tss)]
        if not ssr_zero:
            out["llf"] = [-flint.arb(n) / 2 * ((2 * flint.arb.pi()).log() + (ssr / n).log() + 1)]
            if log_weights is not None:  # WLS: statsmodels' loglike adds ½·Σ log w
                out["llf"][0] += exact_ball(log_weights) / 2
        if ols and df_model > 0:
            out["mse_model"] = [ess / df_model]
        if ols and df_resid > 0:
            scale = ssr / df_resid
            inv = balls["xtx_inv"]
            var = [scale * inv[j][j] for j in range(k)]
            negative = set()  # a negative variance: only statistics that are not a Gram matrix (noised) have one
            for j in range(k):
                if var[j].contains(0) and not ssr_zero:
                    exact_var = problem.exact_ssr() / df_resid * problem.exact_inverse_column(j)[j]
                    var[j] = exact_ball(max(exact_var, Fraction(0)))
                    if exact_var < 0:
                        negative.add(j)
                elif var[j] < 0:
                    negative.add(j)
                    var[j] = flint.arb(0)
            state["negative_var"] = negative
            out["var"] = var
            out["mse_resid"] = [scale]
            out["resid_std_err"] = [scale.sqrt()]
            out["bse"] = [v.sqrt() for v in var]
            if not ssr_zero:
                out["tvalues"] = [t / v.sqrt() if j not in negative and not v.is_zero() else flint.arb(0)
                                  for j, (t, v) in enumerate(zip(theta, var, strict=True))]
            # symmetric: the upper triangle is certified, row by row, and mirrored
            out["cov_params"] = [scale * inv[i][j] for i, j in upper]
            state["xtx_inv"] = inv
            if tss != 0:
                out["rsquared_adj"] = [1 - flint.arb(n - k0) / df_resid * (ssr / tss_ball)]
            if df_model > 0 and not ssr_zero:
                out["fvalue"] = [ess * df_resid / (ssr * df_model)]
            if not ssr_zero:
                llf = out["llf"][0]
                out["aic"] = [-2 * llf + 2 * k_all]
                out["bic"] = [-2 * llf + flint.arb(n).log() * k_all]
        state["ssr_zero"], state["ess_zero"] = ssr_zero, ess.is_zero()
        return out

    exact: dict[str, Callable[[int], Fraction]] = {
        "params": lambda i: problem.exact_params()[i],
        "ssr": lambda i: problem.exact_ssr(),
        "ess": lambda i: tss - problem.exact_ssr(),
        "rsquared": lambda i: 1 - problem.exact_ssr() / tss,
        "r2_centered": lambda i: 1 - problem.exact_ssr() / problem.centered_tss,
    }
    if ols and df_resid > 0:
        exact["mse_resid"] = lambda i: problem.exact_ssr() / df_resid
        exact["cov_params"] = lambda i: (problem.exact_ssr() / df_resid
                                         * problem.exact_inverse_column(upper[i][1])[upper[i][0]])
        exact["var"] = lambda i: problem.exact_ssr() / df_resid * problem.exact_inverse_column(i)[i]
    certified = certified_floats(evaluate, exact)
    v = certified.values
    values: dict[str, Any] = {"params": v["params"]}
    for name in _OLS_SCALARS:
        values[name] = v[name][0] if v.get(name) else _NAN
    if ols and df_resid > 0:
        values["bse"] = list(v["bse"])
        cov = np.empty((k, k))
        rows, cols = zip(*upper, strict=True)
        cov[rows, cols] = v["cov_params"]
        cov[cols, rows] = v["cov_params"]
        values["cov_params"] = cov
        values["xtx_inv_balls"] = state["xtx_inv"]
        if state["ssr_zero"]:  # a perfect fit: zero variances; t = ±inf, or NaN for a zero coefficient
            values["tvalues"] = [_NAN if t == 0 else math.copysign(math.inf, t) for t in v["params"]]
            values["fvalue"] = math.inf if not state["ess_zero"] and df_model > 0 else _NAN
            values["llf"], values["aic"], values["bic"] = math.inf, -math.inf, -math.inf
        else:
            values["tvalues"] = list(v["tvalues"])
            for j in range(k):
                var_j = certified.values["var"][j]
                if j in state["negative_var"]:
                    values["bse"][j] = values["tvalues"][j] = _NAN
                elif var_j == 0:  # a zero variance with a non-zero SSR (noised statistics): as the exact reference
                    values["tvalues"][j] = _NAN if v["params"][j] == 0 else math.copysign(math.inf, v["params"][j])
    else:
        values["bse"] = values["tvalues"] = [_NAN] * k
        values["cov_params"] = None
        if state["ssr_zero"] and n > 0:
            values["llf"] = math.inf
            if ols:
                values["aic"] = values["bic"] = -math.inf
    if not ols:
        for name in _OLS_SCALARS:
            if name not in _RIDGE_SCALARS:
                values[name] = _NAN
    if weighting is not None and log_weights is None and not math.isnan(values["llf"]):  # a zero weight: log 0
        infinite = values["llf"] == math.inf  # a perfect fit as well: inf − inf
        values["llf"] = _NAN if infinite else -math.inf
        if ols:
            values["aic"] = values["bic"] = _NAN if infinite else math.inf
    values["centered_tss"], values["uncentered_tss"] = float(problem.centered_tss), float(problem.uncentered_tss)
    scale = values["mse_resid"]
    if ols and values["cov_params"] is not None and scale > 0:  # (XᵀX)⁻¹ = cov/σ̂², to float accuracy
        inverse: np.ndarray | None = values["cov_params"] / scale
    else:
        inverse = problem.design_inverse_floats()
    values["condition_number"] = condition_number(problem.gram_floats(), inverse)
    return values, certified


class NegativeResidualError(ArithmeticError):
    """The residual sum of squares is negative: the statistics are not a Gram matrix (e.g. noised for DP)."""


class NotSeparatedError(ArithmeticError):
    """Ball arithmetic could not separate the system matrix from a singular one (and it is not singular)."""
