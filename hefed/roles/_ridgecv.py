"""Ridge by K-fold cross-validation, computed exactly from encrypted per-fold statistics.

With fold statistics (``hefed encrypt --folds K``) a factory assigns each row to a fold by a
seeded hash of its row number (reproducible, independent of the other
rows) and encrypts the exact statistics of every fold. Summed over
factories, fold ``k`` holds the statistics of the pooled rows assigned to
``k``. Then, for each candidate ``α`` and fold ``k``:

    θ_α,k  = exact ridge solution on  G − G_k      (all folds but k)
    MSE_k  = wᵀ G_k w / n_k                       (w = (θ₀, θ, −1): exact held-out SSE)
    CV(α)  = (1/K) Σ_k MSE_k

— the same criterion as scikit-learn's ``cross_val_score(Ridge(α), X, y,
cv=folds, scoring="neg_mean_squared_error")`` averaged over folds, and the
``α`` minimising it is what ``RidgeCV(alphas, cv=folds,
scoring="neg_mean_squared_error")`` chooses. Everything is exact until the
final rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..errors import SingularSystemError, UsageError
from ..models import LinearModel
from ..stats import FoldStatistics, solve_exact_coefficients
from ._analyst import solve_statistics

#: Default ridge grid of ``--ridge auto``: 10^-3 … 10^6.
DEFAULT_ALPHAS = tuple(float(10.0**k) for k in range(-3, 7))


@dataclass
class RidgeCVResult:
    """The validation curve: mean held-out MSE per α (and per fold), and the chosen α."""

    alphas: list[float]
    mean_mse: list[float]
    fold_mse: list[list[float]]
    alpha_: float
    best_index: int = 0
    mean_mse_exact: list[Fraction | None] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """Warnings about the choice: an α at the edge of the grid may not be the best one."""
        candidates = [i for i, m in enumerate(self.mean_mse_exact) if m is not None]
        if len(candidates) < 2:
            return []
        if self.best_index == min(candidates, key=lambda i: self.alphas[i]):
            return [f"the smallest candidate α ({self.alpha_:g}) was chosen: a smaller one may be better; "
                    "extend the grid downwards"]
        if self.best_index == max(candidates, key=lambda i: self.alphas[i]):
            return [f"the largest candidate α ({self.alpha_:g}) was chosen: a larger one may be better; "
                    "extend the grid upwards"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"alphas": self.alphas, "mean_mse": [None if m != m else m for m in self.mean_mse],
                "fold_mse": [[None if m != m else m for m in row] for row in self.fold_mse], "alpha": self.alpha_,
                "notes": self.notes}


def cross_validate_ridge(
    fold_stats: FoldStatistics, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> RidgeCVResult:
    """Exact K-fold validation curve of ridge over ``alphas`` (see the module docstring)."""
    alphas = [float(a) for a in (alphas if alphas is not None else DEFAULT_ALPHAS)]
    if not alphas or any(a < 0 or a != a for a in alphas):
        raise UsageError("alphas must be a non-empty list of non-negative numbers", parameters=("alphas",))
    total = fold_stats.total()
    exact_means: list[Fraction | None] = []
    fold_mse: list[list[float]] = []
    for alpha in alphas:
        per_fold: list[Fraction] = []
        for k, held_out in enumerate(fold_stats.folds):
            if held_out.n == 0:
                raise UsageError(f"fold {k} is empty: use fewer folds", parameters=("folds",))
            training = total - held_out
            try:
                coef, intercept = solve_exact_coefficients(training, alpha, fit_intercept)
            except SingularSystemError:
                per_fold = []
                break
            by_name = dict(zip(sorted(training.features), coef, strict=True))
            per_fold.append(held_out.residual_sum_of_squares(by_name, intercept) / held_out.n)
        if per_fold:
            exact_means.append(sum(per_fold, Fraction(0)) / len(per_fold))
            fold_mse.append([float(v) for v in per_fold])
        else:  # α = 0 on a training split that is singular: not a candidate
            exact_means.append(None)
            fold_mse.append([float("nan")] * fold_stats.k)
    candidates = [(m, i) for i, m in enumerate(exact_means) if m is not None]
    if not candidates:
        raise SingularSystemError("every candidate α leaves a singular training split; give positive alphas", [])
    best = min(candidates)[1]
    return RidgeCVResult(alphas, [float(m) if m is not None else float("nan") for m in exact_means], fold_mse,
                         alphas[best], best, exact_means)


def solve_auto_ridge(
    aggregate: object, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> tuple[LinearModel, RidgeCVResult]:
    """Ridge with α chosen by cross-validation: needs per-fold statistics, refuses anything else clearly."""
    if not isinstance(aggregate, FoldStatistics):
        raise UsageError("choosing the ridge penalty by cross-validation needs fold statistics: every factory "
                         "must encrypt the statistics of K folds", parameters=("folds",))
    return solve_ridge_cv(aggregate, alphas, fit_intercept)


def solve_ridge_cv(
    fold_stats: FoldStatistics, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> tuple[LinearModel, RidgeCVResult]:
    """Choose α by exact K-fold cross-validation, then solve on all rows with it."""
    result = cross_validate_ridge(fold_stats, alphas, fit_intercept)
    return solve_statistics(fold_stats.total(), ridge=result.alpha_, fit_intercept=fit_intercept), result
