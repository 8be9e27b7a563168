"""Analyst side: the model a consortium publishes, from decrypted plain sums.

How each bundle kind's sums become a model is registered here, one layer above the kinds
(:func:`register_model`), so kinds never import models: ``statistics`` give the exact pooled
OLS or ridge model with its inference; ``fold_statistics`` the same on all folds together;
``coefficients`` the exact n-weighted average of the factories' own models. Kinds without a
model (``summary``, ``evaluation``) are refused with what they are for.

Coefficients are the exact rational solution over the pooled data rounded once to float64.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, TypeVar

from .._files import read_json_object
from ..errors import InvalidFileError, ResultRangeError, SchemaMismatchError, SingularSystemError, UsageError
from ..kinds import kind_names, kind_of_result, result_from_dict
from ..models import LinearModel, Weighting, covariance_releasable
from ..protocol import FORMAT as BUNDLE_FORMAT
from ..protocol import Study, open_release
from ..stats import (
    ONES,
    CoefficientAggregate,
    FoldStatistics,
    ResidualMoments,
    SufficientStatistics,
    WeightedStatistics,
    WithinStatistics,
    ridge_fraction,
)

# Smallest magnitude float() rounds to infinity: (2 - 2^-53) · 2^1023.
_FLOAT_LIMIT = Fraction(2**1024 - 2**970)

ModelBuilder = Callable[[Any, float, bool], LinearModel]
_BUILDERS: dict[str, ModelBuilder] = {}
F = TypeVar("F", bound=ModelBuilder)


def register_model(kind: str) -> Callable[[F], F]:
    """Register how the decrypted sums of bundle kind ``kind`` become a model: ``builder(sums, ridge,
    fit_intercept) -> LinearModel``."""
    def decorate(builder: F) -> F:
        _BUILDERS[kind] = builder
        return builder

    return decorate


def solve(stats: Any, ridge: float = 0.0, fit_intercept: bool = True, study: Study | None = None, *,
          robust: ResidualMoments | None = None, cov_type: str | None = None) -> LinearModel:
    """The global linear model (OLS, or ridge with unpenalised intercept) from decrypted plain sums
    (statistics, fold statistics, or a coefficient aggregate: :func:`solvable_kinds`).

    With a ``study``, the sums must be the study's. Raises :class:`~hefed.errors.SingularSystemError`
    naming the columns involved when the system has no unique solution, and
    :class:`~hefed.errors.SchemaMismatchError` for sums that give no model (a summary, an evaluation).
    """
    kind = kind_of_result(stats)
    if study is not None:
        study.check_digest(stats.study, f"the {kind.name} sums")
    builder = _BUILDERS.get(kind.name)
    if builder is None:
        raise SchemaMismatchError(
            f"{'an' if kind.name[0] in 'aeiou' else 'a'} {kind.name} aggregate is not solved into a model: it holds "
            f"{kind.description}; a model is solved from decrypted {' or '.join(solvable_kinds())} sums")
    model = builder(stats, ridge, fit_intercept)
    model.study_ = stats.study
    if study is not None:  # the file's covariance gives back the pooled Gram: the study's threshold + 1
        model.release_covariance = covariance_releasable(model.contributors_, study.min_contributors)
    if robust is not None or cov_type is not None:  # the second round: robust standard errors
        if robust is None:
            raise UsageError("a robust cov_type needs the decrypted residual moments of the released model",
                             parameters=("robust",))
        if study is not None:
            study.check_digest(robust.study, "the residual moments")
        model.set_robust_covariance(robust, cov_type or "HC1")
    if study is not None and model.has_inference:  # the emission-factor report needs the study's units
        model.inference().set_units(study)
    return model


def solvable_kinds() -> tuple[str, ...]:
    """The bundle kinds whose decrypted sums give a model, in protocol order."""
    return tuple(name for name in kind_names() if name in _BUILDERS)


def load_sums(path: str | os.PathLike[str], expected: Sequence[str] | None = None) -> Any:
    """What ``hefed decrypt`` wrote, of any kind; an encrypted bundle given instead is refused saying so.

    When the key holder signed the sums, the signature is verified and kept as ``result.release``
    (a :class:`~hefed.protocol.ReleaseSignature`): whether its signer is the study's key holder is
    the caller's check (:meth:`~hefed.protocol.Study.check_release`)."""
    obj = read_json_object(path, "decrypted aggregate")
    if obj.get("format") == BUNDLE_FORMAT:
        raise InvalidFileError(f"{path}: an encrypted bundle; the key holder decrypts the aggregate first "
                               "(hefed decrypt), and the analyst reads what that writes")
    release = open_release(obj, str(path))  # a signature that does not verify is refused here
    result = result_from_dict({k: v for k, v in obj.items() if k != "release"}, str(path), expected)
    result.release = release
    return result


@register_model("statistics")
def solve_statistics(stats: SufficientStatistics, ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
    """The pooled OLS or ridge model of the statistics with its inference: every float64 certified to be
    the exact value correctly rounded; the exact rationals on request (``coef_exact_``)."""
    model = LinearModel.from_statistics(stats, ridge_fraction(ridge), fit_intercept)
    names = ([ONES] if fit_intercept else []) + list(stats.features)
    values = ([model.intercept_] if fit_intercept else []) + list(model.coef_)
    for name, value in zip(names, values, strict=True):
        if not abs(value) < _FLOAT_LIMIT:
            raise ResultRangeError(
                f"the exact coefficient of {name!r} is beyond float64 range: "
                "the system is numerically degenerate; rescale the column or use a ridge penalty",
                parameters=("ridge",))
    return model


@register_model("within_statistics")
def solve_within(sums: WithinStatistics, ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
    """Plant fixed effects: the within estimator of the slopes from pooled within-plant statistics, with the
    inference of OLS with one dummy per plant (each contributor is one plant). ``fit_intercept`` is implied
    (the plant intercepts); a plant computes its own with :meth:`LinearModel.plant_intercept`."""
    sums.check_consistent("the within statistics")
    plants = len(set(sums.contributors)) or 1
    if sums.n < plants + len(sums.features):
        raise SingularSystemError(f"{sums.n} rows for {plants} plant effects and {len(sums.features)} slopes: too few "
                                  "rows for a fixed-effects model", [])
    try:
        model = LinearModel.from_statistics(sums.within, ridge_fraction(ridge), False, absorbed=plants,
                                            totals=sums.total_sums())
    except SingularSystemError as exc:
        if len(exc.columns) == 1 and "identically zero" in str(exc):
            raise SingularSystemError(
                f"{exc.columns[0]!r} is constant within every plant: the plant effects absorb it; leave it out of a "
                "fixed-effects model", exc.columns) from None
        raise
    model.fixed_effects_ = plants
    return model


@register_model("weighted_statistics")
def solve_weighted(sums: WeightedStatistics, ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
    """Weighted least squares (statsmodels ``WLS(y, X, weights=w)``) from pooled weighted statistics, with its
    inference: nobs and df_resid count rows, the centred TSS is ``Σw(y − ȳ_w)²``, the llf adds ``½·Σ log w``
    (its per-row rounding bound: :meth:`~hefed.stats.WeightedStatistics.log_weight_bound`); the model file
    records the weights column."""
    sums.check_consistent("the weighted statistics")
    if sums.zero_weights == sums.n:
        raise SingularSystemError(f"every one of the {sums.n} rows has weight zero: no weighted model", [])
    weighting = Weighting(sums.n, sums.weight_bits, sums.log_weights(), sums.weights)
    model = LinearModel.from_statistics(sums.weighted, ridge_fraction(ridge), fit_intercept, weighting=weighting)
    names = ([ONES] if fit_intercept else []) + list(sums.features)
    values = ([model.intercept_] if fit_intercept else []) + list(model.coef_)
    for name, value in zip(names, values, strict=True):
        if not abs(value) < _FLOAT_LIMIT:
            raise ResultRangeError(f"the exact coefficient of {name!r} is beyond float64 range: the system is "
                                   "numerically degenerate; rescale the column or use a ridge penalty",
                                   parameters=("ridge",))
    return model


@register_model("fold_statistics")
def _solve_folds(folds: FoldStatistics, ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
    return solve_statistics(folds.total(), ridge, fit_intercept)


@register_model("coefficients")
def average_model(aggregate: CoefficientAggregate, ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
    """The exact n-weighted average of the factories' own models (no pooled fit statistics: only
    coefficients travelled; the local fits' ridge and intercept are what the factories used)."""
    coef, intercept = aggregate.average()
    return LinearModel(aggregate.features, aggregate.target, coef, intercept, n_samples=aggregate.n, sse=None,
                       sst=None, fit_intercept=aggregate.fit_intercept, contributors=aggregate.contributors)


def standardized_coefficients(model: LinearModel, stats: SufficientStatistics | FoldStatistics
                              ) -> dict[str, dict[str, float]]:
    """Coefficients per standard deviation of each feature, and fully standardised (÷ sd of y).

    The pooled means and sample variances come exactly from the aggregate:
    ``var_j = (Σx_j² − (Σx_j)²/n) / (n − 1)``.
    """
    if isinstance(stats, FoldStatistics):
        stats = stats.total()
    if not isinstance(stats, SufficientStatistics):
        raise UsageError("standardised coefficients need statistics (not a coefficient aggregate): means and SDs "
                         "come from them", parameters=("standardize",))
    n = stats.n
    if n < 2:
        raise UsageError("standardisation needs at least two rows")

    def sd(column: str) -> float:
        s, ss = stats.exact(ONES, column), stats.exact(column, column)
        return math.sqrt(float((ss - s * s / n) / (n - 1)))

    sd_y = sd(stats.target)
    result = {}
    for name, coef in zip(model.feature_names_in_, model.coef_, strict=True):
        sd_x = sd(str(name))
        result[str(name)] = {
            "mean": float(stats.exact(ONES, str(name)) / n),
            "sd": sd_x,
            "per_sd": float(coef) * sd_x,
            "standardized": float(coef) * sd_x / sd_y if sd_y else float("nan"),
        }
    return result
