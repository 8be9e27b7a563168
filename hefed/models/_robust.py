"""Robust and cluster-robust covariances from the consortium's residual moments (the second round).

The sandwich ``V = c · A · M · A`` with ``A = (XᵀX)⁻¹`` (exact, from the pooled statistics), ``M`` the
decrypted meat (:class:`~hefed.stats.ResidualMoments`, exact) and ``c`` statsmodels' small-sample factor:

=========  ===============================  ==========================================
cov_type    meat ``M``                       ``c``
=========  ===============================  ==========================================
HC0         ``Σ e²·x xᵀ``                    1
HC1         ``Σ e²·x xᵀ``                    ``n / (n − k)``
HC2         ``Σ e²/(1−h)·x xᵀ``              1
HC3         ``Σ e²/(1−h)²·x xᵀ``             1
cluster     ``Σ_g u_g u_gᵀ``                 ``G/(G−1) · (n−1)/(n−k)`` (G plants)
HAC         Newey–West within each plant     ``n / (n − k)`` (statsmodels' ``hac-panel``)
=========  ===============================  ==========================================

``V`` is computed exactly in rationals and rounded once per entry; standard errors are the correctly
rounded square roots; z statistics, normal p values and intervals follow statsmodels'
``fit(cov_type=...)`` with its default ``use_t=False``, and ``fvalue`` is its robust Wald F of every
non-constant coefficient (denominator df ``G − 1`` for cluster and HAC by plant, as statsmodels adjusts it).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import flint
import numpy as np

from ..errors import FewClustersWarning, SchemaMismatchError, UsageError
from ..stats import COV_TYPES, ONES, ResidualMoments, canonical_cov_type, design_columns
from ._inference import InferenceResults, _sqrt

#: Below this many plants cluster-robust errors are too small (Cameron & Miller 2015): a warning says so.
FEW_CLUSTERS = 20


def _fmpq_matrix(rows: Sequence[Sequence[Fraction]]) -> Any:
    return flint.fmpq_mat(len(rows), len(rows[0]) if rows else 0,
                          [flint.fmpq(v.numerator, v.denominator) for row in rows for v in row])


def _to_fractions(matrix: Any) -> list[list[Fraction]]:
    return [[Fraction(int(matrix[i, j].p), int(matrix[i, j].q)) for j in range(matrix.ncols())]
            for i in range(matrix.nrows())]


def sandwich(xtx_inv: Sequence[Sequence[Fraction]], meat: Sequence[Sequence[Fraction]]) -> list[list[Fraction]]:
    """``A · M · A`` exactly (FLINT's rational matrices)."""
    a = _fmpq_matrix(xtx_inv)
    return _to_fractions(a * _fmpq_matrix(meat) * a)


def correction(cov_type: str, nobs: int, k: int, groups: int) -> Fraction:
    """statsmodels' default small-sample factor of ``cov_type`` (see the module docstring)."""
    name = canonical_cov_type(cov_type)
    if name in ("HC0", "HC2", "HC3"):
        return Fraction(1)
    if name in ("HC1", "HAC"):
        return Fraction(nobs, nobs - k)
    return Fraction(groups, groups - 1) * Fraction(nobs - 1, nobs - k)


def robust_inference(results: InferenceResults, moments: ResidualMoments, cov_type: str, *,
                     model_digest: str | None = None) -> InferenceResults:
    """The results of ``fit(cov_type=cov_type)`` from the classical ``results`` of the pooled statistics and the
    consortium's residual moments of the released model (a copy; ``results`` is not changed).

    Refused (:class:`~hefed.errors.SchemaMismatchError`) when the moments are of another model (digest), other
    columns, other rows (their count) or another meat than ``cov_type`` needs; ridge and fixed-effects fits are
    refused (:class:`~hefed.errors.UsageError`). Cluster by plant warns (:class:`~hefed.errors.FewClustersWarning`)
    below :data:`FEW_CLUSTERS` plants.
    """
    name = canonical_cov_type(cov_type)
    meat = COV_TYPES[name]
    if results.is_ridge or results.absorbed or results.weights is not None:
        raise UsageError("robust covariances are for OLS fits with an intercept or without; not ridge, weights or "
                         "plant fixed effects", parameters=("cov_type",))
    if moments.meat_name != meat:
        raise SchemaMismatchError(f"cov_type {name} needs the {meat} residual moments; these are {moments.meat_name} "
                                  "(the study's residual_moments cov_type)")
    if model_digest is not None and moments.model_digest != model_digest:
        raise SchemaMismatchError("the residual moments are of another model (its digest differs): they must be "
                                  "computed for the model solved from these statistics")
    columns = design_columns(moments.features, moments.fit_intercept)
    if moments.target != results.target or sorted(columns) != sorted(results.param_names):
        raise SchemaMismatchError("the residual moments are of other columns than the model")
    if moments.n != results.nobs:
        raise SchemaMismatchError(f"the residual moments cover {moments.n} rows, the statistics {results.nobs}: "
                                  "they must come from the same rows of the same factories")
    exact_inverse = results._exact_parts().xtx_inv
    if exact_inverse is None:
        raise UsageError("XᵀX is singular: no covariance")
    order = [columns.index(p) for p in results.param_names]
    meat_matrix = [[moments.meat[a][b] for b in order] for a in order]
    k = len(results.param_names)
    groups = len(set(moments.contributors))
    kwds: dict[str, Any] = {"use_t": False}
    if meat == "cluster":
        if groups < 2:
            raise UsageError("cluster-robust errors need at least two plants", parameters=("cov_type",))
        if groups < FEW_CLUSTERS:
            warnings.warn(f"cluster-robust standard errors from {groups} plants: below about {FEW_CLUSTERS} "
                          "clusters they are biased downwards; prefer HC1/HC3 or report the cluster count",
                          FewClustersWarning, stacklevel=2)
        kwds.update(groups=groups, use_correction=True, df_correction=True)
    if meat == "hac":
        kwds.update(maxlags=moments.maxlags, groups=groups, use_correction="hac", kernel="bartlett")
    if meat in ("hc2", "hc3"):
        kwds.update(grid_bits=moments.grid_bits)
    factor = correction(name, results.nobs, k, groups)
    cov_exact = [[factor * v for v in row] for row in sandwich(exact_inverse, meat_matrix)]
    cov = np.array([[_float(v) for v in row] for row in cov_exact])
    bse = [_sqrt(cov_exact[j][j]) for j in range(k)]
    fvalue = _wald_f(results, cov_exact)
    out = copy.copy(results)
    out.set_robust(name, kwds, cov, bse, fvalue, groups - 1 if meat in ("cluster", "hac") else None)
    return out


def _wald_f(results: InferenceResults, cov: list[list[Fraction]]) -> float:
    """statsmodels' robust ``fvalue``: the Wald F of every coefficient but the intercept, ``θᵀ V⁻¹ θ / q``
    (exact in rationals from the exact coefficients, rounded once)."""
    keep = [j for j, p in enumerate(results.param_names) if p != ONES]
    if not keep or not results.has_exact:
        return math.nan
    theta = [results.params_exact[j] for j in keep]
    sub = _fmpq_matrix([[cov[a][b] for b in keep] for a in keep])
    try:
        solved = sub.solve(_fmpq_matrix([[t] for t in theta]))
    except ZeroDivisionError:
        return math.nan
    value = sum((t * f for t, f in zip(theta, (v[0] for v in _to_fractions(solved)), strict=True)), Fraction(0))
    return _float(value / len(keep))


def _float(value: Fraction) -> float:
    """The correctly rounded float64 of an exact rational; ±inf beyond float64's range (not an error)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
