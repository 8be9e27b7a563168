"""What ``hefed solve`` does with a decrypted aggregate, as one library call.

Chooses among the ways a model is released from an aggregate: exact OLS or
ridge; ridge with α chosen by exact K-fold cross-validation (fold statistics);
an (ε, δ)-differentially private release; or, for a coefficient aggregate, the
n-weighted average model. Optionally adds standardised coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence

from .coefficients import CoefficientAggregate
from .crossval import FoldStatistics, RidgeCVResult, solve_auto_ridge
from .errors import UsageError
from .model import LinearModel
from .preprocess import standardized_coefficients
from .privacy import Bounds, dp_solve
from .solve import solve
from .statistics import SufficientStatistics


def release_model(
    aggregate: SufficientStatistics | FoldStatistics | CoefficientAggregate,
    ridge: float | str = 0.0,
    alphas: Sequence[float] | None = None,
    fit_intercept: bool = True,
    standardize: bool = False,
    dp_epsilon: float | None = None,
    dp_delta: float | None = None,
    bounds: Bounds | None = None,
) -> tuple[LinearModel, RidgeCVResult | None]:
    """The model to publish, and the validation curve when ``ridge="auto"``.

    ``dp_epsilon``, ``dp_delta`` and ``bounds`` go together (a differentially private
    release from plain statistics with a fixed ridge); ``alphas`` needs ``ridge="auto"``.
    """
    auto = isinstance(ridge, str) and ridge.strip().lower() == "auto"
    if not auto and isinstance(ridge, str):
        raise UsageError(f"ridge must be a number or 'auto', got {ridge!r}")
    dp = (dp_epsilon, dp_delta, bounds)
    if any(v is not None for v in dp) and not all(v is not None for v in dp):
        raise UsageError("a differentially private release needs epsilon, delta and the declared bounds")
    if alphas and not auto:
        raise UsageError("candidate alphas need ridge 'auto'")
    curve = None
    if dp_epsilon is not None and dp_delta is not None and bounds is not None:
        if auto or not isinstance(aggregate, SufficientStatistics):
            raise UsageError("a differentially private release needs plain statistics and a fixed ridge")
        model = dp_solve(aggregate, dp_epsilon, dp_delta, bounds, float(ridge), fit_intercept=fit_intercept)
    elif auto:
        model, curve = solve_auto_ridge(aggregate, alphas, fit_intercept=fit_intercept)
    else:
        model = solve(aggregate, ridge=float(ridge), fit_intercept=fit_intercept)
    if standardize:
        model.standardized_ = standardized_coefficients(model, aggregate)
    return model, curve
