"""The emission-factor report: each feature with a unit as a factor with its uncertainty, as MRR/IPCC report it.

A pooled regression of emissions (the target, say t CO2) on activity data (features with units: t of coal,
MWh of electricity, …) estimates one emission factor per activity: the coefficient, in target unit per
feature unit. The EU Monitoring and Reporting Regulation (2018/2066) and the IPCC guidelines express its
uncertainty as the half-width of the 95 % confidence interval relative to the estimate, in %::

    U = t_{0.975, n−k} · se / |factor| · 100

For each feature whose unit is known (from the study: :func:`units_of`), :func:`emission_factors` gives the
factor, its standard error, the confidence interval and ``U``; with fresh results each is computed in ball
arithmetic from the certified values (the exact value correctly rounded). The intercept (a baseline in target
units, not a factor) and features without a unit are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import flint

from ..errors import InvalidFileError, UsageError
from ..primitives.certified import exact_ball, rounded_or_midpoint
from ..protocol import Study

if TYPE_CHECKING:
    from ._inference import InferenceResults


def _scipy_stats() -> Any:
    from scipy import stats

    return stats


@dataclass(frozen=True)
class EmissionFactor:
    """One feature's emission factor: ``factor`` (the coefficient) in ``unit`` (target unit / feature unit),
    ``bse``, the ``1 − alpha`` interval ``conf_low``..``conf_high`` and ``relative_uncertainty`` in % (its
    half-width relative to ``|factor|``; infinite for a zero factor; NaN for ridge)."""

    feature: str
    feature_unit: str
    unit: str
    factor: float
    bse: float
    conf_low: float
    conf_high: float
    relative_uncertainty: float
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        def js(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"feature": self.feature, "feature_unit": self.feature_unit, "unit": self.unit,
                "factor": js(self.factor), "bse": js(self.bse), "conf_int_95": [js(self.conf_low), js(self.conf_high)],
                "relative_uncertainty_pct": js(self.relative_uncertainty)}


def units_of(study: Study) -> tuple[dict[str, str], str | None]:
    """``({feature: unit}, target unit)`` of the study's numeric features that declare a unit."""
    units = {spec.name: spec.unit for spec in study.features if spec.unit and spec.categories is None}
    return units, study.target.unit or None


def check_units(units: Any, source: str) -> dict[str, str]:
    """A ``{feature: unit}`` mapping read from a file."""
    if not isinstance(units, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in units.items()):
        raise InvalidFileError(f"{source}: 'units' must map feature names to unit strings")
    return dict(units)


def factor_unit(target_unit: str | None, target: str, feature_unit: str) -> str:
    """The unit of a factor: target unit per feature unit (the target's name when its unit is unknown)."""
    return f"{target_unit or target}/{feature_unit}"


def emission_factors(results: InferenceResults, units: Mapping[str, str] | None = None,
                     target_unit: str | None = None, alpha: float = 0.05) -> list[EmissionFactor]:
    """The emission-factor report of ``results`` for the features with a unit (``units``, default the
    results' own :attr:`~hefed.models.InferenceResults.units`), in ``param_names`` order."""
    if units is None:
        units, target_unit = results.units, target_unit or results.target_unit
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise UsageError("alpha must be a number in (0, 1)")
    unknown = [name for name in units if name not in results.param_names]
    if unknown:
        raise UsageError(f"units given for {', '.join(map(repr, unknown))}, which the model does not have")
    ci = results.conf_int(alpha)
    crit = float(_scipy_stats().t.ppf(1 - alpha / 2, results.df_resid)) if results.df_resid > 0 else math.nan
    certified = getattr(results, "_certified", None)
    balls = certified.balls if certified is not None and "var" in certified.balls else None
    out = []
    for j, name in enumerate(results.param_names):
        if name not in units:
            continue
        factor, bse = float(results.params[j]), float(results.bse[j])
        if math.isnan(bse):
            relative = math.nan
        elif factor == 0:
            relative = math.inf
        elif balls is not None and certified is not None:
            with flint.ctx.workprec(certified.bits):
                ball = exact_ball(Fraction(crit)) * balls["var"][j].sqrt() / abs(balls["params"][j]) * 100
                relative = rounded_or_midpoint(ball)
        else:
            relative = crit * bse / abs(factor) * 100
        out.append(EmissionFactor(name, units[name], factor_unit(target_unit, results.target, units[name]), factor,
                                  bse, float(ci[j, 0]), float(ci[j, 1]), relative, alpha))
    return out


def emission_factor_lines(results: InferenceResults, width: int, alpha: float = 0.05) -> list[str]:
    """The summary's emission-factor block (empty when no feature has a unit)."""
    factors = emission_factors(results, alpha=alpha)
    if not factors:
        return []
    name_w = max(12, *(len(f.feature) for f in factors)) + 1
    unit_w = max(6, *(len(f.unit) for f in factors)) + 2
    heads = ["factor", "std err", f"[{alpha / 2:.3g}", f"{1 - alpha / 2:.3g}]", "U (%)"]

    def num(x: float, fmt: str = ".6g") -> str:
        return "n/a" if math.isnan(x) else format(x, fmt)

    lines = [f"Emission factors (uncertainty U = half-width of the {100 * (1 - alpha):g}% interval / |factor|)",
             "-" * width, "".ljust(name_w) + "unit".ljust(unit_w) + "".join(h.rjust(13) for h in heads)]
    for f in factors:
        cells = [f.factor, f.bse, f.conf_low, f.conf_high]
        lines.append(f.feature.ljust(name_w) + f.unit.ljust(unit_w) + "".join(num(c).rjust(13) for c in cells)
                     + num(f.relative_uncertainty, ".3g").rjust(13))
    lines.append("=" * width)
    return lines
