"""What travels between the hefed ServerApp (aggregator) and its ClientApps (factories), without importing Flower.

An **unmasked** round (run config ``roster`` empty) is one message type (``query.contribute``):

* **request** (aggregator → every connected factory), a flat record of ``kind`` (a kind that
  travels by Flower, see :data:`hefed.flower.KINDS`), the consortium ``public-key`` (its
  modulus ``n`` in base64url, nothing else: Paillier public keys have no other part), the
  key's ``key-fingerprint``, for a kind that evaluates a model, the global ``model`` as JSON, and in
  a run of a study (run config ``study``) the study's ``study`` digest (never its contents: each
  factory computes from its own copy of the study, and refuses a request of another study);
* **reply** (factory → aggregator), ``status`` ``ok`` with the ``factory-id`` and the
  encrypted ``bundle`` as bytes (the UTF-8 JSON of :meth:`hefed.protocol.Bundle.to_dict`, never
  pickle), or ``status`` ``error`` with the ``factory-id`` and the ``error``'s fixed category
  (:func:`hefed.errors.reply_category`, one of :data:`hefed.errors.REPLY_CATEGORIES`), never the
  message itself, which stays in the factory's own log.

A **masked, signed** round (run config ``roster`` set) is a version 2 round of :mod:`hefed.protocol`, which
survives drop-outs without re-runs. Four message types, each a query to the participants' nodes only:

1. **ready** (``query.ready``, cheap: nothing is read or encrypted): the request carries
   ``kind``, ``public-key``, ``key-fingerprint``, the consortium ``roster`` (its public JSON),
   its ``roster-digest``, in a study the ``study`` digest, and a fresh random ``nonce``; a factory
   checks its pins (and its study) and that its enrolled identity is the roster's entry for it,
   and replies ``status`` ``ok`` with its ``factory-id`` and a ``signature`` (hex, Ed25519) over
   :func:`ready_statement` (the nonce, its id, the key fingerprint, the roster digest, the study
   and its Flower node id), or ``error`` with a category. The aggregator fixes the participants:
   the roster members whose signature verifies against the roster, each on the node it signed for.
2. **join** (``query.join``): the ready request's key, roster and study fields (no nonce) plus the
   ``round`` (public JSON of the version 2 :class:`hefed.protocol.Round`: id, participants, roster
   digest, threshold, study); the factory checks its pins again, then runs
   :func:`hefed.protocol.join_round` (its round secret stays in its identity folder) and replies
   its signed ``join`` (JSON of :class:`hefed.protocol.Join`, with its encrypted shares for the peers).
3. **contribute** (``query.contribute``, to the joined factories): the unmasked request plus the
   ``round-keys`` (JSON of :class:`hefed.protocol.RoundKeys` *without* the sealed shares: the joins'
   signed headers, n entries rather than n²) and the ``roster``; each factory verifies the keys
   (:func:`hefed.protocol.accept_round_keys`), encrypts, adds its pairwise masks and self-mask, signs,
   and replies with the bundle as above.
4. **reveal** (``query.reveal``, to the survivors: those who delivered): the key, roster and study
   fields plus the ``unmask-request`` (JSON of :class:`hefed.protocol.UnmaskRequest` holding only this
   factory's sealed shares); the factory runs :func:`hefed.protocol.reveal` (refusing what the library
   refuses: another survivor set for the same round, a set that is not the study's established set, …)
   and replies its signed ``reveal``.

A factory refuses a contribute request carrying a version 1 ``round`` (no drop-out recovery: a drop-out
would mean a re-run, whose sum differenced with the first singles a factory out).

No private key is ever read, sent or accepted here: the request carries ``n`` alone. A
factory's identity (its Ed25519 and X25519 private keys) is read only by that factory's
ClientApp; only signatures and masked ciphertexts leave it.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from phe import PaillierPublicKey
from phe.util import base64_to_int, int_to_base64

from .._files import MAX_JSON_BYTES, parse_json_object
from .._keys import MAX_BITS, MIN_TEST_BITS, key_fingerprint
from ..errors import HefedError, InvalidFileError, KeyMismatchError, RoundError, UsageError, reply_category
from ..models import LinearModel
from ..protocol import Bundle, Join, Reveal, Roster, Round, RoundKeys, UnmaskRequest
from ._config import flower_kind, takes_model

#: The ClientApp action and the Flower message type it answers.
ACTION = "contribute"
MESSAGE_TYPE = f"query.{ACTION}"
#: The cheap first step of a masked round: which factories are there and able to take part.
READY_ACTION = "ready"
READY_MESSAGE_TYPE = f"query.{READY_ACTION}"
#: A masked round's second step: each participant joins the version 2 round (mask key, self-mask seed, shares).
JOIN_ACTION = "join"
JOIN_MESSAGE_TYPE = f"query.{JOIN_ACTION}"
#: A masked round's last step: each survivor reveals its shares of the survivors' seeds and the drop-outs' mask keys.
REVEAL_ACTION = "reveal"
REVEAL_MESSAGE_TYPE = f"query.{REVEAL_ACTION}"
#: Names of the records inside the request and reply messages.
REQUEST_RECORD = "hefed-request"
REPLY_RECORD = "hefed-reply"
#: Longest text of one line for a person (the aggregator's log and report).
MAX_ERROR_CHARS = 500

#: A study digest as a request carries it.
_DIGEST = re.compile(r"[0-9a-f]{32}")
#: A ready request's nonce: 32 hex digits (128 bits from :mod:`secrets`), fresh for every ready step.
_NONCE = re.compile(r"[0-9a-f]{32}")
#: What a ready reply's signature covers comes after this prefix (no other hefed signature starts so).
READY_CONTEXT = b"hefed ready reply v1\n"

#: A reply record's values: strings, and the bundle as bytes.
ReplyRecord = dict[str, str | bytes]


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Collapse an error text to one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- keys ---------------------------------------------------------------------------------------------------


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

    :class:`~hefed.protocol.Roster` and :class:`~hefed.protocol.Round` are read from files
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
            raise exc.reworded(str(exc).replace(str(path), source)) from None


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
    """The round a join request carries; it must have been made from ``roster``."""
    round_ = _load_text(request.get("round"), "round", Round.load)
    if round_.roster_digest != roster.digest():
        raise RoundError(f"round {round_.round_id} was made from roster {round_.roster_digest}, "
                         f"not from the roster sent ({roster.digest()})")
    return round_


# --- requests -----------------------------------------------------------------------------------------------


def _study_field(study: str | None) -> dict[str, str]:
    """The ``study`` entry of a request: present only in a run of a study."""
    return {"study": study} if study else {}


def make_ready_request(kind: str, public_key: PaillierPublicKey, roster: Roster,
                       study: str | None = None, nonce: str | None = None) -> dict[str, str]:
    """The ready query of a masked round: what will be asked, under which key, the roster (all public), in a
    run of a study the study's digest, and a fresh random ``nonce`` (``secrets.token_hex``) every ready reply
    must sign, so a signature from an earlier ready step cannot be replayed."""
    flower_kind(kind)
    return {"kind": kind, **public_key_to_request(public_key), "roster": roster_to_text(roster),
            "roster-digest": roster.digest(), **_study_field(study),
            "nonce": nonce if nonce is not None else secrets.token_hex(16)}


def nonce_from_request(request: Mapping[str, Any]) -> str:
    """The nonce a ready request carries (32 hex digits), which the factory's signed reply covers."""
    value = request.get("nonce")
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise InvalidFileError("request: 'nonce' missing or not 32 hex digits (a ready reply signs a fresh nonce)")
    return value


#: Fields of a ready reply that its signature does not cover as "extra" (they are covered otherwise, or are it).
READY_BASE_FIELDS = frozenset({"status", "factory-id", "signature"})


def ready_extra(record: Mapping[str, Any]) -> dict[str, str]:
    """The fields a ready reply carries beyond status, factory id and signature (e.g. a drop-out recovery's
    public mask keys and encrypted shares): every one of them is signed (:func:`ready_statement`)."""
    return {str(k): v if isinstance(v, str) else repr(v) for k, v in record.items() if k not in READY_BASE_FIELDS}


def ready_statement(nonce: str, factory_id: str, key_fingerprint: str, roster_digest: str, study: str | None,
                    node_id: int | None, extra: Mapping[str, str] | None = None) -> bytes:
    """The bytes a factory signs in its ready reply (Ed25519, its identity's signing key): the request's nonce,
    its factory id, the fingerprint of the key it will encrypt under, the roster and the study it checked, the
    Flower node it answers from (``None`` where Flower does not say) and every ``extra`` field its reply
    carries (:func:`ready_extra`). The aggregator rebuilds the statement from what it sent, the node the reply
    came from and the reply's extra fields, never from the reply's word on the rest."""
    statement: dict[str, Any] = {"nonce": nonce, "factory_id": factory_id, "key_fingerprint": key_fingerprint,
                                 "roster_digest": roster_digest, "study": study or None,
                                 "node_id": int(node_id) if node_id is not None else None}
    if extra:
        statement["extra"] = dict(sorted(extra.items()))
    return READY_CONTEXT + json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")


def make_request(kind: str, public_key: PaillierPublicKey, model: LinearModel | None = None,
                 study: str | None = None) -> dict[str, str]:
    """The request record the aggregator sends to every factory (``model``: for a kind that evaluates one;
    ``study``: the digest of the run's study, if it has one)."""
    needs_model = takes_model(flower_kind(kind))
    if needs_model and model is None:
        raise UsageError(f"a {kind} federation needs the global model (run config 'model')", parameters=("model",))
    return {
        "kind": kind,
        **public_key_to_request(public_key),
        "model": json.dumps(model.to_dict(), allow_nan=False) if needs_model and model is not None else "",
        **_study_field(study),
    }


def study_from_request(request: Mapping[str, Any]) -> str | None:
    """The study digest a request names (``None``: a run without a study)."""
    value = request.get("study")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise InvalidFileError("request: 'study' is not a study digest of 32 hex digits")
    return value


def masked_base(request: Mapping[str, str], roster: Roster) -> dict[str, str]:
    """What every request of a masked round carries: the unmasked request's kind, key and study (for the factory's
    pins) and the roster with its digest (public)."""
    return {**request, "roster": roster_to_text(roster), "roster-digest": roster.digest()}


def make_join_request(request: Mapping[str, str], round_: Round, roster: Roster) -> dict[str, str]:
    """The join query of a version 2 round: the masked base and the proposed ``round`` (public)."""
    return {**masked_base(request, roster), "round": round_to_text(round_)}


def make_masked_request(request: Mapping[str, str], keys: RoundKeys | Round, roster: Roster) -> dict[str, str]:
    """A contribute request for a masked round: the masked base plus the round keys without the sealed shares
    (:meth:`hefed.protocol.RoundKeys.headers`: the factories need only the joins' signed headers).

    Given a bare :class:`~hefed.protocol.Round` instead (what hefed's ServerApp never sends, but an older or
    hostile aggregator could: a version 1 round), the request carries it as ``round``; factories refuse it."""
    if isinstance(keys, Round):
        return {**masked_base(request, roster), "round": round_to_text(keys)}
    return {**masked_base(request, roster), "round-keys": _json_text(keys.to_dict(with_shares=False))}


def make_reveal_request(request: Mapping[str, str], unmask: UnmaskRequest, roster: Roster) -> dict[str, str]:
    """A reveal request to one survivor: the masked base plus the unmask request holding only its own shares
    (:meth:`hefed.protocol.UnmaskRequest.for_factory`)."""
    return {**masked_base(request, roster), "unmask-request": _json_text(unmask.to_dict())}


def _json_text(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _message_object(text: Any, source: str) -> dict[str, Any]:
    """The JSON object a request or reply field carries, parsed within hefed's caps for round messages."""
    if not isinstance(text, str) or not text:
        raise InvalidFileError(f"{source}: missing")
    return parse_json_object(text.encode("utf-8"), source, "round")


def round_keys_from_request(request: Mapping[str, Any], roster: Roster) -> RoundKeys:
    """The round keys a contribute request carries; they must be of a version 2 round made from ``roster``."""
    keys = RoundKeys.from_dict(_message_object(request.get("round-keys"), "request 'round-keys'"),
                               "request 'round-keys'")
    if keys.round.roster_digest != roster.digest():
        raise RoundError(f"round {keys.round_id} was made from roster {keys.round.roster_digest}, "
                         f"not from the roster sent ({roster.digest()})")
    return keys


def unmask_request_from_request(request: Mapping[str, Any]) -> UnmaskRequest:
    """The unmask request a reveal request carries."""
    return UnmaskRequest.from_dict(_message_object(request.get("unmask-request"), "request 'unmask-request'"),
                                   "request 'unmask-request'")


def join_from_reply(record: Mapping[str, Any], source: str) -> Join:
    """The signed join an ``ok`` join reply carries (parsed, not yet verified)."""
    return Join.from_dict(_message_object(record.get("join"), source), source)


def reveal_from_reply(record: Mapping[str, Any], source: str) -> Reveal:
    """The signed reveal an ``ok`` reveal reply carries (parsed, not yet verified)."""
    return Reveal.from_dict(_message_object(record.get("reveal"), source), source)


def join_reply(factory_id: str, join: Join) -> ReplyRecord:
    """A factory's ``ok`` join reply: its id and its signed join (with the sealed shares for its peers)."""
    return {"status": "ok", "factory-id": factory_id, "join": _json_text(join.to_dict())}


def reveal_reply(factory_id: str, answer: Reveal) -> ReplyRecord:
    """A factory's ``ok`` reveal reply: its id and its signed reveal."""
    return {"status": "ok", "factory-id": factory_id, "reveal": _json_text(answer.to_dict())}


def record_bytes(record: Mapping[str, Any]) -> int:
    """The payload of a request or reply record in bytes: its keys and values (UTF-8 text, bytes as they are),
    without Flower's own framing (message metadata, protobuf)."""
    total = 0
    for key, value in record.items():
        total += len(str(key).encode("utf-8"))
        total += len(value) if isinstance(value, bytes) else len(str(value).encode("utf-8"))
    return total


def model_from_request(request: Mapping[str, Any]) -> LinearModel:
    """The global model an evaluation request carries."""
    text = request.get("model")
    if not isinstance(text, str) or not text:
        raise InvalidFileError(f"request: a {request.get('kind')} request without a model")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidFileError("request: 'model' is not JSON") from None
    return LinearModel.from_dict(obj, "model from the aggregator")


# --- bundles and replies ------------------------------------------------------------------------------------


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """A bundle as it travels: the UTF-8 JSON of :meth:`Bundle.to_dict`."""
    return json.dumps(bundle.to_dict(), allow_nan=False, separators=(",", ":")).encode("utf-8")


def bundle_from_bytes(data: bytes, source: str) -> Bundle:
    """Parse and fully validate a bundle received as bytes (JSON only; nothing is unpickled): its size, JSON
    values and integer digits are checked against the caps before anything is built (:meth:`Bundle.from_bytes`)."""
    return Bundle.from_bytes(data, source)


def ok_reply(factory_id: str, bundle: Bundle | None = None, signature: bytes | None = None) -> ReplyRecord:
    """A factory's ``ok`` reply: its id, and its bundle's bytes (none for the ready query), or the hex
    ``signature`` of its ready statement (:func:`ready_statement`)."""
    record: ReplyRecord = {"status": "ok", "factory-id": factory_id}
    if bundle is not None:
        record["bundle"] = bundle_to_bytes(bundle)
    if signature is not None:
        record["signature"] = signature.hex()
    return record


def error_reply(factory_id: str, exc: BaseException) -> ReplyRecord:
    """A factory's ``error`` reply: its id and the fixed category of the exception
    (:func:`hefed.errors.reply_category`), never its message: the message may hold a cell, a row number, a
    column statistic or a path, and stays in the factory's own log."""
    return {"status": "error", "factory-id": factory_id, "error": reply_category(exc)}


def error_text(exc: BaseException) -> str:
    """The full one-line message of ``exc``, for the factory's own log only."""
    return one_line(str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}", 4000)


@dataclass
class Reply:
    """What came back from one SuperNode: a hefed reply record, or a Flower-level error."""

    node_id: int
    record: Mapping[str, Any] | None = None
    flower_error: str | None = None
    seconds: float | None = None  # from sending the request to receiving this reply

    @property
    def size(self) -> int:
        """The reply's payload in bytes (:func:`record_bytes`; 0 for a Flower-level error)."""
        return record_bytes(self.record) if self.record is not None else 0

    @property
    def factory_id(self) -> str | None:
        """The factory id the reply claims (unchecked), if it has a record."""
        value = self.record.get("factory-id") if self.record is not None else None
        return value if isinstance(value, str) else None

    def describe(self, what: str = "its bundle", name: str | None = None) -> str:
        """One line for a person: who answered and how (``what``: what an ``ok`` reply delivered; ``name``: the
        factory the node announced earlier, if known)."""
        took = f" ({self.seconds:.1f} s)" if self.seconds is not None else ""
        if self.record is None:
            who = name or f"node {self.node_id}"
            return f"{who}: {one_line(self.flower_error or 'error without a reason')}{took}"
        name = self.factory_id or name or f"node {self.node_id}"
        if self.record.get("status") == "ok":
            return f"{name}: {what}{took}"
        return f"{name}: error: {one_line(str(self.record.get('error', 'malformed reply')))}{took}"
