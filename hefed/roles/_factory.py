"""Factory side: a factory's own rows in, one encrypted (optionally masked and signed) bundle out.

Nothing but ciphertexts and public metadata leaves these functions: the plain sums are
dropped as soon as they are packed and encrypted. What is computed is a bundle kind's
request (:mod:`hefed.kinds`); how rows are cleaned, held out, masked and encrypted are typed
options (:class:`~hefed.data.Cleaning`, :class:`~hefed.data.Holdout`,
:class:`~hefed.protocol.Masking`, ``encryption``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from phe import PaillierPublicKey

from ..data import Cleaning, Holdout, PreprocessReport, Table
from ..errors import UsageError
from ..kinds import (
    STATISTICS,
    EvaluationRequest,
    Header,
    Kind,
    KindRequest,
    PublishedModel,
    StatisticsRequest,
    evaluation_sums,
    kind_for_request,
)
from ..primitives.encryption import DEFAULT_METHOD, Encryption
from ..protocol import Bundle, Masking, check_factory_id
from ..stats import Encoding, EvaluationSums, SufficientStatistics

#: The default cleaning: refuse a row with a missing value, naming it (nothing is dropped silently).
REFUSE_GAPS = Cleaning()


@dataclass
class EncryptResult:
    """What :func:`encrypt_table` produced: the bundle, the holdout kept back, what cleaning did."""

    bundle: Bundle
    holdout: pd.DataFrame | None = None
    report: PreprocessReport | None = None


def encrypt_table(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    *,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    request: KindRequest | None = None,
    encoding: Encoding | None = None,
    cleaning: Cleaning | None = REFUSE_GAPS,
    holdout: Holdout | None = None,
    masking: Masking | None = None,
    encryption: Encryption = DEFAULT_METHOD,
) -> EncryptResult:
    """Everything ``hefed encrypt`` does: compute the ``request``'s plain sums from the factory's
    table, pack and encrypt them, and mask and sign them for a round.

    ``data`` is a DataFrame or a CSV/Parquet path (streamed block by block when no holdout is
    asked for); ``features`` default to every numeric column but ``target``; ``request`` is a
    bundle kind's request (default: :class:`~hefed.kinds.StatisticsRequest`); ``cleaning``
    (default: refuse missing values, naming the rows; ``None``: clean nothing) and ``holdout``
    apply to the kinds that read cleaned rows (statistics, fold statistics, coefficients); the
    others read the table as it is. With ``masking`` the bundle
    is masked and signed for that round (:mod:`hefed.protocol`).
    """
    check_factory_id(factory_id)
    request = request if request is not None else StatisticsRequest()
    kind = kind_for_request(request)
    if masking is not None and masking.identity.factory_id != factory_id:
        raise UsageError(f"the identity belongs to {masking.identity.factory_id!r}, not {factory_id!r}")
    table = Table(data, target, features, factory_id, cleaning if kind.cleans_rows else None, holdout)
    computed = kind.compute(table, encoding or Encoding(), request)
    bundle = Bundle.seal(kind, computed.header, computed.sums, public_key, factory_id, source=table.source,
                         encryption=encryption)
    if masking is not None:
        bundle = masking.apply(bundle)
    return EncryptResult(bundle, computed.holdout, computed.report)


def encrypt_sums(
    kind: str | Kind[Any, Any], header: Header, sums: Any, public_key: PaillierPublicKey, factory_id: str,
    encryption: Encryption = DEFAULT_METHOD,
) -> Bundle:
    """Pack and encrypt plain sums a factory already computed (e.g. a FedAvg round's local model)."""
    return Bundle.seal(kind, header, sums, public_key, factory_id, encryption=encryption)


def encrypt_bundle(
    stats: SufficientStatistics, public_key: PaillierPublicKey, factory_id: str,
    encryption: Encryption = DEFAULT_METHOD,
) -> Bundle:
    """Pack and encrypt one factory's already computed statistics into a ``statistics`` bundle."""
    header = Header(stats.target, tuple(stats.features), stats.encoding)
    return Bundle.seal(STATISTICS, header, stats, public_key, factory_id, encryption=encryption)


def encrypt_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    encryption: Encryption = DEFAULT_METHOD,
) -> Bundle:
    """Compute a factory's exact statistics from ``data`` and encrypt them (nothing is cleaned:
    a missing value is refused, naming its cell).

    ``data`` is a DataFrame or a CSV/Parquet path (read in blocks, so memory does not grow
    with the file); ``features`` defaults to every numeric column but ``target``.
    """
    return encrypt_table(data, target, public_key, features=features, factory_id=factory_id, encoding=encoding,
                         cleaning=None, encryption=encryption).bundle


def evaluate_local(
    model: PublishedModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None = None,
    encoding: Encoding | None = None,
) -> EvaluationSums:
    """A factory's own exact holdout sums and metrics for ``model`` (plaintext; nothing leaves the factory)."""
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    table = Table(data, target or model.target_, factory_id=source if isinstance(data, pd.DataFrame) else "factory",
                  cleaning=None)
    return evaluation_sums(model, table, encoding or Encoding())[0]


def encrypt_evaluation(
    model: PublishedModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None,
    public_key: PaillierPublicKey, factory_id: str, encoding: Encoding | None = None,
    encryption: Encryption = DEFAULT_METHOD,
) -> Bundle:
    """Encrypt a factory's exact holdout residual sums for ``model`` into an ``evaluation`` bundle."""
    return encrypt_table(data, target or model.target_, public_key, factory_id=factory_id,
                         request=EvaluationRequest(model), encoding=encoding, encryption=encryption).bundle
