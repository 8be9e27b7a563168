"""Per-kind shorthands for the tests, each one call of the library's generic API.

hefed has one factory entry point for every bundle kind (:func:`hefed.encrypt_table` with a
kind's typed request) and one key-holder entry point (:func:`hefed.decrypt_bundle`); these
wrappers keep the tests' call sites short and name the kind they exercise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hefed.kinds import (
    COEFFICIENTS,
    CoefficientsRequest,
    FoldStatisticsRequest,
    Header,
    SummaryRequest,
    coefficient_sums,
    load_result,
)
from hefed.roles import decrypt_bundle, encrypt_sums, encrypt_table


def encrypt_coefficients(data, target, public_key, features=None, factory_id="factory", encoding=None, ridge=0.0,
                         fit_intercept=True):
    """A factory's own exact model, n-weighted, in a ``coefficients`` bundle (nothing cleaned)."""
    request = CoefficientsRequest(ridge, fit_intercept)
    return encrypt_table(data, target, public_key, features=features, factory_id=factory_id, request=request,
                         encoding=encoding).bundle


def coefficient_bundle(model, public_key, factory_id, encoding=None):
    """A given model's ``n`` and ``n·θ`` in a ``coefficients`` bundle."""
    from hefed.stats import Encoding

    parameters = CoefficientsRequest(fit_intercept=model.fit_intercept).parameters()
    features = [str(f) for f in model.feature_names_in_]
    sums = coefficient_sums(model.target_, features, list(model.coef_), model.intercept_, model.n_samples_,
                            parameters, factory_id)
    header = Header(model.target_, tuple(features), encoding or Encoding(), parameters)
    return encrypt_sums(COEFFICIENTS, header, sums, public_key, factory_id)


def encrypt_fold_statistics(data, target, public_key, features=None, factory_id="factory", encoding=None, folds=5,
                            seed=0):
    """A factory's per-fold statistics in a ``fold_statistics`` bundle."""
    return encrypt_table(data, target, public_key, features=features, factory_id=factory_id,
                         request=FoldStatisticsRequest(folds, seed), encoding=encoding).bundle


def encrypt_summary(data, target, public_key, features=None, factory_id="factory", encoding=None):
    """A factory's per-column count, Σx, Σx² in a ``summary`` bundle (missing values allowed)."""
    return encrypt_table(data, target, public_key, features=features, factory_id=factory_id,
                         request=SummaryRequest(), encoding=encoding).bundle


def local_summary(data, target, features: Sequence[str] | None = None, encoding=None):
    """A factory's own summary of its table (plaintext)."""
    from hefed.data import Table
    from hefed.kinds import local_summary as summary_of
    from hefed.stats import Encoding

    source_id = "data"
    return summary_of(Table(data, target, features, source_id, cleaning=None), encoding or Encoding())


def decrypt_coefficients(bundle, private_key, min_contributors=3, roster=None) -> Any:
    return decrypt_bundle(bundle, private_key, min_contributors, roster, kind="coefficients", allow_unsigned=True)


def decrypt_fold_statistics(bundle, private_key, min_contributors=3, roster=None) -> Any:
    return decrypt_bundle(bundle, private_key, min_contributors, roster, kind="fold_statistics", allow_unsigned=True)


def decrypt_summary(bundle, private_key, min_contributors=3, roster=None) -> Any:
    return decrypt_bundle(bundle, private_key, min_contributors, roster, kind="summary", allow_unsigned=True)


def load_decrypted(path) -> Any:
    """What ``hefed solve`` reads: decrypted statistics, fold statistics or a coefficient aggregate."""
    return load_result(path, ("statistics", "fold_statistics", "coefficients"))
