"""A scikit-learn estimator that runs the whole encrypted protocol in-process.

For simulations and notebooks: ``FederatedLinearRegression().fit(X, y, groups=None)`` splits the
rows into factories — by ``groups``, the factory each row belongs to, or else into
``min_contributors`` contiguous blocks — and runs the real protocol among them in one simulated
consortium (:mod:`hefed.sim._consortium`): each factory encrypts the exact statistics of its own
rows, the aggregator multiplies the ciphertexts, the key holder decrypts only the aggregate (after
its threshold and integrity checks) and the analyst solves it exactly. The coefficients are
therefore those of the exact pooled OLS or ridge solution, rounded once to float64.

It follows scikit-learn's estimator contract (``sklearn.utils.estimator_checks.check_estimator``
passes): parameters are only stored by ``__init__``, ``fit`` validates its input and returns
``self``, fitted attributes end in ``_``, bad input raises :class:`ValueError` subclasses
(:class:`~hefed.errors.DataError`, :class:`~hefed.errors.UsageError`, …) whose messages name the
offending column and row. It clones, pickles, cross-validates (``cross_val_score``; pass
``params={"groups": groups}`` to keep each row's factory) and sits in a ``Pipeline``.

Migrating from ``fit({factory_id: (X, y)})``: call :meth:`FederatedLinearRegression.fit_parties`
with the same mapping, or stack the rows and give ``groups``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..data import warn_rounding
from ..errors import DataError, HefedError, UsageError
from ..kinds import (
    RESIDUAL_MOMENTS,
    WEIGHTED_STATISTICS,
    WITHIN_STATISTICS,
    ResidualMomentsRequest,
    WeightedStatisticsRequest,
    WithinStatisticsRequest,
)
from ..models import InferenceResults, LinearModel, covariance_releasable
from ..protocol import FACTORY_ID_PATTERN
from ..roles import DEFAULT_MIN_CONTRIBUTORS, encrypt_table, solve
from ..stats import ONES, Encoding, SufficientStatistics, WeightedStatistics, WithinStatistics
from ._consortium import Consortium
from ._defaults import SIMULATION_KEY_BITS

__all__ = ["FederatedLinearRegression"]

_FITTED = ("model_", "coef_", "intercept_", "contributors_", "results_", "plant_intercepts_")
#: statsmodels' cov_type values the estimator takes ("nonrobust": the classical covariance, one round).
_COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster", "HAC")


def _validated(estimator: BaseEstimator, X: Any, y: Any = None, *, reset: bool) -> Any:
    """scikit-learn's validation (shapes, feature names and counts, dtypes), its errors as DataError."""
    try:
        if y is None and not reset:
            return validate_data(estimator, X, reset=False, dtype=np.float64, ensure_all_finite=False)
        return validate_data(estimator, X, y, reset=reset, dtype=np.float64, ensure_all_finite=False,
                             y_numeric=True)
    except HefedError:
        raise
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _refuse_inexact_integers(values: Any, what: str) -> None:
    """Integers beyond 2^53 would be rounded by the conversion to float64: refuse them, naming the cell."""
    if isinstance(values, pd.DataFrame):
        for position, label in enumerate(values.columns):
            _refuse_big_integers(values.iloc[:, position].to_numpy(), f"{what}: column {str(label)!r}")
        return
    try:
        arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values)
    except Exception:  # not array-like at all: scikit-learn's validation names the problem
        return
    if arr.ndim == 2:
        for j in range(arr.shape[1]):
            _refuse_big_integers(arr[:, j], f"{what}: column {j}")
    elif arr.ndim == 1:
        _refuse_big_integers(arr, what)


def _refuse_big_integers(column: np.ndarray, where: str) -> None:
    if column.dtype.kind in "iu" and column.size:
        big = np.flatnonzero(np.abs(column.astype(object)) > 2**53)
    elif column.dtype.kind == "O":
        big = np.array([i for i, v in enumerate(column)
                        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and abs(int(v)) > 2**53])
    else:
        return
    if len(big):
        row = int(big[0])
        raise DataError(f"{where}, row {row + 1}: integer {column[row]} is beyond 2^53 and cannot be represented "
                        "exactly as float64")


def _check_finite(X: np.ndarray, names: list[str], what: str = "X") -> None:
    """Refuse NaN and ±inf, naming the first offending column and row (rows counted from 1)."""
    bad = ~np.isfinite(X)
    if bad.any():
        rows, cols = np.nonzero(bad)
        first = int(np.argmin(cols * X.shape[0] + rows))  # leftmost column, then its first row
        row, col = int(rows[first]), int(cols[first])
        value = X[row, col]
        what_value = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        raise DataError(f"{what}: column {names[col]!r}, row {row + 1}: value is {what_value} (the column has "
                        f"{_count(int(bad[:, col].sum()), 'non-finite value')})")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _target_name(y: Any, features: list[str]) -> str:
    taken = {*features, ONES}
    given = y.name if isinstance(y, pd.Series) and isinstance(y.name, str) and y.name else None
    for name in (given, "y", "target"):
        if name is not None and name not in taken:
            return name
    return next(f"y{k}" for k in range(len(taken) + 1) if f"y{k}" not in taken)


class FederatedLinearRegression(RegressorMixin, BaseEstimator):
    """Exact federated OLS/ridge, run through the encrypted protocol among simulated factories.

    ``fit(X, y, groups=None)`` splits the rows into factories by ``groups`` (each row's factory;
    without it, ``min_contributors`` contiguous blocks of rows), has each factory encrypt the exact
    statistics of its rows, aggregates the ciphertexts, decrypts only the aggregate and solves it
    exactly: the coefficients equal the exact pooled solution, rounded once to float64.

    Parameters:
        ridge: ridge penalty α ≥ 0 on the coefficients (the intercept is not penalised), as
            ``sklearn.linear_model.Ridge(alpha=ridge)``; 0 for OLS.
        fit_intercept: whether to fit an intercept.
        key_bits: size of the simulation key when no key pair is given; default
            :data:`~hefed.sim.SIMULATION_KEY_BITS` (1024). The key is an insecure test key, generated
            once per process and size and reused by every fit (:func:`~hefed.sim.simulation_keypair`):
            a simulation holds every factory's rows in this process anyway, and the protocol's
            arithmetic, hence the fitted model, does not depend on the key size. Never for real data.
        min_contributors: the key holder's disclosure threshold: an aggregate of fewer factories
            is not decrypted (:class:`~hefed.errors.TooFewContributorsError`); without ``groups`` it
            is also the number of factories the rows are split into.
        encoding: the public exact encoding (default :class:`~hefed.stats.Encoding`: 72 binary
            digits below the point, so values from about 1e-6 up encode exactly; finer values are
            refused, naming the cell — raise ``frac_bits`` for them).
        public_key, private_key: an existing key pair to use instead of the simulation key.
        fixed_effects: plant fixed effects (one intercept per factory of ``groups``): each factory sends its
            own rows demeaned (``within_statistics``) and the slopes are the within estimator, with the
            inference of OLS with one dummy per plant. ``predict(X, groups=)`` adds each row's plant intercept
            (``plant_intercepts_``, computed from each plant's own rows).
        cov_type: ``"nonrobust"`` (the classical covariance), or statsmodels' ``HC0``, ``HC1``, ``HC2``,
            ``HC3``, ``cluster`` (by factory) or ``HAC`` (Newey–West within each factory's rows, ``maxlags``):
            a second encrypted round of residual moments of the fitted model (:mod:`hefed.models._robust`);
            ``results_`` then has that covariance, z tests and normal intervals as statsmodels'
            ``fit(cov_type=...)``. HC2/HC3 need at least ``min_contributors + 1`` factories (the pooled
            (XᵀX)⁻¹ goes to the factories); cluster warns below 20 factories.
        maxlags: the lags of ``cov_type="HAC"``.

    Attributes:
        coef_: float64 coefficients, in the order of the columns of ``X``.
        intercept_: float64 intercept (0.0 without ``fit_intercept``).
        n_features_in_: number of columns of ``X``.
        feature_names_in_: the column names of ``X`` (numpy array of str), only when ``X`` was a
            DataFrame with string column names, as in scikit-learn.
        model_: the :class:`~hefed.models.LinearModel` the analyst published (exact rational
            coefficients ``coef_exact_``, inference, ``target_``); numpy columns are named
            ``x0``, ``x1``, … there.
        contributors_: the factories, in the order of first appearance in ``groups``.
        results_: the pooled fit's inference (:class:`~hefed.models.InferenceResults`, statsmodels'
            names: ``params``, ``bse``, ``pvalues``, ``conf_int()``, ``cov_params()``, …), ordered as
            statsmodels orders ``OLS(y, add_constant(X))``: the intercept first, then X's columns.

    ``predict`` takes the columns of ``fit`` in the same order (as every scikit-learn estimator;
    ``model_.predict`` matches DataFrame columns by name instead); ``score`` is R² as
    ``sklearn.metrics.r2_score``, the convention of :func:`hefed.stats.r2_score`.
    """

    def __init__(
        self,
        ridge: float = 0.0,
        fit_intercept: bool = True,
        key_bits: int = SIMULATION_KEY_BITS,
        min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
        encoding: Encoding | None = None,
        public_key: PaillierPublicKey | None = None,
        private_key: PaillierPrivateKey | None = None,
        fixed_effects: bool = False,
        cov_type: str = "nonrobust",
        maxlags: int | None = None,
    ) -> None:
        self.ridge = ridge
        self.fit_intercept = fit_intercept
        self.key_bits = key_bits
        self.min_contributors = min_contributors
        self.encoding = encoding
        self.public_key = public_key
        self.private_key = private_key
        self.fixed_effects = fixed_effects
        self.cov_type = cov_type
        self.maxlags = maxlags

    # --- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> Encoding:
        ridge = self.ridge
        if isinstance(ridge, bool) or not isinstance(ridge, Real) or not math.isfinite(ridge) or ridge < 0:
            raise UsageError(f"ridge must be a finite number ≥ 0, got {ridge!r}", parameters=("ridge",))
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise UsageError(f"fit_intercept must be True or False, got {self.fit_intercept!r}",
                             parameters=("fit_intercept",))
        k = self.min_contributors
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UsageError(f"min_contributors must be a positive integer, got {k!r}",
                             parameters=("min_contributors",))
        if not isinstance(self.fixed_effects, (bool, np.bool_)):
            raise UsageError(f"fixed_effects must be True or False, got {self.fixed_effects!r}",
                             parameters=("fixed_effects",))
        if self.cov_type not in _COV_TYPES:
            raise UsageError(f"cov_type must be one of {', '.join(_COV_TYPES)}, got {self.cov_type!r}",
                             parameters=("cov_type",))
        if self.cov_type != "nonrobust" and (self.fixed_effects or self.ridge):
            raise UsageError("a robust cov_type is for OLS fits (no ridge, no fixed effects)", parameters=("cov_type",))
        if self.cov_type == "HAC" and (isinstance(self.maxlags, bool) or not isinstance(self.maxlags, (int, np.integer))
                                       or self.maxlags < 1):
            raise UsageError("cov_type='HAC' needs maxlags, a positive integer", parameters=("maxlags",))
        if self.encoding is not None and not isinstance(self.encoding, Encoding):
            raise UsageError(f"encoding must be a hefed Encoding or None, got {type(self.encoding).__name__}",
                             parameters=("encoding",))
        return self.encoding or Encoding()

    # --- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> FederatedLinearRegression:
        """Run the protocol among the factories ``groups`` names and solve exactly; returns ``self``.

        ``X``: array-like or DataFrame of shape (n_samples, n_features); ``y``: (n_samples,);
        ``groups``: (n_samples,) labels, the factory each row belongs to (a factory id: letters,
        digits, ``.``, ``_``, ``-``); without it the rows are split into ``min_contributors``
        contiguous blocks named ``factory-1``, ``factory-2``, …; ``sample_weight``: (n_samples,) precision
        weights >= 0: weighted least squares, as statsmodels ``WLS(y, X, weights=sample_weight)``
        (:meth:`_weighted_round`).
        """
        if isinstance(X, Mapping) and not hasattr(X, "shape"):  # (a sparse DOK matrix is a dict with a shape)
            raise UsageError("fit(X, y, groups) takes the rows of every factory; for a mapping "
                             "{factory_id: (X, y)} call fit_parties(parties)")
        for name in _FITTED:
            if hasattr(self, name):
                delattr(self, name)
        encoding = self._check_params()
        _refuse_inexact_integers(X, "X")
        _refuse_inexact_integers(y, "y")
        X_arr, y_arr = _validated(self, X, y, reset=True)
        n, d = X_arr.shape
        names = ([str(name) for name in self.feature_names_in_] if hasattr(self, "feature_names_in_")
                 else [f"x{j}" for j in range(d)])
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise DataError(f"X: duplicate column name(s) {', '.join(map(repr, duplicated))}")
        _check_finite(X_arr, names)
        target = _target_name(y, names)
        for j, name in enumerate(names):  # out of range: refused naming the cell (finer than the grid: rounded)
            encoding.check_range(X_arr[:, j], name, "X")
        encoding.check_range(y_arr, target, "y")

        factories = self._factories(groups, n)
        parts = {factory: (X_arr[rows], y_arr[rows]) for factory, rows in factories.items()}
        consortium = Consortium.simulated(self.key_bits, self.public_key, self.private_key, int(self.min_contributors),
                                          encoding)
        stats: SufficientStatistics | WeightedStatistics | WithinStatistics
        if (self.fixed_effects or self.cov_type != "nonrobust") and sample_weight is not None:
            raise UsageError("sample_weight with fixed_effects or a robust cov_type is not built: WLS is classical",
                             parameters=("cov_type",))
        if self.fixed_effects and groups is None:
            raise UsageError("fixed_effects needs groups: the plant (factory) of each row",
                             parameters=("fixed_effects",))
        if sample_weight is not None:
            stats = self._weighted_round(consortium, parts, factories, sample_weight, n, names, target)
        elif self.fixed_effects:
            stats = consortium.decrypt_aggregate(
                [self._encrypt(consortium, factory, X_part, y_part, names, target, WithinStatisticsRequest())
                 for factory, (X_part, y_part) in parts.items()], WITHIN_STATISTICS)
        else:
            stats = consortium.statistics_of_arrays(parts, names, target,
                                                    sources={factory: f"factory {factory!r}" for factory in parts})
        model = solve(stats, ridge=float(self.ridge), fit_intercept=bool(self.fit_intercept))
        model.release_covariance = covariance_releasable(model.contributors_, int(self.min_contributors))
        if self.cov_type != "nonrobust":  # the second round: residual moments of the released model
            request = ResidualMomentsRequest(model, self.cov_type, int(self.maxlags or 0))
            moments = consortium.decrypt_aggregate(
                [self._encrypt(consortium, factory, X_part, y_part, names, target, request)
                 for factory, (X_part, y_part) in parts.items()], RESIDUAL_MOMENTS)
            model.set_robust_covariance(moments, self.cov_type)
        if self.fixed_effects:  # each plant's own intercept, as the plant computes it from its rows
            self.plant_intercepts_: dict[str, float] = {
                factory: model.plant_intercept(X_part, y_part) for factory, (X_part, y_part) in parts.items()}
        self.model_: LinearModel = model
        self.coef_: np.ndarray = model.coef_.copy()
        self.intercept_: float = model.intercept_
        self.contributors_: list[str] = list(stats.contributors)
        self.results_: InferenceResults = model.inference()
        return self

    @staticmethod
    def _encrypt(consortium: Consortium, factory: str, X_part: np.ndarray, y_part: np.ndarray, names: list[str],
                 target: str, request: Any, extra: Mapping[str, np.ndarray] | None = None) -> Any:
        """One factory's bundle of ``request``'s kind, from its own rows (nothing cleaned: fit validated them);
        ``extra`` columns (the weights) join its table."""
        frame = pd.DataFrame(X_part, columns=names)
        frame[target] = y_part
        for name, values in (extra or {}).items():
            frame[name] = values
        result = encrypt_table(frame, target, consortium.public_key, features=names, factory_id=factory,
                               request=request, encoding=consortium.encoding or Encoding(), cleaning=None,
                               insecure_test_key=True)
        warn_rounding(result.report, f"factory {factory!r}")
        return result.bundle

    # --- sample_weight: weighted least squares (statsmodels WLS) -------------------------------------
    def _weighted_round(self, consortium: Consortium, parts: Mapping[str, tuple[np.ndarray, np.ndarray]],
                        factories: Mapping[str, np.ndarray], sample_weight: Any, n: int, names: list[str],
                        target: str) -> WeightedStatistics:
        """One round of ``weighted_statistics``: each factory encrypts the exact weighted sums of its rows (the
        weights a column of its table, on the encoding's grid), the key holder decrypts only their sum."""
        weights = np.asarray(sample_weight.to_numpy() if isinstance(sample_weight, (pd.Series, pd.DataFrame))
                             else sample_weight, dtype=object)
        _refuse_inexact_integers(weights, "sample_weight")
        try:
            weights = weights.astype(np.float64).reshape(-1) if weights.ndim <= 1 else weights.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError("sample_weight must be numeric") from None
        if weights.shape != (n,):
            raise DataError(f"sample_weight must hold one weight for each of the {_count(n, 'sample')}, "
                            f"got shape {weights.shape}")
        bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
        if len(bad):
            raise DataError(f"sample_weight: row {int(bad[0]) + 1}: a weight that is negative or not finite "
                            "(precision weights must be finite and >= 0)")
        if not weights.any():
            raise DataError("sample_weight: every weight is zero; at least one must be positive")
        column = "sample_weight"
        while column in (*names, target):
            column += "_"
        encoding = consortium.encoding or Encoding()
        encoding.check_range(weights, column, "sample_weight")
        bundles = [self._encrypt(consortium, factory, X_part, y_part, names, target,
                                 WeightedStatisticsRequest(column), {column: weights[factories[factory]]})
                   for factory, (X_part, y_part) in parts.items()]
        sums: WeightedStatistics = consortium.decrypt_aggregate(bundles, WEIGHTED_STATISTICS)
        return sums

    def _factories(self, groups: Any, n: int) -> dict[str, np.ndarray]:
        """Row indices of each factory, in order of first appearance."""
        if groups is None:
            k = int(self.min_contributors)
            if n < k:
                raise DataError(f"{_count(n, 'sample')}: without groups the rows are split into min_contributors={k} "
                                "factories of at least one row each")
            return {f"factory-{i + 1}": rows for i, rows in enumerate(np.array_split(np.arange(n), k))}
        labels = np.asarray(groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else groups, dtype=object)
        if labels.ndim != 1 or len(labels) != n:
            raise DataError(f"groups must name the factory of each of the {_count(n, 'row')}, "
                            f"got shape {labels.shape}")
        codes, uniques = pd.factorize(labels)  # in order of first appearance; missing labels get -1
        if (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            raise DataError(f"groups: row {row + 1} names no factory ({labels[row]!r})")
        factories: dict[str, object] = {}
        for code, label in enumerate(uniques):
            factory = str(label)
            if not FACTORY_ID_PATTERN.fullmatch(factory):
                row = int(np.argmax(codes == code))
                raise DataError(f"groups: row {row + 1}: {factory!r} is not a factory id (1-64 letters, digits, "
                                "'.', '_' or '-', starting with a letter or digit)")
            if factory in factories:
                raise DataError(f"groups: labels {factories[factory]!r} and {label!r} both name factory {factory!r}")
            factories[factory] = label
        return {factory: np.flatnonzero(codes == code) for code, factory in enumerate(factories)}

    def fit_parties(self, parties: Mapping[str, tuple[Any, Any]]) -> FederatedLinearRegression:
        """Fit on each factory's own ``(X, y)``: ``{factory_id: (X, y)}``, the former ``fit(parties)``.

        The same as :meth:`fit` on the stacked rows with ``groups`` naming each row's factory.
        DataFrame columns are matched by name to the first party's (their order may differ);
        the target is named after the first party's ``y`` Series, if it has a name.
        """
        if not isinstance(parties, Mapping) or not parties:
            raise UsageError("fit_parties expects a mapping {factory_id: (X, y)} of at least one party")
        columns: list[Any] | None = None
        blocks_X: list[Any] = []
        blocks_y: list[np.ndarray] = []
        groups: list[str] = []
        first_y = next(iter(parties.values()))[1]
        for party, (X, y) in parties.items():
            if isinstance(X, pd.DataFrame):
                if X.columns.has_duplicates:
                    dup = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
                    raise DataError(f"party {party!r}: duplicate column name(s) {', '.join(map(repr, dup))}")
                if columns is None:
                    columns = list(X.columns)
                missing = [c for c in columns if c not in X.columns]
                extra = [c for c in X.columns if c not in columns]
                if missing or extra:
                    raise DataError(f"party {party!r}: columns differ from the first party's: "
                                    f"missing {[str(c) for c in missing]}, extra {[str(c) for c in extra]}")
                X = X[columns]
            elif columns is not None:
                raise DataError(f"party {party!r}: X is not a DataFrame, but the first party's is")
            elif blocks_X and isinstance(blocks_X[0], pd.DataFrame):
                raise DataError(f"party {party!r}: X is not a DataFrame, but the first party's is")
            if not isinstance(X, pd.DataFrame):
                X = np.asarray(X)
                if X.ndim != 2:
                    raise DataError(f"party {party!r}: X must be two-dimensional, got shape {X.shape}")
                if blocks_X and X.shape[1] != blocks_X[0].shape[1]:
                    raise DataError(f"party {party!r}: {X.shape[1]} columns, expected {blocks_X[0].shape[1]}")
            target = np.asarray(y).reshape(-1)
            if len(target) != len(X):
                raise DataError(f"party {party!r}: X has {len(X)} rows but y has {len(target)}")
            _refuse_inexact_integers(y, f"party {party!r}: y")
            blocks_X.append(X)
            blocks_y.append(target)
            groups.extend([str(party)] * len(X))
        X_all = (pd.concat(blocks_X, ignore_index=True) if columns is not None else np.vstack(blocks_X))
        name = first_y.name if isinstance(first_y, pd.Series) else None
        y_all = pd.Series(np.concatenate(blocks_y), name=name)
        return self.fit(X_all, y_all, groups=np.array(groups, dtype=object))

    # --- prediction -------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def predict(self, X: Any, groups: Any = None) -> np.ndarray:
        """Predictions ``X · coef_ + intercept_`` (the columns of ``fit``, in the same order). A fixed-effects fit
        predicts for the plants it was fitted on: ``groups`` names each row's plant, whose own intercept is added."""
        check_is_fitted(self)
        arr = _validated(self, X, reset=False)
        names = list(getattr(self, "feature_names_in_", self.model_.feature_names_in_))
        _check_finite(arr, names)
        predictions = self.model_.predict(arr)
        if not hasattr(self, "plant_intercepts_"):
            if groups is not None:
                raise UsageError("groups are for a fixed-effects fit; this one has one intercept",
                                 parameters=("fixed_effects",))
            return predictions
        if groups is None:
            raise UsageError("a fixed-effects fit predicts for known plants: pass groups (each row's plant)",
                             parameters=("fixed_effects",))
        labels = np.asarray(groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else groups, dtype=object)
        if labels.shape != (len(arr),):
            raise DataError(f"groups must name the plant of each of the {_count(len(arr), 'row')}")
        for row, label in enumerate(labels):
            if str(label) not in self.plant_intercepts_:
                raise DataError(f"groups: row {row + 1}: {str(label)!r} is not a plant of the fit")
        return predictions + np.array([self.plant_intercepts_[str(label)] for label in labels])
