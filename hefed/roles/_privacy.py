"""Differential privacy of a release: the discrete Gaussian on the exact integer statistics.

Off by default, clearly labelled when on. What is protected: **adding or removing one row of any
factory's data** changes the distribution of everything released by a bounded factor (ρ-zCDP,
hence (ε, δ)-DP). What is not: the key holder (and whoever runs :func:`privatize_statistics`)
sees the exact aggregate; a factory's membership and row count are not hidden beyond the noise
on ``n``; each call draws fresh noise and spends the budget again (k releases of the same rows
cost k·ρ: zCDP composes by addition).

**Bounds.** Every column ``a`` of the model has declared bounds ``[lo_a, hi_a]`` that every factory
clips to before encoding. In a study they are the study's (``Study.new(bounds=...)``), and
:func:`hefed.encrypt_for_study` — used by ``hefed encrypt --study`` and by every Flower factory
that has a study — clips to exactly them; bounds given next to a study that differ from its own
are refused. Without a study, a bounds file (``{"format": "hefed.bounds", "version": 1,
"columns": {"coal_t": [0, 400], ...}}``, :class:`hefed.data.Bounds`) is taken on trust: **nothing
checks that the factories clipped to it** (``hefed encrypt --bounds FILE``), and the accounting
says so.

The analysis takes each row's contribution to depend on that row alone: dropping rows with gaps
(``missing="drop"``), clipping and a seeded holdout do; imputing from the consortium summary or
dropping outliers against it (``impute``, ``max_z``) do not (one row moves the summary, hence every
row), and a study with either is refused. Other sums decrypted in the same study (a summary, an
evaluation) are exact and outside this guarantee.

**Sensitivity, on the integer grid.** Column ``a`` is encoded as ``e_a = round(x_a·2^F_a)`` with
``F_a`` its fractional bits (``F = 0`` and ``e = 1`` for the column of ones), so a clipped value has
``|e_a| ≤ E_a := ⌈max(|lo_a|, |hi_a|)·2^F_a⌉`` (``E_ones = 1``). The released statistics are the
upper triangle ``S_ab = Σ_rows e_a·e_b`` (a ≤ b) of the Gram matrix of ``z = (1, x, y)``: the
count ``n``, the sums, ``XᵀX``, ``Xᵀy`` and ``yᵀy``. Adding or removing one row changes ``S_ab`` by
``e_a·e_b``, so per statistic ``Δ_ab = E_a·E_b`` (in data units ``U_a·U_b`` with
``U_a = E_a/2^F_a``), and the L2 sensitivity of the vectorised upper triangle is

    Δ₂ = sup_row ‖(e_a e_b)_{a≤b}‖₂ = ( Σ_{a≤b} E_a² E_b² )^{1/2}
       = ( ½[(Σ_a E_a²)² + Σ_a E_a⁴] )^{1/2}    (attained at a corner of the box; ≤ Σ_a E_a²).

**Mechanism.** Each statistic gets independent discrete Gaussian noise ``N_Z(0, σ_ab²)`` on its
own integer grid, sampled exactly (:mod:`hefed.primitives.discrete_gaussian`, CKS20 Algorithm 3,
:mod:`secrets` only, rational arithmetic), with ``σ_ab = c·Δ_ab``: every statistic gets the same
share of the budget, so the noise is relative to the bounds and changing units (kg or t) changes
nothing. By CKS20 Theorem 14 (independent discrete Gaussians with per-coordinate σ_j) the release
is ρ-zCDP with

    ρ = ½ · sup_row Σ_{a≤b} (e_a e_b)² / σ_ab² = ½ · Σ_{a≤b} Δ_ab² / (c² Δ_ab²) = K / (2c²),

``K`` the number of statistics with ``Δ_ab > 0`` — for one statistic the familiar ``Δ²/(2σ²)``.
**Conversion** (CKS20 Corollary 13, tight for zCDP): ρ-zCDP implies (ε, δ)-DP for every ε > 0 with

    δ(ε) = inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α.

For a requested (ε, δ) the largest ρ with δ(ε) ≤ δ is found by bisection, and ``c² ≥ K/(2ρ)`` is
rounded *up* to a rational, so the ρ used is at most the one allowed. (The accounting is computed in
floating point; the noise never is.)

**After the noise** the symmetric Gram matrix is mirrored from its noised upper triangle, and
everything released under the DP label is computed from the noised statistics only (post-processing):
coefficients, ``n``, SSE, R², the means and SDs of standardisation, and the standard errors —
the sampling SE ``s²·A⁻¹GA⁻¹`` (``s² = SSE/(n−p)``, ``A = G + αD``) *and* the SE the DP noise adds
to each coefficient, by first-order propagation through ``β = A⁻¹c``:
``Var(β) ≈ A⁻¹ W A⁻¹`` with ``W_aa = σ_ay² + Σ_b σ_ab² β_b²`` and ``W_ab = σ_ab² β_a β_b`` (a ≠ b).

**When the noise swamps the data.** If the noised Gram matrix of ``(1, x)`` is not positive definite
(checked exactly by its pivots: a negative variance would follow, or a singular system), or the
noised ``n`` does not exceed the number of parameters, the release is refused
(:class:`~hefed.errors.PrivacyNoiseError`): nothing is clipped, projected or regularised in silence;
ask for a larger ε, tighter bounds or more rows. (Refusing spends the budget all the same: the noise
was drawn.) When only y's pivot fails (the noised SSE is not positive), the coefficients are
released but SSE, R² and the sampling SEs are not, and that is said.
:class:`~hefed.errors.PrivacyNoiseWarning` is raised (and recorded in the accounting) when the noise
swamps the signal: when a noised value is within ``SWAMP_SDS = 3`` noise SDs of zero, read from the
noised statistics and the public σ only — a diagonal statistic ``Σa²`` (or ``n``) against its σ; the
noised SSE against the σ of ``Σy²`` (R² and the sampling SEs are then mostly noise); a coefficient
against its DP-noise SE (the noise alone could make it, or flip its sign). Three SDs, not one: a
statistic swamped by noise still lands beyond one SD of zero a third of the time, beyond three only
0.3 % of the time.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

from ..data import Bounds
from ..errors import PrivacyNoiseError, PrivacyNoiseWarning, UsageError
from ..models import LinearModel
from ..primitives.discrete_gaussian import discrete_gaussian
from ..primitives.exactsolve import exact_inverse
from ..protocol import Study
from ..stats import ONES, SufficientStatistics, upper_triangle_index
from ._analyst import solve_statistics

MECHANISM = ("discrete Gaussian on the integer sufficient statistics, sampled exactly from secrets "
             "(Canonne, Kamath, Steinke 2020, Algorithm 3); rho-zCDP by their Theorem 14, "
             "(epsilon, delta) by their Corollary 13")
UNIT = "adding or removing one row of any factory's data"
NOT_COVERED = ("the key holder, and whoever adds the noise, sees the exact aggregate; each release draws fresh "
               "noise and spends rho again (k releases cost k*rho); replacing a row (rather than adding or "
               "removing one) can cost up to 4*rho when bounds straddle zero")
#: A noised statistic or coefficient within this many noise SDs of zero is swamped by the noise (warned).
SWAMP_SDS = 3
#: ``c²`` is rounded up to a multiple of 2^-_C2_BITS (a rational the exact sampler takes).
_C2_BITS = 40


@dataclass(frozen=True)
class DifferentialPrivacy:
    """An (ε, δ)-differentially private release.

    ``bounds`` are the bounds every factory clipped to: leave them out in a study (the study's are
    used; others are refused); without a study they are required and taken on trust.
    """

    epsilon: float
    delta: float
    bounds: Bounds | None = None

    def __post_init__(self) -> None:
        eps, delta = self.epsilon, self.delta
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 < eps < math.inf):
            raise UsageError(f"dp epsilon must be a finite number > 0, got {eps!r}", parameters=("dp_epsilon",))
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise UsageError(f"dp delta must be in (0, 1), got {delta!r}", parameters=("dp_delta",))


# --- accounting -----------------------------------------------------------------------------------
def zcdp_rho(sensitivity: float, sigma: float) -> float:
    """ρ of the (discrete) Gaussian mechanism with L2 sensitivity Δ and scale σ: ``Δ²/(2σ²)`` (CKS20 Thm 4)."""
    if not sigma > 0 or not sensitivity >= 0:
        raise UsageError("zcdp_rho needs sigma > 0 and sensitivity >= 0")
    return sensitivity * sensitivity / (2 * sigma * sigma)


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The δ of (ε, δ)-DP implied by ρ-zCDP (CKS20 Corollary 13, the tight conversion):
    ``inf_{α>1} exp((α−1)(αρ−ε))/(α−1)·(1−1/α)^α``, at most 1.

    The logarithm of the objective is strictly convex in α (its second derivative is
    ``2ρ + 1/(α(α−1)) > 0``), so a golden-section search over ``u = ln(α−1)`` finds the infimum.
    """
    if not rho >= 0 or not epsilon >= 0:
        raise UsageError("zcdp_delta needs rho >= 0 and epsilon >= 0")
    if rho == 0:
        return 0.0

    def log_objective(u: float) -> float:
        am1 = math.exp(u)  # α − 1
        alpha = 1.0 + am1
        return am1 * (alpha * rho - epsilon) + alpha * (u - math.log(alpha)) - u

    lo, hi = -40.0, 40.0
    inv_phi = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    f1, f2 = log_objective(x1), log_objective(x2)
    for _ in range(120):  # the bracket shrinks to 80·0.618^120 ≈ 1e-23
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = log_objective(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = log_objective(x2)
    best = min(f1, f2, log_objective(lo), log_objective(hi))
    return min(1.0, math.exp(best))


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The smallest ε with ``zcdp_delta(rho, ε) ≤ delta`` (bisection; ≤ ρ + 2√(ρ ln(1/δ)), Bun & Steinke 2016)."""
    if not 0 < delta < 1:
        raise UsageError("dp delta must be in (0, 1)", parameters=("dp_delta",))
    lo, hi = 0.0, rho + 2 * math.sqrt(rho * math.log(1 / delta)) + 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        if zcdp_delta(rho, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


@functools.lru_cache(maxsize=64)
def rho_for(epsilon: float, delta: float) -> float:
    """The largest ρ whose ρ-zCDP gives (ε, δ)-DP by :func:`zcdp_delta` (bisection on ln ρ)."""
    DifferentialPrivacy(epsilon, delta)  # validates
    lo, hi = math.log(1e-30), math.log(1e6)
    for _ in range(200):
        mid = (lo + hi) / 2
        if zcdp_delta(math.exp(mid), epsilon) <= delta:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


@dataclass
class PrivacyAccounting:
    """What a DP release spent and how: printed by ``hefed solve`` and saved in model.json's DP block.

    ``statistics`` lists each released statistic ``(a, b)`` with its sensitivity and noise SD in data
    units (``sensitivity = U_a·U_b``, ``sigma = c·U_a·U_b``); ``noise_multiplier`` is ``c``.
    """

    epsilon: float
    delta: float
    rho: float
    delta_achieved: float
    noise_multiplier: float
    noise_multiplier_squared: Fraction
    noised_statistics: int
    l2_sensitivity: float
    bounds: dict[str, list[float]]
    bounds_source: str
    statistics: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    released: dict[str, Any] = field(default_factory=dict)

    def sigma(self, a: str, b: str) -> float:
        """The noise SD (data units) of statistic Σ a·b."""
        for row in self.statistics:
            if {row["a"], row["b"]} == {a, b} and (a == b) == (row["a"] == row["b"]):
                return float(row["sigma"])
        raise KeyError((a, b))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": MECHANISM, "unit": UNIT, "not_covered": NOT_COVERED,
            "epsilon": self.epsilon, "delta": self.delta, "rho": self.rho, "delta_achieved": self.delta_achieved,
            "noise_multiplier": self.noise_multiplier, "noised_statistics": self.noised_statistics,
            # exact: statistic (a, b) got N_Z(0, c²·Δ_ab²) on its integer grid, Δ_ab = E_a·E_b
            "noise_multiplier_squared": f"{self.noise_multiplier_squared.numerator}/"
                                        f"{self.noise_multiplier_squared.denominator}",
            "l2_sensitivity": self.l2_sensitivity, "bounds": self.bounds, "bounds_source": self.bounds_source,
            "statistics": self.statistics, "warnings": list(self.warnings), "released": self.released,
            "derived_from": "every number of this model (coefficients, 'exact', n, sse, r2, standardized, standard "
                            "errors) is computed from the noised statistics only",
        }


# --- the mechanism ----------------------------------------------------------------------------------
def _resolve_bounds(statistics: SufficientStatistics, dp: DifferentialPrivacy, study: Study | None
                    ) -> tuple[Bounds, str]:
    if study is not None:
        study.check_digest(statistics.study, "the statistics")
        if study.bounds is None:
            raise UsageError("a DP release needs the bounds factories clipped to, and this study declares none, so "
                             "none clipped (Study.new(bounds=...))", parameters=("bounds",))
        if dp.bounds is not None and dp.bounds != study.bounds:  # the noise must match what was clipped
            raise UsageError("the DP bounds are not the study's: factories clipped to the study's bounds only",
                             parameters=("bounds",))
        if study.cleaning.impute is not None or study.cleaning.max_z is not None:
            raise UsageError("a DP release assumes each row's contribution depends on that row alone, but this study "
                             "imputes from or drops outliers against the consortium summary, so every row depends on "
                             "all (a study with missing='drop' and neither impute nor max_z)",
                             parameters=("impute", "max_z"))
        return study.bounds, f"study {study.digest} (factories clip to them through encrypt_for_study)"
    if statistics.study is not None:
        raise UsageError(f"these statistics were made for study {statistics.study}: give the study, whose bounds "
                         "are the ones the factories clipped to", parameters=("study",))
    if dp.bounds is None:
        raise UsageError("a DP release needs the bounds every factory clipped to (a study, or a bounds file)",
                         parameters=("bounds",))
    return dp.bounds, "bounds file given to the release: NOT checked against what the factories clipped to"


def privatize_statistics(
    statistics: SufficientStatistics, dp: DifferentialPrivacy, study: Study | None = None
) -> tuple[SufficientStatistics, PrivacyAccounting]:
    """The statistics with exact discrete Gaussian noise on each upper-triangle entry (mirrored), and the
    accounting (see the module docstring for the sensitivity, ρ and the (ε, δ) conversion).

    The natural caller is the key holder, right after decryption, so the exact aggregate never leaves
    it; ``hefed solve --dp-epsilon`` calls it at the analyst. With a ``study`` the bounds are the
    study's (``dp.bounds`` must be absent or equal); without one ``dp.bounds`` is taken on trust.
    """
    if not isinstance(statistics, SufficientStatistics):
        raise UsageError("a differentially private release needs plain statistics")
    bounds, source = _resolve_bounds(statistics, dp, study)
    cols, scale = statistics.columns, statistics.scale_bits
    m = len(cols)
    # E_a: the largest encoded integer a clipped value of column a can have (1 for the ones).
    top = [1] + [math.ceil(Fraction(bounds.bound(c)) * (1 << scale[a])) for a, c in enumerate(cols) if a > 0]
    pairs = upper_triangle_index(m)
    k = sum(1 for a, b in pairs if top[a] * top[b] > 0)
    if k == 0:
        raise UsageError("the bounds are all [0, 0]: nothing to release", parameters=("bounds",))
    rho_allowed = rho_for(dp.epsilon, dp.delta)
    c2 = Fraction(math.ceil(k / (2 * rho_allowed) * (1 + 1e-12) * 2**_C2_BITS), 2**_C2_BITS)
    rho = Fraction(k) / (2 * c2)
    delta_achieved = zcdp_delta(float(rho), dp.epsilon)
    if not delta_achieved <= dp.delta:  # the rounding above only ever lowers ρ
        raise AssertionError("DP accounting: the rounded noise does not meet the requested delta")
    gram = [row[:] for row in statistics.gram]
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        sensitivity = top[a] * top[b]
        gram[a][b] += discrete_gaussian(c2 * sensitivity * sensitivity)
        gram[b][a] = gram[a][b]
        unit = Fraction(sensitivity, 1 << (scale[a] + scale[b]))
        rows.append({"a": cols[a], "b": cols[b], "sensitivity": float(unit),
                     "sigma": math.sqrt(c2) * float(unit)})
    l2 = math.sqrt(sum(row["sensitivity"] ** 2 for row in rows))
    noised = SufficientStatistics(statistics.target, list(statistics.features), statistics.encoding, gram,
                                  list(statistics.contributors), statistics.study)
    accounting = PrivacyAccounting(
        epsilon=float(dp.epsilon), delta=float(dp.delta), rho=float(rho), delta_achieved=delta_achieved,
        noise_multiplier=math.sqrt(c2), noise_multiplier_squared=c2, noised_statistics=k, l2_sensitivity=l2,
        bounds={c: list(bounds.columns[c]) for c in cols[1:]}, bounds_source=source, statistics=rows)
    return noised, accounting


# --- the release ------------------------------------------------------------------------------------
def _check_usable(noised: SufficientStatistics, parameters: int) -> bool:
    """Refuse noised statistics whose Gram matrix of ``(1, x)`` is not positive definite, or whose noised n does
    not exceed the parameters; return whether the whole Gram of ``(1, x, y)`` is (a positive SSE)."""
    if noised.n <= parameters:
        raise PrivacyNoiseError(f"the noised row count {noised.n} does not exceed the {parameters} parameters: "
                                "the DP noise swamps the data (a larger epsilon, tighter bounds or more rows)",
                                parameters=("dp_epsilon", "bounds"))
    scale = noised.scale_bits
    m = len(noised.gram)
    work = [[Fraction(noised.gram[a][b], 1 << (scale[a] + scale[b])) for b in range(m)] for a in range(m)]
    for k in range(m):  # exact LDLᵀ: every pivot must be positive
        pivot = work[k][k]
        if pivot <= 0:
            if k == m - 1:  # only y's pivot, the residual sum of squares of y on (1, x): the coefficients stand
                return False
            raise PrivacyNoiseError(
                f"the noised Gram matrix is not positive definite (pivot {k}, column {noised.columns[k]!r}): "
                "the DP noise swamps the data, and a variance would be negative; nothing was released "
                "(a larger epsilon, tighter bounds or more rows)", parameters=("dp_epsilon", "bounds"))
        for i in range(k + 1, m):
            factor = work[i][k] / pivot
            if factor:
                for j in range(k + 1, m):
                    work[i][j] -= factor * work[k][j]
    return True


def _standardized(model: LinearModel, noised: SufficientStatistics) -> dict[str, dict[str, float | None]]:
    """:func:`~hefed.roles.standardized_coefficients` from the noised statistics, with None where a noised
    variance is not positive (only y's can be, once the Gram of ``(1, x)`` is positive definite)."""
    n = noised.n

    def sd(column: str) -> float:
        s, ss = noised.exact(ONES, column), noised.exact(column, column)
        variance = (ss - s * s / n) / (n - 1)
        return math.sqrt(float(variance)) if variance > 0 else math.nan

    sd_y = sd(noised.target)
    result = {}
    for name, coef in zip(model.feature_names_in_, model.coef_, strict=True):
        sd_x = sd(str(name))
        result[str(name)] = {"mean": float(noised.exact(ONES, str(name)) / n), "sd": sd_x,
                             "per_sd": float(coef) * sd_x, "standardized": float(coef) * sd_x / sd_y}
    return {name: {k: _finite(v) for k, v in row.items()} for name, row in result.items()}


def _finite(value: float) -> float | None:
    """A number for JSON: None for NaN (what could not be computed from the noised statistics)."""
    return None if math.isnan(value) else value


def _standard_errors(model: LinearModel, noised: SufficientStatistics, accounting: PrivacyAccounting,
                     ridge: float, fit_intercept: bool) -> dict[str, dict[str, float | None]]:
    """Sampling SE and DP-noise SE of each coefficient, from the noised statistics and the public σ only."""
    cols, scale = noised.columns, noised.scale_bits
    y = len(cols) - 1
    params = list(range(0 if fit_intercept else 1, y))
    value = {cols[0]: model.intercept_, **dict(zip(model.feature_names_in_, model.coef_, strict=True))}
    gram = [[Fraction(noised.gram[a][b], 1 << (scale[a] + scale[b])) for b in params] for a in params]
    alpha = Fraction(ridge)
    system = [[g + (alpha if i == j and params[i] != 0 else 0) for j, g in enumerate(row)]
              for i, row in enumerate(gram)]
    inverse = exact_inverse(system)
    if inverse is None:
        raise PrivacyNoiseError("the noised system is singular: the DP noise swamps the data",
                                parameters=("dp_epsilon", "bounds"))
    p = len(params)
    inv = [[float(v) for v in row] for row in inverse]
    g = [[float(v) for v in row] for row in gram]
    beta = [float(value[cols[a]]) for a in params]
    sigma2 = {(a, b): accounting.sigma(cols[a], cols[b]) ** 2 for a in range(len(cols)) for b in range(len(cols))}
    w = [[0.0] * p for _ in range(p)]
    for i, a in enumerate(params):
        w[i][i] = sigma2[a, y] + sum(sigma2[a, b] * beta[j] ** 2 for j, b in enumerate(params))
        for j, b in enumerate(params):
            if i != j:
                w[i][j] = sigma2[a, b] * beta[i] * beta[j]
    s2 = float(model.sse_exact_) / (noised.n - p) if model.sse_exact_ is not None else math.nan

    def sandwich(middle: Sequence[Sequence[float]], i: int) -> float:
        return sum(inv[i][r] * middle[r][s] * inv[s][i] for r in range(p) for s in range(p))

    names = {0: "(intercept)"}
    out = {}
    for i, a in enumerate(params):
        sampling, noise = max(s2 * sandwich(g, i), 0.0), max(sandwich(w, i), 0.0)
        out[names.get(a, cols[a])] = {"sampling": _finite(math.sqrt(sampling)), "dp_noise": math.sqrt(noise),
                                      "total": _finite(math.sqrt(sampling + noise))}
    return out


def _swamp_warnings(noised: SufficientStatistics, model: LinearModel, accounting: PrivacyAccounting,
                    errors: dict[str, dict[str, float | None]]) -> list[str]:
    """What the noise swamps: a noised value within :data:`SWAMP_SDS` noise SDs of zero (see the module docstring)."""
    k = SWAMP_SDS
    found = []
    for column in noised.columns:
        sigma = accounting.sigma(column, column)
        stat = float(noised.exact(column, column))
        if abs(stat) < k * sigma:
            what = "the row count n" if column == ONES else f"the sum of squares of {column!r}"
            found.append(f"{what} (noised {stat:.4g}) is within {k:g} DP noise SDs ({sigma:.4g}) of zero: the bounds "
                         "are far wider than the data, or there are too few rows")
    sigma_yy = accounting.sigma(noised.target, noised.target)
    if model.sse_exact_ is not None and model.sse_ < k * sigma_yy:
        found.append(f"the noised residual sum of squares {model.sse_:.4g} is within {k:g} DP noise SDs "
                     f"({sigma_yy:.4g}, that of the sum of squares of {noised.target!r}) of zero: R2 and the sampling "
                     "standard errors are mostly noise")
    for name, coef in zip(model.feature_names_in_, model.coef_, strict=True):
        se = errors[str(name)]["dp_noise"]
        if se is not None and abs(coef) < k * se:
            found.append(f"the coefficient of {name!r} ({coef:.4g}) is within {k:g} DP noise SEs ({se:.4g}) of zero: "
                         "the noise alone could make it, or flip its sign (a larger epsilon, tighter bounds or more "
                         "rows)")
    return found


def dp_solve(
    stats: SufficientStatistics,
    privacy: DifferentialPrivacy,
    ridge: float = 0.0,
    fit_intercept: bool = True,
    *,
    standardize: bool = False,
    study: Study | None = None,
) -> LinearModel:
    """An (ε, δ)-differentially private model: :func:`privatize_statistics`, then everything from the noised
    statistics only (coefficients, n, SSE, R², standard errors, and with ``standardize`` the means and
    SDs). Raises :class:`~hefed.errors.PrivacyNoiseError` when the noised Gram is not positive definite,
    and warns (:class:`~hefed.errors.PrivacyNoiseWarning`) when the noise swamps a statistic or a
    coefficient; the warnings are also in ``model.dp_["warnings"]``."""
    noised, accounting = privatize_statistics(stats, privacy, study)
    parameters = len(noised.features) + (1 if fit_intercept else 0)
    residual_positive = _check_usable(noised, parameters)
    model = solve_statistics(noised, ridge=ridge, fit_intercept=fit_intercept)
    model._inference = None  # OLS inference would ignore the DP noise: the DP block carries both SEs instead
    found = []
    if not residual_positive:  # said, never clipped: no SSE, R² or sampling SE is released
        model.sse_exact_, model.sse_, model.r2_ = None, math.nan, math.nan
        found.append("the noised residual sum of squares is not positive (the noise on y'y exceeds it): SSE, R2 "
                     "and the sampling standard errors are not released")
    errors = _standard_errors(model, noised, accounting, ridge, fit_intercept)
    if standardize:
        model.standardized_ = cast(dict[str, dict[str, float]], _standardized(model, noised))  # None: not positive
    accounting.warnings = found + _swamp_warnings(noised, model, accounting, errors)
    accounting.released = {"n": noised.n, "standard_errors": errors}
    model.dp_ = accounting.to_dict()
    model.study_ = stats.study
    for message in accounting.warnings:
        warnings.warn(message, PrivacyNoiseWarning, stacklevel=2)
    return model
