"""The ClientApp's side (a factory): its checks before it says it is ready, its pins, its study, and its bundle.

Everything here runs on the factory's own machine, inside its SuperNode's ClientApp. Its
data, its copy of the study and its identity's private keys are read here and never leave: a
reply carries the factory id and either the encrypted (in a masked round also masked and
signed) bundle, its signed ready statement, its signed join or reveal of a masked round (whose
secret stays in its identity folder), or a fixed error category
(:func:`hefed.errors.reply_category`, e.g. ``"refused: data out of range"``). The full
message of a refusal (which may quote a cell, a row number, a column or a path) goes to the
factory's own log only (:func:`factory_log_path`, mode 0600, and Flower's logger at the
factory): **errors stay home**.

**Pinned, always.** A factory encrypts only under its study's key or, without a study, under
the key its node config pins (``key-fingerprint``); with neither it refuses every request
(there is no unpinned mode in multi-party use). It joins a masked round only with the roster
its study names or, without a study, the one its node config pins (``roster-digest``); a study
that names no roster allows no masked round. Every key is also checked for strength
(``hefed._keys.check_public_key``: even moduli, small factors, perfect powers, and below 2048
bits unless the node config sets ``insecure-test-key``).

A factory whose node config names a ``study`` (its own copy of the study file, pinned by
``study-digest``) computes only what that study says — key, target, features, encoding,
cleaning, holdout and the kind's parameters, through :func:`hefed.encrypt_for_study` — and
reads nothing from the run config. It refuses a request that names another study or none, a
key other than the study's, a kind the study does not allow, a roster other than the
study's, and (when the study names a roster) an unmasked request. A factory without a study
computes what the run config says (ad-hoc runs, for trials), and refuses a request that
names a study.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from phe import PaillierPublicKey

from .._keys import check_public_key, key_fingerprint
from ..data import Cleaning, Holdout, read_table, split_holdout
from ..errors import (
    InvalidFileError,
    KeyMismatchError,
    RoundError,
    SchemaMismatchError,
    UnpinnedError,
    UsageError,
    reply_category,
)
from ..kinds import Kind
from ..protocol import Bundle, FactoryIdentity, Masking, Roster, Study, join_round, load_identity, reveal
from ..roles import encrypt_for_study, encrypt_table, study_holdout
from ._config import FactoryConfig, RunSettings, flower_kind, kind_request, takes_model
from ._messages import (
    READY_BASE_FIELDS,
    ReplyRecord,
    error_reply,
    error_text,
    join_reply,
    model_from_request,
    nonce_from_request,
    ok_reply,
    one_line,
    public_key_from_request,
    ready_extra,
    ready_statement,
    reveal_reply,
    roster_from_request,
    round_from_request,
    round_keys_from_request,
    study_from_request,
    unmask_request_from_request,
)


def load_factory_study(factory: FactoryConfig) -> Study | None:
    """The factory's own copy of the study (node config ``study``), or ``None`` when it has none.

    Refused: a study file whose digest is not the pinned ``study-digest``, and a node config
    whose ``target``, ``features``, ``key-fingerprint`` or ``roster-digest`` says something else
    than the study (with a study they may be left out: the study decides).
    """
    if not factory.study:
        return None
    study = Study.load(factory.study)
    if factory.study_digest and study.digest != factory.study_digest:
        raise SchemaMismatchError(
            f"this factory's study file holds study {study.digest}, not the pinned study {factory.study_digest} "
            "(node config 'study-digest'); refused until they agree"
        )
    problems = []
    if factory.target and factory.target != study.target.name:
        problems.append(f"'target' is {factory.target!r}, the study's is {study.target.name!r}")
    if factory.features and set(factory.features) not in (set(study.feature_names), set(study.model_features)):
        problems.append(f"'features' are {', '.join(factory.features)}, the study's are "
                        f"{', '.join(study.feature_names)}")
    if factory.key_fingerprint and factory.key_fingerprint != study.key_fingerprint:
        problems.append(f"'key-fingerprint' is {factory.key_fingerprint}, the study's key is {study.key_fingerprint}")
    if factory.roster_digest and study.roster_digest and factory.roster_digest != study.roster_digest:
        problems.append(f"'roster-digest' is {factory.roster_digest}, the study's roster is {study.roster_digest}")
    if problems:
        raise UsageError(f"the node config contradicts this factory's study {study.digest}: {'; '.join(problems)} "
                         "(with a study, leave them out)")
    return study


def check_study_request(request: Mapping[str, Any], study: Study | None) -> PaillierPublicKey:
    """Check what a request asks for against the factory's study; return the key to encrypt under.

    Without a study the factory refuses a request naming one (it has nothing to compute it from).
    With a study the request must name exactly that study, carry the study's key and ask for a
    kind the study allows.
    """
    kind = flower_kind(request.get("kind"), "request")
    public_key = public_key_from_request(request)
    asked = study_from_request(request)
    if study is None:
        if asked is not None:
            raise SchemaMismatchError(
                f"the aggregator asks for study {asked}, but this factory has no study (node config 'study' "
                "and 'study-digest' name its own copy of the study file); refused"
            )
        return public_key
    if asked is None:
        raise SchemaMismatchError(
            f"this factory computes only for its study {study.digest} (node config 'study'), and the request "
            "names no study; refused"
        )
    if asked != study.digest:
        raise SchemaMismatchError(
            f"the aggregator asks for study {asked}, but this factory's study is {study.digest}; refused"
        )
    if public_key.n != study.public_key.n:
        raise KeyMismatchError(
            f"the aggregator asked for encryption under key {key_fingerprint(public_key)}, but study "
            f"{study.digest} names key {study.key_fingerprint}; refused"
        )
    if not study.allows(kind.name):
        raise SchemaMismatchError(
            f"the aggregator asked for {kind.name} bundles, which study {study.digest} does not allow (it allows "
            f"{', '.join(sorted(study.kinds))}); refused"
        )
    return study.public_key


def check_study_roster(roster: Roster, study: Study | None) -> None:
    """Refuse a roster other than the one the factory's study names (if it names one)."""
    if study is not None and study.roster_digest and roster.digest() != study.roster_digest:
        raise RoundError(f"the aggregator sent roster {roster.digest()}, but study {study.digest} names roster "
                         f"{study.roster_digest}; refused")


def check_key_pin(factory: FactoryConfig, public_key: PaillierPublicKey) -> None:
    """Refuse a key other than the one the factory's node config pins (``key-fingerprint``), if it pins one."""
    if factory.key_fingerprint and factory.key_fingerprint != key_fingerprint(public_key):
        raise KeyMismatchError(
            f"the aggregator asked for encryption under key {key_fingerprint(public_key)}, but this factory "
            f"is pinned to key {factory.key_fingerprint} (node config 'key-fingerprint'); refused"
        )


def check_key_strength(public_key: PaillierPublicKey, factory: FactoryConfig) -> None:
    """Refuse a weak key (``hefed._keys.check_public_key``): below 2048 bits only with node config
    ``insecure-test-key``."""
    check_public_key(public_key, insecure_test_key=factory.insecure_test_key,
                     source="the key of the aggregator's request")


def pinned_key(request: Mapping[str, Any], factory: FactoryConfig, study: Study | None) -> PaillierPublicKey:
    """The key this factory encrypts under for ``request``: its study's, or else the one its node config pins.

    Refused: a request of another study or none (:func:`check_study_request`), a key other than the pinned one,
    a factory that pins no key at all (no study, no ``key-fingerprint``: there is no unpinned mode), and a weak
    key (:func:`check_key_strength`).
    """
    public_key = check_study_request(request, study)
    if study is None and not factory.key_fingerprint:
        raise UnpinnedError(
            "this factory pins no key (neither a 'study' nor a 'key-fingerprint' in its node config), so it encrypts "
            f"under none: an aggregator could send a key of its own (it sent {key_fingerprint(public_key)}); refused"
        )
    check_key_pin(factory, public_key)
    check_key_strength(public_key, factory)
    return public_key


def pinned_roster(request: Mapping[str, Any], factory: FactoryConfig, study: Study | None) -> Roster:
    """The roster of a masked round, which must be the one the factory's study names or, without a study, the one
    its node config pins (``roster-digest``).

    Refused: a study that names no roster (its masked rounds would take whatever roster the aggregator sends,
    sybils included), a factory without a study that pins no roster, and any other roster.
    """
    if study is not None:
        if not study.roster_digest:
            raise UnpinnedError(
                f"study {study.digest} names no roster, so this factory joins no masked round (the aggregator's "
                "roster could hold sybils whose masks it knows); refused"
            )
        roster = roster_from_request(request)
        check_study_roster(roster, study)
        return roster
    if not factory.roster_digest:
        raise UnpinnedError(
            "this factory pins no roster (neither a 'study' naming one nor a 'roster-digest' in its node config), so "
            "it joins no masked round; refused"
        )
    return roster_from_request(request, factory.roster_digest)


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


@dataclass(frozen=True)
class ReadyCheck:
    """What a factory checked before saying it is ready: the values its signed ready statement covers."""

    identity: FactoryIdentity
    nonce: str
    key_fingerprint: str
    roster_digest: str
    study: str | None

    def statement(self, node_id: int | None, extra: Mapping[str, str] | None = None) -> bytes:
        """The bytes the ready reply signs (:func:`hefed.flower._messages.ready_statement`)."""
        return ready_statement(self.nonce, self.identity.factory_id, self.key_fingerprint, self.roster_digest,
                               self.study, node_id, extra)


def check_ready(request: Mapping[str, Any], factory: FactoryConfig) -> ReadyCheck:
    """Everything a factory checks before saying it is ready; nothing is read but configs, its study and its identity.

    1. the request carries a fresh nonce to sign;
    2. its study (if its node config names one) loads and has the pinned digest; the request
       names that study, its key and a kind it allows (:func:`check_study_request`);
    3. the key is its study's or the one its node config pins, and strong enough (:func:`pinned_key`);
    4. the roster is its study's or the one its node config pins (:func:`pinned_roster`);
    5. the factory's identity loads, carries its factory id and is the roster's entry for it;
    6. its data file exists (it is not read yet).
    """
    nonce = nonce_from_request(request)
    study = load_factory_study(factory)
    public_key = pinned_key(request, factory, study)
    roster = pinned_roster(request, factory, study)
    identity = load_factory_identity(factory, roster)
    if not Path(factory.data_path).is_file():
        raise InvalidFileError(f"{factory.data_path}: data file not found")
    return ReadyCheck(identity, nonce, key_fingerprint(public_key), roster.digest(),
                      study.digest if study is not None else None)


def _masking(request: Mapping[str, Any], factory: FactoryConfig, study: Study | None) -> Masking | None:
    """The round keys, identity and roster a masked request asks for, checked before any data is read.

    Only version 2 rounds (``round-keys``): a version 1 ``round`` is refused, since a drop-out there means a
    re-run whose sum, differenced with the first, would single a factory out."""
    if request.get("round-keys") or request.get("round"):
        roster = pinned_roster(request, factory, study)
        if not request.get("round-keys"):  # a bare round: checked as ever (a forged one says why), then refused
            round_ = round_from_request(request, roster)
            if factory.factory_id not in round_.participants:
                raise RoundError(f"{factory.factory_id!r} is not a participant of round {round_.round_id}")
            if study is not None:
                study.check_roster(roster, round_)  # not below the study's threshold
            Masking(round_, load_factory_identity(factory, roster), roster)  # every participant a roster member
            raise RoundError("the aggregator sent a version 1 round (no drop-out recovery: a drop-out means a re-run, "
                             "and two sums of overlapping sets single a factory out); this factory contributes to "
                             "version 2 rounds only (join, round keys, reveal); refused")
        keys = round_keys_from_request(request, roster)
        if factory.factory_id not in keys.joined:
            raise RoundError(f"{factory.factory_id!r} did not join round {keys.round_id}")
        if study is not None:
            study.check_roster(roster, keys.round)  # not below the study's threshold
        return Masking(keys, load_factory_identity(factory, roster), roster)
    if factory.identity_dir or factory.roster_digest:
        raise RoundError(
            "this factory contributes to masked rounds only (node config 'identity-dir' or 'roster-digest' is "
            "set); an unmasked request, whose bundle the key holder could decrypt alone, is refused"
        )
    if study is not None and study.roster_digest:
        raise RoundError(
            f"study {study.digest} names a roster, so this factory contributes to its masked rounds only; an "
            "unmasked request, whose bundle the key holder could decrypt alone, is refused"
        )
    return None


def make_bundle(request: Mapping[str, Any], factory: FactoryConfig, run_config: Mapping[str, Any]) -> Bundle:
    """Compute and encrypt this factory's bundle with the library, as ``hefed encrypt`` / ``hefed evaluate`` do.

    With a ``study`` in the node config everything computed comes from the factory's own copy
    of the study (:func:`_study_bundle`) and ``run_config`` is not read at all; without one,
    from the run config (:meth:`RunSettings.from_config`), once the request is known to name no study.

    With ``round-keys`` in the request (a masked, version 2 round), the round keys, the roster and the
    factory's identity are checked first (before any data is read): the roster
    against its pin (and its study's), the identity against the roster, and the factory must have joined
    the round (its secret is in its identity folder); the keys are verified as
    :func:`hefed.protocol.accept_round_keys` does. The bundle is then masked (pairwise masks and
    self-mask) and signed for those keys, as ``hefed encrypt --round round-keys.json --identity --roster``
    does.

    A factory whose node config sets ``identity-dir`` or ``roster-digest``, or whose study names
    a roster, takes part in masked rounds only: it refuses a request without a round, so an
    aggregator cannot downgrade it to an unmasked bundle the key holder could decrypt alone.

    A kind that evaluates the global model (evaluation) reads the factory's held-out rows
    (all its rows without a holdout) as they are, with the model's columns; the
    other kinds read the training rows, cleaned as the study (or ``missing``) says.
    """
    study = load_factory_study(factory)
    public_key = pinned_key(request, factory, study)
    kind = flower_kind(request.get("kind"), "request")
    masking = _masking(request, factory, study)
    if study is not None:
        return _study_bundle(request, factory, study, kind, masking)
    settings = RunSettings.from_config(run_config)
    target = factory.target or settings.target
    if takes_model(kind):
        model = model_from_request(request)
        data: pd.DataFrame | str = factory.data_path
        if settings.test_fraction:
            data = split_holdout(read_table(factory.data_path), settings.test_fraction, settings.seed)[1]
        return encrypt_table(data, target or model.target_, public_key, factory_id=factory.factory_id,
                             request=kind_request(kind, model=model), encoding=settings.encoding,
                             masking=masking, insecure_test_key=factory.insecure_test_key).bundle
    if not target:
        raise UsageError("no target column: set 'target' in the run config or the factory's node config")
    return encrypt_table(
        factory.data_path, target, public_key, features=list(factory.features or settings.features) or None,
        factory_id=factory.factory_id, request=kind_request(kind, ridge=settings.ridge),
        encoding=settings.encoding, cleaning=Cleaning(missing=settings.missing),  # type: ignore[arg-type]
        holdout=Holdout(settings.test_fraction, settings.seed) if settings.test_fraction else None,
        masking=masking, insecure_test_key=factory.insecure_test_key,
    ).bundle


def _study_bundle(request: Mapping[str, Any], factory: FactoryConfig, study: Study, kind: Kind[Any, Any],
                  masking: Masking | None) -> Bundle:
    """The bundle the factory's own study asks for (:func:`hefed.encrypt_for_study`); only the model of an
    evaluation comes from the request, and it must have been solved in this study."""
    if not takes_model(kind):
        return encrypt_for_study(factory.data_path, study, factory_id=factory.factory_id, kind=kind.name,
                                 masking=masking, insecure_test_key=factory.insecure_test_key).bundle
    model = model_from_request(request)
    if model.study_ != study.digest:
        made = f"study {model.study_}" if model.study_ else "no study"
        raise SchemaMismatchError(f"the model to evaluate was solved in {made}, not in this factory's study "
                                  f"{study.digest}; refused")
    study.check_model(model)  # before the holdout is read
    held_out = study_holdout(factory.data_path, study, factory_id=factory.factory_id)
    return encrypt_for_study(held_out, study, factory_id=factory.factory_id, kind=kind.name, model=model,
                             masking=masking, insecure_test_key=factory.insecure_test_key).bundle


def _fallback_factory_id(node_config: Mapping[str, Any]) -> str:
    return str(node_config.get("factory-id") or Path(str(node_config.get("data-path", "factory"))).stem)


#: Name of a factory's own log (in node config ``log-dir``, else beside its data file).
LOG_NAME = "hefed-{factory_id}.log"


def factory_log_path(node_config: Mapping[str, Any]) -> Path | None:
    """Where the factory's own log is: ``log-dir``/hefed-FACTORY.log, else beside its data file (``None`` when the
    node config names neither)."""
    log_dir = node_config.get("log-dir")
    data_path = node_config.get("data-path")
    if isinstance(log_dir, str) and log_dir.strip():
        folder = Path(log_dir.strip())
    elif isinstance(data_path, str) and data_path.strip():
        folder = Path(data_path.strip()).parent
    else:
        return None
    name = _fallback_factory_id(node_config)
    return folder / LOG_NAME.format(factory_id=name if "/" not in name and name not in (".", "..") else "factory")


def write_local_log(node_config: Mapping[str, Any], line: str) -> str | None:
    """Append ``line`` (with a UTC time stamp) to the factory's own log, created with mode 0600; returns why it
    could not be written, or ``None``. Never raises: a refusal must be answered whatever happens to the log."""
    path = factory_log_path(node_config)
    if path is None:
        return "no log-dir or data-path in the node config"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            os.write(fd, f"{stamp} {one_line(line, 8000)}\n".encode())
        finally:
            os.close(fd)
    except OSError as exc:
        return f"cannot write the factory log {path}: {exc.strerror or exc}"
    return None


#: Told the full text of a refusal, at the factory (the ClientApp passes Flower's logger).
DetailSink = Callable[[str], None]


def _refusal(step: str, factory_id: str, node_config: Mapping[str, Any], exc: BaseException,
             on_detail: DetailSink | None) -> ReplyRecord:
    """The error reply (a fixed category) for ``exc``; its full text goes to the factory's own log and ``on_detail``."""
    reply = error_reply(factory_id, exc)
    detail = (f"factory {factory_id}: {step} refused ({reply_category(exc)}; the aggregator is told only that): "
              f"{error_text(exc)}")
    problem = write_local_log(node_config, detail)
    if on_detail is not None:
        on_detail(detail if problem is None else f"{detail} [{problem}]")
    return reply


def factory_ready_reply(request: Mapping[str, Any], node_config: Mapping[str, Any], node_id: int | None = None,
                        on_detail: DetailSink | None = None) -> ReplyRecord:
    """The ClientApp's answer to the ready query: ``ok`` with its factory id and its signature, or an ``error``
    with the fixed category (the full text to the factory's own log and ``on_detail``).

    Cheap on purpose (see :func:`check_ready`): the data is not read and nothing
    is encrypted; only the configs and the identity are checked, so a factory that
    could not contribute is not listed in the round (it would count as a drop-out).

    The signature (Ed25519, the factory's identity) covers the request's nonce, the factory id, the key
    fingerprint, the roster digest, the study digest and ``node_id`` (the Flower node it answers from):
    :meth:`ReadyCheck.statement`. The aggregator checks it against the roster's signing key, so a SuperNode
    that claims this factory's id without its identity cannot take its place or exclude it. (A later
    drop-out recovery could add its ephemeral keys and shares to this reply: :func:`ready_reply_for`; hefed's
    version 2 rounds join in a step of their own, :func:`factory_join_reply`, once the round is proposed over
    the ready set.)
    """
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        return ready_reply_for(check_ready(request, factory), node_id)
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _refusal("ready", factory_id, node_config, exc, on_detail)


def ready_reply_for(check: ReadyCheck, node_id: int | None, extra: Mapping[str, str] | None = None) -> ReplyRecord:
    """The signed ``ok`` ready reply of a factory that passed :func:`check_ready`.

    ``extra`` (string fields, e.g. a drop-out recovery's public mask keys and encrypted shares) travels in the
    reply and is covered by the same signature; the aggregator verifies it with
    :func:`hefed.flower._tally.verify_ready` and finds it with :func:`hefed.flower._messages.ready_extra`.
    """
    fields = dict(extra or {})
    if set(fields) & READY_BASE_FIELDS:
        raise UsageError(f"a ready reply's extra fields cannot be named {sorted(set(fields) & READY_BASE_FIELDS)}")
    record = ok_reply(check.identity.factory_id,
                      signature=check.identity.sign(check.statement(node_id, ready_extra(fields))))
    return {**record, **fields}


def check_masked(request: Mapping[str, Any], factory: FactoryConfig) -> tuple[Study | None, Roster, FactoryIdentity]:
    """The pins every step of a masked round checks again (a ClientApp keeps no state between messages): its study,
    the key (its study's or pinned, and strong enough), the roster (its study's or pinned) and its identity."""
    study = load_factory_study(factory)
    pinned_key(request, factory, study)
    roster = pinned_roster(request, factory, study)
    return study, roster, load_factory_identity(factory, roster)


def factory_join_reply(request: Mapping[str, Any], node_config: Mapping[str, Any],
                       on_detail: DetailSink | None = None) -> ReplyRecord:
    """The ClientApp's answer to a join query: its signed join of the version 2 round the request carries, or an
    ``error`` with the fixed category.

    After the pins (:func:`check_masked`) and its data file's presence, :func:`hefed.protocol.join_round` does
    the rest and refuses what the library refuses: a round of another roster or study, a threshold of half or
    less or below the study's ``min_contributors``, participants that are not the study's established set, a
    round it already joined. The round's secret (mask key, self-mask seed, its own shares) is written to the
    factory's identity folder (0600) and never leaves it; the join carries its mask public key, a commitment
    to the seed and the shares sealed for each peer."""
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        study, roster, identity = check_masked(request, factory)
        round_ = round_from_request(request, roster)
        if not Path(factory.data_path).is_file():
            raise InvalidFileError(f"{factory.data_path}: data file not found")
        join, _ = join_round(identity, roster, round_, study=study)
        return join_reply(factory_id, join)
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _refusal("join", factory_id, node_config, exc, on_detail)


def factory_reveal_reply(request: Mapping[str, Any], node_config: Mapping[str, Any],
                         on_detail: DetailSink | None = None) -> ReplyRecord:
    """The ClientApp's answer to a reveal query: its signed reveal for the unmask request the query carries, or an
    ``error`` with the fixed category.

    :func:`hefed.protocol.reveal` checks the request against what the factory recorded when it contributed
    (the round keys, the joined set) and refuses a second survivor set for the same round, a request naming it
    a drop-out, fewer survivors than the threshold (or the study's ``min_contributors``) and survivors that
    are not the study's established set; it reveals per joined factory either the share of the seed (a
    survivor) or of the mask key (a drop-out), never both, then deletes the round's secret."""
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        _, roster, identity = check_masked(request, factory)
        answer = reveal(unmask_request_from_request(request), identity, roster)
        return reveal_reply(factory_id, answer)
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _refusal("reveal", factory_id, node_config, exc, on_detail)


def factory_reply(
    request: Mapping[str, Any], node_config: Mapping[str, Any], run_config: Mapping[str, Any],
    on_detail: DetailSink | None = None,
) -> ReplyRecord:
    """Everything the ClientApp does: read its configs, compute and encrypt, and build the reply record.

    A factory with a study in its node config does not read ``run_config`` at all.

    Any failure becomes an ``error`` reply naming the factory with the fixed category of the failure
    (:func:`hefed.errors.reply_category`), so the aggregator can carry on with the others and record why
    this one is missing, without learning anything of its data; the full text goes to the factory's own
    log (:func:`factory_log_path`) and ``on_detail``.
    """
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        return ok_reply(factory_id, make_bundle(request, factory, run_config))
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _refusal("contribution", factory_id, node_config, exc, on_detail)
