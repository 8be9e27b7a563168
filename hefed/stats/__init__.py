"""Exact statistics of arrays: the integers a factory sends and the sums a key holder decrypts.

Layer 2 of hefed (above :mod:`hefed.primitives`): numpy arrays in, exact integers and
rationals out; nothing here reads files of data or knows about bundles.

* :class:`Encoding` — the public exact integer encoding of float64 values;
* :class:`SufficientStatistics` — the exact Gram matrix of ``[1, X, y]`` (OLS and ridge);
* :class:`FoldStatistics` — the same per cross-validation fold (:func:`fold_assignment`);
* :class:`WeightedStatistics` — Σ w·z zᵀ, the rows and Σ log w: weighted least squares (WLS);
* :class:`ColumnSummary` — per-column count, Σx, Σx² (the summary round);
* :class:`EvaluationSums` — exact residual sums of a model on held-out rows;
* :class:`CoefficientAggregate` — Σn and Σnθ of factories' own models (coefficient mode);
* :func:`solve_exact_coefficients` — the exact (ridge / proximal) normal equations;
* column support (:class:`SupportAccumulator`, :func:`support_problems`) — at how many factories each pair of
  columns is non-zero together, for the key holder's per-column disclosure check.
"""

from __future__ import annotations

from ._coefficients import CoefficientAggregate
from ._columns import (
    ColumnSummary,
    canonical_summary_columns,
    column_summary,
    summary_from_values,
    summary_support_columns,
    summary_support_size,
    summary_values,
)
from ._encoding import ColumnEncoding, Encoding, Rounding, column_bits_needed
from ._folds import FoldStatistics, check_seed, fold_assignment
from ._gram import (
    ONES,
    SufficientStatistics,
    accumulate_block,
    accumulate_rows,
    as_exact_float64,
    block_statistics,
    canonical_block,
    canonical_columns,
    canonical_order,
    column_scales,
    gram_bounds,
    grouped_statistics,
    new_support,
    statistics_from_arrays,
    statistics_of,
    support_columns,
    support_from_gram,
    support_size,
    upper_triangle_index,
)
from ._metrics import r2_score, r_squared, regression_metrics
from ._moments import (
    COV_TYPES,
    MAX_LAGS,
    MEATS,
    MIN_CLUSTERS,
    MOMENTS_GRID_BITS,
    MOMENTS_LEVERAGE_BITS,
    ResidualMoments,
    canonical_cov_type,
    check_positive_semidefinite,
    design_columns,
    meat_bounds,
    meat_of,
    moments_digest,
    moments_from_values,
    moments_to_values,
    residual_moments,
)
from ._residuals import (
    EvaluationSums,
    residual_bits,
    residual_integers,
    residual_scale_bits,
    residual_values,
    sums_from_values,
    sums_to_values,
)
from ._solve import ridge_fraction, solve_exact_coefficients
from ._support import SupportAccumulator, describe_problems, reference_groups, reference_name, support_problems
from ._weighted import LOG_GRID_BITS, WeightedStatistics, log_weight_sum, weighted_gram_bounds
from ._within import DEFAULT_GRID_BITS, WithinStatistics, check_grid_bits, within_encoding

__all__ = [
    "COV_TYPES",
    "MAX_LAGS",
    "MEATS",
    "MIN_CLUSTERS",
    "check_positive_semidefinite",
    "moments_digest",
    "MOMENTS_GRID_BITS",
    "MOMENTS_LEVERAGE_BITS",
    "ResidualMoments",
    "canonical_cov_type",
    "design_columns",
    "meat_bounds",
    "meat_of",
    "moments_from_values",
    "moments_to_values",
    "residual_moments",
    "residual_integers",
    "ONES",
    "CoefficientAggregate",
    "ColumnEncoding",
    "Rounding",
    "column_bits_needed",
    "column_scales",
    "ColumnSummary",
    "Encoding",
    "EvaluationSums",
    "FoldStatistics",
    "SufficientStatistics",
    "SupportAccumulator",
    "describe_problems",
    "new_support",
    "reference_groups",
    "reference_name",
    "statistics_of",
    "support_columns",
    "support_from_gram",
    "support_problems",
    "support_size",
    "accumulate_block",
    "accumulate_rows",
    "as_exact_float64",
    "block_statistics",
    "canonical_block",
    "canonical_columns",
    "canonical_order",
    "canonical_summary_columns",
    "check_seed",
    "column_summary",
    "fold_assignment",
    "gram_bounds",
    "grouped_statistics",
    "residual_values",
    "ridge_fraction",
    "solve_exact_coefficients",
    "statistics_from_arrays",
    "summary_from_values",
    "summary_support_columns",
    "summary_support_size",
    "summary_values",
    "sums_from_values",
    "sums_to_values",
    "r2_score",
    "r_squared",
    "regression_metrics",
    "residual_bits",
    "residual_scale_bits",
    "upper_triangle_index",
    "DEFAULT_GRID_BITS",
    "WithinStatistics",
    "check_grid_bits",
    "within_encoding",
    "LOG_GRID_BITS",
    "WeightedStatistics",
    "log_weight_sum",
    "weighted_gram_bounds",
]
