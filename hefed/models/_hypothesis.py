"""Tests and model choice from one aggregate: linear restrictions, nested models, feature subsets, VIF.

Everything here is a function of the exact pooled Gram matrix the key holder already decrypted, so no
further round is needed (statsmodels' names and conventions throughout):

* :func:`t_test`, :func:`f_test`, :func:`wald_test` of linear restrictions ``Rθ = q`` (``R`` an array, a
  ``(R, q)`` pair, or a string such as ``"coal_t = 0, diesel_t = natural_gas_t"``)::

      effect = Rθ,   sd_i = √(σ̂² (R G⁻¹ Rᵀ)_ii),   t_i = (Rθ − q)_i / sd_i
      F      = (Rθ − q)ᵀ (σ̂² R G⁻¹ Rᵀ)⁻¹ (Rθ − q) / J        (J = number of restrictions)

  as ``RegressionResults.t_test`` / ``f_test`` / ``wald_test`` (``use_f`` defaults to the F form for OLS;
  ``use_f=False`` gives statsmodels' χ² = J·F);
* :func:`compare_f_test` of nested models solved from the same aggregate
  (``OLSResults.compare_f_test``: ``F = (SSR_r − SSR_f)/df_diff / (SSR_f/df_f)``);
* :func:`vif`: statsmodels' ``variance_inflation_factor(exog, j)`` for each column of the design
  (with its constant), ``VIF_j = 1/(1 − R²_j) = (G⁻¹)_jj · TSS_j``, where ``TSS_j`` is the centred sum of
  squares of ``x_j`` when the design has a constant (the regression of ``x_j`` on the other columns then has
  one) and the uncentred ``Σx_j²`` otherwise — for the constant itself ``n·(G⁻¹)_00``, as statsmodels;
* :func:`select_features`: backward elimination or best subset by AIC or BIC, each candidate solved from
  ``stats.subset(...)`` (:meth:`~hefed.stats.SufficientStatistics.subset`).

How the numbers are computed. For results fresh from :func:`~hefed.models.inference` (which keep the exact
Gram), each statistic is computed in ball arithmetic from the exact integers and certified like the rest of
the inference (:mod:`hefed.models._certified`): ``R`` and ``q`` enter exactly (floats are dyadic rationals;
numbers in a string are read as exact decimals), ``Rθ``, ``R G⁻¹ Rᵀ``, the t and F statistics, the SSR
difference and the VIFs are each the exact value correctly rounded to float64 (where a ball keeps holding 0,
the exact rational is computed instead). The p-values and critical values come from :mod:`scipy.stats`, as in
statsmodels. Results read from a file carry no Gram: there the tests are computed in float64 from the stored
certified ``params`` and ``cov_params()`` (so ``R·Cov·Rᵀ`` is a float64 product), and the VIF and subset
solving need the statistics.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import flint
import numpy as np

from ..errors import SingularSystemError, UsageError
from ..primitives.certified import (
    MAX_BITS,
    certified_floats,
    exact_ball,
    rational_inverse,
    rounded_or_midpoint,
)
from ..stats import ONES, SufficientStatistics
from ._certified import PooledLeastSquares

if TYPE_CHECKING:
    from ._inference import InferenceResults

_NAN = float("nan")

#: statsmodels' names of the constant, accepted in restriction strings for hefed's ``"(intercept)"``.
INTERCEPT_ALIASES = ("const", "Intercept", "intercept")

#: At most this many features for an exhaustive best-subset search (2^12 = 4096 fits).
MAX_EXHAUSTIVE = 12


def _scipy_stats() -> Any:
    from scipy import stats

    return stats


# --- restrictions ------------------------------------------------------------------------------------
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)")


def _tokens(text: str, names: Mapping[str, int]) -> list[tuple[str, Any]]:
    """Tokens of one side of an equation: ("name", index), ("num", Fraction), ("op", "+-*")."""
    by_length = sorted(names, key=len, reverse=True)
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        name = next((nm for nm in by_length if text.startswith(nm, pos)), None)
        if name is not None:
            out.append(("name", names[name]))
            pos += len(name)
            continue
        number = _NUMBER.match(text, pos)
        if number:
            exponent = _EXPONENT.search(number.group())
            if len(number.group()) > 64 or (exponent is not None and abs(int(exponent.group(1))) > 400):
                raise UsageError("a number in the restriction is too long or beyond float64 range")
            out.append(("num", Fraction(number.group())))
            pos = number.end()
            continue
        if text[pos] in "+-*":
            out.append(("op", text[pos]))
            pos += 1
            continue
        raise UsageError(f"restriction {text.strip()!r}: cannot read {text[pos:].strip()!r} (parameters: "
                         f"{', '.join(n for n in names if n not in INTERCEPT_ALIASES)})")
    return out


def _side(text: str, names: Mapping[str, int], k: int) -> tuple[list[Fraction], Fraction]:
    """A linear expression Σ c·name + c₀ as (coefficients, constant)."""
    tokens = _tokens(text, names)
    coef, const = [Fraction(0)] * k, Fraction(0)
    i = 0
    if not tokens:
        raise UsageError(f"restriction: an empty side in {text!r}")
    while i < len(tokens):
        sign = 1
        while i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in "+-":
            sign = -sign if tokens[i][1] == "-" else sign
            i += 1
        if i >= len(tokens):
            raise UsageError(f"restriction {text.strip()!r}: a term is missing")
        kind, value = tokens[i]
        if kind == "num":
            factor = sign * value
            if i + 1 < len(tokens) and tokens[i + 1] == ("op", "*"):
                if i + 2 >= len(tokens) or tokens[i + 2][0] != "name":
                    raise UsageError(f"restriction {text.strip()!r}: '*' must be followed by a parameter name")
                coef[tokens[i + 2][1]] += factor
                i += 3
            else:
                const += factor
                i += 1
        elif kind == "name":
            coef[value] += sign
            i += 1
        else:
            raise UsageError(f"restriction {text.strip()!r}: unexpected {value!r}")
        if i < len(tokens) and not (tokens[i][0] == "op" and tokens[i][1] in "+-"):
            raise UsageError(f"restriction {text.strip()!r}: terms must be joined by + or -")
    return coef, const


def parse_restrictions(text: str, param_names: Sequence[str]) -> tuple[list[list[Fraction]], list[Fraction]]:
    """``R`` and ``q`` of restrictions written as statsmodels' strings: equations joined by commas, each
    ``lhs = rhs`` (or an expression meaning ``= 0``) with terms ``name``, ``number * name`` or ``number``,
    e.g. ``"coal_t = 0, 2 * diesel_t = natural_gas_t"``. The intercept is ``(intercept)`` (or ``const``)."""
    names = {name: i for i, name in enumerate(param_names)}
    if ONES in names:
        for alias in INTERCEPT_ALIASES:
            names.setdefault(alias, names[ONES])
    k = len(param_names)
    rows: list[list[Fraction]] = []
    q: list[Fraction] = []
    for equation in text.split(","):
        sides = equation.split("=")
        # a parameter name may itself hold '=' (a dummy such as "kiln=wet"): split where both sides read
        candidates = []
        for cut in range(1, len(sides)):
            lhs, rhs = "=".join(sides[:cut]), "=".join(sides[cut:])
            try:
                candidates.append((_side(lhs, names, k), _side(rhs, names, k)))
            except UsageError:
                continue
        if len(sides) == 1:
            (c_l, k_l), (c_r, k_r) = _side(equation, names, k), ([Fraction(0)] * k, Fraction(0))
        elif len(candidates) == 1:
            (c_l, k_l), (c_r, k_r) = candidates[0]
        else:
            try:  # the whole equation as one expression = 0 when it has no '=' of its own
                (c_l, k_l), (c_r, k_r) = _side(equation, names, k), ([Fraction(0)] * k, Fraction(0))
            except UsageError:
                if candidates:
                    raise UsageError(f"restriction {equation.strip()!r} is ambiguous") from None
                raise UsageError(f"restriction {equation.strip()!r}: cannot read it (parameters: "
                                 f"{', '.join(param_names)})") from None
        rows.append([a - b for a, b in zip(c_l, c_r, strict=True)])
        q.append(k_r - k_l)
    return rows, q


def _fraction_of(value: Any, what: str) -> Fraction:
    if isinstance(value, Fraction):
        return value
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"{what} must be finite numbers")
    return Fraction(number)


def restriction_matrix(
    r_matrix: Any, param_names: Sequence[str], q: Any = None
) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Exact ``(R, q)`` from an array (one row per restriction, one column per parameter), a ``(R, q)``
    pair, or a string (:func:`parse_restrictions`); ``q`` defaults to 0 (a scalar is broadcast)."""
    k = len(param_names)
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2:
        if q is not None:
            raise UsageError("give q either in the (R, q) pair or as q, not both")
        r_matrix, q = r_matrix
    if isinstance(r_matrix, str):
        rows, q_text = parse_restrictions(r_matrix, param_names)
        if q is not None:
            raise UsageError("a restriction string holds its own right-hand sides; q cannot be given too")
        q_exact = q_text
    else:
        array = np.asarray(r_matrix, dtype=object)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != k or array.shape[0] == 0:
            raise UsageError(f"r_matrix must have one column per parameter ({k}: {', '.join(param_names)})")
        rows = [[_fraction_of(v, "r_matrix") for v in row] for row in array]
        m = len(rows)
        if q is None:
            q_exact = [Fraction(0)] * m
        else:
            q_arr = np.atleast_1d(np.asarray(q, dtype=object)).reshape(-1)
            if q_arr.size == 1:
                q_arr = np.repeat(q_arr, m)
            if q_arr.size != m:
                raise UsageError(f"q must have one value per restriction ({m})")
            q_exact = [_fraction_of(v, "q") for v in q_arr]
    if any(all(v == 0 for v in row) for row in rows):
        raise UsageError("a restriction with all coefficients zero tests nothing")
    rank = flint.fmpq_mat(len(rows), k, [flint.fmpq(v.numerator, v.denominator) for row in rows for v in row]).rank()
    if rank < len(rows):
        raise UsageError(f"the {len(rows)} restrictions are linearly dependent (rank {rank}); drop the redundant ones")
    return rows, q_exact


# --- results -------------------------------------------------------------------------------------
class ContrastResults:
    """The outcome of a test of linear restrictions, with statsmodels' ``ContrastResults`` names.

    t test: ``effect`` (Rθ), ``sd``, ``tvalue`` (= ``statistic``), ``pvalue`` (arrays, one per restriction),
    ``df_denom``, ``conf_int(alpha)`` (of the effect). F test: ``fvalue`` (= ``statistic``), ``pvalue``,
    ``df_num``, ``df_denom``. χ² (``wald_test(..., use_f=False)``): ``statistic``, ``pvalue``, ``df_denom``
    (the number of restrictions, as statsmodels). ``distribution`` is ``"t"``, ``"F"`` or ``"chi2"``.
    """

    def __init__(self, distribution: str, *, df_denom: float, df_num: float | None = None,
                 effect: np.ndarray | None = None, sd: np.ndarray | None = None, statistic: Any = None,
                 q: np.ndarray | None = None, balls: Mapping[str, Sequence[Any]] | None = None,
                 bits: int | None = None, uncertified: Sequence[str] = ()) -> None:
        self.distribution = distribution
        self.df_denom = df_denom
        self.df_num = df_num
        self.effect = effect
        self.sd = sd
        self.statistic = statistic
        self.q = q
        self._balls = balls
        self._bits = bits
        #: Values that could not be certified and took their ball's midpoint (empty in practice).
        self.uncertified = list(uncertified)
        dist = _scipy_stats()
        if distribution == "t":
            self.tvalue = np.asarray(statistic, dtype=np.float64)
            self.pvalue: Any = 2 * dist.t.sf(np.abs(self.tvalue), df_denom)
        elif distribution == "F":
            self.fvalue = statistic
            self.pvalue = float(dist.f.sf(statistic, df_num, df_denom))
        else:
            self.pvalue = float(dist.chi2.sf(statistic, df_denom))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """``1 − alpha`` intervals of the effects ``Rθ`` (t tests only): ``effect ± t_{1−α/2}·sd``, from the
        certified balls (each bound rounded once) when available."""
        if self.distribution != "t" or self.effect is None or self.sd is None:
            raise UsageError("confidence intervals are available for t tests only")
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise UsageError("alpha must be a number in (0, 1)")
        crit = float(_scipy_stats().t.ppf(1 - alpha / 2, self.df_denom))
        m = len(self.effect)
        out = np.empty((m, 2))
        if self._balls is not None and self._bits is not None and "sd" in self._balls:
            with flint.ctx.workprec(self._bits):
                for i in range(m):
                    half = exact_ball(Fraction(crit)) * self._balls["sd"][i]
                    for side, ball in enumerate((self._balls["effect"][i] - half, self._balls["effect"][i] + half)):
                        out[i, side] = rounded_or_midpoint(ball)
            return out
        out[:, 0] = self.effect - crit * self.sd
        out[:, 1] = self.effect + crit * self.sd
        return out

    def summary(self, alpha: float = 0.05) -> str:
        if self.distribution == "t":
            assert self.effect is not None and self.sd is not None
            ci = self.conf_int(alpha)
            heads = ["coef", "std err", "t", "P>|t|", f"[{alpha / 2:.3g}", f"{1 - alpha / 2:.3g}]"]
            lines = [" " * 6 + "".join(h.rjust(13) for h in heads)]
            for i in range(len(self.effect)):
                cells = [self.effect[i], self.sd[i], self.tvalue[i]]
                row = f"c{i}".ljust(6) + "".join(format(c, ".6g").rjust(13) for c in cells)
                row += format(self.pvalue[i], ".4g").rjust(13) + "".join(format(c, ".6g").rjust(13) for c in ci[i])
                lines.append(row)
            return "Test for constraints (t)\n" + "\n".join(lines)
        if self.distribution == "F":
            return (f"<F test: F={self.fvalue:.10g}, p={self.pvalue:.6g}, df_denom={self.df_denom:g}, "
                    f"df_num={self.df_num:g}>")
        return (f"<Wald test (chi2): statistic={self.statistic:.10g}, p-value={self.pvalue:.6g}, "
                f"df_denom={self.df_denom:g}>")

    def __str__(self) -> str:
        return self.summary()

    __repr__ = __str__


# --- certified computations --------------------------------------------------------------------------------
def _problem_of(results: InferenceResults) -> PooledLeastSquares | None:
    """The pooled problem (exact Gram) behind fresh results; None for results read from a file."""
    exact = getattr(results, "_exact", None)
    problem = getattr(exact, "_problem", None)
    return problem if isinstance(problem, PooledLeastSquares) else None


def _check_ols(results: InferenceResults, what: str) -> None:
    if results.is_ridge:
        raise UsageError(f"{what} assumes the unpenalised OLS estimator; it does not apply to ridge")
    if results.df_resid <= 0:
        raise UsageError(f"{what} needs residual degrees of freedom (n > number of parameters)")


def _ball_matrix(rows: Sequence[Sequence[Fraction]]) -> Any:
    m, k = len(rows), len(rows[0])
    return flint.arb_mat(m, k, [exact_ball(v) for row in rows for v in row])


class _Restricted:
    """Exact and ball values of Rθ − q and R G⁻¹ Rᵀ for one pooled problem."""

    def __init__(self, problem: PooledLeastSquares, rows: list[list[Fraction]], q: list[Fraction],
                 df_resid: int) -> None:
        self.problem, self.rows, self.q, self.df_resid = problem, rows, q, df_resid
        self.support = sorted({j for row in rows for j, v in enumerate(row) if v != 0})
        self._exact_v: list[list[Fraction]] | None = None

    # exact rationals (fallbacks where a ball keeps holding 0, and exact rounding ties)
    def exact_effect(self, i: int) -> Fraction:
        theta = self.problem.exact_params()
        return sum((v * theta[j] for j, v in enumerate(self.rows[i]) if v), Fraction(0))

    def exact_v(self) -> list[list[Fraction]]:
        if self._exact_v is None:
            columns = {j: self.problem.exact_inverse_column(j) for j in self.support}
            m = len(self.rows)
            self._exact_v = [[sum((self.rows[a][i] * self.rows[b][j] * columns[j][i]
                                   for i in self.support for j in self.support), Fraction(0))
                              for b in range(m)] for a in range(m)]
        return self._exact_v

    def exact_scale(self) -> Fraction:
        return self.problem.exact_ssr() / self.df_resid

    def balls(self, bits: int) -> dict[str, Any] | None:
        """diff = Rθ − q (list), effect = Rθ (list), V = R G⁻¹ Rᵀ (arb_mat), scale, ssr; None when the
        system is not separated from singular at this precision."""
        balls = self.problem.balls(bits)
        if not balls:
            if bits >= MAX_BITS:
                raise SingularSystemError("the system cannot be separated from a singular one", [])
            return None
        k, m = self.problem.k, len(self.rows)
        theta = flint.arb_mat(k, 1, balls["theta"])
        r = _ball_matrix(self.rows)
        effect_m = r * theta
        effect, diff = [], []
        for i in range(m):
            e = effect_m[i, 0]
            if e.contains(0):
                e = exact_ball(self.exact_effect(i))
            d = e - exact_ball(self.q[i])
            if d.contains(0):
                d = exact_ball(self.exact_effect(i) - self.q[i])
            effect.append(e)
            diff.append(d)
        inv = flint.arb_mat(k, k, [x for row in balls["xtx_inv"] for x in row])
        v = r * inv * r.transpose()
        ssr = balls["ssr"]
        return {"effect": effect, "diff": diff, "V": v, "ssr": ssr, "scale": ssr / self.df_resid}


def t_test(results: InferenceResults, r_matrix: Any, q: Any = None) -> ContrastResults:
    """statsmodels' ``t_test``: each restriction ``(Rθ)_i = q_i`` on its own (see the module docstring)."""
    _check_ols(results, "a t test")
    rows, q_exact = restriction_matrix(r_matrix, results.param_names, q)
    m = len(rows)
    q_float = np.array([float(v) for v in q_exact])
    problem = _problem_of(results)
    if problem is None:  # read from a file: float64 from the certified params and covariance
        r = np.array([[float(v) for v in row] for row in rows])
        effect = r @ results.params
        sd = np.sqrt(np.diag(r @ results.cov_params() @ r.T))
        return ContrastResults("t", df_denom=float(results.df_resid), effect=effect, sd=sd,
                               statistic=(effect - q_float) / sd, q=q_float)
    restricted = _Restricted(problem, rows, q_exact, results.df_resid)

    def evaluate(bits: int) -> dict[str, list[Any]]:
        b = restricted.balls(bits)
        if b is None:
            return {"effect": [flint.arb.nan()] * m}
        sd = [(b["scale"] * b["V"][i, i]).sqrt() for i in range(m)]
        tvalue = [b["diff"][i] / sd[i] if not b["ssr"].is_zero() else flint.arb.nan() for i in range(m)]
        return {"effect": b["effect"], "sd": sd, "tvalue": tvalue}

    certified = certified_floats(evaluate, {"effect": restricted.exact_effect})
    values = certified.values
    tvalues = np.array(values["tvalue"])
    if any(math.isnan(t) for t in tvalues) and results.ssr == 0:  # a perfect fit: zero errors
        diffs = [restricted.exact_effect(i) - q_exact[i] for i in range(m)]
        tvalues = np.array([_NAN if d == 0 else math.copysign(math.inf, d) for d in diffs])
    return ContrastResults("t", df_denom=float(results.df_resid), effect=np.array(values["effect"]),
                           sd=np.array(values["sd"]), statistic=tvalues, q=q_float, balls=certified.balls,
                           bits=certified.bits, uncertified=sorted(certified.uncertified))


def _exact_fvalue(restricted: _Restricted) -> Fraction:
    v = restricted.exact_v()
    inverse = rational_inverse(v)
    assert inverse is not None  # R has full row rank and G⁻¹ is positive definite
    m = len(v)
    diff = [restricted.exact_effect(i) - restricted.q[i] for i in range(m)]
    quad = sum((diff[a] * inverse[a][b] * diff[b] for a in range(m) for b in range(m)), Fraction(0))
    return quad / (m * restricted.exact_scale())


def wald_test(results: InferenceResults, r_matrix: Any, q: Any = None, use_f: bool | None = None,
              scalar: bool = True) -> ContrastResults:
    """statsmodels' ``wald_test``: the joint test of ``Rθ = q``; the F form by default (OLS, ``use_t``),
    statsmodels' χ² = J·F with ``use_f=False``. ``scalar`` (statsmodels' option) is accepted: the statistic
    is always a float here."""
    _check_ols(results, "a Wald test")
    if not scalar:
        raise UsageError("scalar=False (statsmodels' deprecated array form) is not supported")
    use_f = True if use_f is None else use_f
    rows, q_exact = restriction_matrix(r_matrix, results.param_names, q)
    m = len(rows)
    problem = _problem_of(results)
    if problem is None:
        r = np.array([[float(v) for v in row] for row in rows])
        d = r @ results.params - np.array([float(v) for v in q_exact])
        cov = r @ results.cov_params() @ r.T
        fvalue = float(d @ np.linalg.solve(cov, d)) / m
    else:
        restricted = _Restricted(problem, rows, q_exact, results.df_resid)

        def evaluate(bits: int) -> dict[str, list[Any]]:
            b = restricted.balls(bits)
            if b is None:
                return {"fvalue": [flint.arb.nan()]}
            if b["ssr"].is_zero():
                return {}
            diff = flint.arb_mat(m, 1, b["diff"])
            try:
                solved = b["V"].solve(diff)
            except ZeroDivisionError:  # not separated at this precision
                return {"fvalue": [flint.arb.nan()]}
            quad = (diff.transpose() * solved)[0, 0]
            if quad.contains(0) and all(d.is_zero() for d in b["diff"]):
                quad = flint.arb(0)
            return {"fvalue": [quad / (b["scale"] * m)]}

        certified = certified_floats(evaluate, {"fvalue": lambda i: _exact_fvalue(restricted)})
        if "fvalue" in certified.values:
            fvalue = certified.values["fvalue"][0]
        else:  # a perfect fit: any violated restriction is infinitely significant
            fvalue = _NAN if all(restricted.exact_effect(i) == q_exact[i] for i in range(m)) else math.inf
    if use_f:
        return ContrastResults("F", df_denom=float(results.df_resid), df_num=float(m), statistic=fvalue)
    return ContrastResults("chi2", df_denom=float(m), statistic=fvalue * m)


def f_test(results: InferenceResults, r_matrix: Any, q: Any = None) -> ContrastResults:
    """statsmodels' ``f_test``: the joint F test of ``Rθ = q``."""
    return wald_test(results, r_matrix, q, use_f=True)


def compare_f_test(full: InferenceResults, restricted: InferenceResults) -> tuple[float, float, float]:
    """statsmodels' ``OLSResults.compare_f_test``: ``(F, p-value, df_diff)`` of the restricted model against
    this one, ``F = (SSR_r − SSR_f)/df_diff / (SSR_f/df_f)``. The restricted model's parameters must be a
    subset of these (same target, same rows); with both fresh from the same aggregate the SSR difference is
    certified (and exactly 0 when it is)."""
    _check_ols(full, "compare_f_test")
    _check_ols(restricted, "compare_f_test")
    if restricted.target != full.target or restricted.nobs != full.nobs:
        raise UsageError("compare_f_test: the models are not fitted to the same rows and target")
    if not set(restricted.param_names) < set(full.param_names):
        raise UsageError("compare_f_test: the restricted model's parameters must be a proper subset of the full "
                         f"model's ({', '.join(full.param_names)})")
    df_full, df_restr = full.df_resid, restricted.df_resid
    df_diff = df_restr - df_full
    if restricted.absorbed != full.absorbed or df_diff <= 0:
        raise UsageError("compare_f_test: the models are not nested (their fixed effects or degrees of freedom "
                         "differ)")
    pf, pr = _problem_of(full), _problem_of(restricted)
    if pf is not None and pr is not None:
        # the full problem's Gram on the sub-problem's columns, in the same integer units (the same encoding)
        if pr.Z != pf.stats.gram_of([*pr.param_names, pr.stats.target]):
            raise UsageError("compare_f_test: the restricted model was not solved from the same aggregate")

        def evaluate(bits: int) -> dict[str, list[Any]]:
            bf, br = pf.balls(bits), pr.balls(bits)
            if not bf or not br:
                return {"fvalue": [flint.arb.nan()]}
            diff = br["ssr"] - bf["ssr"]
            if diff.contains(0):
                diff = exact_ball(pr.exact_ssr() - pf.exact_ssr())
            if bf["ssr"].is_zero():
                return {}
            return {"fvalue": [diff / df_diff / bf["ssr"] * df_full]}

        certified = certified_floats(evaluate, {"fvalue": lambda i: (pr.exact_ssr() - pf.exact_ssr()) / df_diff
                                                / pf.exact_ssr() * df_full})
        fvalue = certified.values["fvalue"][0] if "fvalue" in certified.values else math.inf
    else:
        fvalue = (restricted.ssr - full.ssr) / df_diff / full.ssr * df_full
    pvalue = float(_scipy_stats().f.sf(fvalue, df_diff, df_full))
    return fvalue, pvalue, float(df_diff)


def vif(results: InferenceResults, standardize: bool = True) -> np.ndarray:
    """statsmodels' ``variance_inflation_factor(exog, j, standardize=...)`` for each column of the design
    (``param_names`` order), certified from the exact Gram: ``VIF_j = 1/(1 − R²_j) = (G⁻¹)_jj · TSS_j``.

    ``standardize=True`` (statsmodels' default since 0.15) centres the columns first: a feature's VIF is then the
    usual centred one, ``(G_c⁻¹)_jj`` times the centred sum of squares of ``x_j`` with ``G_c`` the Gram of the
    design *with* a constant (whether or not the model fits one), and the constant's VIF is 1.
    ``standardize=False``: the raw regression of ``x_j`` on the other columns — centred ``TSS_j`` when they hold
    the constant, the uncentred ``Σx_j²`` when they do not (the constant's own VIF is ``n·(G⁻¹)_00``).
    statsmodels' detection of an *implicit* constant (dummies summing to one) is not replicated.
    Needs the statistics (fresh results, not a file)."""
    problem = _problem_of(results)
    if problem is None:
        raise UsageError("VIF needs the pooled statistics (results from hefed.models.inference, not from a file)")
    if results.is_ridge:
        raise UsageError("VIF describes the OLS design; solve without ridge")
    stats = problem.stats
    design = problem if (problem.fit_intercept or not standardize) else PooledLeastSquares(stats, Fraction(0), True)
    k = design.k
    tss: list[Fraction] = []
    for name in design.param_names:
        square = stats.exact(name, name)
        if name == ONES or not design.fit_intercept:
            tss.append(square)
        else:
            total = stats.exact(ONES, name)
            tss.append(square - total * total / stats.n)
    ones = {j for j, name in enumerate(design.param_names) if name == ONES and standardize}

    def evaluate(bits: int) -> dict[str, list[Any]]:
        balls = design.balls(bits)
        if not balls:
            return {"vif": [flint.arb.nan()] * k}
        inv = balls["xtx_inv"]
        return {"vif": [flint.arb(1) if j in ones else inv[j][j] * exact_ball(tss[j]) for j in range(k)]}

    certified = certified_floats(evaluate, {"vif": lambda j: design.exact_inverse_column(j)[j] * tss[j]})
    by_name = dict(zip(design.param_names, certified.values["vif"], strict=True))
    return np.array([by_name[name] for name in results.param_names])


# --- feature subsets and model choice ------------------------------------------------------------------
@dataclass(frozen=True)
class SubsetFit:
    """One candidate model: its features (display order), parameter count, SSR and criteria, each certified
    (equal to ``inference(stats.subset(features)).aic`` …; NaN for a singular subset)."""

    features: tuple[str, ...]
    k: int
    df_resid: int
    ssr: float
    llf: float
    aic: float
    bic: float

    def criterion(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass
class FeatureSelection:
    """The outcome of :func:`select_features`: ``path`` (backward: the full model, then each step's model with
    the feature it dropped; exhaustive: the best model of each size), ``fits`` (every candidate evaluated),
    ``best`` (the lowest criterion)."""

    criterion: str
    method: str
    fit_intercept: bool
    path: list[tuple[str | None, SubsetFit]] = field(default_factory=list)
    fits: list[SubsetFit] = field(default_factory=list)

    @property
    def best(self) -> SubsetFit:
        candidates = [fit for fit in self.fits if not math.isnan(fit.criterion(self.criterion))]
        if not candidates:
            raise SingularSystemError("no candidate model could be solved", [])
        return min(candidates, key=lambda fit: fit.criterion(self.criterion))

    @property
    def best_features(self) -> list[str]:
        return list(self.best.features)

    def to_frame(self) -> Any:
        """Every candidate as a pandas DataFrame (features joined by ", "), by criterion."""
        import pandas as pd

        frame = pd.DataFrame([{"features": ", ".join(f.features), "k": f.k, "df_resid": f.df_resid, "ssr": f.ssr,
                               "llf": f.llf, "aic": f.aic, "bic": f.bic} for f in self.fits])
        return frame.sort_values(self.criterion, kind="stable").reset_index(drop=True)

    def summary(self) -> str:
        lines = [f"Feature selection by {self.criterion.upper()} ({self.method}), "
                 f"{'with' if self.fit_intercept else 'without'} intercept:"]
        for step, (removed, fit) in enumerate(self.path):
            what = "start" if removed is None and self.method == "backward" else (
                f"drop {removed}" if removed is not None else f"best of size {len(fit.features)}")
            lines.append(f"  {step:>3}  {what:<28} {self.criterion}={fit.criterion(self.criterion):.10g}  "
                         f"[{', '.join(fit.features)}]")
        lines.append(f"  best: [{', '.join(self.best.features)}]")
        return "\n".join(lines)


def subset_criteria(stats: SufficientStatistics, features: Sequence[str], fit_intercept: bool = True) -> SubsetFit:
    """Certified SSR, log-likelihood, AIC and BIC of the OLS model of ``features`` from the same statistics."""
    sub = stats.subset(features)
    problem = PooledLeastSquares(sub, Fraction(0), fit_intercept)
    n, k = sub.n, problem.k
    if k == 0:
        raise UsageError("a model needs at least one parameter (the intercept or a feature)")
    nan_fit = SubsetFit(tuple(features), k, n - k, _NAN, _NAN, _NAN, _NAN)
    log_n = flint.arb(n).log

    def evaluate(bits: int) -> dict[str, list[Any]]:
        balls = problem.balls(bits)
        if not balls:
            if bits >= MAX_BITS:
                raise SingularSystemError("not separated from singular", [])
            return {"ssr": [flint.arb.nan()]}
        ssr = balls["ssr"]
        if ssr.is_zero():
            return {"ssr": [ssr]}
        llf = -flint.arb(n) / 2 * ((2 * flint.arb.pi()).log() + (ssr / n).log() + 1)
        return {"ssr": [ssr], "llf": [llf], "aic": [-2 * llf + 2 * k], "bic": [-2 * llf + log_n() * k]}

    try:
        certified = certified_floats(evaluate, {"ssr": lambda i: problem.exact_ssr()})
    except SingularSystemError:
        return nan_fit
    v = certified.values
    if "llf" not in v:  # a perfect fit
        return SubsetFit(tuple(features), k, n - k, v["ssr"][0], math.inf, -math.inf, -math.inf)
    return SubsetFit(tuple(features), k, n - k, v["ssr"][0], v["llf"][0], v["aic"][0], v["bic"][0])


def select_features(
    stats: SufficientStatistics,
    criterion: str = "bic",
    method: str = "backward",
    fit_intercept: bool = True,
    keep: Sequence[str] = (),
) -> FeatureSelection:
    """Choose features by AIC or BIC from one aggregate, each candidate solved from ``stats.subset(...)``.

    ``method="backward"``: start from every feature and drop, step by step, the feature whose removal lowers
    the criterion most, until no removal lowers it. ``method="exhaustive"``: every subset (at most
    :data:`MAX_EXHAUSTIVE` features). ``keep`` lists features never dropped. Criteria are statsmodels'
    ``aic``/``bic`` of ``OLS`` on each subset, certified.
    """
    if criterion not in ("aic", "bic"):
        raise UsageError("criterion must be 'aic' or 'bic'")
    if method not in ("backward", "exhaustive"):
        raise UsageError("method must be 'backward' or 'exhaustive'")
    features = list(stats.features)
    unknown = [f for f in keep if f not in features]
    if unknown:
        raise UsageError(f"keep: {', '.join(map(repr, unknown))} not among the features")
    free = [f for f in features if f not in keep]
    minimum = 0 if (fit_intercept or keep) else 1
    out = FeatureSelection(criterion, method, fit_intercept)
    cache: dict[frozenset[str], SubsetFit] = {}

    def fit(chosen: Sequence[str]) -> SubsetFit:
        key = frozenset(chosen)
        if key not in cache:
            ordered = [f for f in features if f in key]
            cache[key] = subset_criteria(stats, ordered, fit_intercept)
            out.fits.append(cache[key])
        return cache[key]

    def value(f: SubsetFit) -> float:
        v = f.criterion(criterion)
        return math.inf if math.isnan(v) else v

    if method == "exhaustive":
        if len(free) > MAX_EXHAUSTIVE:
            raise UsageError(f"an exhaustive search over {len(free)} features is too large (at most "
                             f"{MAX_EXHAUSTIVE}); use method='backward'")
        for size in range(max(minimum - len(keep), 0), len(free) + 1):
            fits = [fit([*keep, *combo]) for combo in itertools.combinations(free, size)]
            out.path.append((None, min(fits, key=value)))
        return out
    current = fit(features)
    out.path.append((None, current))
    while len(current.features) > max(minimum, len(keep)):
        candidates = [(name, fit([f for f in current.features if f != name]))
                      for name in current.features if name not in keep]
        if not candidates:
            break
        removed, best = min(candidates, key=lambda pair: value(pair[1]))
        if not value(best) < value(current):
            break
        out.path.append((removed, best))
        current = best
    return out
