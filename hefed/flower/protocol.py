"""What travels between the hefed ServerApp (aggregator) and its ClientApps (factories), and the checks on it.

This module holds the whole federated protocol without importing Flower, so
it can be read, reused and tested on its own; :mod:`hefed.flower.app` only
wires it to Flower's Message API.

An **unmasked** round (run config ``roster`` empty) is one message type (``query.contribute``):

* **request** (aggregator → every connected factory), a flat record of
  ``kind`` (``statistics``, ``coefficients`` or ``evaluation``), the consortium
  ``public-key`` (its modulus ``n`` in base64url, nothing else: Paillier
  public keys have no other part), the key's ``key-fingerprint`` and, for
  evaluation, the global ``model`` as JSON;
* **reply** (factory → aggregator), ``status`` ``ok`` with the ``factory-id``
  and the encrypted ``bundle`` as bytes (the UTF-8 JSON of
  :meth:`hefed.Bundle.to_dict`, never pickle), or ``status`` ``error`` with the
  ``factory-id`` and a one-line ``error``.

A **masked, signed** round (run config ``roster`` set; see :mod:`hefed.rounds`) has two steps:

1. **ready** (``query.ready``, cheap: nothing is read or encrypted): the request
   carries ``kind``, ``public-key``, ``key-fingerprint``, the consortium
   ``roster`` (its public JSON) and its ``roster-digest``; a factory checks its
   pins and that its enrolled identity is the roster's entry for it, and
   replies ``status`` ``ok`` with its ``factory-id`` (or ``error``). The
   aggregator fixes the participants: the roster members that answered.
2. **contribute** (``query.contribute``, sent only to the participants' nodes):
   the unmasked request plus the ``round`` (public JSON of
   :class:`hefed.rounds.Round`: id, participants, roster digest) and the
   ``roster``; each factory encrypts, adds its zero-sum masks and signs with its
   identity (:func:`hefed.encrypt_table` with ``round_``, ``identity`` and
   ``roster``), and replies with the bundle as above. If a participant fails to
   deliver, the masks cannot cancel: the aggregator starts a **new round** (new
   id, new masks) for the factories that did deliver and asks them again, up to
   ``max-rounds`` rounds in all (:class:`MaskedProgress` records each).

Where each setting comes from:

* the **run config** (``[tool.flwr.app.config]`` of the app, overridden by
  ``flwr run --run-config``), read by both sides: :data:`RUN_CONFIG_DEFAULTS`;
* the **node config** of a factory's SuperNode (``flower-supernode
  --node-config``), read only by that factory: ``data-path`` (required),
  ``factory-id`` (default: the data file's name without suffix), ``target``
  and ``features`` (override the run config's), ``key-fingerprint``
  (optional pin: the factory refuses to encrypt for any other key, so an
  aggregator cannot substitute a key of its own), and for masked rounds
  ``identity-dir`` (the factory's enrollment folder from ``hefed enroll``) and
  ``roster-digest`` (optional pin: the factory refuses any other roster).

No private key is ever read, sent or accepted here: the aggregator refuses a
private key file given as its public key (:func:`load_public_key_only`), and
the request carries ``n`` alone. A factory's identity (its Ed25519 and X25519
private keys) is read only by that factory's ClientApp, from its own
``identity-dir``; only signatures and masked ciphertexts leave it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from phe import PaillierPublicKey
from phe.util import base64_to_int, int_to_base64

from .._files import MAX_JSON_BYTES, read_json_object
from .._keys import MAX_BITS, MIN_TEST_BITS, key_fingerprint, load_public_key
from ..data import Cleaning, Holdout, read_table, split_holdout
from ..errors import (
    HefedError,
    InsecureKeyError,
    InvalidFileError,
    KeyMismatchError,
    RoundError,
    TooFewContributorsError,
    UsageError,
)
from ..kinds import CoefficientsRequest, StatisticsRequest, kind_names
from ..models import LinearModel
from ..protocol import (
    Bundle,
    FactoryIdentity,
    Masking,
    Roster,
    Round,
    check_factory_id,
    load_identity,
    mask_and_sign,
    verify_contribution,
)
from ..roles import aggregate, encrypt_evaluation, encrypt_table
from ..stats import Encoding

#: The ClientApp action and the Flower message type it answers.
ACTION = "contribute"
MESSAGE_TYPE = f"query.{ACTION}"
#: The cheap first step of a masked round: which factories are there and able to take part.
READY_ACTION = "ready"
READY_MESSAGE_TYPE = f"query.{READY_ACTION}"
#: Names of the records inside the request and reply messages.
REQUEST_RECORD = "hefed-request"
REPLY_RECORD = "hefed-reply"
#: Bundle kinds a federation can collect (those the kind registry marks as travelling by Flower).
KINDS = kind_names(flower=True)
#: Format of the federation report the ServerApp writes.
REPORT_FORMAT = "hefed.federation"
REPORT_VERSION = 1
#: Longest error text a factory sends back (the full text stays in the factory's own log).
MAX_ERROR_CHARS = 500

_DEFAULT_ENCODING = Encoding()

#: Every run-config key of the app, with its default (the app's ``[tool.flwr.app.config]``).
#: Paths are read by the ServerApp on the SuperLink's machine; use absolute paths.
RUN_CONFIG_DEFAULTS: dict[str, str | int | float | bool] = {
    "kind": "statistics",  # statistics | coefficients | evaluation
    "public-key": "",  # path to the consortium's public key (pheutil JSON) on the aggregator's machine
    "out": "",  # path of the aggregate bundle the ServerApp writes
    "report": "",  # optional path of a JSON report: contributors, missing factories and why
    "force": False,  # replace an existing out / report
    "target": "",  # response column (a factory's node config may override it)
    "features": "",  # comma-separated feature columns; "" = every numeric column but the target
    "model": "",  # evaluation: path of the global model JSON on the aggregator's machine
    "min-contributors": 3,  # fewer answers than this and the run fails
    "timeout": 60.0,  # seconds to wait for the factories' replies
    "wait-for-nodes": 30.0,  # seconds to wait for the expected SuperNodes to connect
    "expected-factories": "",  # comma-separated factory ids, so absent ones are named in the report
    "test-fraction": 0.0,  # holdout fraction each factory keeps out (evaluation then uses that holdout)
    "seed": 0,  # seed of the reproducible holdout draw
    "ridge": 0.0,  # ridge penalty of the local fits (coefficients kind)
    "missing": "drop",  # rows with missing values: drop them (as hefed encrypt does) or refuse the table (error)
    "roster": "",  # path of the consortium roster on the aggregator's machine; set = masked, signed rounds
    "max-rounds": 3,  # masked rounds: at most this many rounds (the first and the re-runs after drop-outs)
    "frac-bits": _DEFAULT_ENCODING.frac_bits,
    "int-bits": _DEFAULT_ENCODING.int_bits,
    "max-contributors": _DEFAULT_ENCODING.max_contributors,
}

#: Node-config keys a factory's SuperNode may set.
NODE_CONFIG_KEYS = ("data-path", "factory-id", "target", "features", "key-fingerprint", "identity-dir",
                    "roster-digest")
#: Most rounds a masked federation may try (``max-rounds``); each waits up to ``timeout`` seconds.
MAX_ROUNDS_LIMIT = 10


def split_names(value: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (empty items dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _get(config: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    value = config.get(key, RUN_CONFIG_DEFAULTS.get(key))
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{source}: {key!r} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    if not isinstance(value, kind):
        raise UsageError(f"{source}: {key!r} has the wrong type ({type(value).__name__}: {value!r})")
    return value


@dataclass(frozen=True)
class RunSettings:
    """The run config, checked: what the aggregator asks for and how every factory encodes it."""

    kind: str = "statistics"
    public_key: str = ""
    out: str = ""
    report: str = ""
    force: bool = False
    target: str = ""
    features: tuple[str, ...] = ()
    model: str = ""
    min_contributors: int = 3
    timeout: float = 60.0
    wait_for_nodes: float = 30.0
    expected_factories: tuple[str, ...] = ()
    test_fraction: float = 0.0
    seed: int = 0
    ridge: float = 0.0
    missing: str = "drop"
    encoding: Encoding = field(default_factory=Encoding)
    roster: str = ""
    max_rounds: int = 3

    @property
    def masked(self) -> bool:
        """Whether the run uses masked, signed rounds (a roster is set)."""
        return bool(self.roster)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "run config") -> RunSettings:
        """Read and check a Flower run config (missing keys take :data:`RUN_CONFIG_DEFAULTS`)."""
        number = (int, float)
        kind = _get(config, "kind", str, source)
        if kind not in KINDS:
            raise UsageError(f"{source}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        min_contributors = _get(config, "min-contributors", int, source)
        if min_contributors < 1:
            raise UsageError(f"{source}: min-contributors must be at least 1, got {min_contributors}")
        timeout = float(_get(config, "timeout", number, source))
        wait = float(_get(config, "wait-for-nodes", number, source))
        for key, value in (("timeout", timeout), ("wait-for-nodes", wait)):
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"{source}: {key} must be a positive number of seconds, got {value!r}")
        test_fraction = float(_get(config, "test-fraction", number, source))
        if test_fraction and not 0 < test_fraction < 1:
            raise UsageError(f"{source}: test-fraction must be 0 or strictly between 0 and 1, got {test_fraction}")
        ridge = float(_get(config, "ridge", number, source))
        if not math.isfinite(ridge) or ridge < 0:
            raise UsageError(f"{source}: ridge must be a non-negative number, got {ridge!r}")
        missing = _get(config, "missing", str, source)
        if missing not in ("drop", "error"):
            raise UsageError(f"{source}: missing must be 'drop' or 'error', got {missing!r}")
        expected = tuple(split_names(_get(config, "expected-factories", str, source)))
        for name in expected:
            check_factory_id(name)
        if len(set(expected)) != len(expected):
            raise UsageError(f"{source}: expected-factories lists a factory twice")
        max_rounds = _get(config, "max-rounds", int, source)
        if not 1 <= max_rounds <= MAX_ROUNDS_LIMIT:
            raise UsageError(f"{source}: max-rounds must be between 1 and {MAX_ROUNDS_LIMIT}, got {max_rounds}")
        encoding = Encoding(
            frac_bits=_get(config, "frac-bits", int, source),
            int_bits=_get(config, "int-bits", int, source),
            max_contributors=_get(config, "max-contributors", int, source),
        )
        return cls(
            kind=kind,
            public_key=_get(config, "public-key", str, source),
            out=_get(config, "out", str, source),
            report=_get(config, "report", str, source),
            force=_get(config, "force", bool, source),
            target=_get(config, "target", str, source).strip(),
            features=tuple(split_names(_get(config, "features", str, source))),
            model=_get(config, "model", str, source),
            min_contributors=min_contributors,
            timeout=timeout,
            wait_for_nodes=wait,
            expected_factories=expected,
            test_fraction=test_fraction,
            seed=_get(config, "seed", int, source),
            ridge=ridge,
            missing=missing,
            encoding=encoding,
            roster=_get(config, "roster", str, source).strip(),
            max_rounds=max_rounds,
        )


@dataclass(frozen=True)
class FactoryConfig:
    """A factory's node config, checked: where its data is and what it calls itself."""

    data_path: str
    factory_id: str
    target: str = ""
    features: tuple[str, ...] = ()
    key_fingerprint: str = ""
    identity_dir: str = ""
    roster_digest: str = ""

    @classmethod
    def from_node_config(cls, config: Mapping[str, Any], source: str = "node config") -> FactoryConfig:
        """Read and check a SuperNode's node config (every key a string; ``data-path`` required)."""
        values = {}
        for key in NODE_CONFIG_KEYS:
            value = config.get(key, "")
            if not isinstance(value, str):
                raise UsageError(f"{source}: {key!r} must be a string, got {value!r}")
            values[key] = value.strip()
        if not values["data-path"]:
            raise UsageError(f"{source}: 'data-path' is not set (flower-supernode --node-config 'data-path=\"...\"')")
        factory_id = values["factory-id"] or Path(values["data-path"]).stem
        check_factory_id(factory_id)
        return cls(values["data-path"], factory_id, values["target"], tuple(split_names(values["features"])),
                   values["key-fingerprint"].lower(), values["identity-dir"], values["roster-digest"].lower())


# --- keys ---------------------------------------------------------------------------------------------------


def load_public_key_only(path: str | os.PathLike[str]) -> PaillierPublicKey:
    """Load the consortium's public key for the aggregator, refusing a private key file.

    :func:`hefed.load_public_key` accepts a private key file and keeps its public
    half; here the aggregator must never be handed one, so such a file is an error.
    """
    if not str(path):
        raise UsageError("no public key given (run config 'public-key', or --public-key)")
    obj = read_json_object(path, "public key")
    if {"p", "q", "pub", "lambda", "mu"} & set(obj) or "decrypt" in (obj.get("key_ops") or []):
        raise InsecureKeyError(
            f"{path}: this is a private key; the aggregator and every Flower process get only the "
            "public key (public_key.json). Keep the private key with the key holder."
        )
    return load_public_key(path)


def public_key_to_request(public_key: PaillierPublicKey) -> dict[str, str]:
    """The key's part of a request: ``n`` in base64url and its fingerprint."""
    return {"public-key": int_to_base64(public_key.n), "key-fingerprint": key_fingerprint(public_key)}


def public_key_from_request(request: Mapping[str, Any]) -> PaillierPublicKey:
    """The public key a request carries, checked against the fingerprint sent with it."""
    text = request.get("public-key")
    if not isinstance(text, str) or not text or len(text) > MAX_BITS:
        raise InvalidFileError("request: 'public-key' missing or not a base64url string")
    try:
        n = base64_to_int(text)
    except Exception:
        raise InvalidFileError("request: 'public-key' is not valid base64url") from None
    if n.bit_length() < MIN_TEST_BITS or n % 2 == 0:
        raise InvalidFileError("request: 'public-key' is not a valid Paillier modulus")
    public_key = PaillierPublicKey(n)
    if request.get("key-fingerprint") != key_fingerprint(public_key):
        raise KeyMismatchError("request: 'key-fingerprint' does not match the public key sent")
    return public_key


# --- rosters and rounds as they travel ----------------------------------------------------------------------


def roster_to_text(roster: Roster) -> str:
    """The roster's public JSON (factory ids and public keys only), as the requests carry it."""
    return json.dumps(roster.to_dict(), sort_keys=True, separators=(",", ":"))


def round_to_text(round_: Round) -> str:
    """The round's public JSON (id, participants, roster digest), as the contribute request carries it."""
    return json.dumps(round_.to_dict(), sort_keys=True, separators=(",", ":"))


_Loaded = TypeVar("_Loaded")


def _load_text(text: Any, what: str, loader: Callable[[Path], _Loaded]) -> _Loaded:
    """Parse ``text`` with a library ``load(path)`` function, so the library's own checks apply.

    :class:`~hefed.identity.Roster` and :class:`~hefed.rounds.Round` are read from files
    only; the JSON received in a request goes through a private temporary file, and
    error messages name the request field instead of that file.
    """
    source = f"request {what!r}"
    if not isinstance(text, str) or not text:
        raise InvalidFileError(f"{source}: missing")
    if len(text) > MAX_JSON_BYTES:
        raise InvalidFileError(f"{source}: {len(text)} characters, too large")
    with tempfile.TemporaryDirectory(prefix="hefed-request-") as tmp:
        path = Path(tmp) / f"{what}.json"
        path.write_text(text, encoding="utf-8")
        try:
            return loader(path)
        except HefedError as exc:
            raise type(exc)(str(exc).replace(str(path), source)) from None


def roster_from_request(request: Mapping[str, Any], pin: str = "") -> Roster:
    """The roster a request carries, checked against the digest sent with it and against a factory's pin."""
    roster = _load_text(request.get("roster"), "roster", Roster.load)
    digest = roster.digest()
    if request.get("roster-digest", digest) != digest:
        raise RoundError("request: 'roster-digest' does not match the roster sent")
    if pin and pin != digest:
        raise RoundError(
            f"the aggregator sent roster {digest}, but this factory is pinned to roster {pin} "
            "(node config 'roster-digest'); refused"
        )
    return roster


def round_from_request(request: Mapping[str, Any], roster: Roster) -> Round:
    """The round a contribute request carries; it must have been made from ``roster``."""
    round_ = _load_text(request.get("round"), "round", Round.load)
    if round_.roster_digest != roster.digest():
        raise RoundError(f"round {round_.round_id} was made from roster {round_.roster_digest}, "
                         f"not from the roster sent ({roster.digest()})")
    return round_


# --- factory side -------------------------------------------------------------------------------------------


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


def make_ready_request(kind: str, public_key: PaillierPublicKey, roster: Roster) -> dict[str, str]:
    """The ready query of a masked round: what will be asked, under which key, and the roster (all public)."""
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return {"kind": kind, **public_key_to_request(public_key), "roster": roster_to_text(roster),
            "roster-digest": roster.digest()}


def check_ready(request: Mapping[str, Any], factory: FactoryConfig) -> None:
    """Everything a factory checks before saying it is ready; nothing is read but configs and its identity.

    1. the key is the one sent with its fingerprint, and the pinned one if the node config pins one;
    2. the roster matches its digest, and the pinned digest if the node config pins one;
    3. the factory's identity loads, carries its factory id and is the roster's entry for it;
    4. its data file exists (it is not read yet).
    """
    if request.get("kind") not in KINDS:
        raise UsageError(f"request: unknown kind {request.get('kind')!r}")
    check_key_pin(factory, public_key_from_request(request))
    load_factory_identity(factory, roster_from_request(request, factory.roster_digest))
    if not Path(factory.data_path).is_file():
        raise InvalidFileError(f"{factory.data_path}: data file not found")


def make_request(kind: str, public_key: PaillierPublicKey, model: LinearModel | None = None) -> dict[str, str]:
    """The request record the aggregator sends to every factory."""
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "evaluation" and model is None:
        raise UsageError("an evaluation federation needs the global model (run config 'model')")
    return {
        "kind": kind,
        **public_key_to_request(public_key),
        "model": json.dumps(model.to_dict(), allow_nan=False) if kind == "evaluation" and model else "",
    }


def make_masked_request(request: Mapping[str, str], round_: Round, roster: Roster) -> dict[str, str]:
    """A contribute request for a masked round: the unmasked request plus the round and the roster (public)."""
    return {**request, "round": round_to_text(round_), "roster": roster_to_text(roster)}


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
    """
    kind = request.get("kind")
    if kind not in KINDS:
        raise UsageError(f"request: unknown kind {kind!r}")
    public_key = public_key_from_request(request)
    check_key_pin(factory, public_key)
    masked: tuple[Round, FactoryIdentity, Roster] | None = None
    if request.get("round"):
        roster = roster_from_request(request, factory.roster_digest)
        round_ = round_from_request(request, roster)
        if factory.factory_id not in round_.participants:
            raise RoundError(f"{factory.factory_id!r} is not a participant of round {round_.round_id}")
        masked = (round_, load_factory_identity(factory, roster), roster)
    elif factory.identity_dir or factory.roster_digest:
        raise RoundError(
            "this factory contributes to masked rounds only (node config 'identity-dir' or 'roster-digest' is "
            "set); an unmasked request, whose bundle the key holder could decrypt alone, is refused"
        )
    target = factory.target or settings.target
    features = list(factory.features or settings.features) or None
    if kind == "evaluation":
        text = request.get("model")
        if not isinstance(text, str) or not text:
            raise InvalidFileError("request: evaluation without a model")
        model = LinearModel.from_dict(json.loads(text), "model from the aggregator")
        data: pd.DataFrame | str = factory.data_path
        if settings.test_fraction:
            data = split_holdout(read_table(factory.data_path), settings.test_fraction, settings.seed)[1]
        bundle = encrypt_evaluation(model, data, target or None, public_key, factory.factory_id, settings.encoding)
        return mask_and_sign(bundle, masked[1], masked[2], masked[0]) if masked else bundle
    if not target:
        raise UsageError("no target column: set 'target' in the run config or the factory's node config")
    request_ = CoefficientsRequest(settings.ridge) if kind == "coefficients" else StatisticsRequest()
    return encrypt_table(
        factory.data_path, target, public_key, features=features, factory_id=factory.factory_id,
        request=request_, encoding=settings.encoding, cleaning=Cleaning(missing=settings.missing),  # type: ignore[arg-type]
        holdout=Holdout(settings.test_fraction, settings.seed) if settings.test_fraction else None,
        masking=Masking(*masked) if masked else None,
    ).bundle


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """A bundle as it travels: the UTF-8 JSON of :meth:`Bundle.to_dict`."""
    return json.dumps(bundle.to_dict(), allow_nan=False, separators=(",", ":")).encode("utf-8")


def bundle_from_bytes(data: bytes, source: str) -> Bundle:
    """Parse and fully validate a bundle received as bytes (JSON only; nothing is unpickled)."""
    if len(data) > MAX_JSON_BYTES:
        raise InvalidFileError(f"{source}: {len(data)} bytes, larger than any bundle")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidFileError(f"{source}: not a JSON bundle") from None
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{source}: not a JSON bundle object")
    return Bundle.from_dict(obj, source)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Collapse an error text to one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _error_reply(factory_id: str, exc: Exception) -> dict[str, str | bytes]:
    text = str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}"
    return {"status": "error", "factory-id": factory_id, "error": one_line(text)}


def _fallback_factory_id(node_config: Mapping[str, Any]) -> str:
    return str(node_config.get("factory-id") or Path(str(node_config.get("data-path", "factory"))).stem)


def factory_ready_reply(request: Mapping[str, Any], node_config: Mapping[str, Any]) -> dict[str, str | bytes]:
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
        return {"status": "ok", "factory-id": factory_id}
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _error_reply(factory_id, exc)


def factory_reply(
    request: Mapping[str, Any], node_config: Mapping[str, Any], run_config: Mapping[str, Any]
) -> dict[str, str | bytes]:
    """Everything the ClientApp does: read its configs, compute and encrypt, and build the reply record.

    Any failure becomes an ``error`` reply naming the factory, so the aggregator
    can carry on with the others and record why this one is missing.
    """
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        settings = RunSettings.from_config(run_config)
        bundle = make_bundle(request, factory, settings)
        return {"status": "ok", "factory-id": factory_id, "bundle": bundle_to_bytes(bundle)}
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return _error_reply(factory_id, exc)


# --- aggregator side ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What came back from one SuperNode: a hefed reply record, or a Flower-level error."""

    node_id: int
    record: Mapping[str, Any] | None = None
    flower_error: str | None = None
    seconds: float | None = None  # from sending the request to receiving this reply


@dataclass
class Tally:
    """The outcome of one round: the bundles accepted, who they came from, and who is missing and why."""

    contributors: list[str]
    bundles: list[Bundle]
    missing: dict[str, str]
    unanswered_nodes: dict[str, str]
    nodes: int
    reply_seconds: dict[str, float] = field(default_factory=dict)

    def describe_missing(self) -> str:
        items = [f"{name} ({why})" for name, why in self.missing.items()]
        return "; ".join(items) if items else "none"


def _check_bundle(bundle: Bundle, factory_id: str, request: Mapping[str, Any], settings: RunSettings,
                  model: LinearModel | None, round_: Round | None = None, roster: Roster | None = None) -> str | None:
    """Why ``bundle`` cannot be summed for this request (and round), or ``None`` if it can."""
    if bundle.contributors != [factory_id]:
        return f"bundle lists contributors {bundle.contributors}, not just {factory_id!r}"
    if bundle.kind != request["kind"]:
        return f"bundle of kind {bundle.kind!r}, {request['kind']!r} was asked"
    if bundle.key_fingerprint != request["key-fingerprint"]:
        return f"encrypted for key {bundle.key_fingerprint}, not the consortium key {request['key-fingerprint']}"
    if bundle.encoding != settings.encoding:
        return "encoding differs from the run's"
    if settings.target and bundle.target != settings.target:
        return f"target {bundle.target!r}, the run asks for {settings.target!r}"
    if settings.features and set(bundle.features) != set(settings.features):
        return f"features {sorted(bundle.features)} differ from the run's {sorted(settings.features)}"
    if model is not None and bundle.parameters.get("model_digest") != model.digest():
        return "evaluated a different model"
    if round_ is not None and roster is not None:
        try:
            verify_contribution(bundle, roster, round_, f"bundle from {factory_id}")
        except HefedError as exc:
            return f"not a valid signed contribution to round {round_.round_id}: {one_line(str(exc))}"
    elif bundle.round_id:
        return "a masked round contribution, but this run is unmasked"
    return None


def tally(replies: Iterable[Reply], sent_to: Sequence[int], request: Mapping[str, Any], settings: RunSettings,
          model: LinearModel | None = None, *, round_: Round | None = None, roster: Roster | None = None,
          node_names: Mapping[int, str] | None = None) -> Tally:
    """Sort replies into accepted bundles and missing factories (with reasons).

    A factory is left out, and named with the reason, when its SuperNode did not
    answer in time, answered with an error, sent an invalid bundle or one that
    does not match the request, claimed a factory id another node also claimed,
    or sent a bundle whose schema differs from the others' (the reference is the
    first valid bundle in factory-id order). The accepted bundles are in
    factory-id order, so the aggregate is the same whichever node answers first.

    In a masked round (``round_`` and ``roster`` given) every bundle must also be
    its factory's valid signed contribution to ``round_``; ``node_names`` (node id →
    the factory id it announced in the ready step) then names silent nodes by their
    factory and refuses a reply claiming another id, and the round's participants
    are the factories expected.
    """
    names = dict(node_names or {})
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    missing: dict[str, str] = {}
    unanswered: dict[str, str] = {}
    latency: dict[str, float] = {}
    candidates: dict[str, list[bytes]] = {}
    for node_id in sent_to:
        reply = by_node.get(node_id)
        label = f"node {node_id}"
        known = names.get(node_id)
        if reply is None or reply.record is None:
            why = (f"no answer within {settings.timeout:g} s" if reply is None
                   else one_line(reply.flower_error or "error without a reason"))
            if known:
                missing[known] = why
            else:
                unanswered[label] = why
            continue
        record = reply.record
        factory_id = record.get("factory-id")
        try:
            check_factory_id(factory_id)
        except UsageError:
            if known:
                missing[known] = "reply without a valid factory id"
            else:
                unanswered[label] = "reply without a valid factory id"
            continue
        if known and factory_id != known:
            missing[known] = f"its node answered as {factory_id!r} after announcing {known!r}; refused"
            continue
        if reply.seconds is not None:
            latency[factory_id] = round(reply.seconds, 3)
        if record.get("status") == "error":
            missing[factory_id] = f"error: {one_line(str(record.get('error', '')))}"
            continue
        data = record.get("bundle")
        if record.get("status") != "ok" or not isinstance(data, bytes):
            missing[factory_id] = "malformed reply"
            continue
        candidates.setdefault(factory_id, []).append(data)

    accepted: list[tuple[str, Bundle]] = []
    for factory_id in sorted(candidates):
        if len(candidates[factory_id]) > 1 or factory_id in missing:
            missing[factory_id] = "factory id claimed by more than one SuperNode; all its replies left out"
            continue
        try:
            bundle = bundle_from_bytes(candidates[factory_id][0], f"bundle from {factory_id}")
        except HefedError as exc:
            missing[factory_id] = f"invalid bundle: {one_line(str(exc))}"
            continue
        problem = _check_bundle(bundle, factory_id, request, settings, model, round_, roster)
        if problem is None and accepted:
            diffs = accepted[0][1].schema_differences(bundle)
            problem = f"differs from {accepted[0][0]}: {'; '.join(diffs)}" if diffs else None
        if problem is not None:
            missing[factory_id] = problem
            continue
        accepted.append((factory_id, bundle))

    heard = {name for name, _ in accepted} | set(missing)
    expected = round_.participants if round_ is not None else settings.expected_factories
    absent = [name for name in expected if name not in heard]
    for name in absent:
        if len(unanswered) == 1 and len(absent) == 1:
            missing[name] = next(iter(unanswered.values()))
        elif unanswered:
            missing[name] = f"no reply (its SuperNode did not answer within {settings.timeout:g} s or left)"
        else:
            missing[name] = "its SuperNode was not connected to the SuperLink"
    if not expected:
        missing.update(unanswered)
    return Tally([name for name, _ in accepted], [bundle for _, bundle in accepted], dict(sorted(missing.items())),
                 unanswered, len(sent_to), dict(sorted(latency.items())))


@dataclass
class ReadyTally:
    """The outcome of the ready step: which roster members are ready (on which node), who is not and why."""

    nodes: dict[str, int]
    not_ready: dict[str, str]
    unanswered_nodes: dict[str, str]
    node_count: int

    @property
    def ready(self) -> list[str]:
        """The ready roster members, sorted: the participants of the first round."""
        return sorted(self.nodes)


def tally_ready(replies: Iterable[Reply], sent_to: Sequence[int], roster: Roster,
                settings: RunSettings) -> ReadyTally:
    """Sort the ready replies: roster members that answered ``ok``, each on exactly one node.

    Left out, with the reason: a factory that answered with an error (a pin or
    identity check failed), one not in the roster, a factory id claimed by more
    than one node, and every expected factory (``expected-factories``, or else
    every roster member) that did not answer.
    """
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    claims: dict[str, list[int]] = {}
    not_ready: dict[str, str] = {}
    unanswered: dict[str, str] = {}
    for node_id in sent_to:
        reply = by_node.get(node_id)
        label = f"node {node_id}"
        if reply is None:
            unanswered[label] = f"no answer to the ready query within {settings.timeout:g} s"
            continue
        if reply.record is None:
            unanswered[label] = one_line(reply.flower_error or "error without a reason")
            continue
        factory_id = reply.record.get("factory-id")
        try:
            check_factory_id(factory_id)
        except UsageError:
            unanswered[label] = "ready reply without a valid factory id"
            continue
        if reply.record.get("status") != "ok":
            not_ready[factory_id] = f"not ready: {one_line(str(reply.record.get('error', 'malformed reply')))}"
        elif factory_id not in roster.members:
            not_ready[factory_id] = "not in the roster"
        claims.setdefault(factory_id, []).append(node_id)
    nodes: dict[str, int] = {}
    for factory_id, node_ids in sorted(claims.items()):
        if len(node_ids) > 1:
            not_ready[factory_id] = "factory id claimed by more than one SuperNode; left out"
        elif factory_id not in not_ready:
            nodes[factory_id] = node_ids[0]
    expected = settings.expected_factories or tuple(sorted(roster.members))
    for name in expected:
        if name not in nodes and name not in not_ready:
            not_ready[name] = (f"did not answer the ready query within {settings.timeout:g} s" if unanswered
                               else "its SuperNode was not connected to the SuperLink")
    if not settings.expected_factories:
        not_ready.update(unanswered)
    return ReadyTally(nodes, dict(sorted(not_ready.items())), unanswered, len(sent_to))


@dataclass
class RoundAttempt:
    """One masked round as it went: its id, the participants fixed for it, who delivered, who did not and why."""

    number: int
    round_id: str
    participants: list[str]
    contributors: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every participant delivered a valid contribution (the masks then cancel)."""
        return sorted(self.contributors) == sorted(self.participants)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.number, "round_id": self.round_id, "participants": list(self.participants),
                "contributors": list(self.contributors), "missing": dict(self.missing),
                "complete": self.complete}


@dataclass
class MaskedProgress:
    """What a masked federation did so far (kept up to date, so a failed run still reports it)."""

    roster_digest: str
    max_rounds: int
    ready: list[str] = field(default_factory=list)
    not_ready: dict[str, str] = field(default_factory=dict)
    attempts: list[RoundAttempt] = field(default_factory=list)
    nodes: int = 0

    @property
    def round_id(self) -> str | None:
        """The id of the round that completed (the aggregate's round), or ``None``."""
        last = self.attempts[-1] if self.attempts else None
        return last.round_id if last is not None and last.complete else None

    def missing(self) -> dict[str, str]:
        """Every factory left out of the final round and why: not ready, or dropped out of round k."""
        out = dict(self.not_ready)
        for attempt in self.attempts:
            for name, why in attempt.missing.items():
                out.setdefault(name, f"dropped out of round {attempt.number} ({attempt.round_id}): {why}")
        return dict(sorted(out.items()))

    def summary(self, final: Tally | None = None) -> Tally:
        """The federation as one :class:`Tally`: the final round's contributors, and everyone missing."""
        last = self.attempts[-1] if self.attempts else None
        contributors = list(final.contributors) if final else (list(last.contributors) if last else [])
        bundles = list(final.bundles) if final else []
        latency = dict(final.reply_seconds) if final else {}
        unanswered = dict(final.unanswered_nodes) if final else {}
        missing = {k: v for k, v in self.missing().items() if k not in contributors}
        return Tally(contributors, bundles, missing, unanswered, self.nodes, latency)

    def to_dict(self) -> dict[str, Any]:
        return {"roster_digest": self.roster_digest, "max_rounds": self.max_rounds, "ready": list(self.ready),
                "not_ready": dict(self.not_ready), "round_id": self.round_id,
                "rounds": [attempt.to_dict() for attempt in self.attempts]}


def check_survivors(participants: Sequence[str], settings: RunSettings, progress: MaskedProgress) -> None:
    """Fail clearly when too few factories are left for a masked round (threshold, and at least two)."""
    need = max(settings.min_contributors, 2)
    if len(participants) >= need:
        return
    where = (f"after round {progress.attempts[-1].number} ({progress.attempts[-1].round_id})"
             if progress.attempts else "after the ready step")
    why = "" if settings.min_contributors >= 2 else " (a masked round needs at least two: masks are pairwise)"
    raise TooFewContributorsError(
        f"only {len(participants)} factories left {where} ({', '.join(participants) or 'none'}), fewer than "
        f"min-contributors = {settings.min_contributors}{why}; missing: "
        + ("; ".join(f"{name} ({reason})" for name, reason in progress.missing().items()) or "none")
    )


def aggregate_tally(result: Tally, settings: RunSettings) -> Bundle:
    """The aggregate of exactly the accepted bundles, or a clear error if too few factories answered."""
    total = len(set(result.contributors) | set(result.missing)) or result.nodes
    if len(result.contributors) < settings.min_contributors:
        raise TooFewContributorsError(
            f"only {len(result.contributors)} of {total} factories contributed "
            f"({', '.join(result.contributors) or 'none'}), fewer than min-contributors = "
            f"{settings.min_contributors}; missing: {result.describe_missing()}"
        )
    return aggregate(result.bundles)


def report(result: Tally | None, settings: RunSettings | None, *, status: str, error: str | None = None,
           error_type: str | None = None, run_id: int | None = None, out: str | None = None,
           seconds: float | None = None, masked: MaskedProgress | None = None) -> dict[str, Any]:
    """The JSON report of a federation (what the ServerApp writes to the run config's ``report``).

    ``masked`` is ``false`` for an unmasked run; for a masked run it holds the roster
    digest, who was ready, and every round tried (``rounds``: id, participants,
    contributors, missing), and ``round_id`` is the round of the aggregate.
    """
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "status": status,
        "error": error,
        "error_type": error_type,
        "run_id": run_id,
        "kind": settings.kind if settings else None,
        "min_contributors": settings.min_contributors if settings else None,
        "nodes": result.nodes if result else 0,
        "contributors": list(result.contributors) if result else [],
        "missing": dict(result.missing) if result else {},
        "unanswered_nodes": dict(result.unanswered_nodes) if result else {},
        "reply_seconds": dict(result.reply_seconds) if result else {},
        "aggregate": out,
        "seconds": seconds,
        "masked": masked.to_dict() if masked is not None else False,
        "round_id": masked.round_id if masked is not None else None,
    }
