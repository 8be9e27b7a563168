"""Monitoring a plant against the shared model: prediction intervals, CUSUM and EWMA drift detection.

At the factory only (nothing leaves it). For each reading ``i`` of the plant's table, in row order:

* the model's prediction ŷᵢ and its ``1 − alpha`` **observation interval** (``model.get_prediction``: the full
  covariance and the residual variance of the pooled fit, t with the model's residual degrees of freedom);
  ``outside_interval`` flags a measured value yᵢ outside it;
* the residual eᵢ = yᵢ − ŷᵢ **standardised against the plant's own reference period** (its first
  ``reference_rows`` readings, default a quarter of them): zᵢ = (eᵢ − ē_ref) / s_ref with the reference
  mean and sample standard deviation (n − 1). A plant's residuals from a pooled model are biased (its own
  level) and autocorrelated, so the in-control mean and spread must be its own; the pooled σ̂ would flag
  a plant that is merely different;
* the two-sided tabular **CUSUM** (Page 1954) on zᵢ, in units of s_ref::

      C⁺ᵢ = max(0, C⁺ᵢ₋₁ + zᵢ − k),   C⁻ᵢ = max(0, C⁻ᵢ₋₁ − zᵢ − k),   C⁺₀ = C⁻₀ = 0

  with an alarm while C⁺ᵢ > h or C⁻ᵢ > h (defaults k = 0.5, h = 5: in-control ARL ≈ 465 readings for
  a two-sided chart with known parameters, a 1 s_ref shift detected in ≈ 10);
* the **EWMA** (Roberts 1959) Eᵢ = λ zᵢ + (1 − λ) Eᵢ₋₁, E₀ = 0, with the **exact time-varying** limits
  ±L·√(λ/(2 − λ) · (1 − (1 − λ)^{2i})) (the standard deviation of Eᵢ when the zᵢ are independent with unit
  variance; they widen to the asymptotic ±L√(λ/(2 − λ)) within a few readings) and an alarm while
  |Eᵢ| exceeds them (defaults λ = 0.2, L = 3).

The statistics run from the first reading (the reference period is charted too: there it is in control by
construction) and are **not restarted** after an alarm: a flag stays on while the statistic is beyond its limit,
which is what an operator reading ``alerts.csv`` wants. Reference parameters estimated from a short period
make false alarms more frequent than the known-parameter ARLs above; ``tests/test_monitoring.py`` measures it.
So do **autocorrelated** residuals: the charts assume independent readings. On the gas-turbine hourly NOx data
(the model of 2011–14, monitoring 2014 itself) the residuals' lag-1 autocorrelation is 0.84 and the CUSUM flags
29 % of the readings after the reference period (the EWMA 5 %). :attr:`MonitorResult.reference_autocorrelation`
reports it; aggregate such readings (daily means) before monitoring.

:func:`cusum`, :func:`ewma` and :func:`first_alarm` work on arrays of any shape along the last axis (many
series at once, vectorised across them).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._files import atomic_write_bytes
from ..data import FileFormat, missing_columns_error, numeric_column, read_table
from ..errors import DataError, UsageError
from ..models import LinearModel, predict_table

DEFAULT_ALPHA = 0.01
DEFAULT_CUSUM_K = 0.5
DEFAULT_CUSUM_H = 5.0
DEFAULT_EWMA_LAMBDA = 0.2
DEFAULT_EWMA_L = 3.0

#: The columns of :attr:`MonitorResult.frame` (alerts.csv), in order.
ALERT_COLUMNS = ("row", "observed", "prediction", "obs_ci_lower", "obs_ci_upper", "residual", "z", "reference",
                 "outside_interval", "cusum_upper", "cusum_lower", "cusum_alarm", "ewma", "ewma_limit", "ewma_alarm",
                 "alert")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise UsageError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def standardize(residuals: np.ndarray, reference_rows: int) -> tuple[np.ndarray, float, float]:
    """``(z, mean, sd)``: residuals standardised by the mean and sample SD of their first ``reference_rows``
    (along the last axis for 1-D input; for 2-D input, per row)."""
    e = np.asarray(residuals, dtype=np.float64)
    reference = e[..., :reference_rows]
    mean = reference.mean(axis=-1, keepdims=True)
    sd = reference.std(axis=-1, ddof=1, keepdims=True)
    z = (e - mean) / sd
    return z, float(mean.ravel()[0]), float(sd.ravel()[0])


def cusum(z: np.ndarray, k: float = DEFAULT_CUSUM_K, h: float = DEFAULT_CUSUM_H
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two-sided tabular CUSUM of ``z`` along the last axis: ``(C⁺, C⁻, alarm)`` (see the module)."""
    k, h = _positive(k, "the CUSUM reference value k"), _positive(h, "the CUSUM decision interval h")
    z = np.asarray(z, dtype=np.float64)
    upper, lower = np.empty_like(z), np.empty_like(z)
    hi = np.zeros(z.shape[:-1])
    lo = np.zeros(z.shape[:-1])
    for i in range(z.shape[-1]):
        hi = np.maximum(0.0, hi + z[..., i] - k)
        lo = np.maximum(0.0, lo - z[..., i] - k)
        upper[..., i], lower[..., i] = hi, lo
    return upper, lower, (upper > h) | (lower > h)


def ewma(z: np.ndarray, lam: float = DEFAULT_EWMA_LAMBDA, L: float = DEFAULT_EWMA_L
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The EWMA of ``z`` along the last axis with its exact time-varying limits: ``(E, limit, alarm)``."""
    from scipy.signal import lfilter

    L = _positive(L, "the EWMA limit width L")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 < lam <= 1:
        raise UsageError(f"the EWMA weight lambda must be in (0, 1], not {lam!r}")
    z = np.asarray(z, dtype=np.float64)
    stat = lfilter([lam], [1.0, -(1.0 - lam)], z, axis=-1)
    i = np.arange(1, z.shape[-1] + 1)
    limit = L * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i)))
    return stat, np.broadcast_to(limit, z.shape), np.abs(stat) > limit


def first_alarm(alarm: np.ndarray, start: int = 0) -> np.ndarray:
    """The index (from ``start``) of the first alarm at or after ``start`` along the last axis; −1 for none."""
    tail = np.asarray(alarm, dtype=bool)[..., start:]
    found = tail.any(axis=-1)
    return np.where(found, tail.argmax(axis=-1), -1)


@dataclass(frozen=True)
class MonitorResult:
    """Every reading's prediction, interval, standardised residual and alarms (:data:`ALERT_COLUMNS`)."""

    source: str
    frame: pd.DataFrame
    reference_rows: int
    reference_mean: float
    reference_sd: float
    alpha: float
    cusum_k: float
    cusum_h: float
    ewma_lambda: float
    ewma_L: float
    target: str
    reference_autocorrelation: float = float("nan")
    """The lag-1 autocorrelation of the reference period's residuals: the charts assume independent readings,
    and above about 0.3 they alarm far more often than their nominal run lengths say."""

    def _first(self, column: str, after: int = 0) -> int | None:
        rows = self.frame.loc[(self.frame[column] == 1) & (self.frame["row"] > after), "row"]
        return int(rows.iloc[0]) if len(rows) else None

    def summary(self) -> dict[str, Any]:
        """Counts of flagged readings and the first row of each alarm (1-based, ``None`` for none), overall and
        after the reference period."""
        f = self.frame
        return {"rows": len(f), "reference_rows": self.reference_rows, "reference_mean": self.reference_mean,
                "reference_sd": self.reference_sd, "reference_autocorrelation": self.reference_autocorrelation,
                "alpha": self.alpha,
                "outside_interval": int(f["outside_interval"].sum()), "cusum_alarms": int(f["cusum_alarm"].sum()),
                "ewma_alarms": int(f["ewma_alarm"].sum()), "first_outside_interval": self._first("outside_interval"),
                "first_cusum_alarm": self._first("cusum_alarm"), "first_ewma_alarm": self._first("ewma_alarm"),
                # an alarm inside the reference period says the reference was not in control after all
                "first_cusum_alarm_after_reference": self._first("cusum_alarm", self.reference_rows),
                "first_ewma_alarm_after_reference": self._first("ewma_alarm", self.reference_rows),
                "cusum": {"k": self.cusum_k, "h": self.cusum_h},
                "ewma": {"lambda": self.ewma_lambda, "L": self.ewma_L, "limits": "exact time-varying"}}


def lag1_autocorrelation(values: np.ndarray) -> float:
    """Σ (e_t − ē)(e_{t+1} − ē) / Σ (e_t − ē)², the usual estimate (NaN for fewer than 3 values or no spread)."""
    e = np.asarray(values, dtype=np.float64)
    if len(e) < 3:
        return math.nan
    centred = e - e.mean()
    denominator = float(centred @ centred)
    return float(centred[:-1] @ centred[1:]) / denominator if denominator > 0 else math.nan


def monitor_residuals(observed: np.ndarray, prediction: np.ndarray, lower: np.ndarray, upper: np.ndarray, *,
                      reference_rows: int, cusum_k: float = DEFAULT_CUSUM_K, cusum_h: float = DEFAULT_CUSUM_H,
                      ewma_lambda: float = DEFAULT_EWMA_LAMBDA, ewma_L: float = DEFAULT_EWMA_L
                      ) -> tuple[pd.DataFrame, float, float]:
    """The alerts table of readings already predicted (see the module), and the reference mean and SD."""
    n = len(observed)
    if not 2 <= reference_rows <= n:
        raise UsageError(f"the reference period must have between 2 and {n} readings (the table has {n}), "
                         f"not {reference_rows}")
    residual = observed - prediction
    z, mean, sd = standardize(residual, reference_rows)
    if not sd > 0:
        raise DataError(f"the residuals of the first {reference_rows} readings (the reference period) do not vary: "
                        "they cannot standardise the others")
    c_up, c_lo, c_alarm = cusum(z, cusum_k, cusum_h)
    e, limit, e_alarm = ewma(z, ewma_lambda, ewma_L)
    outside = (observed < lower) | (observed > upper)
    frame = pd.DataFrame({
        "row": np.arange(1, n + 1), "observed": observed, "prediction": prediction, "obs_ci_lower": lower,
        "obs_ci_upper": upper, "residual": residual, "z": z, "reference": (np.arange(n) < reference_rows).astype(int),
        "outside_interval": outside.astype(int), "cusum_upper": c_up, "cusum_lower": c_lo,
        "cusum_alarm": c_alarm.astype(int), "ewma": e, "ewma_limit": limit, "ewma_alarm": e_alarm.astype(int),
        "alert": (outside | c_alarm | e_alarm).astype(int),
    }, columns=list(ALERT_COLUMNS))
    return frame, mean, sd


def monitor_table(model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], *,
                  reference_rows: int | None = None, alpha: float = DEFAULT_ALPHA, cusum_k: float = DEFAULT_CUSUM_K,
                  cusum_h: float = DEFAULT_CUSUM_H, ewma_lambda: float = DEFAULT_EWMA_LAMBDA,
                  ewma_L: float = DEFAULT_EWMA_L, file_format: FileFormat | None = None) -> MonitorResult:
    """Monitor a plant's readings (a table file or DataFrame, in time order, with the model's features and its
    target, the measured emissions) against ``model`` (see the module). Needs a model with its full covariance;
    bad tables are refused in one line naming file, column and row."""
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data), file_format)
    target = model.target_
    features = [str(f) for f in model.feature_names_in_]
    columns = [str(c) for c in frame.columns]
    absent = [c for c in [*features, target] if c not in columns]
    if absent:
        raise missing_columns_error(source, absent, columns, "the model's feature and measured target column(s)")
    labels = {str(c): c for c in frame.columns}
    values = {c: numeric_column(frame, c, source, labels[c]) for c in [*features, target]}  # names file, column, row
    table = predict_table(model, pd.DataFrame({f: values[f] for f in features}), alpha=alpha)
    observed = np.asarray(values[target], dtype=np.float64)
    n = len(observed)
    reference = max(2, n // 4) if reference_rows is None else reference_rows
    if isinstance(reference, bool) or not isinstance(reference, int):
        raise UsageError(f"reference_rows must be a whole number of readings, not {reference!r}")
    prediction = table.prediction
    bounds = prediction.conf_int(obs=True)
    alerts, mean, sd = monitor_residuals(observed, prediction.predicted_mean, bounds[:, 0], bounds[:, 1],
                                         reference_rows=reference, cusum_k=cusum_k, cusum_h=cusum_h,
                                         ewma_lambda=ewma_lambda, ewma_L=ewma_L)
    return MonitorResult(source, alerts, reference, mean, sd, alpha, cusum_k, cusum_h, ewma_lambda, ewma_L, target,
                         lag1_autocorrelation(alerts["residual"].to_numpy()[:reference]))


def control_chart_png(result: MonitorResult) -> bytes:
    """The control chart as PNG bytes: measured vs predicted with the interval, the CUSUM and the EWMA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = result.frame
    rows = f["row"].to_numpy()
    target = result.target.replace("$", r"\$")  # a name from a file: no mathtext
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True, constrained_layout=True)
    try:
        for ax in axes:
            ax.axvspan(0.5, result.reference_rows + 0.5, color="#dddddd", alpha=0.6, lw=0)
        ax = axes[0]
        ax.fill_between(rows, f["obs_ci_lower"], f["obs_ci_upper"], color="#9ecae1", alpha=0.6,
                        label=f"{100 * (1 - result.alpha):g}% prediction interval")
        ax.plot(rows, f["prediction"], color="#08519c", lw=1, label="model prediction")
        ax.plot(rows, f["observed"], color="black", lw=0.8, marker=".", ms=3, label=f"measured {target}")
        out = f["outside_interval"] == 1
        ax.plot(rows[out], f.loc[out, "observed"], "o", color="#cb181d", ms=5, label="outside the interval")
        ax.set_ylabel(target)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("Readings against the shared model (grey: the plant's reference period)")
        ax = axes[1]
        ax.plot(rows, f["cusum_upper"], color="#d94801", lw=1, label="C+ (upward drift)")
        ax.plot(rows, f["cusum_lower"], color="#6a51a3", lw=1, label="C− (downward drift)")
        ax.axhline(result.cusum_h, color="#cb181d", ls="--", lw=1, label=f"h = {result.cusum_h:g}")
        alarm = f["cusum_alarm"] == 1
        ax.plot(rows[alarm], np.maximum(f.loc[alarm, "cusum_upper"], f.loc[alarm, "cusum_lower"]), "x",
                color="#cb181d", ms=4)
        ax.set_ylabel(f"CUSUM (k = {result.cusum_k:g})")
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[2]
        ax.plot(rows, f["ewma"], color="#238b45", lw=1, label=f"EWMA (λ = {result.ewma_lambda:g})")
        ax.plot(rows, f["ewma_limit"], color="#cb181d", ls="--", lw=1, label=f"±{result.ewma_L:g}σ limits")
        ax.plot(rows, -f["ewma_limit"], color="#cb181d", ls="--", lw=1)
        alarm = f["ewma_alarm"] == 1
        ax.plot(rows[alarm], f.loc[alarm, "ewma"], "x", color="#cb181d", ms=4)
        ax.set_ylabel("EWMA of z")
        ax.set_xlabel("reading (row)")
        ax.legend(loc="upper left", fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_control_chart(result: MonitorResult, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the control chart PNG atomically (temporary file, then rename)."""
    return atomic_write_bytes(path, control_chart_png(result), force=force)
