"""Predictions with uncertainty, and a plant's annual total: statsmodels' ``get_prediction`` from a model file.

For a row ``x`` of the design (``1`` first when the model has an intercept, then the features in the order
of ``feature_names_in_``), with θ̂ the coefficients, C = σ̂²(XᵀX)⁻¹ the full covariance (``cov_params()``),
σ̂² the residual variance (``scale``) and ν = n − k the residual degrees of freedom (``df_resid``)::

    predicted_mean  ŷ      = x θ̂
    var_pred_mean          = x C xᵀ                   (the variance of the estimated expected value)
    se_mean                = √(x C xᵀ)
    se_obs                 = √(x C xᵀ + σ̂²)            (a new observation's own noise added)
    mean interval          = ŷ ± t_{1−α/2, ν} · se_mean
    observation interval   = ŷ ± t_{1−α/2, ν} · se_obs

exactly as statsmodels' OLS ``get_prediction(exog).summary_frame(alpha)`` (same column names). The
quadratic forms are computed row by row (``((X C) ∘ X)·1``: one matrix product, then a row sum, never an
n × n matrix), clipped at 0 (C is positive semi-definite; a negative value can only be rounding). C's
entries are the exact values correctly rounded, so the forms carry the error of that rounding, ≲ k·ε·|x|ᵀ|C||x|.

**Annual totals** (:func:`predict_total`): a plant's total over its n rows is T̂ = Σᵢ ŷᵢ = s θ̂ with s = 1ᵀX
the column sums of the design (n for the intercept). Exactly, and in O(k²) whatever n::

    Var(expected total)  = 1ᵀ X C Xᵀ 1 = s C sᵀ
    Var(realised total)  = s C sᵀ + n σ̂²               (n independent new errors)

with t_{1−α/2, ν} intervals as above. The relative uncertainty is reported as the EU Monitoring and Reporting
Regulation (2018/2066) and the IPCC guidelines do: the half-width of the interval divided by the estimate,
in per cent (they use the 95 % interval, ``alpha=0.05``).

**Declared activity-data uncertainties** (``activity_uncertainty={"coal_t": 0.025}``: ±2.5 % at 95 %, the MRR
tiers are ±7.5 / 5 / 2.5 / 1.5 %) are propagated to first order as the GUM does. The total's sensitivity to the
column total S_j is ∂T/∂S_j = θ̂_j; a declared relative half-width r_j of a 95 % interval is a standard
uncertainty u_j = (r_j / 1.96) · |S_j| (coverage factor 1.96, the normal 95 % convention of MRR and IPCC,
whatever ``alpha`` is). The activity uncertainties are taken as independent of each other and of the model,
so they combine in quadrature with the model's parameter uncertainty (the expected total's)::

    u_c² = s C sᵀ + Σ_j (θ̂_j u_j)²

and the expanded interval is T̂ ± t_{1−α/2, ν_eff} · u_c with the Welch–Satterthwaite degrees of freedom
ν_eff = u_c⁴ / ((s C sᵀ)² / ν) (declared uncertainties count as exactly known: infinite degrees of freedom),
so with no activity uncertainty it is the expected total's interval.

Models without a full covariance give no intervals: ridge fits (no sampling covariance), averaged
(coefficient-mode) models (no inference), and model files that withhold it (fewer than
``min_contributors + 1`` contributors: see :func:`hefed.models.covariance_releasable`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import FileFormat, missing_columns_error, numeric_column, read_table
from ..errors import DataError, UsageError
from ._inference import InferenceResults

if TYPE_CHECKING:
    from ._linear import LinearModel

#: The coverage factor of a declared 95 % uncertainty (MRR, IPCC: half-width = 1.96 standard uncertainties).
COVERAGE_FACTOR_95 = 1.96

#: The columns of :meth:`PredictionResults.summary_frame`, as statsmodels names them.
SUMMARY_COLUMNS = ("mean", "mean_se", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper")


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise UsageError(f"alpha must be a number in (0, 1), not {alpha!r}")
    return float(alpha)


def _t_quantile(alpha: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - _check_alpha(alpha) / 2, df))


@dataclass(frozen=True)
class PredictionResults:
    """Predictions with their uncertainty, with statsmodels' names (``predicted_mean``, ``se_mean``,
    ``var_pred_mean``, ``se_obs``, ``var_resid``, ``df``, ``conf_int``, ``summary_frame``): see the module."""

    predicted_mean: np.ndarray
    var_pred_mean: np.ndarray
    var_resid: float
    df: int
    row_labels: pd.Index = field(repr=False)
    alpha: float = 0.05

    @property
    def se_mean(self) -> np.ndarray:
        """Standard error of each predicted expected value, √(x C xᵀ)."""
        return np.sqrt(self.var_pred_mean)

    @property
    def se_obs(self) -> np.ndarray:
        """Standard error of a new observation at each row, √(x C xᵀ + σ̂²)."""
        return np.sqrt(self.var_pred_mean + self.var_resid)

    def conf_int(self, obs: bool = False, alpha: float | None = None) -> np.ndarray:
        """``(n, 2)`` intervals ŷ ± t_{1−α/2, df}·se: of the expected value, or with ``obs=True`` of a new
        observation (``alpha`` defaults to the one given to ``get_prediction``)."""
        q = _t_quantile(self.alpha if alpha is None else alpha, self.df)
        half = q * (self.se_obs if obs else self.se_mean)
        return np.column_stack([self.predicted_mean - half, self.predicted_mean + half])

    def summary_frame(self, alpha: float | None = None) -> pd.DataFrame:
        """A DataFrame with statsmodels' columns: mean, mean_se, mean_ci_lower/upper, obs_ci_lower/upper."""
        mean_ci, obs_ci = self.conf_int(False, alpha), self.conf_int(True, alpha)
        data = [self.predicted_mean, self.se_mean, mean_ci[:, 0], mean_ci[:, 1], obs_ci[:, 0], obs_ci[:, 1]]
        return pd.DataFrame(dict(zip(SUMMARY_COLUMNS, data, strict=True)), index=self.row_labels)


@dataclass(frozen=True)
class ActivityUncertainty:
    """The total combined with declared activity-data uncertainties (GUM, first order): see the module."""

    relative: dict[str, float]
    """The declared relative half-widths at 95 % (0.025 for ±2.5 %), by column."""
    contributions: dict[str, float]
    """Each column's standard uncertainty of the total, |θ̂_j| · (r_j / 1.96) · |S_j|."""
    se: float
    """The combined standard uncertainty u_c."""
    df: float
    """Welch–Satterthwaite effective degrees of freedom (inf when the model's part is 0)."""
    interval: tuple[float, float]
    relative_uncertainty: float
    """Half-width of the expanded interval over |total|, in per cent."""


@dataclass(frozen=True)
class TotalResults:
    """A plant's total over its rows with both intervals and the relative uncertainty (MRR/IPCC, in %)."""

    total: float
    n: int
    column_sums: dict[str, float]
    """s: the column sums of the design ("(intercept)": n when the model has one)."""
    var_mean: float
    """s C sᵀ: the variance of the expected total (parameter uncertainty)."""
    var_obs: float
    """s C sᵀ + n σ̂²: the variance of the realised total."""
    df: int
    alpha: float
    conf_int: tuple[float, float]
    """The interval of the expected total."""
    pred_int: tuple[float, float]
    """The prediction interval of the realised total."""
    activity: ActivityUncertainty | None = None

    @property
    def se_mean(self) -> float:
        return math.sqrt(self.var_mean)

    @property
    def se_obs(self) -> float:
        return math.sqrt(self.var_obs)

    @property
    def relative_uncertainty(self) -> float:
        """Half-width of the expected total's interval over |total|, in per cent (NaN for a zero total)."""
        return _relative(self.conf_int, self.total)

    @property
    def relative_uncertainty_obs(self) -> float:
        """Half-width of the realised total's prediction interval over |total|, in per cent."""
        return _relative(self.pred_int, self.total)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total, "n": self.n, "alpha": self.alpha, "df_resid": self.df,
            "se_mean": self.se_mean, "se_obs": self.se_obs,
            "conf_int": list(self.conf_int), "pred_int": list(self.pred_int),
            "relative_uncertainty_pct": self.relative_uncertainty,
            "relative_uncertainty_obs_pct": self.relative_uncertainty_obs,
        }
        if self.activity is not None:
            a = self.activity
            out["activity"] = {"relative": a.relative, "contributions": a.contributions, "se": a.se, "df": a.df,
                               "interval": list(a.interval), "relative_uncertainty_pct": a.relative_uncertainty}
        return out


def _relative(interval: tuple[float, float], total: float) -> float:
    return (interval[1] - interval[0]) / 2 / abs(total) * 100 if total else float("nan")


# --- from a model -------------------------------------------------------------------------------------------
def prediction_covariance(results: InferenceResults | None) -> np.ndarray:
    """The full covariance predictions need, or a :class:`UsageError` saying why there is none."""
    if results is None:
        raise UsageError("this model has no inference (an averaged coefficient-mode model): prediction intervals "
                         "need the full covariance of a pooled OLS fit")
    if results.is_ridge:
        raise UsageError(f"prediction intervals are not available for a ridge model (ridge={results.ridge:g}): "
                         "it has no sampling covariance; solve without --ridge for intervals")
    if results.df_resid <= 0:
        raise UsageError(f"prediction intervals need residual degrees of freedom: the model has {results.nobs} rows "
                         f"for {len(results.param_names)} parameters")
    try:
        cov = results.cov_params()
    except UsageError:
        raise UsageError("prediction intervals are unavailable: this model file carries no full covariance (it is "
                         "withheld from models pooling fewer than min_contributors + 1 factories)") from None
    if not np.all(np.isfinite(cov)):
        raise UsageError("prediction intervals are unavailable: the model's covariance is not finite")
    return cov


def design_matrix(model: LinearModel, X: Any) -> tuple[np.ndarray, pd.Index]:
    """The design of ``X`` (a column of ones first with an intercept) and its row labels."""
    if model.fixed_effects_:
        raise UsageError("a fixed-effects model's predictions are within-plant deviations: its intercepts are "
                         "each plant's own (LinearModel.plant_intercept); intervals for them are not available")
    features = model._design(X)
    labels = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(features))
    if model.fit_intercept:
        features = np.column_stack([np.ones(len(features)), features])
    return features, labels


def _point(model: LinearModel, design: np.ndarray) -> np.ndarray:
    """The point predictions, computed as :meth:`LinearModel.predict` computes them (the same float64s)."""
    return design[:, int(model.fit_intercept):] @ model.coef_ + model.intercept_


def quadratic_forms(design: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """x C xᵀ of each row x, row by row (no n × n matrix), clipped at 0 (C is positive semi-definite)."""
    return np.maximum(np.einsum("ij,ij->i", design @ cov, design), 0.0)


def _model_covariance(model: LinearModel) -> tuple[InferenceResults, np.ndarray]:
    """The model's inference and the full covariance predictions need (refused as :func:`prediction_covariance`)."""
    results = model.inference() if model.has_inference else None
    cov = prediction_covariance(results)
    assert results is not None
    return results, cov


def get_prediction(model: LinearModel, X: Any, *, alpha: float = 0.05) -> PredictionResults:
    """Predictions for the rows of ``X`` with standard errors and intervals (see the module)."""
    alpha = _check_alpha(alpha)
    results, cov = _model_covariance(model)
    design, labels = design_matrix(model, X)
    return _prediction(model, results, cov, design, labels, alpha)


def _prediction(model: LinearModel, results: InferenceResults, cov: np.ndarray, design: np.ndarray,
                labels: pd.Index, alpha: float) -> PredictionResults:
    return PredictionResults(predicted_mean=_point(model, design), var_pred_mean=quadratic_forms(design, cov),
                             var_resid=float(results.scale), df=int(results.df_resid), row_labels=labels,
                             alpha=alpha)


def predict_total(model: LinearModel, X: Any, *, alpha: float = 0.05,
                  activity_uncertainty: Mapping[str, float] | None = None) -> TotalResults:
    """The total of the predictions over the rows of ``X`` (a plant's year), with the interval of the expected
    total, the prediction interval of the realised total and, with ``activity_uncertainty`` (relative 95 %
    half-widths by feature column), the GUM combination (see the module)."""
    alpha = _check_alpha(alpha)
    results, cov = _model_covariance(model)
    design, _ = design_matrix(model, X)
    return _total(model, results, cov, design, alpha, activity_uncertainty)


def _total(model: LinearModel, results: InferenceResults, cov: np.ndarray, design: np.ndarray, alpha: float,
           activity_uncertainty: Mapping[str, float] | None) -> TotalResults:
    n = len(design)
    if n == 0:
        raise DataError("no rows to total")
    s = np.array([math.fsum(design[:, j]) for j in range(design.shape[1])])  # each column sum correctly rounded
    params = np.asarray(results.params, dtype=np.float64)
    total = math.fsum(_point(model, design))
    var_mean = max(float(s @ cov @ s), 0.0)
    var_obs = var_mean + n * float(results.scale)
    df = int(results.df_resid)
    q = _t_quantile(alpha, df)
    names = [str(p) for p in results.param_names]
    activity = None
    if activity_uncertainty:
        activity = _activity(model, dict(zip(names, s, strict=True)), dict(zip(names, params, strict=True)),
                             activity_uncertainty, total, var_mean, df, alpha)
    half_mean, half_obs = q * math.sqrt(var_mean), q * math.sqrt(var_obs)
    return TotalResults(total=total, n=n, column_sums=dict(zip(names, s.tolist(), strict=True)), var_mean=var_mean,
                        var_obs=var_obs, df=df, alpha=alpha, conf_int=(total - half_mean, total + half_mean),
                        pred_int=(total - half_obs, total + half_obs), activity=activity)


def _activity(model: LinearModel, sums: dict[str, float], params: dict[str, float],
              declared: Mapping[str, float], total: float, var_mean: float, df: int, alpha: float
              ) -> ActivityUncertainty:
    features = [str(f) for f in model.feature_names_in_]
    relative: dict[str, float] = {}
    contributions: dict[str, float] = {}
    for name, value in declared.items():
        if name not in features:
            raise UsageError(f"activity uncertainty for {name!r}: not a feature of the model "
                             f"(features: {', '.join(features)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise UsageError(f"activity uncertainty for {name!r} must be a non-negative relative number "
                             f"(0.025 for ±2.5 %), not {value!r}")
        relative[name] = float(value)
        contributions[name] = abs(params[name]) * (float(value) / COVERAGE_FACTOR_95) * abs(sums[name])
    var = var_mean + math.fsum(c * c for c in contributions.values())
    se = math.sqrt(var)
    # Welch–Satterthwaite: only the model's part has finite degrees of freedom
    eff = var * var / (var_mean * var_mean / df) if var_mean > 0 else math.inf
    half = _t_quantile(alpha, eff) * se
    interval = (total - half, total + half)
    return ActivityUncertainty(relative=relative, contributions=contributions, se=se, df=eff, interval=interval,
                               relative_uncertainty=_relative(interval, total))


# --- a factory's table ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TablePrediction:
    """The predictions for every row of a table (1-based row numbers, as errors name rows), and its total."""

    source: str
    prediction: PredictionResults
    total: TotalResults | None

    def frame(self) -> pd.DataFrame:
        """``row``, ``prediction``, ``mean_se`` and the mean and observation interval bounds: one line a row."""
        summary = self.prediction.summary_frame().rename(columns={"mean": "prediction"})
        summary.insert(0, "row", np.arange(1, len(summary) + 1))
        return summary.reset_index(drop=True)


def read_model_features(model: Any, data: pd.DataFrame | str | os.PathLike[str],
                        file_format: FileFormat | None = None) -> tuple[str, pd.DataFrame]:
    """``(source, X)``: the model's feature columns of a table (a file or a DataFrame), every cell numeric and
    finite; a duplicate or missing column, an empty table or a bad cell is one error naming file, column and row."""
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data), file_format)
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{source}: duplicate column name {duplicated[0]!r}")
    features = [str(f) for f in model.feature_names_in_]
    absent = [f for f in features if f not in columns]
    if absent:
        raise missing_columns_error(source, absent, columns, "the model's feature column(s)")
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows")
    labels = {str(c): c for c in frame.columns}
    return source, pd.DataFrame({f: numeric_column(frame, f, source, labels[f]) for f in features})


def predict_table(model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], *, alpha: float = 0.05,
                  total: bool = False, activity_uncertainty: Mapping[str, float] | None = None,
                  file_format: FileFormat | None = None) -> TablePrediction:
    """Read a table (a file or a DataFrame), check it has the model's feature columns, every cell numeric and
    finite (else one error naming file, column and row), and predict every row with intervals; with ``total``
    (or ``activity_uncertainty``) also the table's total (:func:`predict_total`)."""
    alpha = _check_alpha(alpha)
    results, cov = _model_covariance(model)  # refuse before reading
    source, X = read_model_features(model, data, file_format)
    design, row_labels = design_matrix(model, X)  # once, for the predictions and the total
    prediction = _prediction(model, results, cov, design, row_labels, alpha)
    totals = (_total(model, results, cov, design, alpha, activity_uncertainty)
              if total or activity_uncertainty else None)
    return TablePrediction(source=source, prediction=prediction, total=totals)
