"""Factory side: compute the statistics locally, pack them and encrypt them.

``encrypt_statistics`` is what ``hefed encrypt`` runs. Nothing but ciphertexts
and public metadata leaves the function: the plaintext statistics are
dropped as soon as they are packed and encrypted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle
from .data import read_table, split_holdout
from .encoding import Encoding
from .errors import OverflowRiskError, UsageError
from .layouts import payload_layout
from .primitives.packing import PackingError
from .primitives.paillier import encrypt_raw
from .statistics import SufficientStatistics, compute_statistics

FACTORY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_factory_id(factory_id: str) -> str:
    """Factory ids are short names of letters, digits, '.', '_' and '-'."""
    if not isinstance(factory_id, str) or not FACTORY_ID_PATTERN.match(factory_id):
        raise UsageError(
            f"factory id {factory_id!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return factory_id


def encrypt_bundle(stats: SufficientStatistics, public_key: PaillierPublicKey, factory_id: str) -> Bundle:
    """Pack and encrypt one factory's statistics into a :class:`Bundle`."""
    check_factory_id(factory_id)
    layout = payload_layout("statistics", len(stats.features), stats.encoding, public_key)
    try:
        plaintexts = layout.pack([*stats.to_vector(), 1])
    except PackingError as exc:
        raise OverflowRiskError(f"{factory_id}: a statistic exceeds the encoding's declared bounds ({exc})") from None
    ciphertexts = [encrypt_raw(public_key, p) for p in plaintexts]
    return Bundle(
        "statistics", public_key, stats.target, list(stats.features), stats.encoding,
        [factory_id], ciphertexts, layout.digest(),
    )


def encrypt_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
) -> Bundle:
    """Compute a factory's exact statistics from ``data`` and encrypt them.

    ``data`` is a DataFrame or a CSV/Parquet path; ``features`` defaults to every
    numeric column but ``target``. Returns the encrypted :class:`Bundle`.
    """
    check_factory_id(factory_id)
    stats = compute_statistics(data, target, features, encoding, factory_id)
    return encrypt_bundle(stats, public_key, factory_id)


def encrypt_with_holdout(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    test_fraction: float = 0.0,
    seed: int = 0,
    mode: str = "statistics",
    ridge: float = 0.0,
) -> tuple[Bundle, pd.DataFrame | None]:
    """What ``hefed encrypt`` runs: optionally keep a reproducible random holdout out, then
    encrypt the training rows' statistics (``mode="statistics"``) or the factory's own
    n-weighted model (``mode="coefficients"``, fitted with ``ridge``).

    Returns the bundle and the holdout rows (``None`` when ``test_fraction`` is 0),
    which the factory keeps for evaluation.
    """
    if mode not in ("statistics", "coefficients"):
        raise UsageError(f"mode must be 'statistics' or 'coefficients', got {mode!r}")
    holdout = None
    if test_fraction:
        frame = data if isinstance(data, pd.DataFrame) else read_table(data)
        data, holdout = split_holdout(frame, test_fraction, seed)
    if mode == "coefficients":
        from .coefficients import encrypt_coefficients  # coefficients builds on this module

        return encrypt_coefficients(data, target, public_key, features, factory_id, encoding, ridge), holdout
    return encrypt_statistics(data, target, public_key, features, factory_id, encoding), holdout
