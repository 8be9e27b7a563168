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
by a power of two), so ``θ``, ``SSR``, ``TSS``, ``G⁻¹``, ``σ̂²``, the variances,
``t²``, ``R²`` and ``F`` are computed as exact rationals; only square roots and
logarithms are taken, in 256-bit floating point, from the exact values, and each
result is rounded once to float64 at the very end. The t and F distribution
tails (p-values, the critical value of the confidence intervals) come from
:mod:`scipy.stats`, as in statsmodels.

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
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np

from .._files import format_rational, is_version, parse_rational
from ..errors import InvalidFileError, SingularSystemError, UsageError
from ..primitives.exactsolve import exact_inverse
from ..stats import ONES, SufficientStatistics, solve_exact_coefficients

FORMAT = "hefed.inference"
VERSION = 1

#: Bits of the floating point used for square roots and logarithms of exact values.
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


# --- exact helpers -----------------------------------------------------------------------
def _scipy_stats() -> Any:
    """scipy.stats, imported on first use (it is slow to import, and factories never need it)."""
    from scipy import stats

    return stats


def _mpq(value: Fraction | int) -> Any:
    value = Fraction(value)
    return gmpy2.mpq(value.numerator, value.denominator)


def _float(value: Fraction) -> float:
    """Correctly rounded float64 of an exact rational (``Fraction.__float__`` rounds to nearest)."""
    return float(value)


def _sqrt(value: Fraction) -> float:
    """√value for an exact non-negative rational: 256-bit square root, rounded once to float64."""
    if value < 0:
        return _NAN
    with gmpy2.context(precision=_PRECISION):
        return float(gmpy2.sqrt(gmpy2.mpfr(_mpq(value))))


def _log(value: Fraction) -> Any:
    """log(value) of an exact positive rational as a 256-bit float (an ``mpfr``)."""
    with gmpy2.context(precision=_PRECISION):
        return gmpy2.log(gmpy2.mpfr(_mpq(value)))


def _condition_number(gram: list[list[Fraction]], inverse: list[list[Fraction]] | None) -> float:
    """√(λ_max(G)/λ_min(G)) = ‖X‖₂·‖X⁺‖₂, statsmodels' ``condition_number``.

    ``λ_max(G)`` comes from the eigenvalues of ``G`` rounded to float64 and
    ``λ_min(G) = 1/λ_max(G⁻¹)`` from those of the *exact* inverse rounded to
    float64: a symmetric eigensolver finds the largest eigenvalue to about
    machine precision relative, while the smallest one of a rounded ``G`` would
    carry an error of order ``ε·λ_max``. Infinite when ``G`` is exactly singular.
    """
    if inverse is None:
        return math.inf
    g = np.array([[_float(v) for v in row] for row in gram], dtype=np.float64)
    h = np.array([[_float(v) for v in row] for row in inverse], dtype=np.float64)
    lam_max = float(np.linalg.eigvalsh(g)[-1])
    inv_lam_min = float(np.linalg.eigvalsh(h)[-1])
    if not (lam_max > 0 and inv_lam_min > 0):
        return math.inf
    return math.sqrt(lam_max) * math.sqrt(inv_lam_min)


# --- results ------------------------------------------------------------------------------
class InferenceResults:
    """Inference for the pooled linear model, with statsmodels' attribute names.

    Per-coefficient arrays are ordered as ``param_names``: ``"(intercept)"`` first
    when the model has one, then the features in the model's display order
    (``stats.features``, the same as ``LinearModel.feature_names_in_``).

    Exact inputs (kept, and saved by :meth:`to_dict`):
        params_exact: exact rational coefficients ``θ`` (list of Fraction).
        ssr_exact: exact residual sum of squares.
        centered_tss_exact, uncentered_tss_exact: ``yᵀy − (Σy)²/n`` and ``yᵀy``.
        xtx_inv_diag_exact: the diagonal of the exact ``(XᵀX)⁻¹`` (None when singular).
        ridge_exact: the penalty ``α`` as an exact rational (0 for OLS).

    Float64 results, each the exact value rounded once (NaN where undefined, or
    for ridge where the statistic does not apply; see :data:`RIDGE_NOT_APPLICABLE`):
        params, bse, tvalues, pvalues (numpy arrays); conf_int(alpha);
        ssr, centered_tss, uncentered_tss, ess, rsquared, rsquared_adj, fvalue,
        f_pvalue, mse_model, mse_resid (= scale, σ̂²), resid_std_err (= rmse, √σ̂²),
        llf, aic, bic, condition_number; nobs, df_model, df_resid (ints).

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

    def __init__(
        self,
        *,
        target: str,
        param_names: Sequence[str],
        params_exact: Sequence[Fraction],
        ssr_exact: Fraction,
        centered_tss_exact: Fraction,
        uncentered_tss_exact: Fraction,
        xtx_inv_diag_exact: Sequence[Fraction] | None,
        nobs: int,
        condition_number: float,
        ridge: Fraction | float = Fraction(0),
        fit_intercept: bool = True,
        xtx_inv_exact: Sequence[Sequence[Fraction]] | None = None,
    ) -> None:
        self.target = str(target)
        self.param_names = [str(p) for p in param_names]
        self.params_exact = [Fraction(v) for v in params_exact]
        self.ssr_exact = Fraction(ssr_exact)
        self.centered_tss_exact = Fraction(centered_tss_exact)
        self.uncentered_tss_exact = Fraction(uncentered_tss_exact)
        self.xtx_inv_diag_exact = None if xtx_inv_diag_exact is None else [Fraction(v) for v in xtx_inv_diag_exact]
        self._xtx_inv_exact = None if xtx_inv_exact is None else [[Fraction(v) for v in r] for r in xtx_inv_exact]
        self.nobs = int(nobs)
        self.condition_number = float(condition_number)
        self.ridge_exact = Fraction(ridge)
        self.ridge = float(self.ridge_exact)
        self.fit_intercept = bool(fit_intercept)
        k = len(self.params_exact)
        if len(self.param_names) != k:
            raise ValueError("param_names and params_exact differ in length")
        if self.xtx_inv_diag_exact is not None and len(self.xtx_inv_diag_exact) != k:
            raise ValueError("xtx_inv_diag_exact has the wrong length")
        self.k_constant = int(self.fit_intercept)
        self.df_model = k - self.k_constant
        self.df_resid = self.nobs - k
        self._compute()

    # --- derived quantities --------------------------------------------------------------
    @property
    def is_ridge(self) -> bool:
        return self.ridge_exact != 0

    def _compute(self) -> None:
        k, n = len(self.params_exact), self.nobs
        ols = not self.is_ridge
        ssr = self.ssr_exact
        self.params = np.array([_float(v) for v in self.params_exact], dtype=np.float64)
        self.ssr = _float(ssr)
        self.centered_tss = _float(self.centered_tss_exact)
        self.uncentered_tss = _float(self.uncentered_tss_exact)

        # Total sum of squares: statsmodels' convention for OLS; centred for ridge.
        tss = self.centered_tss_exact if (self.fit_intercept or not ols) else self.uncentered_tss_exact
        self.ess_exact: Fraction = tss - ssr
        self.ess = _float(self.ess_exact)
        self.rsquared_exact = None if tss == 0 else 1 - ssr / tss
        self.rsquared = _NAN if self.rsquared_exact is None else _float(self.rsquared_exact)

        # σ̂² = SSR/(n − k) and the exact variances σ̂²·(XᵀX)⁻¹_jj (OLS only).
        self.scale_exact: Fraction | None = ssr / self.df_resid if ols and self.df_resid > 0 else None
        if self.scale_exact is not None and self.xtx_inv_diag_exact is not None:
            self.var_exact: list[Fraction] | None = [self.scale_exact * h for h in self.xtx_inv_diag_exact]
        else:
            self.var_exact = None
        self.mse_resid = _NAN if self.scale_exact is None else _float(self.scale_exact)
        self.scale = self.mse_resid
        self.resid_std_err = _NAN if self.scale_exact is None else _sqrt(self.scale_exact)
        self.rmse = self.resid_std_err

        if self.var_exact is None:
            self.bse = np.full(k, _NAN)
            self.tvalues = np.full(k, _NAN)
            self.pvalues = np.full(k, _NAN)
        else:
            self.bse = np.array([_sqrt(v) for v in self.var_exact], dtype=np.float64)
            self.tvalues = np.array(
                [self._tvalue(p, v) for p, v in zip(self.params_exact, self.var_exact, strict=True)],
                dtype=np.float64,
            )
            self.pvalues = 2 * _scipy_stats().t.sf(np.abs(self.tvalues), self.df_resid)

        if ols and self.rsquared_exact is not None and self.df_resid > 0:
            self.rsquared_adj = _float(1 - Fraction(n - self.k_constant, self.df_resid) * (1 - self.rsquared_exact))
        else:
            self.rsquared_adj = _NAN

        # F = (ESS/df_model) / (SSR/df_resid), exact.
        self.mse_model = _float(self.ess_exact / self.df_model) if ols and self.df_model > 0 else _NAN
        self.fvalue, self.f_pvalue = _NAN, _NAN
        if ols and self.df_model > 0 and self.df_resid > 0:
            if ssr > 0:
                self.fvalue = _float(self.ess_exact * self.df_resid / (ssr * self.df_model))
            elif self.ess_exact > 0:
                self.fvalue = math.inf
            if not math.isnan(self.fvalue):
                self.f_pvalue = float(_scipy_stats().f.sf(self.fvalue, self.df_model, self.df_resid))

        # Gaussian log-likelihood profiled over σ², and the information criteria.
        self.llf, self.aic, self.bic = _NAN, _NAN, _NAN
        if n > 0 and ssr > 0:
            with gmpy2.context(precision=_PRECISION):
                llf = -gmpy2.mpfr(n) / 2 * (gmpy2.log(2 * gmpy2.const_pi()) + _log(ssr / n) + 1)
                self.llf = float(llf)
                if ols:
                    n_par = self.df_model + self.k_constant
                    self.aic = float(-2 * llf + 2 * n_par)
                    self.bic = float(-2 * llf + gmpy2.log(gmpy2.mpfr(n)) * n_par)
        elif n > 0:  # a perfect fit: the likelihood is unbounded
            self.llf = math.inf
            if ols:
                self.aic = self.bic = -math.inf

    @staticmethod
    def _tvalue(param: Fraction, var: Fraction) -> float:
        """t = θ/√var from the exact t² = θ²/var; ±inf for a zero variance, NaN for 0/0."""
        if var == 0:
            return _NAN if param == 0 else math.copysign(math.inf, param)
        return math.copysign(_sqrt(param * param / var), param)

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Two-sided ``1 − alpha`` confidence intervals, shape ``(k, 2)``: ``θ ± t_{1−α/2, n−k}·se``.

        The critical value is scipy's float64 quantile; ``θ`` and ``se`` enter
        exactly (256-bit), so the bounds are rounded once. NaN for ridge.
        """
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise UsageError("alpha must be a number in (0, 1)")
        k = len(self.params_exact)
        if self.var_exact is None:
            return np.full((k, 2), _NAN)
        q = float(_scipy_stats().t.ppf(1 - alpha / 2, self.df_resid))
        out = np.empty((k, 2), dtype=np.float64)
        with gmpy2.context(precision=_PRECISION):
            for j, (p, v) in enumerate(zip(self.params_exact, self.var_exact, strict=True)):
                half = gmpy2.mpfr(q) * gmpy2.sqrt(gmpy2.mpfr(_mpq(v)))
                centre = gmpy2.mpfr(_mpq(p))
                out[j] = (float(centre - half), float(centre + half))
        return out

    def cov_params(self) -> np.ndarray:
        """σ̂²·(XᵀX)⁻¹, each entry exact then rounded (needs the full inverse: not kept by :meth:`from_dict`)."""
        k = len(self.params_exact)
        if self.scale_exact is None:
            return np.full((k, k), _NAN)
        if self._xtx_inv_exact is None:
            raise UsageError("the full (XᵀX)⁻¹ is not available (results loaded from a file keep its diagonal)")
        return np.array([[_float(self.scale_exact * h) for h in row] for row in self._xtx_inv_exact])

    @property
    def normalized_cov_params(self) -> np.ndarray:
        """(XᵀX)⁻¹ rounded to float64 (statsmodels' name)."""
        if self._xtx_inv_exact is None:
            raise UsageError("the full (XᵀX)⁻¹ is not available")
        return np.array([[_float(h) for h in row] for row in self._xtx_inv_exact])

    @property
    def not_applicable(self) -> list[str]:
        """Names of the statistics that do not apply to this fit (ridge), reported as NaN."""
        return list(RIDGE_NOT_APPLICABLE) if self.is_ridge else []

    # --- presentation ---------------------------------------------------------------------
    def summary(self, alpha: float = 0.05) -> str:
        """A statsmodels-like text table: the coefficients, then the model statistics and notes."""
        kind = f"Ridge (alpha={self.ridge:g})" if self.is_ridge else "OLS"
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
        notes = [
            "Notes:",
            "[1] Exact rational arithmetic on the pooled sufficient statistics; each value rounded once to float64.",
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
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for model.json): float64 results (NaN/inf as null) and the exact inputs.

        ``from_dict`` recomputes every float from the ``exact`` part, so the two cannot disagree.
        """
        ci = self.conf_int()

        def js(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        def arr(a: np.ndarray) -> list[float | None]:
            return [js(v) for v in a]

        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "method": "ridge" if self.is_ridge else "ols",
            "ridge": self.ridge,
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
            "ssr": js(self.ssr),
            "rsquared": js(self.rsquared),
            "rsquared_adj": js(self.rsquared_adj),
            "fvalue": js(self.fvalue),
            "f_pvalue": js(self.f_pvalue),
            "mse_resid": js(self.mse_resid),
            "resid_std_err": js(self.resid_std_err),
            "llf": js(self.llf),
            "aic": js(self.aic),
            "bic": js(self.bic),
            "condition_number": js(self.condition_number),
            "not_applicable": self.not_applicable,
            "exact": {
                "ridge": format_rational(self.ridge_exact),
                "params": [format_rational(v) for v in self.params_exact],
                "ssr": format_rational(self.ssr_exact),
                "centered_tss": format_rational(self.centered_tss_exact),
                "uncentered_tss": format_rational(self.uncentered_tss_exact),
                "xtx_inv_diag": (None if self.xtx_inv_diag_exact is None
                                 else [format_rational(v) for v in self.xtx_inv_diag_exact]),
            },
        }

    @classmethod
    def from_dict(cls, obj: Any, source: str = "inference") -> InferenceResults:
        """Rebuild the results from :meth:`to_dict` output (floats recomputed from the exact part).

        A null ``condition_number`` means an infinite one (a singular ``XᵀX``).
        """
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed inference record of version {VERSION}")
        exact = obj.get("exact")
        names = obj.get("param_names")
        if not isinstance(exact, dict) or not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise InvalidFileError(f"{source}: 'exact' or 'param_names' missing")

        def frac(text: Any, field: str) -> Fraction:
            return parse_rational(text, source, field)

        def frac_list(value: Any, field: str) -> list[Fraction]:
            if not isinstance(value, list) or len(value) != len(names):
                raise InvalidFileError(f"{source}: {field!r} must list {len(names)} rationals")
            return [frac(v, field) for v in value]

        nobs = obj.get("nobs")
        if not isinstance(nobs, int) or isinstance(nobs, bool) or nobs < 0:
            raise InvalidFileError(f"{source}: 'nobs' must be a non-negative integer")
        cond = obj.get("condition_number")
        if cond is not None and (isinstance(cond, bool) or not isinstance(cond, (int, float))):
            raise InvalidFileError(f"{source}: 'condition_number' must be a number or null")
        diag = exact.get("xtx_inv_diag")
        return cls(
            target=str(obj.get("target", "")),
            param_names=names,
            params_exact=frac_list(exact.get("params"), "exact.params"),
            ssr_exact=frac(exact.get("ssr"), "exact.ssr"),
            centered_tss_exact=frac(exact.get("centered_tss"), "exact.centered_tss"),
            uncentered_tss_exact=frac(exact.get("uncentered_tss"), "exact.uncentered_tss"),
            xtx_inv_diag_exact=None if diag is None else frac_list(diag, "exact.xtx_inv_diag"),
            nobs=nobs,
            condition_number=math.inf if cond is None else float(cond),
            ridge=frac(exact.get("ridge"), "exact.ridge"),
            fit_intercept=bool(obj.get("fit_intercept", True)),
        )


# --- entry point ----------------------------------------------------------------------------
def inference(
    stats: SufficientStatistics, ridge: float | Fraction = 0.0, fit_intercept: bool = True
) -> InferenceResults:
    """Exact inference for the pooled OLS (or ridge) model from aggregate statistics.

    The coefficients are :func:`hefed.stats.solve_exact_coefficients`' exact
    rational solution; from the exact Gram ``G`` of the parameter columns::

        SSR = Σ_ab w_a w_b (ZᵀZ)_ab   with w = (θ, −1) over (parameter columns, y)
        (XᵀX)⁻¹ exactly, by Gauss-Jordan in gmpy2.mpq

    and everything else as in the module docstring. Raises
    :class:`~hefed.errors.SingularSystemError` (OLS on a singular ``XᵀX``), or
    :class:`~hefed.errors.UsageError` for a bad ``ridge``.
    """
    coef_sorted, intercept = solve_exact_coefficients(stats, ridge, fit_intercept)
    alpha = Fraction(ridge)
    cols = stats.columns
    by_column = dict(zip(cols[1:-1], coef_sorted, strict=True))
    # SSR = ‖y − Xθ − θ₀‖², the quadratic form of the exact Gram (θ₀ = 0 without an intercept).
    ssr = stats.residual_sum_of_squares(by_column, intercept)
    if fit_intercept:
        by_column[ONES] = intercept
    # Display order: intercept first, then the user's feature order.
    names = ([ONES] if fit_intercept else []) + list(stats.features)
    index = [cols.index(nm) for nm in names]
    theta = [by_column[nm] for nm in names]
    n = stats.n
    syy, sy = stats.exact(stats.target, stats.target), stats.exact(ONES, stats.target)
    centered = syy - sy * sy / n

    scale = stats.scale_bits
    gram = [[Fraction(stats.gram[a][b], 1 << (scale[a] + scale[b])) for b in index] for a in index]
    inverse = exact_inverse(gram)
    if inverse is None and alpha == 0:  # solve_exact_coefficients would have raised already
        raise SingularSystemError("singular system: XᵀX is not invertible", [])
    return InferenceResults(
        target=stats.target,
        param_names=names,
        params_exact=theta,
        ssr_exact=ssr,
        centered_tss_exact=centered,
        uncentered_tss_exact=syy,
        xtx_inv_diag_exact=None if inverse is None else [inverse[j][j] for j in range(len(index))],
        xtx_inv_exact=inverse,
        nobs=n,
        condition_number=_condition_number(gram, inverse),
        ridge=alpha,
        fit_intercept=fit_intercept,
    )
