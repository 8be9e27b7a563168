"""Fitted models and their inference, from exact sums: what an analyst publishes.

Layer 6 of hefed (above :mod:`hefed.protocol`; it needs only :mod:`hefed.stats`).

* :class:`LinearModel` — scikit-learn style attributes (``coef_``, ``intercept_``, …),
  ``predict``/``score``, the exact rational solution, JSON files;
* :class:`InferenceResults`, :func:`inference` — standard errors, tests and fit statistics
  with statsmodels' names, computed exactly from the pooled statistics.
"""

from __future__ import annotations

from ._inference import RIDGE_NOT_APPLICABLE, InferenceResults, inference
from ._linear import LinearModel

__all__ = ["RIDGE_NOT_APPLICABLE", "InferenceResults", "LinearModel", "inference"]
