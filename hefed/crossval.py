"""Ridge by K-fold cross-validation, computed exactly from encrypted per-fold statistics.

With ``hefed encrypt --folds K`` a factory assigns each row to a fold by a
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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle, check_factory_id
from .data import check_seed, select_xy
from .encoding import Encoding
from .errors import InvalidFileError, SingularSystemError, UsageError
from .fileio import atomic_write_json, is_version, read_json_object
from .model import LinearModel
from .solve import solve, solve_exact_coefficients
from .statistics import SufficientStatistics, grouped_statistics

FORMAT = "hefed.fold_statistics"
VERSION = 1
#: Default ridge grid of ``--ridge auto``: 10^-3 … 10^6.
DEFAULT_ALPHAS = tuple(float(10.0**k) for k in range(-3, 7))


def fold_assignment(n_rows: int, folds: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Fold of each row: a seeded SplitMix64 hash of the row number, modulo ``folds``.

    The fold of row ``i`` depends only on ``(seed, i)``, so it is reproducible and
    does not change when rows are appended. ``start`` numbers the first row (for a
    table read in blocks).
    """
    check_seed(seed)
    if not isinstance(folds, int) or folds < 2:
        raise UsageError(f"folds must be an integer of at least 2, got {folds!r}")
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n_rows, dtype=np.uint64) + np.uint64(seed % (1 << 64)) * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int64)


@dataclass
class FoldStatistics:
    """Exact statistics of each fold; their sum is the statistics of all rows."""

    folds: list[SufficientStatistics]
    seed: int = 0

    @property
    def k(self) -> int:
        return len(self.folds)

    @property
    def n(self) -> int:
        return sum(f.n for f in self.folds)

    @property
    def contributors(self) -> list[str]:
        return list(self.folds[0].contributors)

    def total(self) -> SufficientStatistics:
        result = self.folds[0]
        for fold in self.folds[1:]:
            result = result + fold
        result.contributors = list(self.folds[0].contributors)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "seed": self.seed, "folds": [f.to_dict() for f in self.folds]}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "fold statistics") -> FoldStatistics:
        if obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed fold-statistics file (version {VERSION})")
        folds = obj.get("folds")
        if not isinstance(folds, list) or len(folds) < 2 or not all(isinstance(f, dict) for f in folds):
            raise InvalidFileError(f"{source}: 'folds' must list at least two statistics objects")
        stats = [SufficientStatistics.from_dict(f, f"{source} fold {i}") for i, f in enumerate(folds)]
        if len({s.schema_key() for s in stats}) != 1:
            raise InvalidFileError(f"{source}: folds differ in target, features or encoding")
        seed = obj.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidFileError(f"{source}: 'seed' must be an integer")
        return cls(stats, seed)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FoldStatistics:
        return cls.from_dict(read_json_object(path, "fold statistics"), str(path))


def compute_fold_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    folds: int = 5,
    seed: int = 0,
) -> FoldStatistics:
    """A factory's exact statistics per fold (rows assigned by :func:`fold_assignment`)."""
    encoding = encoding or Encoding()
    if not isinstance(data, pd.DataFrame):
        from .streaming import stream_fold_statistics  # reads the file block by block

        return stream_fold_statistics(data, target, features, encoding, factory_id, folds, seed, clean=False)[0]
    source = factory_id or "data"
    X, y, names = select_xy(data, target, features, source)
    assignment = fold_assignment(len(y), folds, seed)
    return FoldStatistics(grouped_statistics(X, y, names, target, encoding, factory_id, source, assignment, folds),
                          seed)


def encrypt_fold_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Bundle:
    """Encrypt a factory's per-fold statistics into a ``fold_statistics`` bundle."""
    check_factory_id(factory_id)
    fold_stats = compute_fold_statistics(data, target, features, encoding, factory_id, folds, seed)
    return encrypt_folds(fold_stats, public_key, factory_id)


def encrypt_folds(fold_stats: FoldStatistics, public_key: PaillierPublicKey, factory_id: str) -> Bundle:
    """Pack and encrypt already computed per-fold statistics into a ``fold_statistics`` bundle."""
    first = fold_stats.folds[0]
    values = [v for fold in fold_stats.folds for v in fold.to_vector()]
    return Bundle.seal("fold_statistics", public_key, first.target, first.features, first.encoding, factory_id,
                       values, {"folds": fold_stats.k, "fold_seed": fold_stats.seed})


@dataclass
class RidgeCVResult:
    """The validation curve: mean held-out MSE per α (and per fold), and the chosen α."""

    alphas: list[float]
    mean_mse: list[float]
    fold_mse: list[list[float]]
    alpha_: float
    best_index: int = 0
    mean_mse_exact: list[Fraction | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"alphas": self.alphas, "mean_mse": [None if m != m else m for m in self.mean_mse],
                "fold_mse": [[None if m != m else m for m in row] for row in self.fold_mse], "alpha": self.alpha_}


def cross_validate_ridge(
    fold_stats: FoldStatistics, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> RidgeCVResult:
    """Exact K-fold validation curve of ridge over ``alphas`` (see the module docstring)."""
    alphas = [float(a) for a in (alphas if alphas is not None else DEFAULT_ALPHAS)]
    if not alphas or any(a < 0 or a != a for a in alphas):
        raise UsageError("alphas must be a non-empty list of non-negative numbers")
    total = fold_stats.total()
    exact_means: list[Fraction | None] = []
    fold_mse: list[list[float]] = []
    for alpha in alphas:
        per_fold: list[Fraction] = []
        for k, held_out in enumerate(fold_stats.folds):
            if held_out.n == 0:
                raise UsageError(f"fold {k} is empty: use fewer folds")
            training = _minus(total, held_out)
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


def _minus(total: SufficientStatistics, part: SufficientStatistics) -> SufficientStatistics:
    m = len(total.gram)
    gram = [[total.gram[a][b] - part.gram[a][b] for b in range(m)] for a in range(m)]
    return SufficientStatistics(total.target, list(total.features), total.encoding, gram, list(total.contributors))


def solve_auto_ridge(
    aggregate: object, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> tuple[LinearModel, RidgeCVResult]:
    """``hefed solve --ridge auto``: needs per-fold statistics, refuses anything else clearly."""
    if not isinstance(aggregate, FoldStatistics):
        raise UsageError("--ridge auto needs fold statistics: encrypt with --folds K at every factory")
    return solve_ridge_cv(aggregate, alphas, fit_intercept)


def solve_ridge_cv(
    fold_stats: FoldStatistics, alphas: Sequence[float] | None = None, fit_intercept: bool = True
) -> tuple[LinearModel, RidgeCVResult]:
    """Choose α by exact K-fold cross-validation, then solve on all rows with it."""
    result = cross_validate_ridge(fold_stats, alphas, fit_intercept)
    return solve(fold_stats.total(), ridge=result.alpha_, fit_intercept=fit_intercept), result
