"""The bundle kinds: one module per kind, one registry every layer above asks.

Layer 4 of hefed (above :mod:`hefed.data`). Built-in kinds, in protocol order:

========================  =====================================================================
``summary``               per-column count, Σx, Σx²: the consortium's means and SDs (first round)
``statistics``            the exact Gram matrix of [1, X, y]: the pooled OLS or ridge model
``within_statistics``     each plant's rows demeaned: plant fixed effects (the within estimator)
``weighted_statistics``   Σ w·z zᵀ, the rows and Σ log w: weighted least squares (WLS)
``fold_statistics``       the same per cross-validation fold: ridge chosen by exact K-fold CV
``coefficients``          n and n·θ of each factory's own model (encrypted FedAvg)
``evaluation``            exact residual sums of a published model on each factory's holdout
``audit``                 n, Σd, Σd², Σ reference of a published model against reference measurements
``residual_moments``      the meat of a robust covariance of a released model (HC0–HC3, cluster, HAC)
========================  =====================================================================

See :mod:`hefed.kinds._registry` for what a kind declares; a new kind is one module with a
:class:`Kind` subclass and its request type, plus one :func:`register` call.
"""

from __future__ import annotations

from ._audit import AUDIT, AuditRequest, AuditSums, audit_sums
from ._coefficients import (
    COEFFICIENTS,
    DEFAULT_COEF_FRAC_BITS,
    DEFAULT_COEF_INT_BITS,
    CoefficientsRequest,
    coefficient_sums,
)
from ._evaluation import EVALUATION, EvaluationRequest, PublishedModel, evaluation_parameters, evaluation_sums
from ._fold_statistics import FOLD_STATISTICS, FoldStatisticsRequest
from ._glm_round import GLM_ROUND, GLMRoundRequest
from ._registry import (
    MAX_CIPHERTEXTS,
    MAX_ENCODING_COLUMNS,
    MAX_FEATURES,
    MAX_VALUES,
    Computed,
    Header,
    Kind,
    all_kinds,
    get_kind,
    kind_for_request,
    kind_names,
    kind_of_result,
    layout,
    layout_size,
    load_result,
    register,
    result_from_dict,
)
from ._residual_moments import RESIDUAL_MOMENTS, ReleasedModel, ResidualMomentsRequest, moments_parameters
from ._statistics import STATISTICS, StatisticsRequest
from ._summary import SUMMARY, SummaryRequest, local_summary
from ._weighted_statistics import WEIGHTED_STATISTICS, WeightedStatisticsRequest
from ._within_statistics import WITHIN_STATISTICS, WithinStatisticsRequest

#: Any built-in kind's request (a factory is asked for one of these).
KindRequest = (StatisticsRequest | FoldStatisticsRequest | CoefficientsRequest | SummaryRequest | EvaluationRequest
               | WithinStatisticsRequest | AuditRequest | ResidualMomentsRequest
               | WeightedStatisticsRequest)

__all__ = [
    "GLM_ROUND",
    "GLMRoundRequest",
    "AUDIT",
    "AuditRequest",
    "AuditSums",
    "audit_sums",
    "COEFFICIENTS",
    "DEFAULT_COEF_FRAC_BITS",
    "DEFAULT_COEF_INT_BITS",
    "EVALUATION",
    "FOLD_STATISTICS",
    "MAX_CIPHERTEXTS",
    "MAX_ENCODING_COLUMNS",
    "MAX_FEATURES",
    "MAX_VALUES",
    "RESIDUAL_MOMENTS",
    "ReleasedModel",
    "ResidualMomentsRequest",
    "moments_parameters",
    "STATISTICS",
    "SUMMARY",
    "WITHIN_STATISTICS",
    "WEIGHTED_STATISTICS",
    "CoefficientsRequest",
    "Computed",
    "EvaluationRequest",
    "FoldStatisticsRequest",
    "Header",
    "Kind",
    "PublishedModel",
    "KindRequest",
    "StatisticsRequest",
    "SummaryRequest",
    "WithinStatisticsRequest",
    "WeightedStatisticsRequest",
    "all_kinds",
    "coefficient_sums",
    "evaluation_parameters",
    "evaluation_sums",
    "get_kind",
    "kind_for_request",
    "kind_names",
    "kind_of_result",
    "layout",
    "layout_size",
    "load_result",
    "local_summary",
    "register",
    "result_from_dict",
]
