"""Factory side: compute the statistics locally, pack them and encrypt them.

``encrypt_statistics`` is what ``hefed encrypt`` runs. Nothing but ciphertexts
and public metadata leaves the function: the plaintext statistics are
dropped as soon as they are packed and encrypted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle, check_factory_id
from .data import default_features, read_table, split_holdout
from .encoding import Encoding
from .encryption import DEFAULT_METHOD, encryption_method
from .errors import UsageError
from .identity import FactoryIdentity, Roster
from .preprocess import ColumnSummary, PreprocessReport, preprocess
from .privacy import Bounds
from .rounds import Round, mask_and_sign
from .statistics import SufficientStatistics, compute_statistics
from .streaming import stream_fold_statistics, stream_statistics


def encrypt_bundle(
    stats: SufficientStatistics, public_key: PaillierPublicKey, factory_id: str, encryption: str | None = None
) -> Bundle:
    """Pack and encrypt one factory's statistics into a :class:`Bundle` (``encryption``:
    ``"djn"``, the default, or ``"classic"``; see :mod:`hefed.encryption`)."""
    return Bundle.seal("statistics", public_key, stats.target, stats.features, stats.encoding, factory_id,
                       stats.to_vector(), encryption=encryption)


def encrypt_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    encryption: str | None = None,
) -> Bundle:
    """Compute a factory's exact statistics from ``data`` and encrypt them.

    ``data`` is a DataFrame or a CSV/Parquet path (read in chunks, so memory does not
    grow with the file); ``features`` defaults to every numeric column but ``target``.
    ``encryption`` is ``"djn"`` (default) or ``"classic"``. Returns the encrypted :class:`Bundle`.
    """
    check_factory_id(factory_id)
    stats = compute_statistics(data, target, features, encoding, factory_id)
    return encrypt_bundle(stats, public_key, factory_id, encryption)


@dataclass
class EncryptResult:
    """What :func:`encrypt_table` produced: the bundle, the holdout kept back, the preprocessing report."""

    bundle: Bundle
    holdout: pd.DataFrame | None = None
    report: PreprocessReport | None = None


MODES = ("statistics", "coefficients", "summary")


def encrypt_table(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    *,
    mode: str = "statistics",
    ridge: float = 0.0,
    folds: int = 0,
    test_fraction: float = 0.0,
    seed: int = 0,
    summary: ColumnSummary | None = None,
    impute: str | None = None,
    missing: str = "error",
    max_z: float | None = None,
    round_: Round | None = None,
    identity: FactoryIdentity | None = None,
    roster: Roster | None = None,
    bounds: Bounds | None = None,
    encryption: str = DEFAULT_METHOD,
) -> EncryptResult:
    """Everything ``hefed encrypt`` does, in order: read the table; in ``summary`` mode encrypt
    the per-column count/Σx/Σx² (missing values allowed) and stop; otherwise handle missing
    values and outliers (:func:`~hefed.preprocess.preprocess`, with the consortium ``summary``
    for ``impute="mean"`` and ``max_z``), keep a reproducible holdout of ``test_fraction`` of
    the rows out, and encrypt the remaining rows' statistics (per fold with ``folds`` K >= 2),
    or in ``coefficients`` mode the factory's own n-weighted model fitted with ``ridge``.
    With a ``round_`` (and the factory's ``identity`` and the consortium ``roster``) the
    bundle is masked and signed for that round (:mod:`hefed.rounds`). With ``bounds`` the
    used columns are clipped to the declared bounds first (for a differentially private release).
    ``encryption`` is ``"djn"`` (default) or ``"classic"`` (:mod:`hefed.encryption`).
    """
    if (round_ is None) != (identity is None) or (round_ is None) != (roster is None):
        raise UsageError("a masked round needs the round, the factory's identity and the roster together")
    if identity is not None and identity.factory_id != factory_id:
        raise UsageError(f"the identity belongs to {identity.factory_id!r}, not {factory_id!r}")
    with encryption_method(encryption):
        result = _encrypt_table(data, target, public_key, features, factory_id, encoding, mode, ridge, folds,
                                test_fraction, seed, summary, impute, missing, max_z, bounds)
    if round_ is not None and identity is not None and roster is not None:
        result.bundle = mask_and_sign(result.bundle, identity, roster, round_)
    return result


def _encrypt_table(
    data: pd.DataFrame | str | os.PathLike[str], target: str, public_key: PaillierPublicKey,
    features: Sequence[str] | None, factory_id: str, encoding: Encoding | None, mode: str, ridge: float,
    folds: int, test_fraction: float, seed: int, summary: ColumnSummary | None, impute: str | None,
    missing: str, max_z: float | None, bounds: Bounds | None,
) -> EncryptResult:
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if folds and mode != "statistics":
        raise UsageError("folds apply to statistics mode only")
    check_factory_id(factory_id)
    if mode == "statistics" and not test_fraction and not isinstance(data, pd.DataFrame):
        # Without a holdout the file is read block by block: memory does not grow with the file.
        cleaning = {"summary": summary, "impute": impute, "missing": missing, "max_z": max_z, "bounds": bounds}
        if folds:
            from .crossval import encrypt_folds  # crossval builds on this module

            fold_stats, report = stream_fold_statistics(data, target, features, encoding, factory_id, folds, seed,
                                                        **cleaning)
            return EncryptResult(encrypt_folds(fold_stats, public_key, factory_id), None, report)
        stats, report = stream_statistics(data, target, features, encoding, factory_id, **cleaning)
        return EncryptResult(encrypt_bundle(stats, public_key, factory_id), None, report)
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    source = str(data) if not isinstance(data, pd.DataFrame) else factory_id
    if mode == "summary":
        from .preprocess import encrypt_summary

        return EncryptResult(encrypt_summary(frame, target, public_key, features, factory_id, encoding))
    frame, report = preprocess(frame, target, features, summary, impute, missing, max_z, source)
    if bounds is not None:
        used = [*(features or default_features(frame, target)), target]
        frame, report.clipped_cells = bounds.clip(frame, used)
    holdout = None
    if test_fraction:
        frame, holdout = split_holdout(frame, test_fraction, seed)
    if mode == "coefficients":
        from .coefficients import encrypt_coefficients  # coefficients builds on this module

        bundle = encrypt_coefficients(frame, target, public_key, features, factory_id, encoding, ridge)
    elif folds:
        from .crossval import encrypt_fold_statistics  # crossval builds on this module

        bundle = encrypt_fold_statistics(frame, target, public_key, features, factory_id, encoding, folds, seed)
    else:
        bundle = encrypt_statistics(frame, target, public_key, features, factory_id, encoding)
    return EncryptResult(bundle, holdout, report)
