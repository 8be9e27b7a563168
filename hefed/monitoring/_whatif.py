"""What-if scenarios: the change in a plant's predicted emissions when its activity data change.

A scenario changes some feature columns of the plant's rows (a year of readings, say): ``coal_t=-20%`` scales
every value of ``coal_t`` by 0.8, ``natural_gas_t=+20%`` by 1.2, ``coal_t=x0.8`` is the same as ``-20%``,
and ``diesel_t=+5`` / ``diesel_t=-5`` adds or removes 5 units on every row. With ΔX the change of the design
matrix (the intercept column does not change) and θ̂ the model's coefficients, the change of the predicted
total is linear in θ̂::

    Δ = Σᵢ Δxᵢ θ̂ = δ θ̂,        δ = 1ᵀ ΔX  (the column sums of the change)
    Var(Δ) = δ C δᵀ              (C = the model's full covariance, cov_params())

and its ``1 − alpha`` interval is Δ ± t_{1−α/2, df_resid} · √(δ C δᵀ). Only the parameter uncertainty enters:
the same rows are predicted before and after, so their own noise cancels. The baseline total Σ ŷᵢ and the
scenario's are reported beside it, and the change in % of the baseline.

The column sums are computed correctly rounded (``math.fsum``), the relative changes applied to them (a
scaling of every row scales the sum); a model file that withholds its covariance (fewer than
``min_contributors + 1`` contributors), a ridge or averaged model, or a fixed-effects model is refused in one
line, as predictions with intervals are.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data import FileFormat
from ..errors import DataError, UsageError
from ..models import LinearModel
from ..models._prediction import design_matrix, prediction_covariance, read_model_features

_CHANGE = re.compile(r"(?P<op>[+-]|x|\*)?\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<pct>%)?")


@dataclass(frozen=True)
class Change:
    """One column's change: ``value · factor + shift`` on every row."""

    column: str
    factor: float = 1.0
    shift: float = 0.0
    text: str = ""

    @classmethod
    def parse(cls, column: str, text: str) -> Change:
        """``+20%``, ``-20%`` (relative), ``x1.2`` or ``*1.2`` (a factor), ``+5``, ``-5`` (absolute)."""
        match = _CHANGE.fullmatch(text.strip())
        if not match or match["op"] is None:  # "20%" or "20" could mean the change or the new value: say which
            raise UsageError(f"--set {column}={text}: not a change; write +20%, -20%, x1.2, +5 or -5")
        number = float(match["number"])
        if not math.isfinite(number):
            raise UsageError(f"--set {column}={text}: the number is not finite")
        op = match["op"]
        if op in ("x", "*"):
            if match["pct"]:
                raise UsageError(f"--set {column}={text}: a factor takes no %")
            return cls(column, factor=number, text=text.strip())
        sign = -1.0 if op == "-" else 1.0
        if match["pct"]:
            return cls(column, factor=1 + sign * number / 100, text=text.strip())
        return cls(column, shift=sign * number, text=text.strip())


def parse_scenario(text: str) -> list[Change]:
    """``natural_gas_t=+20%,coal_t=-20%`` → the changes, one per column (a column named twice is refused)."""
    changes: list[Change] = []
    for item in text.split(","):
        column, sep, value = item.partition("=")
        column = column.strip()
        if not sep or not column or not value.strip():
            raise UsageError(f"--set: {item.strip()!r} is not COLUMN=CHANGE (e.g. coal_t=-20%)")
        if any(c.column == column for c in changes):
            raise UsageError(f"--set: {column!r} is changed twice")
        changes.append(Change.parse(column, value))
    return changes


@dataclass(frozen=True)
class ScenarioResult:
    """The change of the plant's predicted total under a scenario, with its interval (see the module)."""

    source: str
    n: int
    changes: list[Change]
    baseline_total: float
    scenario_total: float
    change: float
    se: float
    df: int
    alpha: float
    conf_int: tuple[float, float]
    column_changes: dict[str, float]
    """δ: the change of each column's sum over the rows."""
    contributions: dict[str, float]
    """δ_j θ̂_j: each column's part of the change."""

    @property
    def relative_change(self) -> float:
        """The change in % of the baseline total (NaN for a zero baseline)."""
        return self.change / abs(self.baseline_total) * 100 if self.baseline_total else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.n,
                "changes": {c.column: c.text for c in self.changes}, "baseline_total": self.baseline_total,
                "scenario_total": self.scenario_total, "change": self.change, "se": self.se, "df_resid": self.df,
                "alpha": self.alpha, "conf_int": list(self.conf_int), "relative_change_pct": self.relative_change,
                "column_changes": self.column_changes, "contributions": self.contributions}


def scenario_change(model: LinearModel, X: pd.DataFrame, changes: list[Change] | Mapping[str, str], *,
                    alpha: float = 0.05, source: str = "data") -> ScenarioResult:
    """The change of the predicted total over the rows of ``X`` (columns named as the model's features) under
    ``changes`` (parsed :class:`Change` objects or ``{column: "+20%"}``), with its interval (see the module)."""
    from scipy import stats

    if isinstance(changes, Mapping):
        changes = [Change.parse(column, text) for column, text in changes.items()]
    if not changes:
        raise UsageError("a scenario needs at least one change (--set COLUMN=CHANGE)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise UsageError(f"alpha must be a number in (0, 1), not {alpha!r}")
    results = model.inference() if model.has_inference else None
    cov = prediction_covariance(results)  # refuses a withheld covariance, ridge, averaged models
    assert results is not None
    features = [str(f) for f in model.feature_names_in_]
    for change in changes:
        if change.column not in features:
            raise UsageError(f"--set {change.column}: not a feature of the model (features: {', '.join(features)})")
    design, _ = design_matrix(model, X)
    n = len(design)
    if n == 0:
        raise DataError(f"{source}: no data rows")
    offset = int(model.fit_intercept)
    delta = np.zeros(design.shape[1])
    for change in changes:
        j = offset + features.index(change.column)
        delta[j] = (change.factor - 1) * math.fsum(design[:, j]) + n * change.shift
    params = np.asarray(results.params, dtype=np.float64)
    parts = delta * params
    change_total = math.fsum(parts)
    var = max(float(delta @ cov @ delta), 0.0)
    se = math.sqrt(var)
    df = int(results.df_resid)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    baseline = math.fsum(model.predict(X[features] if isinstance(X, pd.DataFrame) else X))
    return ScenarioResult(source=source, n=n, changes=list(changes), baseline_total=baseline,
                          scenario_total=baseline + change_total, change=change_total, se=se, df=df, alpha=float(alpha),
                          conf_int=(change_total - half, change_total + half),
                          column_changes={c.column: float(delta[offset + features.index(c.column)]) for c in changes},
                          contributions={c.column: float(parts[offset + features.index(c.column)]) for c in changes})


def whatif_table(model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], changes: str | list[Change], *,
                 alpha: float = 0.05, file_format: FileFormat | None = None) -> ScenarioResult:
    """Read a plant's table (its feature columns numeric and finite, else one error naming file, column and row)
    and compute the scenario's change (:func:`scenario_change`); ``changes`` may be the ``--set`` text."""
    parsed = parse_scenario(changes) if isinstance(changes, str) else changes
    prediction_covariance(model.inference() if model.has_inference else None)  # refuse before reading
    source, X = read_model_features(model, data, file_format)
    return scenario_change(model, X, parsed, alpha=alpha, source=source)
