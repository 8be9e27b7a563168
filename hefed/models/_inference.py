"""Exact statistical inference for the pooled linear model, from aggregate statistics.

Everything classical OLS inference needs is a function of the Gram matrix of
``Z = [1, X, y]`` (see :mod:`hefed.stats`), so the key holder can report
standard errors, tests and fit statistics of the *pooled* regression without
seeing a single row. With ``k`` parameters (the intercept, when fitted, and the
``d`` features), ``n`` rows, ``G = XᵀX`` (over the parameter columns, the column
of ones included when there is an intercept) and the exact solution ``θ``::

    SSR      = yᵀy − 2θᵀXᵀy + θᵀGθ                 (residual sum of squares)
    TSS_c    = yᵀy − (Σy)²/n                       (centred total sum of squares)
    TSS_u    = yᵀy                                 (uncentred)
    σ̂²       = SSR / (n − k)                       (``scale`` = ``mse_resid``)
    Var(θ̂_j) = σ̂² · (G⁻¹)_jj                       (``bse`` is its square root)
    t_j      = θ_j / se_j,   p_j = 2·P(T_{n−k} > |t_j|)
    CI_j     = θ_j ± t_{1−α/2, n−k} · se_j
    R²       = 1 − SSR / TSS        R²_adj = 1 − (n − k₀)/(n − k) · (1 − R²)
    F        = ((TSS − SSR)/(k − k₀)) / (SSR/(n − k))
    llf      = −n/2 · (log 2π + log(SSR/n) + 1)
    AIC      = −2·llf + 2k,   BIC = −2·llf + log(n)·k
    cond     = √(λ_max(G) / λ_min(G))

where ``k₀`` is 1 with an intercept and 0 without, and ``TSS`` is ``TSS_c``
with an intercept and ``TSS_u`` without (statsmodels' convention, see below).

Every entry of ``G`` is an exact rational (a dyadic one: the integer Gram divided
by a power of two). hefed computes all of the above in ball arithmetic from
those exact values, raising the precision until each reported float64 is
*certified*: the exact value correctly rounded (see
:mod:`hefed.models._certified`; exact zeros are detected exactly). The result
is what exact rational arithmetic would give, at floating-point cost: about
0.1 s at 100 features where rational arithmetic took two minutes. The exact
rationals (``params_exact``, ``ssr_exact``, …) are computed only when asked.
The t and F distribution tails (p-values, the critical value of the confidence
intervals) come from :mod:`scipy.stats`, as in statsmodels.

The names and conventions follow ``statsmodels.regression.linear_model.RegressionResults``
for ``sm.OLS(y, sm.add_constant(X)).fit()`` (or ``sm.OLS(y, X).fit()`` without an
intercept): ``params``, ``bse``, ``tvalues``, ``pvalues``, ``conf_int()``,
``rsquared``, ``rsquared_adj``, ``fvalue``, ``f_pvalue``, ``ssr``, ``df_resid``,
``df_model``, ``llf``, ``aic``, ``bic``, ``condition_number``, ``scale``.

Ridge (``α > 0``): the coefficients are the exact rational ridge solution, and
``SSR``, the centred ``R²``, the log-likelihood at the ridge coefficients, the
nominal degrees of freedom and the condition number of the design are reported.
The covariance-based quantities (standard errors, t, p-values, confidence
intervals, F and its p-value) and those that count parameters with the OLS
degrees of freedom (``σ̂²``, the residual standard error, adjusted R², AIC, BIC)
have no OLS meaning for a penalised, biased estimator; they are NaN and
:meth:`InferenceResults.summary` says so.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import flint
import gmpy2
import numpy as np

from .._files import format_rational, is_version, parse_rational, parse_str_list
from ..errors import InvalidFileError, SingularSystemError, UsageError
from ..primitives.certified import Certified, exact_ball, rounded_or_midpoint
from ..protocol import Study
from ..stats import ONES, SufficientStatistics, ridge_fraction
from ._certified import (
    NegativeResidualError,
    NotSeparatedError,
    PooledLeastSquares,
    Weighting,
    certified_inference,
    condition_number,
)
from ._emission import EmissionFactor, check_units, emission_factor_lines, emission_factors, units_of
from ._hypothesis import ContrastResults, compare_f_test, f_test, t_test, vif, wald_test

FORMAT = "hefed.inference"
#: Version 2 stores float64 results and the full covariance; the exact rationals only when asked.
VERSION = 2
#: Version 1 stored the exact rationals and recomputed every float from them; still read.
VERSION_EXACT = 1

#: Bits of the floating point used for square roots and logarithms of exact values (version-1 records).
_PRECISION = 256

#: Statistics that have no OLS meaning for ridge and are NaN there (statsmodels names).
RIDGE_NOT_APPLICABLE: tuple[str, ...] = (
    "bse", "tvalues", "pvalues", "conf_int", "fvalue", "f_pvalue",
    "rsquared_adj", "mse_model", "mse_resid", "scale", "resid_std_err", "aic", "bic",
)

_RIDGE_NOTE = (
    "standard errors, t statistics, p-values, confidence intervals, the F statistic and its "
    "p-value (they assume the unbiased, unpenalised OLS estimator), and the residual variance, "
    "residual standard error, adjusted R², AIC and BIC (they count parameters with the OLS "
    "degrees of freedom, not ridge's effective ones)"
)

_NAN = float("nan")

_WITHHELD = ("the covariance and the standard errors, t and p values, intervals and condition number built on it "
             "give back the pooled Gram matrix with the SSE (its diagonal alone does for one feature): they are "
             "released only with at least min_contributors + 1 contributors")
#: What a record without the covariance leaves out (null), since each gives (X'X)^-1 or part of it.
_WITHHELD_FIELDS = ("bse", "tvalues", "pvalues", "conf_int_95", "cov_params", "condition_number")

#: The float64 scalars of a results record (statsmodels' names), in file order.
_SCALARS = ("ssr", "centered_tss", "uncentered_tss", "ess", "rsquared", "rsquared_adj", "fvalue",
            "mse_model", "mse_resid", "resid_std_err", "llf", "aic", "bic", "condition_number")


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use (it is slow to import, and factories never need it)."""
    from scipy import stats

    return stats


def _mpq(value: Fraction | int) -> Any:
    value = Fraction(value)
    return gmpy2.mpq(value.numerator, value.denominator)


def _sqrt(value: Fraction) -> float:
    """√value for an exact non-negative rational: 256-bit square root, rounded once to float64."""
    if value < 0:
        return _NAN
    with gmpy2.context(precision=_PRECISION):
        return float(gmpy2.sqrt(gmpy2.mpfr(_mpq(value))))


# --- the exact rationals, when available ------------------------------------------------------------
class ExactParts:
    """The exact inputs of the inference: coefficients, SSR, total sums of squares, (XᵀX)⁻¹.

    Either stored (read from a file) or computed on first use from the pooled problem.
    """

    def __init__(
        self,
        *,
        params: Sequence[Fraction] | None = None,
        ssr: Fraction | None = None,
        centered_tss: Fraction | None = None,
        uncentered_tss: Fraction | None = None,
        xtx_inv_diag: Sequence[Fraction] | None = None,
        xtx_inv: Sequence[Sequence[Fraction]] | None = None,
        problem: PooledLeastSquares | None = None,
    ) -> None:
        self._params = None if params is None else [Fraction(v) for v in params]
        self._ssr = None if ssr is None else Fraction(ssr)
        self._centered = None if centered_tss is None else Fraction(centered_tss)
        self._uncentered = None if uncentered_tss is None else Fraction(uncentered_tss)
        self._diag = None if xtx_inv_diag is None else [Fraction(v) for v in xtx_inv_diag]
        self._inverse = None if xtx_inv is None else [[Fraction(v) for v in row] for row in xtx_inv]
        self._problem = problem
        self._inverse_known = xtx_inv_diag is not None or xtx_inv is not None or problem is None

    @property
    def params(self) -> list[Fraction]:
        if self._params is None:
            assert self._problem is not None
            self._params = list(self._problem.exact_params())
        return self._params

    @property
    def ssr(self) -> Fraction:
        if self._ssr is None:
            assert self._problem is not None
            self._ssr = self._problem.exact_ssr()
        return self._ssr

    @property
    def centered_tss(self) -> Fraction:
        if self._centered is None:
            assert self._problem is not None
            self._centered = self._problem.centered_tss
        return self._centered

    @property
    def uncentered_tss(self) -> Fraction:
        if self._uncentered is None:
            assert self._problem is not None
            self._uncentered = self._problem.uncentered_tss
        return self._uncentered

    @property
    def xtx_inv(self) -> list[list[Fraction]] | None:
        """The full exact (XᵀX)⁻¹ (None when singular, or when only its diagonal was stored)."""
        if not self._inverse_known:
            assert self._problem is not None
            self._inverse = None if self._problem.is_singular(self._problem.G) else self._problem.exact_inverse()
            self._inverse_known = True
        return self._inverse

    @property
    def known_inverse(self) -> list[list[Fraction]] | None:
        """The full exact (XᵀX)⁻¹ if already at hand (stored, or computed for the diagonal); never computed here."""
        return self._inverse if self._inverse_known else None

    @property
    def xtx_inv_diag(self) -> list[Fraction] | None:
        if self._diag is None:
            inverse = self.xtx_inv
            self._diag = None if inverse is None else [inverse[j][j] for j in range(len(inverse))]
        return self._diag


def _values_from_exact(exact: ExactParts, nobs: int, fit_intercept: bool, ridge: Fraction,
                       cond: float, absorbed: int = 0) -> dict[str, Any]:
    """Every float64 of the results from the exact rationals (version-1 records; the reference the
    certified computation is tested against): exact rational arithmetic, square roots and logarithms in
    256-bit floating point, each value rounded once."""
    k, n = len(exact.params) + absorbed, nobs  # every parameter, absorbed plant intercepts included
    ols = ridge == 0
    k0 = 1 if absorbed else int(fit_intercept)
    df_model, df_resid = k - k0, n - k
    ssr = exact.ssr
    tss = exact.centered_tss if (k0 or not ols) else exact.uncentered_tss
    ess = tss - ssr
    v: dict[str, Any] = {
        "params": [float(p) for p in exact.params], "ssr": float(ssr), "ess": float(ess),
        "centered_tss": float(exact.centered_tss), "uncentered_tss": float(exact.uncentered_tss),
        "rsquared": _NAN if tss == 0 else float(1 - ssr / tss), "condition_number": cond,
        "r2_centered": _NAN if exact.centered_tss == 0 else float(1 - ssr / exact.centered_tss),
    }
    scale = ssr / df_resid if ols and df_resid > 0 else None
    diag = exact.xtx_inv_diag
    var = None if scale is None or diag is None else [scale * h for h in diag]
    v["mse_resid"] = _NAN if scale is None else float(scale)
    v["resid_std_err"] = _NAN if scale is None else _sqrt(scale)
    if var is None:
        v["bse"] = v["tvalues"] = [_NAN] * len(exact.params)
    else:
        v["bse"] = [_sqrt(x) for x in var]
        v["tvalues"] = [_tvalue_exact(p, x) for p, x in zip(exact.params, var, strict=True)]
    rsq = None if tss == 0 else 1 - ssr / tss
    v["rsquared_adj"] = (float(1 - Fraction(n - k0, df_resid) * (1 - rsq))
                         if ols and rsq is not None and df_resid > 0 else _NAN)
    v["mse_model"] = float(ess / df_model) if ols and df_model > 0 else _NAN
    v["fvalue"] = _NAN
    if ols and df_model > 0 and df_resid > 0:
        if ssr > 0:
            v["fvalue"] = float(ess * df_resid / (ssr * df_model))
        elif ess > 0:
            v["fvalue"] = math.inf
    v["llf"], v["aic"], v["bic"] = _NAN, _NAN, _NAN
    if n > 0 and ssr > 0:
        with gmpy2.context(precision=_PRECISION):
            llf = -gmpy2.mpfr(n) / 2 * (gmpy2.log(2 * gmpy2.const_pi()) + gmpy2.log(gmpy2.mpfr(_mpq(ssr / n))) + 1)
            v["llf"] = float(llf)
            if ols:
                v["aic"] = float(-2 * llf + 2 * k)
                v["bic"] = float(-2 * llf + gmpy2.log(gmpy2.mpfr(n)) * k)
    elif n > 0 and ssr == 0:  # a perfect fit: the likelihood is unbounded (a negative SSR, of noised
        v["llf"] = math.inf     # statistics, has none: NaN)
        if ols:
            v["aic"] = v["bic"] = -math.inf
    inverse = exact.known_inverse
    v["xtx_inv"] = None if inverse is None or scale is None else np.array([[float(h) for h in r] for r in inverse])
    v["cov_params"] = (None if inverse is None or scale is None
                       else np.array([[float(scale * h) for h in r] for r in inverse]))
    return v


def _tvalue_exact(param: Fraction, var: Fraction) -> float:
    """t = θ/√var from the exact t² = θ²/var; ±inf for a zero variance, NaN for 0/0."""
    if var == 0:
        return _NAN if param == 0 else math.copysign(math.inf, param)
    return math.copysign(_sqrt(param * param / var), param)


# --- results ------------------------------------------------------------------------------
class InferenceResults:
    """Inference for the pooled linear model, with statsmodels' attribute names.

    Per-coefficient arrays are ordered as ``param_names``: ``"(intercept)"`` first
    when the model has one, then the features in the model's display order
    (``stats.features``, the same as ``LinearModel.feature_names_in_``).

    Float64 results, each the exact value correctly rounded (certified by ball
    arithmetic; NaN where undefined, or for ridge where the statistic does not
    apply, see :data:`RIDGE_NOT_APPLICABLE`):
        params, bse, tvalues, pvalues (numpy arrays); conf_int(alpha); cov_params();
        ssr, centered_tss, uncentered_tss, ess, rsquared, rsquared_adj, fvalue,
        f_pvalue, mse_model, mse_resid (= scale, σ̂²), resid_std_err (= rmse, √σ̂²),
        llf, aic, bic, condition_number; nobs, df_model, df_resid (ints).

    Exact rationals, computed on first use (or read from a file saved with them):
        params_exact, ssr_exact, centered_tss_exact, uncentered_tss_exact,
        xtx_inv_diag_exact (None when XᵀX is singular), scale_exact, ridge_exact.

    ``rsquared`` follows statsmodels: with an intercept ``1 − SSR/TSS_c``; *without
    an intercept statsmodels uses the uncentred* ``1 − SSR/yᵀy``, and so does this
    class (it is not the scikit-learn R² then). ``ess``, ``rsquared_adj`` and
    ``fvalue`` use the same total sum of squares. For ridge, ``rsquared`` is the
    centred ``1 − SSR/TSS_c`` whether or not there is an intercept (as
    ``LinearModel.r2_`` and scikit-learn's ``score``).

    Note: ``resid_std_err``/``rmse`` is ``√(SSR/(n − k))``, the residual standard
    error of the regression; ``LinearModel.rmse_`` is the root *mean* squared
    training residual ``√(SSR/n)``.
    """

    #: statsmodels' ``cov_type``: ``"nonrobust"``, or a robust type after :func:`~hefed.models.robust_inference`.
    cov_type: str = "nonrobust"
    #: Whether tests and intervals use Student's t (statsmodels' default for nonrobust); robust types use the normal.
    use_t: bool = True
    #: statsmodels' ``cov_kwds`` of a robust covariance (its small-sample correction, lags, clusters).
    cov_kwds: dict[str, Any] = {}

    #: The weights column of a weighted (WLS) fit; None for OLS and ridge.
    weights: str | None = None

    def __init__(
        self,
        *,
        target: str,
        param_names: Sequence[str],
        nobs: int,
        values: Mapping[str, Any],
        ridge: Fraction | float = Fraction(0),
        fit_intercept: bool = True,
        exact: ExactParts | None = None,
        certified: Certified | None = None,
        absorbed: int = 0,
    ) -> None:
        self.target = str(target)
        self.param_names = [str(p) for p in param_names]
        self.nobs = int(nobs)
        self.ridge_exact = Fraction(ridge)
        self.ridge = float(self.ridge_exact)
        self.fit_intercept = bool(fit_intercept)
        self._exact = exact
        self._certified = certified
        k = len(self.param_names)
        #: Parameters absorbed by demeaning (the plant intercepts of a fixed-effects fit; not in ``params``).
        self.absorbed = int(absorbed)
        self.k_constant = 1 if self.absorbed else int(self.fit_intercept)
        self.df_model = k + self.absorbed - self.k_constant
        self.df_resid = self.nobs - k - self.absorbed
        self.params = np.array(values["params"], dtype=np.float64)
        if self.params.shape != (k,):
            raise ValueError("param_names and params differ in length")
        self.bse = np.array(values["bse"], dtype=np.float64)
        self.tvalues = np.array(values["tvalues"], dtype=np.float64)
        self.ssr = float(values["ssr"])
        self.centered_tss = float(values["centered_tss"])
        self.uncentered_tss = float(values["uncentered_tss"])
        self.ess = float(values["ess"])
        self.rsquared = float(values["rsquared"])
        self.rsquared_adj = float(values["rsquared_adj"])
        self.fvalue = float(values["fvalue"])
        self.mse_model = float(values["mse_model"])
        self.mse_resid = float(values["mse_resid"])
        self.resid_std_err = float(values["resid_std_err"])
        self.llf = float(values["llf"])
        self.aic = float(values["aic"])
        self.bic = float(values["bic"])
        self.condition_number = float(values["condition_number"])
        self.scale = self.mse_resid
        self.rmse = self.resid_std_err
        #: The centred R² (1 − SSR/TSS_c, scikit-learn's), certified like the rest.
        self.rsquared_centered = float(values.get("r2_centered", _NAN))
        self._cov = values.get("cov_params")
        self._xtx_inv = values.get("xtx_inv")
        self._xtx_inv_balls = values.get("xtx_inv_balls")
        #: Working precision (bits) at which the ball arithmetic certified every value (None: from exact rationals).
        self.certified_bits: int | None = values.get("certified_bits") if certified is None else certified.bits
        #: Values that could not be certified and took their ball's midpoint (empty in practice).
        self.uncertified: list[str] = (list(values.get("uncertified", [])) if certified is None
                                       else sorted(certified.uncertified))
        self._stored_ci = values.get("conf_int_95")
        #: The record this was read from said its covariance was withheld (kept when written again).
        self._withheld = bool(values.get("cov_params_withheld"))
        #: Units of the features ({feature: unit}) and of the target, when known (a study's): the emission-factor
        #: report (:meth:`emission_factors`, in the summary and the model file) covers the features with a unit.
        self.units: dict[str, str] = dict(values.get("units") or {})
        self.target_unit: str | None = values.get("target_unit")
        if np.isnan(self.bse).all():
            self.pvalues = np.full(k, _NAN)
        else:
            self.pvalues = 2 * _scipy_stats().t.sf(np.abs(self.tvalues), self.df_resid)
        self.f_pvalue = _NAN
        if not math.isnan(self.fvalue) and self.df_model > 0 and self.df_resid > 0:
            self.f_pvalue = float(_scipy_stats().f.sf(self.fvalue, self.df_model, self.df_resid))

    @property
    def is_ridge(self) -> bool:
        return self.ridge_exact != 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the FLINT balls (not picklable): the 95% intervals are kept as computed."""
        state = dict(self.__dict__)
        if state.get("_certified") is not None:
            state["_stored_ci"] = self.conf_int(0.05).tolist()
            state["_certified"] = None
            state["_xtx_inv_balls"] = None
        return state

    # --- exact rationals ----------------------------------------------------------------------
    def _exact_parts(self) -> ExactParts:
        if self._exact is None:
            raise UsageError("these results carry no exact rationals (saved without them: save with exact=True)")
        return self._exact

    @property
    def has_exact(self) -> bool:
        """Whether the exact rationals are available (always for fresh results; for files, when saved with them)."""
        return self._exact is not None

    @property
    def params_exact(self) -> list[Fraction]:
        """The exact rational coefficients ``θ`` (computed on first use)."""
        return self._exact_parts().params

    @property
    def ssr_exact(self) -> Fraction:
        return self._exact_parts().ssr

    @property
    def centered_tss_exact(self) -> Fraction:
        return self._exact_parts().centered_tss

    @property
    def uncentered_tss_exact(self) -> Fraction:
        return self._exact_parts().uncentered_tss

    @property
    def xtx_inv_diag_exact(self) -> list[Fraction] | None:
        """The diagonal of the exact ``(XᵀX)⁻¹`` (None when singular; k exact solves on first use)."""
        return self._exact_parts().xtx_inv_diag

    @property
    def scale_exact(self) -> Fraction | None:
        """σ̂² = SSR/(n − k) exactly (None for ridge or without residual degrees of freedom)."""
        if self.is_ridge or self.df_resid <= 0:
            return None
        return self.ssr_exact / self.df_resid

    def set_robust(self, cov_type: str, cov_kwds: Mapping[str, Any], cov: Any, bse: Sequence[float],
                   fvalue: float, f_df_denom: int | None = None) -> None:
        """Turn these results into statsmodels' results of ``fit(cov_type=...)``: the robust covariance ``cov``
        (None when withheld) and standard errors ``bse``, z statistics and normal p values and intervals
        (``use_t=False``), and the robust Wald F (denominator df ``f_df_denom``, df_resid by default).
        The point estimates and the fit statistics do not change."""
        self.cov_type, self.cov_kwds, self.use_t = str(cov_type), dict(cov_kwds), False
        self._cov = None if cov is None else np.array(cov, dtype=np.float64)
        self._certified = None  # the balls were of the classical covariance
        self._xtx_inv_balls = None
        self._stored_ci = None
        self.bse = np.array(bse, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tvalues = self.params / self.bse
        self.pvalues = 2 * _scipy_stats().norm.sf(np.abs(self.tvalues))
        self.fvalue = float(fvalue)
        self.f_df_denom = self.df_resid if f_df_denom is None else int(f_df_denom)
        self.f_pvalue = _NAN
        if not math.isnan(self.fvalue) and self.df_model > 0 and self.f_df_denom > 0:
            self.f_pvalue = float(_scipy_stats().f.sf(self.fvalue, self.df_model, self.f_df_denom))

    # --- derived --------------------------------------------------------------------------------
    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Two-sided ``1 − alpha`` confidence intervals, shape ``(k, 2)``: ``θ ± t_{1−α/2, n−k}·se``.

        The critical value is scipy's float64 quantile; ``θ`` and ``se`` enter as the certified balls (or
        the exact rationals of a version-1 record), so the bounds are rounded once. NaN for ridge.
        """
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise UsageError("alpha must be a number in (0, 1)")
        k = len(self.param_names)
        if np.isnan(self.bse).all():
            return np.full((k, 2), _NAN)
        if not self.use_t:  # a robust covariance: statsmodels' normal intervals, params ± z·bse in float64
            z = float(_scipy_stats().norm.ppf(1 - alpha / 2))
            return np.column_stack([self.params - z * self.bse, self.params + z * self.bse])
        q = float(_scipy_stats().t.ppf(1 - alpha / 2, self.df_resid))
        out = np.empty((k, 2), dtype=np.float64)
        if self._certified is not None and "var" in self._certified.balls:
            balls = self._certified.balls
            with flint.ctx.workprec(self._certified.bits):
                for j in range(k):
                    half = exact_ball(Fraction(q)) * balls["var"][j].sqrt()
                    centre = balls["params"][j]
                    for side, ball in enumerate((centre - half, centre + half)):
                        out[j, side] = rounded_or_midpoint(ball)
            return out
        if self._exact is not None and self.scale_exact is not None:
            diag = self._exact.xtx_inv_diag
            if diag is not None:
                with gmpy2.context(precision=_PRECISION):
                    for j, (p, h) in enumerate(zip(self._exact.params, diag, strict=True)):
                        half = gmpy2.mpfr(q) * gmpy2.sqrt(gmpy2.mpfr(_mpq(self.scale_exact * h)))
                        centre = gmpy2.mpfr(_mpq(p))
                        out[j] = (float(centre - half), float(centre + half))
                return out
        if alpha == 0.05 and self._stored_ci is not None:  # as certified when the record was written
            return np.array(self._stored_ci, dtype=np.float64)
        out[:, 0] = self.params - q * self.bse
        out[:, 1] = self.params + q * self.bse
        return out

    def cov_params(self) -> np.ndarray:
        """σ̂²·(XᵀX)⁻¹, each entry the exact value correctly rounded (NaN for ridge)."""
        k = len(self.param_names)
        if self.is_ridge or self.df_resid <= 0:
            return np.full((k, k), _NAN)
        if self._cov is None:
            raise UsageError("the full covariance is not in this record (version 1 kept only its diagonal; version 2 "
                             "withholds it from models of fewer than min_contributors + 1 contributors)")
        return np.array(self._cov, dtype=np.float64)

    @property
    def normalized_cov_params(self) -> np.ndarray:
        """(XᵀX)⁻¹, each entry correctly rounded (statsmodels' name); not kept in files."""
        if self._xtx_inv is None and self._xtx_inv_balls is not None and self._certified is not None:
            with flint.ctx.workprec(self._certified.bits):
                self._xtx_inv = np.array([[rounded_or_midpoint(b) for b in row] for row in self._xtx_inv_balls])
        if self._xtx_inv is None:
            raise UsageError("the full (XᵀX)⁻¹ is not available")
        return np.array(self._xtx_inv, dtype=np.float64)

    @property
    def not_applicable(self) -> list[str]:
        """Names of the statistics that do not apply to this fit (ridge), reported as NaN."""
        return list(RIDGE_NOT_APPLICABLE) if self.is_ridge else []

    # --- tests and model choice from the same aggregate (hefed.models._hypothesis) -------------------
    def t_test(self, r_matrix: Any, q: Any = None) -> ContrastResults:
        """statsmodels' ``t_test`` of ``Rθ = q`` (``R`` an array, a ``(R, q)`` pair or a string such as
        ``"coal_t = 0, diesel_t = natural_gas_t"``), certified from the exact Gram when available."""
        return t_test(self, r_matrix, q)

    def f_test(self, r_matrix: Any, q: Any = None) -> ContrastResults:
        """statsmodels' ``f_test``: the joint F test of ``Rθ = q``."""
        return f_test(self, r_matrix, q)

    def wald_test(self, r_matrix: Any, q: Any = None, use_f: bool | None = None,
                  scalar: bool = True) -> ContrastResults:
        """statsmodels' ``wald_test`` (F by default, χ² with ``use_f=False``)."""
        return wald_test(self, r_matrix, q, use_f=use_f, scalar=scalar)

    def compare_f_test(self, restricted: InferenceResults) -> tuple[float, float, float]:
        """statsmodels' ``compare_f_test``: ``(F, p-value, df_diff)`` of a nested model of the same aggregate."""
        return compare_f_test(self, restricted)

    def vif(self, standardize: bool = True) -> np.ndarray:
        """statsmodels' ``variance_inflation_factor`` of each column of the design (``param_names`` order)."""
        return vif(self, standardize)

    # --- the emission-factor report (hefed.models._emission) ----------------------------------------
    def set_units(self, units: Study | Mapping[str, str], target_unit: str | None = None) -> InferenceResults:
        """Declare the units of the features (a study's, or ``{feature: unit}``) and of the target; only the
        model's features are kept. Returns ``self``."""
        if isinstance(units, Study):
            units, target_unit = units_of(units)
        self.units = {name: str(unit) for name, unit in units.items() if name in self.param_names and name != ONES}
        self.target_unit = target_unit
        return self

    def emission_factors(self, alpha: float = 0.05) -> list[EmissionFactor]:
        """Each feature with a unit as an emission factor: factor, standard error, the ``1 − alpha`` interval and
        the relative uncertainty in % (half-width / |factor| × 100, as MRR/IPCC report it)."""
        return emission_factors(self, alpha=alpha)

    # --- presentation ---------------------------------------------------------------------
    def summary(self, alpha: float = 0.05) -> str:
        """A statsmodels-like text table: the coefficients, then the model statistics and notes."""
        kind = f"Ridge (alpha={self.ridge:g})" if self.is_ridge else "OLS"
        if self.weights is not None:
            kind = f"WLS (weights {self.weights})" if not self.is_ridge else f"weighted {kind} (weights {self.weights})"
        ci = self.conf_int(alpha)
        lo_name, hi_name = f"[{alpha / 2:.3g}", f"{1 - alpha / 2:.3g}]"
        name_w = max(12, *(len(n) for n in self.param_names)) + 1
        heads = ["coef", "std err", "t", "P>|t|", lo_name, hi_name]
        width = name_w + 13 * len(heads)
        rule, thin = "=" * width, "-" * width

        def num(x: float, fmt: str = ".6g") -> str:
            return "n/a" if math.isnan(x) else format(x, fmt)

        lines = [f"hefed {kind} regression results (exact, from aggregate statistics)".center(width), rule]
        lines.append(" " * name_w + "".join(h.rjust(13) for h in heads))
        lines.append(thin)
        for j, name in enumerate(self.param_names):
            cells = [self.params[j], self.bse[j], self.tvalues[j]]
            row = name.ljust(name_w) + "".join(num(c).rjust(13) for c in cells)
            row += num(self.pvalues[j], ".4g").rjust(13)
            row += "".join(num(c).rjust(13) for c in ci[j])
            lines.append(row)
        lines.append(rule)
        r2_kind = "centred" if (self.fit_intercept or self.is_ridge) else "uncentred"
        left = [
            ("Dep. variable:", self.target),
            ("Model:", kind),
            ("No. observations:", str(self.nobs)),
            ("Df residuals:", str(self.df_resid)),
            ("Df model:", str(self.df_model)),
            ("Residual SS:", num(self.ssr, ".10g")),
            ("Resid. std. err.:", num(self.resid_std_err, ".6g")),
            ("Condition no.:", num(self.condition_number, ".4g")),
        ]
        right = [
            (f"R-squared ({r2_kind}):", num(self.rsquared, ".6f")),
            ("Adj. R-squared:", num(self.rsquared_adj, ".6f")),
            ("F-statistic:", num(self.fvalue, ".6g")),
            ("Prob (F-statistic):", num(self.f_pvalue, ".4g")),
            ("Log-likelihood:", num(self.llf, ".8g")),
            ("AIC:", num(self.aic, ".8g")),
            ("BIC:", num(self.bic, ".8g")),
            ("", ""),
        ]
        half = width // 2
        for (lk, lv), (rk, rv) in zip(left, right, strict=True):
            lines.append((lk.ljust(20) + lv.rjust(half - 22)).ljust(half) + (rk.ljust(28) + rv.rjust(half - 28)))
        lines.append(rule)
        lines += emission_factor_lines(self, width, alpha)
        notes = [
            "Notes:",
            "[1] Certified: ball arithmetic on the exact pooled sufficient statistics; each value is the exact value "
            "correctly rounded to float64.",
        ]
        if self.is_ridge:
            notes.append(f"[2] Do not apply to ridge, reported as n/a: {_RIDGE_NOTE}. Degrees of freedom are "
                         "the nominal OLS counts; R² is centred; the log-likelihood is at the ridge coefficients.")
        elif not self.fit_intercept:
            notes.append("[2] No intercept: R-squared uses the uncentred total sum of squares yᵀy (as statsmodels).")
        if self.condition_number > 1e3:
            notes.append(f"[{len(notes)}] The condition number is large ({self.condition_number:.3g}): strong "
                         "multicollinearity. The solution itself is exact, not affected by rounding.")
        wrapped = [notes[0]] + [textwrap.fill(note, width, subsequent_indent="    ") for note in notes[1:]]
        return "\n".join(lines + wrapped)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        kind = f"ridge={self.ridge:g}" if self.is_ridge else "OLS"
        return f"InferenceResults({kind}, target={self.target!r}, params={self.param_names}, nobs={self.nobs})"

    # --- files ----------------------------------------------------------------------------
    def to_dict(self, exact: bool = False, covariance: bool = True) -> dict[str, Any]:
        """A JSON-able dict (for model.json, version 2): the float64 results (NaN/inf as null), the full
        covariance matrix (unless ``covariance`` is false: it gives back the pooled Gram matrix, see
        :func:`~hefed.models.covariance_releasable`), and with ``exact`` the exact rationals
        (coefficients, SSR, sums of squares, the diagonal of (XᵀX)⁻¹; computing them takes exact solves).
        """
        ci = self.conf_int()

        def js(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        def arr(a: Any) -> list[float | None]:
            return [js(v) for v in a]

        record: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "method": "ridge" if self.is_ridge else "ols" if self.weights is None else "wls",
            "ridge": self.ridge,
            "ridge_exact": format_rational(self.ridge_exact),
            "fit_intercept": self.fit_intercept,
            "param_names": list(self.param_names),
            "nobs": self.nobs,
            "df_model": self.df_model,
            "df_resid": self.df_resid,
            "params": arr(self.params),
            "bse": arr(self.bse),
            "tvalues": arr(self.tvalues),
            "pvalues": arr(self.pvalues),
            "conf_int_95": [arr(row) for row in ci],
            "cov_params": None if self._cov is None or not covariance else [arr(row) for row in self.cov_params()],
            **{name: js(getattr(self, name)) for name in _SCALARS},
            "f_pvalue": js(self.f_pvalue),
            "not_applicable": self.not_applicable,
            "certified": {"bits": self.certified_bits, "uncertified": self.uncertified},
            **({"absorbed": self.absorbed} if self.absorbed else {}),
            **({"weights": self.weights} if self.weights is not None else {}),
            **({"cov_type": self.cov_type, "cov_kwds": dict(self.cov_kwds), "f_df_denom": self.f_df_denom}
               if self.cov_type != "nonrobust" else {}),
        }
        if self.units:
            record["units"] = dict(self.units)
            record["target_unit"] = self.target_unit
        if (self._cov is not None and not covariance) or self._withheld:
            record["cov_params_withheld"] = _WITHHELD
            k = len(self.param_names)
            for field in _WITHHELD_FIELDS:
                record[field] = ([[None, None]] * k if field == "conf_int_95"
                                 else [None] * k if field in ("bse", "tvalues", "pvalues") else None)
        if exact:
            parts = self._exact_parts()
            diag = parts.xtx_inv_diag
            record["exact"] = {
                "ridge": format_rational(self.ridge_exact),
                "params": [format_rational(v) for v in parts.params],
                "ssr": format_rational(parts.ssr),
                "centered_tss": format_rational(parts.centered_tss),
                "uncentered_tss": format_rational(parts.uncentered_tss),
                "xtx_inv_diag": None if diag is None else [format_rational(v) for v in diag],
            }
        return record

    @classmethod
    def from_dict(cls, obj: Any, source: str = "inference") -> InferenceResults:
        """Rebuild the results from :meth:`to_dict` output: version 2 (floats, exact rationals if
        saved) or version 1 (every float recomputed from the exact rationals)."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise InvalidFileError(f"{source}: not a hefed inference record")
        if is_version(obj.get("version"), VERSION_EXACT):
            return cls._from_exact_record(obj, source)
        if not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: inference record of unsupported version {obj.get('version')!r}")
        names = obj.get("param_names")
        if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise InvalidFileError(f"{source}: 'param_names' must be a list of strings")
        k = len(names)
        nobs = _count(obj.get("nobs"), source, "nobs")
        ridge = parse_rational(obj.get("ridge_exact"), source, "ridge_exact", non_negative=True)
        values: dict[str, Any] = {}
        for name in ("params", "bse", "tvalues"):
            values[name] = _numbers(obj.get(name), k, source, name)
        for name in _SCALARS:
            values[name] = _number(obj.get(name), source, name)
        if obj.get("condition_number") is None:  # null: a singular XᵀX, or withheld
            values["condition_number"] = _NAN if obj.get("cov_params_withheld") is not None else math.inf
        ci = obj.get("conf_int_95")
        if not isinstance(ci, list) or len(ci) != k:
            raise InvalidFileError(f"{source}: 'conf_int_95' must list {k} intervals")
        values["conf_int_95"] = [_numbers(row, 2, source, "conf_int_95") for row in ci]
        certified = obj.get("certified")
        if isinstance(certified, dict):
            bits = certified.get("bits")
            values["certified_bits"] = bits if isinstance(bits, int) and not isinstance(bits, bool) else None
            values["uncertified"] = parse_str_list(certified.get("uncertified", []), source, "certified.uncertified",
                                                   non_empty=False)
        values["cov_params_withheld"] = obj.get("cov_params_withheld") is not None
        if obj.get("units") is not None:
            values["units"] = {name: unit for name, unit in check_units(obj["units"], source).items()
                               if name in names}
            target_unit = obj.get("target_unit")
            values["target_unit"] = target_unit if isinstance(target_unit, str) else None
        cov = obj.get("cov_params")
        if cov is not None:
            if not isinstance(cov, list) or len(cov) != k:
                raise InvalidFileError(f"{source}: 'cov_params' must be a {k}×{k} matrix")
            matrix = np.array([_numbers(row, k, source, "cov_params") for row in cov])
            _check_covariance(matrix, np.array(values["bse"]), source)
            values["cov_params"] = matrix
        exact = None
        if obj.get("exact") is not None:
            exact = _stored_exact(obj["exact"], k, source)
            if [float(v) for v in exact.params] != [v for v in values["params"]]:
                raise InvalidFileError(f"{source}: 'params' do not match the exact coefficients")
        absorbed = obj.get("absorbed", 0)
        if isinstance(absorbed, bool) or not isinstance(absorbed, int) or not 0 <= absorbed <= nobs:
            raise InvalidFileError(f"{source}: 'absorbed' must be a count of fixed effects")
        results = cls(target=str(obj.get("target", "")), param_names=names, nobs=nobs, values=values, ridge=ridge,
                      fit_intercept=bool(obj.get("fit_intercept", True)), exact=exact, absorbed=absorbed)
        weights = obj.get("weights")
        if weights is not None and (not isinstance(weights, str) or not weights):
            raise InvalidFileError(f"{source}: 'weights' must name the weights column of a weighted fit")
        results.weights = weights
        if obj.get("cov_type") is not None:
            cov_type, cov_kwds = obj["cov_type"], obj.get("cov_kwds")
            if not isinstance(cov_type, str) or not isinstance(cov_kwds, dict):
                raise InvalidFileError(f"{source}: 'cov_type' must be a string with a 'cov_kwds' object")
            results.set_robust(cov_type, cov_kwds, values.get("cov_params"), values["bse"], values["fvalue"],
                               obj.get("f_df_denom"))
        return results

    @classmethod
    def _from_exact_record(cls, obj: dict[str, Any], source: str) -> InferenceResults:
        """A version-1 record: the exact rationals, every float recomputed from them."""
        exact_obj = obj.get("exact")
        names = obj.get("param_names")
        if not isinstance(exact_obj, dict) or not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise InvalidFileError(f"{source}: 'exact' or 'param_names' missing")
        nobs = _count(obj.get("nobs"), source, "nobs")
        cond = obj.get("condition_number")
        if cond is not None and (isinstance(cond, bool) or not isinstance(cond, (int, float))):
            raise InvalidFileError(f"{source}: 'condition_number' must be a number or null")
        exact = _stored_exact(exact_obj, len(names), source)
        ridge = parse_rational(exact_obj.get("ridge"), source, "exact.ridge")
        fit_intercept = bool(obj.get("fit_intercept", True))
        values = _values_from_exact(exact, nobs, fit_intercept, ridge, math.inf if cond is None else float(cond))
        return cls(target=str(obj.get("target", "")), param_names=names, nobs=nobs, values=values, ridge=ridge,
                   fit_intercept=fit_intercept, exact=exact)


def _check_covariance(cov: np.ndarray, bse: np.ndarray, source: str) -> None:
    """A stored covariance must be what the record's standard errors come from: symmetric, with
    bse_j = √cov_jj (each correctly rounded, so they agree to a few units in the last place)."""
    if not np.array_equal(cov, cov.T):
        raise InvalidFileError(f"{source}: 'cov_params' is not symmetric")
    diagonal = np.diag(cov)
    finite = ~np.isnan(bse)
    if (diagonal[finite] < 0).any() or not np.allclose(np.sqrt(diagonal[finite]), bse[finite], rtol=1e-14, atol=0):
        raise InvalidFileError(f"{source}: 'cov_params' does not match 'bse'")
    if finite.all() and len(cov):
        scale = np.sqrt(np.outer(diagonal, diagonal))
        eigen = np.linalg.eigvalsh(cov / np.where(scale > 0, scale, 1.0))
        if (np.abs(cov) > scale * (1 + 1e-12)).any() or eigen[0] < -1e-9:
            raise InvalidFileError(f"{source}: 'cov_params' is not a covariance matrix (not positive semi-definite)")


def _count(value: Any, source: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidFileError(f"{source}: {field!r} must be a non-negative integer")
    return value


def _number(value: Any, source: str, field: str) -> float:
    """A float64 of a record; null stands for a non-finite value (NaN)."""
    if value is None:
        return _NAN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFileError(f"{source}: {field!r} must be a number or null")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64
        number = math.inf
    if not math.isfinite(number):
        raise InvalidFileError(f"{source}: {field!r} must be a finite float64 or null")
    return number


def _numbers(value: Any, k: int, source: str, field: str) -> list[float]:
    if not isinstance(value, list) or len(value) != k:
        raise InvalidFileError(f"{source}: {field!r} must list {k} numbers")
    return [_number(v, source, field) for v in value]


def _stored_exact(exact: Any, k: int, source: str) -> ExactParts:
    if not isinstance(exact, dict):
        raise InvalidFileError(f"{source}: 'exact' must be an object")

    def frac(text: Any, field: str) -> Fraction:
        return parse_rational(text, source, field)

    def frac_list(value: Any, field: str) -> list[Fraction]:
        if not isinstance(value, list) or len(value) != k:
            raise InvalidFileError(f"{source}: {field!r} must list {k} rationals")
        return [frac(v, field) for v in value]

    diag = exact.get("xtx_inv_diag")
    return ExactParts(
        params=frac_list(exact.get("params"), "exact.params"),
        ssr=frac(exact.get("ssr"), "exact.ssr"),
        centered_tss=frac(exact.get("centered_tss"), "exact.centered_tss"),
        uncentered_tss=frac(exact.get("uncentered_tss"), "exact.uncentered_tss"),
        xtx_inv_diag=None if diag is None else frac_list(diag, "exact.xtx_inv_diag"),
    )


# --- entry point ----------------------------------------------------------------------------
def inference(
    stats: SufficientStatistics, ridge: float | Fraction = 0.0, fit_intercept: bool = True, *,
    absorbed: int = 0, totals: tuple[int, Fraction, Fraction] | None = None, weighting: Weighting | None = None,
) -> InferenceResults:
    """Certified inference for the pooled OLS (or ridge) model from aggregate statistics.

    Every float64 is the exact value correctly rounded (ball arithmetic on the exact Gram matrix,
    :mod:`hefed.models._certified`); the exact rationals are available on request
    (``params_exact`` …). Raises :class:`~hefed.errors.SingularSystemError` (OLS on a singular
    ``XᵀX``, naming the columns), or :class:`~hefed.errors.UsageError` for a bad ``ridge``.

    Fixed effects: ``stats`` are the pooled within-plant statistics (``fit_intercept=False``),
    ``absorbed`` the number of plants, ``totals`` the undemeaned ``(n, Σy, Σy²)``: the slopes and the
    inference of OLS with one dummy per plant (df_resid = n − G − p; R², F, AIC and BIC of that model).

    Weights: ``stats`` hold the weighted Gram (:class:`~hefed.stats.WeightedStatistics`) and ``weighting`` says
    so (:class:`~hefed.models.Weighting`): the inference of statsmodels ``WLS(y, X, weights=w)``.
    """
    alpha = ridge_fraction(ridge)
    if stats.n == 0:
        raise SingularSystemError("the statistics contain no rows", [])
    problem = PooledLeastSquares(stats, alpha, fit_intercept, absorbed=absorbed, totals=totals, weighting=weighting)
    try:
        values, certified = certified_inference(problem)
    except (NegativeResidualError, NotSeparatedError):  # noised statistics, or a ridge system too close to
        # singular for MAX_BITS: the exact rational computation says what applies
        condition = condition_number(problem.gram_floats(), problem.design_inverse_floats())
        results = inference_from_exact(ExactParts(problem=problem), target=stats.target,
                                       param_names=problem.param_names, nobs=problem.n, ridge=alpha,
                                       fit_intercept=fit_intercept, condition=condition, absorbed=absorbed)
        if weighting is not None:  # ½·Σ log w, added once in float64 (this path is rare: a near-singular ridge)
            half = -math.inf if weighting.log_weights is None else float(weighting.log_weights) / 2
            results.llf += half
            results.aic -= 2 * half
            results.bic -= 2 * half
            results.weights = weighting.column
        return results
    results = InferenceResults(
        target=stats.target, param_names=problem.param_names, nobs=problem.n, values=values, ridge=alpha,
        fit_intercept=fit_intercept, exact=ExactParts(problem=problem), certified=certified, absorbed=absorbed,
    )
    if weighting is not None:
        results.weights = weighting.column
    return results


def inference_from_exact(
    exact: ExactParts, *, target: str, param_names: Sequence[str], nobs: int, ridge: Fraction,
    fit_intercept: bool, condition: float, absorbed: int = 0,
) -> InferenceResults:
    """Results computed from exact rationals in rational arithmetic (the reference for tests)."""
    values = _values_from_exact(exact, nobs, fit_intercept, ridge, condition, absorbed)
    return InferenceResults(target=target, param_names=param_names, nobs=nobs, values=values, ridge=ridge,
                            fit_intercept=fit_intercept, exact=exact, absorbed=absorbed)
