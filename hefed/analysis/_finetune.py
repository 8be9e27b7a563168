"""Local fine-tuning: a factory adapts the global model to its own data.

The federated protocol ends with one global model. A factory whose plant
differs from the consortium (other fuels, other operating regime) may adapt
it, on its own data and without sending anything, by the proximal fit

    θ̂(λ) = argmin_θ  ‖y − Xθ − θ₀‖² + λ‖θ − θ_g‖²        (θ = (θ₀, θ₁ … θ_d), θ_g the global model)

whose normal equations are ``(ZᵀZ + λI) θ = Zᵀy + λ θ_g`` with ``Z = [1, X]``.
It interpolates between the factory's own least-squares model (λ → 0) and the
global model (λ → ∞, exactly). Every quantity is computed exactly from the
factory's integer sufficient statistics (:mod:`hefed.stats`) with
:func:`hefed.stats.solve_exact_coefficients`; the prior is the global model
as published, its float64 coefficients taken as the exact dyadic rationals
they are.

**The intercept is penalised too** (it is pulled toward the global intercept
like every coefficient): (1) only then is λ → ∞ the global model itself; with a
free intercept the limit would be the global slopes with a locally refitted
level, a model nobody published; (2) fine-tuning and the FedAvg simulation
(:mod:`hefed.sim`) then take one and the same local step. For every λ > 0
``ZᵀZ + λI`` is positive definite, so the solve never fails, even when the
factory's data cannot identify a coefficient (a fuel it never burns, a constant
column): that coefficient keeps its global value exactly.

**λ is chosen by K-fold cross-validation on the factory's training rows**, again
exactly, with the folds and the criterion of ``hefed solve --ridge auto``
(:mod:`hefed.roles`): row ``i`` of the training part goes to fold
``SplitMix64(seed, i) mod K`` (:func:`hefed.stats.fold_assignment`). For each
fold ``k`` the statistics of the other folds are ``G − G_k`` (statistics add, so
they subtract too), the fit ``θ_k(λ)`` is solved from them, and the held-out
sum of squared residuals is the exact quadratic form

    SSE_k(λ) = wᵀ G_k w,    w = (θ₀, θ₁ … θ_d, −1)  over the columns (1, X, y)

of the fold's own Gram matrix ``G_k``. The CV curve is the mean of the fold
MSEs, ``CV(λ) = (1/K) Σ_k SSE_k(λ) / n_k`` (scikit-learn's
``cross_val_score(..., scoring="neg_mean_squared_error")`` averaged, as for
ridge); the chosen λ minimises it exactly, ties going to the larger λ (closer
to the global model).

**Default λ grid**: ``λ = s·10^k`` for ``k = −12 … 4`` (17 values) with
``s = tr(ZᵀZ)/(d+1) = (n + Σ_j Σ_i x_ij²)/(d+1)``, the mean diagonal entry of the
training Gram matrix of ``[1, X]``. λ only means something relative to the
curvature ``ZᵀZ`` of the data term, which grows with n and with the squared
units of the features (a feature in t of clinker, ~10³, has curvature ~10⁶·n);
scaling by ``s`` makes the grid independent of the units and of the number of
rows. It runs from "the data dominate every coefficient" (k = −12: on raw-unit
tables the smallest eigenvalue of ``ZᵀZ`` can be ~10⁻¹¹·s, as in the UCI
gas-turbine files, where collinear temperatures and pressures leave directions
the data barely determine) to "the global model dominates every coefficient"
(k = 4: λ ≥ 10⁴·s exceeds the largest eigenvalue, which is at most (d+1)·s).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pandas as pd

from ..data import compute_fold_statistics, compute_statistics, read_table, select_xy, split_holdout
from ..errors import UsageError
from ..models import LinearModel
from ..roles import evaluate_local
from ..stats import ONES, FoldStatistics, SufficientStatistics, solve_exact_coefficients

__all__ = [
    "DEFAULT_LAMBDA_EXPONENTS", "FinetuneResult", "cv_curve", "default_lambdas", "finetune", "finetune_frame",
    "proximal_fit",
]

#: Exponents k of the default grid λ = s·10^k (s = mean diagonal of the training Gram of [1, X]).
DEFAULT_LAMBDA_EXPONENTS: tuple[int, ...] = tuple(range(-12, 5))


@dataclass
class FinetuneResult:
    """What :func:`finetune` found: the fine-tuned model, the chosen λ, the CV curve, holdout metrics.

    Attributes:
        model: the fine-tuned model with the chosen λ, refitted on every row of the table (the
            holdout included) once the holdout has measured it: what the factory keeps.
        holdout_model: the same fit on the training rows only, the one the holdout metrics measure
            (``model`` itself when there is no holdout).
        global_model: the model it started from.
        lam: the chosen λ (a float64; the exact penalty is this float's rational value).
        lambdas: the λ grid, ascending.
        cv_mse: the CV curve, mean held-out squared error per λ (float, exact values in ``cv_mse_exact``).
        cv_mse_exact: the same as exact rationals.
        folds: number of folds; ``n_train`` / ``n_holdout`` rows on each side of the holdout split.
        global_metrics, finetuned_metrics: holdout metrics (n, mse, rmse, mae, r2) of both models,
            ``None`` without a holdout (``test_fraction=0``).
        notes: what the reader should know (λ at the edge of its grid; the global model may have
            seen the holdout rows).
    """

    model: LinearModel
    global_model: LinearModel
    lam: float
    lambdas: list[float]
    cv_mse: list[float]
    cv_mse_exact: list[Fraction]
    folds: int
    seed: int
    n_train: int
    n_holdout: int
    global_metrics: dict[str, float] | None = None
    finetuned_metrics: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)
    holdout_model: LinearModel | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lambda": self.lam, "lambdas": self.lambdas, "cv_mse": self.cv_mse, "folds": self.folds,
            "seed": self.seed, "n_train": self.n_train, "n_holdout": self.n_holdout,
            "global_metrics": self.global_metrics, "finetuned_metrics": self.finetuned_metrics,
            "n_fitted": self.model.n_samples_, "notes": self.notes,
        }


# --- exact building blocks --------------------------------------------------------------
def _prior(global_model: LinearModel) -> dict[str, Fraction]:
    """The global model as published (float64 coefficients, exact as dyadic rationals), keyed by column."""
    prior = {str(f): Fraction(float(c)) for f, c in zip(global_model.feature_names_in_, global_model.coef_,
                                                        strict=True)}
    if global_model.fit_intercept:
        prior[ONES] = Fraction(float(global_model.intercept_))
    return prior


def proximal_fit(
    stats: SufficientStatistics, lam: float | Fraction, prior: Mapping[str, Fraction], fit_intercept: bool = True,
) -> tuple[dict[str, Fraction], Fraction]:
    """Exact ``argmin ‖y − Xθ − θ₀‖² + λ‖θ − θ_prior‖²`` (intercept penalised): (coef by name, intercept)."""
    coef_sorted, intercept = solve_exact_coefficients(stats, lam, fit_intercept, prior=prior,
                                                      penalize_intercept=True)
    return dict(zip(sorted(stats.features), coef_sorted, strict=True)), intercept


def _check_lambdas(lambdas: Sequence[float]) -> list[float]:
    values = []
    for lam in lambdas:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
            raise UsageError(f"every λ must be a finite positive number, got {lam!r}")
        values.append(float(lam))
    if not values:
        raise UsageError("the λ grid is empty")
    return sorted(set(values))


def default_lambdas(stats: SufficientStatistics, exponents: Sequence[int] = DEFAULT_LAMBDA_EXPONENTS) -> list[float]:
    """The default grid ``s·10^k`` with ``s = tr(ZᵀZ)/(d+1)``, the mean diagonal of the Gram of ``[1, X]``."""
    diagonal = [stats.exact(c, c) for c in stats.columns[:-1]]
    s = sum(diagonal, Fraction(0)) / len(diagonal)
    return [float(s * Fraction(10) ** k) for k in exponents]


def _fold_statistics(
    train: pd.DataFrame, target: str, features: Sequence[str], folds: int, seed: int,
) -> FoldStatistics:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UsageError(f"cross-validation needs an integer number of folds of at least 2, got {folds!r}")
    fold_stats = compute_fold_statistics(train, target, features, folds=folds, seed=seed)
    empty = [k for k, f in enumerate(fold_stats.folds) if f.n == 0]
    if empty:
        raise UsageError(f"fold {empty[0]} of {folds} is empty ({len(train)} training rows): use fewer folds")
    return fold_stats


def _curve(
    fold_stats: FoldStatistics, prior: Mapping[str, Fraction], lambdas: Sequence[float], fit_intercept: bool,
) -> list[Fraction]:
    """Exact ``CV(λ) = (1/K) Σ_k SSE_k(λ)/n_k`` for each λ."""
    total = fold_stats.total()
    complements = [total - part for part in fold_stats.folds]
    curve = []
    for lam in lambdas:
        mse = Fraction(0)
        for held_out, rest in zip(fold_stats.folds, complements, strict=True):
            coef, intercept = proximal_fit(rest, Fraction(lam), prior, fit_intercept)
            mse += held_out.residual_sum_of_squares(coef, intercept) / held_out.n
        curve.append(mse / fold_stats.k)
    return curve


def cv_curve(
    train: pd.DataFrame, target: str, features: Sequence[str], prior: Mapping[str, Fraction],
    lambdas: Sequence[float], folds: int = 5, seed: int = 0, fit_intercept: bool = True,
) -> list[Fraction]:
    """Exact ``CV(λ) = (1/K) Σ_k SSE_k(λ)/n_k`` for each λ (folds of :func:`hefed.stats.fold_assignment`)."""
    fold_stats = _fold_statistics(train, target, features, folds, seed)
    return _curve(fold_stats, prior, _check_lambdas(lambdas), fit_intercept)


def _choose(curve: Sequence[Fraction]) -> int:
    """Index of the smallest CV error; ties go to the larger λ (the grid is ascending)."""
    best = min(curve)
    return max(i for i, v in enumerate(curve) if v == best)


def _fit_model(
    global_model: LinearModel, train: pd.DataFrame, target: str, lambdas: Sequence[float] | None, folds: int,
    seed: int,
) -> tuple[LinearModel, int, list[float], list[Fraction]]:
    features = [str(f) for f in global_model.feature_names_in_]
    prior = _prior(global_model)
    fold_stats = _fold_statistics(train, target, features, folds, seed)
    stats = fold_stats.total()
    grid = default_lambdas(stats) if lambdas is None else _check_lambdas(lambdas)
    curve = _curve(fold_stats, prior, grid, global_model.fit_intercept)
    best = _choose(curve)
    return _proximal_model(global_model, stats, grid[best]), best, grid, curve


def _proximal_model(global_model: LinearModel, stats: SufficientStatistics, lam: float) -> LinearModel:
    """The fine-tuned model at ``lam`` from a factory's statistics (its ``ridge`` records λ)."""
    features = [str(f) for f in global_model.feature_names_in_]
    coef, intercept = proximal_fit(stats, Fraction(lam), _prior(global_model), global_model.fit_intercept)
    sse = stats.residual_sum_of_squares(coef, intercept)
    sy, syy = stats.exact(ONES, stats.target), stats.exact(stats.target, stats.target)
    return LinearModel(
        features, stats.target, [coef[f] for f in features], intercept, n_samples=stats.n, sse=sse,
        sst=syy - sy * sy / stats.n, ridge=lam, fit_intercept=global_model.fit_intercept,
        contributors=[*global_model.contributors_],
    )


def finetune_frame(
    global_model: LinearModel, train_frame: pd.DataFrame, target: str | None = None,
    lambdas: Sequence[float] | None = None, folds: int = 5, seed: int = 0,
) -> LinearModel:
    """The fine-tuned model on ``train_frame`` (all of it), λ chosen by local CV; no holdout.

    For :func:`hefed.sim.compare_models`: fit on a factory's training rows, evaluate elsewhere.
    The returned model's ``ridge`` attribute records the chosen λ (the penalty is toward the global
    model, intercept included, not toward zero).
    """
    target = target or global_model.target_
    return _fit_model(global_model, train_frame, target, lambdas, folds, seed)[0]


def finetune(
    global_model: LinearModel,
    data: pd.DataFrame | str | os.PathLike[str],
    target: str | None = None,
    lambdas: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> FinetuneResult:
    """Fine-tune ``global_model`` on a factory's own ``data`` (DataFrame or CSV/Parquet path).

    Holds out ``test_fraction`` of the rows (:func:`hefed.data.split_holdout` with ``seed``; 0 for
    none), chooses λ by ``folds``-fold CV on the rest, fits the proximal model there, and evaluates
    the global and the fine-tuned model on the holdout with :func:`hefed.roles.evaluate_local`.
    """
    target = target or global_model.target_
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    # Validate the columns up front, so problems are reported against the file's name.
    select_xy(frame, target, [str(f) for f in global_model.feature_names_in_], "data" if data is frame else str(data))
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise UsageError(f"test fraction must be a number, got {test_fraction!r}")
    if test_fraction:
        train, holdout = split_holdout(frame, test_fraction, seed)
    else:
        train, holdout = frame, frame.iloc[:0]
    model, best, grid, curve = _fit_model(global_model, train, target, lambdas, folds, seed)
    result = FinetuneResult(model, global_model, grid[best], grid, [float(v) for v in curve], curve, folds, seed,
                            len(train), len(holdout), holdout_model=model)
    if len(holdout):
        result.global_metrics = evaluate_local(global_model, holdout, target).metrics()
        result.finetuned_metrics = evaluate_local(model, holdout, target).metrics()
        # The holdout has measured the fit; what the factory keeps uses every row, at the chosen λ.
        result.model = _refit(global_model, frame, target, grid[best])
        result.notes.append(
            f"the saved model is refitted on all {len(frame)} rows with the chosen λ; the holdout metrics are "
            f"those of the fit on the {len(train)} training rows")
        result.notes.append(
            "the global model may have been fitted on these holdout rows too (unless this factory held the same "
            "rows out of its statistics): its holdout metrics can then be optimistic")
    if len(grid) > 1 and best == 0:
        result.notes.append("the smallest λ of the grid was chosen: the factory's data outweigh the global model")
    elif len(grid) > 1 and best == len(grid) - 1:
        result.notes.append("the largest λ of the grid was chosen: the global model is best for this factory")
    return result


def _refit(global_model: LinearModel, frame: pd.DataFrame, target: str, lam: float) -> LinearModel:
    """The proximal fit toward ``global_model`` at ``lam`` on every row of ``frame``."""
    features = [str(f) for f in global_model.feature_names_in_]
    return _proximal_model(global_model, compute_statistics(frame, target, features), lam)
