"""Fitted models and their inference, from exact sums: what an analyst publishes.

Layer 6 of hefed (above :mod:`hefed.protocol`; it needs only :mod:`hefed.stats`).

* :class:`LinearModel` — scikit-learn style attributes (``coef_``, ``intercept_``, …),
  ``predict``/``score``, the exact rational solution on request, JSON files (version 2: floats
  and the full covariance; version 1 still loads);
* :class:`InferenceResults`, :func:`inference` — standard errors, tests and fit statistics
  with statsmodels' names, from the pooled statistics, each value certified by ball
  arithmetic to be the exact value correctly rounded (:mod:`hefed.models._certified`);
* :class:`PredictionResults` (``model.get_prediction(X)``), :class:`TotalResults` (``model.predict_total(X)``),
  :func:`predict_table` — predictions and annual totals with intervals, from the full covariance.
"""

from __future__ import annotations

from ._certified import Weighting
from ._emission import EmissionFactor
from ._hypothesis import ContrastResults, FeatureSelection, SubsetFit, select_features
from ._inference import RIDGE_NOT_APPLICABLE, InferenceResults, inference
from ._linear import LinearModel, covariance_releasable
from ._prediction import (
    ActivityUncertainty,
    PredictionResults,
    TablePrediction,
    TotalResults,
    get_prediction,
    predict_table,
    predict_total,
)
from ._robust import FEW_CLUSTERS, robust_inference

__all__ = ["RIDGE_NOT_APPLICABLE", "ActivityUncertainty", "InferenceResults", "LinearModel", "PredictionResults",
           "TablePrediction", "TotalResults", "covariance_releasable", "get_prediction", "inference", "predict_table",
           "predict_total"]
__all__ += ["ContrastResults", "EmissionFactor", "FeatureSelection", "SubsetFit", "select_features"]
__all__ += ["FEW_CLUSTERS", "robust_inference"]
__all__ += ["Weighting"]
