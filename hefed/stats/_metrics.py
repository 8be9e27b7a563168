"""Prediction metrics, one convention everywhere: MSE, RMSE, MAE and R² as scikit-learn defines them.

R² is ``1 − SSE/SST`` with ``SST = Σ(y − ȳ)²`` the centred total sum of squares of the rows
evaluated; when ``SST = 0`` (a constant target) it is 1.0 for a perfect fit and 0.0 otherwise,
as ``sklearn.metrics.r2_score`` (``force_finite=True``). The same function serves exact sums
(fractions: the evaluation bundles, a model's training fit) and float64 arrays (simulations).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np


def r_squared(sse: Fraction | float, sst: Fraction | float) -> float:
    """``1 − sse/sst``, exact when given exact values (rounded once); scikit-learn's convention at ``sst = 0``."""
    if sst == 0:
        return 1.0 if sse == 0 else 0.0
    if isinstance(sse, Fraction) or isinstance(sst, Fraction):
        return float(1 - Fraction(sse) / Fraction(sst))
    return 1.0 - float(sse) / float(sst)


def r2_score(y: Any, prediction: Any) -> float:
    """R² of ``prediction`` for ``y`` (float64 arrays), as ``sklearn.metrics.r2_score``."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    resid = y - np.asarray(prediction, dtype=np.float64).reshape(-1)
    centred = y - y.mean() if len(y) else y
    return r_squared(float(resid @ resid), float(centred @ centred))


def regression_metrics(y: Any, prediction: Any) -> dict[str, float]:
    """``n``, MSE, RMSE, MAE and R² of ``prediction`` for ``y`` (float64 arrays)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    resid = y - np.asarray(prediction, dtype=np.float64).reshape(-1)
    mse = float(resid @ resid) / len(y)
    return {"n": len(y), "mse": mse, "rmse": math.sqrt(mse), "mae": float(np.abs(resid).mean()),
            "r2": r2_score(y, prediction)}
