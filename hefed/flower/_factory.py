"""The ClientApp's side (a factory): its checks before it says it is ready, its pins, and its bundle.

Everything here runs on the factory's own machine, inside its SuperNode's ClientApp. Its
data and its identity's private keys are read here and never leave: a reply carries the
factory id and either the encrypted (in a masked round also masked and signed) bundle, or a
one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from phe import PaillierPublicKey

from .._keys import key_fingerprint
from ..data import Cleaning, Holdout, read_table, split_holdout
from ..errors import InvalidFileError, KeyMismatchError, RoundError, UsageError
from ..protocol import Bundle, FactoryIdentity, Masking, Roster, load_identity
from ..roles import encrypt_table
from ._config import FactoryConfig, RunSettings, flower_kind, kind_request, takes_model
from ._messages import (
    ReplyRecord,
    error_reply,
    model_from_request,
    ok_reply,
    public_key_from_request,
    roster_from_request,
    round_from_request,
)


def check_key_pin(factory: FactoryConfig, public_key: PaillierPublicKey) -> None:
    """Refuse a key other than the one the factory's node config pins (``key-fingerprint``), if it pins one."""
    if factory.key_fingerprint and factory.key_fingerprint != key_fingerprint(public_key):
        raise KeyMismatchError(
            f"the aggregator asked for encryption under key {key_fingerprint(public_key)}, but this factory "
            f"is pinned to key {factory.key_fingerprint} (node config 'key-fingerprint'); refused"
        )


def load_factory_identity(factory: FactoryConfig, roster: Roster) -> FactoryIdentity:
    """The factory's identity from its ``identity-dir``, checked against its factory id and the roster.

    The private keys are read here, on the factory's machine, and used only to
    derive masks and sign; they are never put into a reply, a log or an error.
    """
    if not factory.identity_dir:
        raise UsageError(
            "this factory has no 'identity-dir' in its node config: masked rounds need its enrollment "
            "folder (hefed enroll)"
        )
    identity = load_identity(factory.identity_dir)
    if identity.factory_id != factory.factory_id:
        raise UsageError(
            f"the identity in {factory.identity_dir} belongs to {identity.factory_id!r}, but this factory is "
            f"{factory.factory_id!r}; set node config 'factory-id' to the enrolled id"
        )
    member = roster.members.get(factory.factory_id)
    if member is None:
        raise RoundError(f"{factory.factory_id!r} is not in the roster {roster.digest()}")
    if member != identity.member:
        raise RoundError(f"the roster holds other keys for {factory.factory_id!r} than its identity in "
                         f"{factory.identity_dir}")
    return identity


def check_ready(request: Mapping[str, Any], factory: FactoryConfig) -> None:
    """Everything a factory checks before saying it is ready; nothing is read but configs and its identity.

    1. the key is the one sent with its fingerprint, and the pinned one if the node config pins one;
    2. the roster matches its digest, and the pinned digest if the node config pins one;
    3. the factory's identity loads, carries its factory id and is the roster's entry for it;
    4. its data file exists (it is not read yet).
    """
    flower_kind(request.get("kind"), "request")
    check_key_pin(factory, public_key_from_request(request))
    load_factory_identity(factory, roster_from_request(request, factory.roster_digest))
    if not Path(factory.data_path).is_file():
        raise InvalidFileError(f"{factory.data_path}: data file not found")


def _masking(request: Mapping[str, Any], factory: FactoryConfig) -> Masking | None:
    """The round, identity and roster a masked request asks for, checked before any data is read."""
    if request.get("round"):
        roster = roster_from_request(request, factory.roster_digest)
        round_ = round_from_request(request, roster)
        if factory.factory_id not in round_.participants:
            raise RoundError(f"{factory.factory_id!r} is not a participant of round {round_.round_id}")
        return Masking(round_, load_factory_identity(factory, roster), roster)
    if factory.identity_dir or factory.roster_digest:
        raise RoundError(
            "this factory contributes to masked rounds only (node config 'identity-dir' or 'roster-digest' is "
            "set); an unmasked request, whose bundle the key holder could decrypt alone, is refused"
        )
    return None


def make_bundle(request: Mapping[str, Any], factory: FactoryConfig, settings: RunSettings) -> Bundle:
    """Compute and encrypt this factory's bundle with the library, as ``hefed encrypt`` / ``hefed evaluate`` do.

    With a ``round`` in the request (a masked round), the round, the roster and the
    factory's identity are checked first (before any data is read): the roster
    against its pin, the identity against the roster, and the factory must be one
    of the round's participants. The bundle is then masked and signed for that round,
    as ``hefed encrypt --round --identity --roster`` does.

    A factory whose node config sets ``identity-dir`` or ``roster-digest`` takes part
    in masked rounds only: it refuses a request without a round, so an aggregator
    cannot downgrade it to an unmasked bundle the key holder could decrypt alone.

    A kind that evaluates the global model (evaluation) reads the factory's held-out rows
    (all its rows without ``test-fraction``) as they are, with the model's columns; the
    other kinds read the training rows, cleaned as ``missing`` says.
    """
    kind = flower_kind(request.get("kind"), "request")
    public_key = public_key_from_request(request)
    check_key_pin(factory, public_key)
    masking = _masking(request, factory)
    target = factory.target or settings.target
    if takes_model(kind):
        model = model_from_request(request)
        data: pd.DataFrame | str = factory.data_path
        if settings.test_fraction:
            data = split_holdout(read_table(factory.data_path), settings.test_fraction, settings.seed)[1]
        return encrypt_table(data, target or model.target_, public_key, factory_id=factory.factory_id,
                             request=kind_request(kind, model=model), encoding=settings.encoding,
                             masking=masking).bundle
    if not target:
        raise UsageError("no target column: set 'target' in the run config or the factory's node config")
    return encrypt_table(
        factory.data_path, target, public_key, features=list(factory.features or settings.features) or None,
        factory_id=factory.factory_id, request=kind_request(kind, ridge=settings.ridge),
        encoding=settings.encoding, cleaning=Cleaning(missing=settings.missing),  # type: ignore[arg-type]
        holdout=Holdout(settings.test_fraction, settings.seed) if settings.test_fraction else None,
        masking=masking,
    ).bundle


def _fallback_factory_id(node_config: Mapping[str, Any]) -> str:
    return str(node_config.get("factory-id") or Path(str(node_config.get("data-path", "factory"))).stem)


def factory_ready_reply(request: Mapping[str, Any], node_config: Mapping[str, Any]) -> ReplyRecord:
    """The ClientApp's answer to the ready query: ``ok`` with its factory id, or an ``error`` naming it.

    Cheap on purpose (see :func:`check_ready`): the data is not read and nothing
    is encrypted; only the configs and the identity are checked, so a factory that
    could not contribute is not listed in the round and cannot force a re-run.
    """
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        check_ready(request, factory)
        return ok_reply(factory_id)
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return error_reply(factory_id, exc)


def factory_reply(
    request: Mapping[str, Any], node_config: Mapping[str, Any], run_config: Mapping[str, Any]
) -> ReplyRecord:
    """Everything the ClientApp does: read its configs, compute and encrypt, and build the reply record.

    Any failure becomes an ``error`` reply naming the factory, so the aggregator
    can carry on with the others and record why this one is missing.
    """
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        settings = RunSettings.from_config(run_config)
        return ok_reply(factory_id, make_bundle(request, factory, settings))
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return error_reply(factory_id, exc)
