"""Factory side: a factory's own rows in, one encrypted (optionally masked and signed) bundle out.

Nothing but ciphertexts and public metadata leaves these functions: the plain sums are
dropped as soon as they are packed and encrypted. What is computed is a bundle kind's
request (:mod:`hefed.kinds`); how rows are cleaned, held out, masked and encrypted are typed
options (:class:`~hefed.data.Cleaning`, :class:`~hefed.data.Holdout`,
:class:`~hefed.protocol.Masking`, ``encryption``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from phe import PaillierPublicKey

from .._keys import check_public_key, key_fingerprint
from ..data import Cleaning, FileFormat, Holdout, PreprocessReport, Table, warn_rounding
from ..errors import ReleaseError, UsageError
from ..kinds import (
    STATISTICS,
    EvaluationRequest,
    Header,
    Kind,
    KindRequest,
    PublishedModel,
    StatisticsRequest,
    evaluation_sums,
    get_kind,
    kind_for_request,
)
from ..primitives.encryption import DEFAULT_METHOD, Encryption
from ..protocol import Bundle, Masking, Study, check_factory_id
from ..stats import ColumnSummary, Encoding, EvaluationSums, SufficientStatistics

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
    target: str | None = None,
    public_key: PaillierPublicKey | None = None,
    *,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    request: KindRequest | None = None,
    encoding: Encoding | None = None,
    cleaning: Cleaning | None = REFUSE_GAPS,
    holdout: Holdout | None = None,
    masking: Masking | None = None,
    encryption: Encryption = DEFAULT_METHOD,
    file_format: FileFormat | None = None,
    study: Study | None = None,
    summary: ColumnSummary | None = None,
    insecure_test_key: bool = False,
) -> EncryptResult:
    """Everything ``hefed encrypt`` does: compute the ``request``'s plain sums from the factory's
    table, pack and encrypt them, and mask and sign them for a round.

    ``data`` is a DataFrame or a table file (CSV, TSV, .xlsx, Parquet) (streamed block by block when no holdout is
    asked for); ``features`` default to every numeric column but ``target``; ``request`` is a
    bundle kind's request (default: :class:`~hefed.kinds.StatisticsRequest`); ``cleaning``
    (default: refuse missing values, naming the rows; ``None``: clean nothing) and ``holdout``
    apply to the kinds that read cleaned rows (statistics, fold statistics, coefficients); the
    others read the table as it is. With ``masking`` the bundle
    is masked and signed for that round (:mod:`hefed.protocol`).

    With a ``study`` everything the factory computes comes from it (:func:`encrypt_for_study`):
    ``target``, ``public_key``, ``features``, ``request``, ``encoding``, ``cleaning`` and ``holdout``
    may be left out, and any given must agree with the study (a contradiction is refused);
    ``summary`` is the consortium summary the study's cleaning imputes from. A key below 2048 bits is refused
    unless ``insecure_test_key`` (:func:`~hefed._keys.check_public_key`).
    """
    if study is not None:
        kind_name = kind_for_request(request).name if request is not None else "statistics"
        given_cleaning = None if cleaning is REFUSE_GAPS else cleaning  # the default is no contradiction
        _agree_with_study(study, kind_name, target=target, public_key=public_key, features=features, request=request,
                          encoding=encoding, cleaning=given_cleaning, holdout=holdout)
        return encrypt_for_study(data, study, factory_id=factory_id, kind=kind_name,
                                 model=getattr(request, "model", None), summary=summary, masking=masking,
                                 encryption=encryption, file_format=file_format,
                                 insecure_test_key=insecure_test_key)
    if target is None or public_key is None:
        raise UsageError("encrypting needs the target column and the public key (or a study naming both)",
                         parameters=("target", "public_key"))
    check_public_key(public_key, insecure_test_key=insecure_test_key)
    if summary is not None:
        cleaning = replace(cleaning or Cleaning(), summary=summary)
    check_factory_id(factory_id)
    request = request if request is not None else StatisticsRequest()
    kind = kind_for_request(request)
    table = Table(data, target, features, factory_id, cleaning if kind.cleans_rows else None, holdout, file_format)
    return _encrypt(table, kind, request, encoding or Encoding(), public_key, masking, encryption, None)


def encrypt_for_study(
    data: pd.DataFrame | str | os.PathLike[str],
    study: Study,
    *,
    factory_id: str,
    kind: str = "statistics",
    model: PublishedModel | None = None,
    summary: ColumnSummary | None = None,
    masking: Masking | None = None,
    encryption: Encryption = DEFAULT_METHOD,
    file_format: FileFormat | None = None,
    insecure_test_key: bool = False,
) -> EncryptResult:
    """What ``hefed encrypt --study`` does: everything the factory computes comes from its own copy of the study.

    The key, the target and features (categorical ones one-hot encoded with the study's levels),
    the encoding, how rows are cleaned and held out, and the parameters of ``kind`` are the study's;
    so must be the roster of a masked round. Only what the study
    cannot fix is given here: the model an ``evaluation`` measures, and the consortium ``summary``
    the study's cleaning imputes from. The bundle carries the study's digest (signed with it in a
    masked round), so the aggregator and the key holder refuse it in any other study.
    """
    check_factory_id(factory_id)
    check_public_key(study.public_key, insecure_test_key=insecure_test_key, source="the study's public key")
    study.check_roster(masking.roster if masking else None, masking.round if masking else None)
    if model is not None:  # before any row is read: the model comes from whoever asks
        study.check_model(model)
        if get_kind(kind).needs_signed_model and study.keyholder is None:
            # the meat of a model nobody vouches for (β = 0 and a huge intercept) is a sum of each plant's
            # (n_g, Σx_g) outer products: only models the study's key holder signed are measured
            raise ReleaseError("residual moments are computed only for a model the study's key holder signed; this "
                               "study names no key holder (hefed study new --key-holder); nothing was read")
    request = study.request(kind, **({"model": model} if model is not None else {}))
    bundle_kind = kind_for_request(request)
    cleaning = study.cleaning_with(summary) if bundle_kind.cleans_rows else None
    table = Table(data, study.target.name, study.model_features, factory_id, cleaning,
                  study.holdout if bundle_kind.cleans_rows else None, file_format,
                  study.categories)
    return _encrypt(table, bundle_kind, request, study.encoding, study.public_key, masking, encryption, study.digest)


def study_holdout(
    data: pd.DataFrame | str | os.PathLike[str], study: Study, *, factory_id: str = "factory",
    summary: ColumnSummary | None = None, file_format: FileFormat | None = None,
) -> pd.DataFrame:
    """The rows a study holds out of a factory's table, the very rows :func:`encrypt_for_study` keeps
    back from the statistics: cleaned as the study says (``summary`` when it imputes or drops
    outliers), then split by the study's holdout; every cleaned row when it holds none out.
    Categorical columns come one-hot encoded, as an evaluation reads them."""
    table = Table(data, study.target.name, study.model_features, factory_id, study.cleaning_with(summary),
                  study.holdout, file_format, study.categories)
    train, _, held_out = table.prepared()
    return held_out if held_out is not None else train


#: the library parameters (CLI options) each argument next to a study stands for
_AGREED_PARAMETERS = {"target": ("target",), "public_key": ("public_key",), "features": ("features",),
                      "encoding": ("frac_bits", "int_bits", "max_contributors"), "holdout": ("test_fraction", "seed")}


def _agree_with_study(study: Study, kind: str, **given: Any) -> None:
    """Refuse any argument given next to a study that says something else than the study."""
    agreed = {
        "target": study.target.name, "public_key": study.public_key, "encoding": study.encoding,
        "holdout": study.holdout if get_kind(kind).cleans_rows else None,
    }
    for name, value in given.items():
        if value is None:
            continue
        if name == "features":  # the model's columns or the table's (before one-hot encoding), in any order
            if sorted(value) not in (sorted(study.model_features), sorted(study.feature_names)):
                raise UsageError(f"features {', '.join(value)} contradict the study's "
                                 f"{', '.join(study.feature_names)}", parameters=("features",))
            continue
        if name == "request":
            if getattr(value, "model", None) is None and value != study.request(kind):
                raise UsageError(f"the {kind} parameters {_short(value)} contradict the study's "
                                 f"{_short(study.request(kind))}", parameters=tuple(_fields(value)))
            continue
        if name == "cleaning":
            expected = study.cleaning_with(value.summary)
            if value != expected:
                raise UsageError("the cleaning options contradict the study's "
                                 f"(missing={study.cleaning.missing}, impute={study.cleaning.impute}, "
                                 f"max_z={study.cleaning.max_z})", parameters=("missing", "impute", "max_z"))
            continue
        if value != agreed[name]:
            raise UsageError(f"{name} {_short(value)} contradicts the study's "
                             f"{_short(agreed[name])}", parameters=_AGREED_PARAMETERS[name])


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) \
        else {}


def _short(value: Any) -> str:
    """How a message shows a value: a key by its fingerprint, an option object by its fields, nothing as none."""
    if value is None:
        return "none"
    if isinstance(value, PaillierPublicKey):
        return f"(fingerprint {key_fingerprint(value)})"
    if isinstance(value, Encoding):
        return ", ".join(f"{k}={v}" for k, v in value.to_dict().items() if k != "scheme" and v not in (None, {}, []))
    fields = _fields(value)
    if fields:
        return "(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
    return repr(value)


def _encrypt(
    table: Table, kind: Kind[Any, Any], request: Any, encoding: Encoding, public_key: PaillierPublicKey,
    masking: Masking | None, encryption: Encryption, study: str | None,
) -> EncryptResult:
    """Compute the kind's plain sums from the table, seal them, and mask and sign them for a round."""
    if masking is not None and masking.identity.factory_id != table.factory_id:
        raise UsageError(f"the identity belongs to {masking.identity.factory_id!r}, not {table.factory_id!r}")
    computed = kind.compute(table, encoding, request)
    bundle = Bundle.seal(kind, computed.header, computed.sums, public_key, table.factory_id, source=table.source,
                         encryption=encryption, study=study)
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

    ``data`` is a DataFrame or a table file (CSV, TSV, .xlsx, Parquet) (read in blocks, so memory does not grow
    with the file); ``features`` defaults to every numeric column but ``target``.
    """
    result = encrypt_table(data, target, public_key, features=features, factory_id=factory_id, encoding=encoding,
                           cleaning=None, encryption=encryption)
    warn_rounding(result.report, "data" if isinstance(data, pd.DataFrame) else str(data))
    return result.bundle


def evaluate_local(
    model: PublishedModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None = None,
    encoding: Encoding | None = None, study: Study | None = None,
) -> EvaluationSums:
    """A factory's own exact holdout sums and metrics for ``model`` (plaintext; nothing leaves the factory).

    With a ``study`` the model must have been solved in it and be of its columns; the table's categorical
    columns are one-hot encoded with the study's levels and the study's encoding is used.
    """
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    categories: dict[str, tuple[str, ...]] = {}
    if study is not None:
        study.check_digest(getattr(model, "study_", None), "the model")
        study.check_model(model)
        if target not in (None, study.target.name):
            raise UsageError(f"target {target!r} contradicts the study's {study.target.name!r}", parameters=("target",))
        target, encoding = study.target.name, study.encoding
        categories = study.categories
    table = Table(data, target or model.target_, factory_id=source if isinstance(data, pd.DataFrame) else "factory",
                  cleaning=None, categories=categories)
    return evaluation_sums(model, table, encoding or Encoding())[0]


def encrypt_evaluation(
    model: PublishedModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None,
    public_key: PaillierPublicKey, factory_id: str, encoding: Encoding | None = None,
    encryption: Encryption = DEFAULT_METHOD,
) -> Bundle:
    """Encrypt a factory's exact holdout residual sums for ``model`` into an ``evaluation`` bundle."""
    return encrypt_table(data, target or model.target_, public_key, factory_id=factory_id,
                         request=EvaluationRequest(model), encoding=encoding, encryption=encryption).bundle
