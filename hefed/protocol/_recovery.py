"""Rounds that survive drop-outs (version 2): secure aggregation à la Bonawitz et al. (CCS 2017) on Paillier.

A version 1 round (:func:`~hefed.protocol.new_round`) needs every participant to deliver, or its
pairwise masks do not cancel. A version 2 round keeps going when some factories drop out, without
anyone re-encrypting: every factory also adds a **self-mask**, and Shamir-shares (t-of-n) both the
seed of its self-mask and its per-round mask key among the participants. Messages, in order:

1. **Round** (aggregator, :func:`propose_round`): random id, participants (roster members), roster
   digest, threshold ``t`` (default ``max(⌊n/2⌋ + 1, 2)``, at least a study's ``min_contributors``)
   and the study it serves. Version 2 of the round file.
2. **Join** (factory, :func:`join_round`): checks membership (the roster it pinned, no strangers), the
   threshold (more than half: two disjoint groups of ``t`` honest factories cannot exist, see 6) and,
   in a study, that the participants are the study's *established set* once one is recorded. Makes a
   fresh X25519 **mask key** and a 32-byte **self-mask seed** (:mod:`secrets`), splits both t-of-n over
   GF(2^256 + 297) (index = position in the participants + 1), and encrypts each peer's pair of shares
   with ChaCha20-Poly1305 under ``HKDF(X25519(identity_i, identity_j), salt = round id,
   info = "hefed-share|i|j")``, the associated data binding round, sender and receiver. It signs
   (Ed25519 identity) the round id, its id, the mask public key, a **commitment** to the seed
   (SHA-256; not in the 2017 paper: it lets anyone who reconstructs a seed check it) and the digest
   of the encrypted shares. The private mask key and seed stay in the identity folder (0600) until
   the reveal. The signed join doubles as the authenticated "ready" answer.
3. **Round keys** (aggregator, :func:`start_round`): the verified joins; the joined set ``U1`` (≥ t).
   Every factory verifies them before encrypting (:func:`accept_round_keys`): every signature, its
   own join unchanged, the established set. Factories may get them without the sealed shares
   (:meth:`RoundKeys.headers`, n entries instead of n²; same digest): only the aggregator needs those.
4. **Contribution** (factory, :class:`Masking` / :func:`mask_contribution`): pairwise masks from
   ``X25519(mask_i, mask_j)`` for every pair in ``U1`` (HKDF, uniform mod n, + for the smaller id,
   − for the larger) plus the self-mask expanded from the seed, added homomorphically
   (``c · (1 + M·n) mod n²``); the manifest is signed as in version 1 plus the round keys' digest.
5. **Unmask request** (aggregator, :func:`make_unmask_request`): the survivors ``U2 ⊆ U1`` who delivered
   valid contributions, the drop-outs ``U1 \\ U2``, and for each survivor the encrypted shares it
   holds. Fewer than ``t`` survivors (or than the study's threshold): the round fails, naming who is
   missing.
6. **Reveal** (factory, :func:`reveal`): checks the request (survivors ⊆ U1, at least ``max(t, study
   threshold)`` of them, itself among them, the round keys it encrypted with, the study's established
   set — the first reveal in a study records it) and reveals, per member of ``U1``, EITHER its share
   of the self-mask seed (a survivor) OR of the mask key (a drop-out), never both: a second request
   for the same round with another survivor set is refused (the ledger ``rounds-used.json``). With
   ``t > n/2`` two requests would need two groups of ``t`` revealers, which share an honest factory.
   Signed. The private mask key and seed are then deleted; no contribution to the round after it.
7. **Unmask** (aggregator, :func:`unmask`): with ≥ t signed reveals, reconstructs the survivors' seeds
   (checked against their commitments) and the drop-outs' mask keys (checked against their public
   keys), computes the plaintext correction ``−Σ_{s∈U2} self_s − Σ_{s∈U2, d∈U1\\U2} ±pair_sd mod n`` and
   multiplies ``Π c_s · (1 + correction·n) mod n²``; the aggregate carries the manifests, the
   contributions, the round keys (without the encrypted shares) and the signed reveals.
8. **Key holder** (:func:`verify_aggregate`): every join, manifest and reveal signed and consistent, ≥ t
   reveals, the correction recomputed from the signed reveals and the product of the signed
   contributions recomputed — equal to the aggregate's ciphertexts, or refused. Returns the
   verified contributor set: the survivors, whose exact pooled sums the aggregate then decrypts to
   (counter = |survivors|).

**What the masks protect, and against whom.** The aggregator alone learns nothing: every value is
Paillier-encrypted. The masks protect each contribution from the *key holder*, who sees every signed
contribution in the aggregate (to recompute the product) and could decrypt it. From the reveals it
learns the survivors' self-masks and their pairwise masks with the drop-outs, never a pairwise mask
between two survivors: each survivor stays masked (there are at least t ≥ 2 survivors). A late
bundle of a declared drop-out stays masked by its self-mask: only its mask key was revealed. An
aggregator colluding with the key holder can also ask for reveals of its choice, but each honest
factory reveals for one survivor set per round, so to get both shares of a victim from honest
factories it needs two disjoint groups of ``t − c`` of them, where ``c`` factories collude too:
impossible while ``c < 2t − n``. The default ``t = ⌊n/2⌋ + 1`` therefore resists an aggregator and key
holder colluding with no factory (n odd) or one (n even); each further colluding factory tolerated
costs a higher threshold (Bonawitz et al. take t > 2n/3 against n/3), i.e. fewer drop-outs. Any
``n − 1`` colluding factories learn the last one's values from the sum itself, whatever the protocol.

Departures from the 2017 paper: the correction is added as ``g^c`` (deterministic) rather than encrypted
with fresh randomness, so the key holder recomputes it from the signed reveals and compares ciphertexts
exactly instead of trusting the aggregator; the seed is committed to in the signed join, so a wrong
share (even one its revealer signed) is detected instead of silently yielding noise; the per-factory
ledger (one survivor set per round, nothing masked after the reveal, the study's established set)
replaces the paper's consistency-check round; factories refuse thresholds of half or less.

All functions are pure message → message (plus the factory's local state in its identity folder when
the identity was loaded from one), so a Flower ServerApp/ClientApp can drive them; :func:`run_round`
runs a whole round in one process (tests, simulations).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding as RawEncoding
from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat, PublicFormat

from .._files import JsonDocument, atomic_write_json, check_format, is_digest, read_json_object
from ..errors import (
    DuplicateContributorError,
    IncompleteRoundError,
    InvalidFileError,
    RoundError,
    TooFewContributorsError,
    UsageError,
)
from ..primitives import shamir
from ._bundle import Bundle
from ._identity import FactoryIdentity, Roster
from ._ids import FACTORY_ID_PATTERN
from ._rounds import (
    MAX_PARTICIPANTS,
    Round,
    _context,
    _mask_values,
    add_plaintexts,
    check_plain_contribution,
    check_round_membership,
    check_signed_manifests,
    check_signed_product,
    mask_and_sign,
    read_ledger,
    sign_masked,
    verify_aggregate_v1,
    verify_contribution,
    write_ledger,
)
from ._study import Study

JOIN_FORMAT = "hefed.round_join"
KEYS_FORMAT = "hefed.round_keys"
REQUEST_FORMAT = "hefed.unmask_request"
REVEAL_FORMAT = "hefed.round_reveal"
SECRET_FORMAT = "hefed.round_secret"
MESSAGE_VERSION = 1
_PAIR_INFO = b"hefed-pair-mask-v2"
_SELF_INFO = b"hefed-self-mask-v2"
_SHARE_INFO = "hefed-share"
# ChaCha20-Poly1305 nonce + two shares + tag
_SEALED_BYTES = 12 + 2 * shamir.SHARE_BYTES + 16


# --- encodings ------------------------------------------------------------------------------------
def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: Any, source: str, what: str, length: int) -> bytes:
    if not isinstance(text, str) or len(text) != (4 * length + 2) // 3:
        raise InvalidFileError(f"{source}: {what} must be {length} bytes in base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidFileError(f"{source}: {what} is not valid base64url") from None
    if len(raw) != length:
        raise InvalidFileError(f"{source}: {what} must be {length} bytes")
    return raw


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _share_hex(value: int) -> str:
    return f"{value:0{2 * shamir.SHARE_BYTES}x}"


def _parse_share(text: Any, source: str, what: str) -> int:
    if not isinstance(text, str) or len(text) != 2 * shamir.SHARE_BYTES:
        raise InvalidFileError(f"{source}: {what} must be {2 * shamir.SHARE_BYTES} hex digits")
    try:
        value = int(text, 16)
    except ValueError:
        raise InvalidFileError(f"{source}: {what} is not hexadecimal") from None
    if value >= shamir.PRIME:
        raise InvalidFileError(f"{source}: {what} is not a field element")
    return value


def _ids(value: Any, source: str, what: str) -> tuple[str, ...]:
    if (not isinstance(value, list) or len(value) > MAX_PARTICIPANTS
            or not all(isinstance(v, str) and FACTORY_ID_PATTERN.fullmatch(v) for v in value)
            or value != sorted(set(value))):
        raise InvalidFileError(f"{source}: {what!r} must be a sorted list of distinct factory ids")
    return tuple(value)


def _fields(obj: Any, source: str, file_format: str, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{source}: a {what} must be a JSON object")
    check_format(obj, source, file_format, MESSAGE_VERSION, what)
    if set(obj) != {"format", "version", *names}:
        raise InvalidFileError(f"{source}: a {what} has exactly the fields {sorted(names)}")
    return obj


def _check_mask_public(raw: bytes, source: str) -> None:
    try:  # a low-order point yields no shared secret, hence no mask
        X25519PrivateKey.from_private_bytes(bytes(range(1, 33))).exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise InvalidFileError(f"{source}: the mask public key is not a valid X25519 key") from None


# --- the round proposal ---------------------------------------------------------------------------
def default_threshold(count: int) -> int:
    """The smallest threshold a factory accepts for ``count`` participants: more than half, at least 2."""
    return max(count // 2 + 1, 2)


def propose_round(roster: Roster, participants: Iterable[str], *, threshold: int | None = None,
                  study: Study | None = None) -> Round:
    """A version 2 round (random 128-bit id) of roster members: any ``threshold`` of the joined
    factories can unmask the survivors' sum. The default and the floor is :func:`default_threshold`,
    raised to a ``study``'s ``min_contributors``."""
    chosen = sorted(set(participants))
    if len(chosen) < 2:
        raise UsageError("a round needs at least two participants (masks are pairwise)")
    if len(chosen) > MAX_PARTICIPANTS:
        raise UsageError(f"a round has at most {MAX_PARTICIPANTS} participants")
    for factory_id in chosen:
        roster.get(factory_id)
    floor = default_threshold(len(chosen))
    if study is not None:
        study.check_roster(roster)
        floor = max(floor, study.min_contributors)
    chosen_threshold = floor if threshold is None else threshold
    if isinstance(chosen_threshold, bool) or not isinstance(chosen_threshold, int) or chosen_threshold < floor:
        raise UsageError(f"the threshold must be at least {floor} for {len(chosen)} participants (more than half"
                         + (", and the study's min_contributors" if study is not None else "") + ")")
    if chosen_threshold > len(chosen):
        raise UsageError(f"the threshold {chosen_threshold} exceeds the {len(chosen)} participants")
    return Round(secrets.token_hex(16), tuple(chosen), roster.digest(), chosen_threshold,
                 study.digest if study is not None else None)


def _index(round_: Round, factory_id: str) -> int:
    return round_.participants.index(factory_id) + 1


def _parse_signature(text: Any, source: str) -> bytes:
    """An Ed25519 signature: 64 bytes in hex."""
    try:
        signature = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        signature = b""
    if len(signature) != 64:
        raise InvalidFileError(f"{source}: 'signature' must be 64 bytes in hex")
    return signature


def _verify_member_signature(roster: Roster, factory_id: str, signature: bytes, message: bytes, source: str,
                             what: str) -> None:
    """Refuse a message not signed by roster member ``factory_id``'s identity key (``what`` names it)."""
    member = roster.members.get(factory_id)
    if member is None:
        raise RoundError(f"{source}: {factory_id!r} is not in the roster")
    try:
        member.verifier().verify(signature, message)
    except InvalidSignature:
        raise RoundError(f"{source}: invalid signature for {factory_id!r}'s {what}") from None


# --- join -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Join(JsonDocument):
    """A factory's signed join: its mask public key, seed commitment and (to the aggregator) the
    encrypted shares for every other participant. ``shares`` is ``None`` in round keys' headers."""

    LABEL = "join"

    round_id: str
    factory_id: str
    mask_public: bytes
    seed_commitment: str
    shares_digest: str
    signature: bytes
    shares: Mapping[str, bytes] | None = None

    def body(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "factory_id": self.factory_id, "mask_public": _b64(self.mask_public),
                "seed_commitment": self.seed_commitment, "shares_digest": self.shares_digest}

    def signed_bytes(self) -> bytes:
        return _canonical({"message": JOIN_FORMAT, **self.body()})

    def header(self) -> Join:
        return replace(self, shares=None)

    def to_dict(self) -> dict[str, Any]:
        out = {"format": JOIN_FORMAT, "version": MESSAGE_VERSION, **self.body(), "signature": self.signature.hex()}
        if self.shares is not None:
            out["shares"] = {receiver: _b64(sealed) for receiver, sealed in sorted(self.shares.items())}
        return out

    @classmethod
    def from_dict(cls, obj: Any, source: str = "join") -> Join:
        names = {"round_id", "factory_id", "mask_public", "seed_commitment", "shares_digest", "signature"}
        if isinstance(obj, dict) and "shares" in obj:
            names.add("shares")
        obj = _fields(obj, source, JOIN_FORMAT, "join", names)
        factory_id = obj["factory_id"]
        if not is_digest(obj["round_id"]) or not isinstance(factory_id, str) \
                or not FACTORY_ID_PATTERN.fullmatch(factory_id):
            raise InvalidFileError(f"{source}: invalid 'round_id' or 'factory_id'")
        for name in ("seed_commitment", "shares_digest"):
            if not isinstance(obj[name], str) or len(obj[name]) != 64 or obj[name] != obj[name].lower():
                raise InvalidFileError(f"{source}: {name!r} must be 64 lowercase hex digits")
            try:
                bytes.fromhex(obj[name])
            except ValueError:
                raise InvalidFileError(f"{source}: {name!r} must be 64 lowercase hex digits") from None
        mask_public = _unb64(obj["mask_public"], source, "'mask_public'", 32)
        _check_mask_public(mask_public, source)
        signature = _parse_signature(obj["signature"], source)
        shares = None
        if "shares" in obj:
            raw = obj["shares"]
            if not isinstance(raw, dict) or len(raw) > MAX_PARTICIPANTS:
                raise InvalidFileError(f"{source}: 'shares' must map receivers to sealed shares")
            shares = {}
            for receiver, text in raw.items():
                if not isinstance(receiver, str) or not FACTORY_ID_PATTERN.fullmatch(receiver):
                    raise InvalidFileError(f"{source}: 'shares' names an invalid factory id")
                shares[receiver] = _unb64(text, source, f"share for {receiver!r}", _SEALED_BYTES)
        return cls(obj["round_id"], factory_id, mask_public, obj["seed_commitment"], obj["shares_digest"],
                   signature, shares)

    def verify(self, roster: Roster, round_: Round, source: str = "join") -> None:
        """The join is a participant's, signed with its roster key, for ``round_``; its shares (when
        present) are addressed to every other participant and match the signed digest."""
        if self.round_id != round_.round_id:
            raise RoundError(f"{source}: a join for round {self.round_id}, not {round_.round_id}")
        if self.factory_id not in round_.participants:
            raise RoundError(f"{source}: {self.factory_id!r} is not a participant of round {round_.round_id}")
        _verify_member_signature(roster, self.factory_id, self.signature, self.signed_bytes(), source, "join")
        if self.shares is not None:
            expected = sorted(p for p in round_.participants if p != self.factory_id)
            if sorted(self.shares) != expected:
                raise RoundError(f"{source}: {self.factory_id!r}'s shares are not addressed to every other participant")
            if _shares_digest(self.shares) != self.shares_digest:
                raise RoundError(f"{source}: {self.factory_id!r}'s encrypted shares are not the ones it signed")


def _shares_digest(shares: Mapping[str, bytes]) -> str:
    return hashlib.sha256(_canonical({r: _b64(s) for r, s in shares.items()})).hexdigest()


def _seed_commitment(round_id: str, factory_id: str, seed: bytes) -> str:
    return hashlib.sha256(f"hefed-seed|{round_id}|{factory_id}|".encode() + seed).hexdigest()


def _share_cipher(identity: FactoryIdentity, roster: Roster, round_id: str, sender: str,
                  receiver: str) -> tuple[ChaCha20Poly1305, bytes]:
    peer = roster.get(receiver if sender == identity.factory_id else sender)
    key = HKDF(hashes.SHA256(), 32, bytes.fromhex(round_id),
               f"{_SHARE_INFO}|{sender}|{receiver}".encode()).derive(identity.shared_secret(peer))
    return ChaCha20Poly1305(key), f"{_SHARE_INFO}|{round_id}|{sender}|{receiver}".encode()


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(RawEncoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass
class RoundSecret:
    """What a factory keeps of a round it joined (never sent): its mask key, its seed, its own shares
    of both, and what it accepted since (the round keys' digest and the joined set)."""

    round: Round
    factory_id: str
    mask_private: bytes
    seed: bytes
    own_seed_share: int
    own_key_share: int
    join_digest: str
    min_survivors: int
    round_keys_digest: str | None = None
    joined: tuple[str, ...] | None = None
    revealed: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SECRET_FORMAT, "version": MESSAGE_VERSION, "round": self.round.to_dict(),
                "factory_id": self.factory_id, "mask_private": _b64(self.mask_private), "seed": _b64(self.seed),
                "own_seed_share": _share_hex(self.own_seed_share), "own_key_share": _share_hex(self.own_key_share),
                "join_digest": self.join_digest, "min_survivors": self.min_survivors,
                "round_keys_digest": self.round_keys_digest,
                "joined": list(self.joined) if self.joined is not None else None}

    @classmethod
    def from_dict(cls, obj: Any, source: str) -> RoundSecret:
        obj = _fields(obj, source, SECRET_FORMAT, "round secret",
                      {"round", "factory_id", "mask_private", "seed", "own_seed_share", "own_key_share",
                       "join_digest", "min_survivors", "round_keys_digest", "joined"})
        return cls(Round.from_dict(obj["round"], source), str(obj["factory_id"]),
                   _unb64(obj["mask_private"], source, "'mask_private'", 32), _unb64(obj["seed"], source, "'seed'", 32),
                   _parse_share(obj["own_seed_share"], source, "own_seed_share"),
                   _parse_share(obj["own_key_share"], source, "own_key_share"), str(obj["join_digest"]),
                   _count(obj["min_survivors"], source), _digest_or_none(obj["round_keys_digest"], source),
                   _ids(obj["joined"], source, "joined") if obj["joined"] is not None else None)


def _count(value: Any, source: str) -> int:
    if type(value) is not int or value < 1:
        raise InvalidFileError(f"{source}: 'min_survivors' must be a positive integer")
    return value


def _digest_or_none(value: Any, source: str) -> str | None:
    if value is not None and not is_digest(value):
        raise InvalidFileError(f"{source}: 'round_keys_digest' must be 32 hex digits or null")
    return value


def secret_path(identity: FactoryIdentity, round_id: str) -> Path | None:
    """Where a factory loaded from its folder keeps a round's secret (``round-<id>.secret.json``)."""
    return None if identity.folder is None else identity.folder / f"round-{round_id}.secret.json"


def _save_secret(identity: FactoryIdentity, secret: RoundSecret) -> None:
    path = secret_path(identity, secret.round.round_id)
    if path is not None:
        atomic_write_json(path, secret.to_dict(), force=True, mode=0o600)


def load_secret(identity: FactoryIdentity, round_id: str, secret: RoundSecret | None = None) -> RoundSecret:
    """The factory's secret of a round: ``secret`` when given (in-process), else its identity folder's."""
    if secret is None:
        path = secret_path(identity, round_id)
        if path is None or not path.exists():
            raise RoundError(f"{identity.factory_id!r} holds no secret of round {round_id}: it did not join it "
                             "(hefed round join), or has already revealed")
        secret = RoundSecret.from_dict(read_json_object(path, "round secret"), str(path))
    if secret.round.round_id != round_id or secret.factory_id != identity.factory_id:
        raise UsageError(f"the round secret is not {identity.factory_id!r}'s of round {round_id}")
    if secret.revealed:
        raise RoundError(f"{identity.factory_id!r} has already revealed its shares of round {round_id}")
    return secret


def _established(identity: FactoryIdentity, study: str | None) -> tuple[str, ...] | None:
    if study is None:
        return None
    recorded = read_ledger(identity).get("established", {})
    value = recorded.get(study) if isinstance(recorded, dict) else None
    return tuple(value) if isinstance(value, list) else None


def _check_study(round_: Round, study: Study | None, roster: Roster) -> int:
    """The study's threshold (1 without a study); the round must be the study's, of its roster."""
    if round_.study is None and study is None:
        return 1
    if study is None:
        raise UsageError(f"round {round_.round_id} serves study {round_.study}: give the study", parameters=("study",))
    if round_.study != study.digest:
        raise RoundError(f"round {round_.round_id} serves {round_.study or 'no study'}, not study {study.digest}")
    study.check_roster(roster, round_)
    return study.min_contributors


def join_round(identity: FactoryIdentity, roster: Roster, round_: Round, *,
               study: Study | None = None) -> tuple[Join, RoundSecret]:
    """Join a version 2 round: the signed join for the aggregator, and the secret this factory keeps
    (saved 0600 in its identity folder when it was loaded from one)."""
    if round_.threshold is None:
        raise UsageError(f"round {round_.round_id} is a version 1 round: nothing to join, encrypt for it directly",
                         parameters=("round",))
    check_round_membership(identity, roster, round_)
    count, threshold = len(round_.participants), round_.threshold
    if threshold < default_threshold(count):
        raise RoundError(f"round {round_.round_id}: threshold {threshold} of {count} is not more than half; two "
                         "disjoint groups could then unmask one factory's seed and mask key. Refused")
    min_study = _check_study(round_, study, roster)
    if threshold < min_study:
        raise RoundError(f"round {round_.round_id}: threshold {threshold} is below the study's min_contributors "
                         f"{min_study}")
    established = _established(identity, round_.study)
    if established is not None and tuple(round_.participants) != established:
        raise RoundError(f"round {round_.round_id}: participants {list(round_.participants)} are not the study's "
                         f"established set {list(established)}; a different set would let sums be differenced")
    path = secret_path(identity, round_.round_id)
    if path is not None and path.exists():
        raise RoundError(f"{identity.factory_id!r} has already joined round {round_.round_id}")
    if any(isinstance(e, dict) and e.get("round_id") == round_.round_id
           for e in read_ledger(identity).get("reveals", [])):
        raise RoundError(f"{identity.factory_id!r} has already revealed its shares of round {round_.round_id}")
    mask_key, seed = X25519PrivateKey.generate(), secrets.token_bytes(32)
    mask_private = _raw_private(mask_key)
    seed_shares = shamir.split_bytes(seed, threshold, count)
    key_shares = shamir.split_bytes(mask_private, threshold, count)
    sealed: dict[str, bytes] = {}
    for receiver in round_.participants:
        if receiver == identity.factory_id:
            continue
        index = _index(round_, receiver)
        cipher, associated = _share_cipher(identity, roster, round_.round_id, identity.factory_id, receiver)
        nonce = os.urandom(12)
        plain = seed_shares[index].to_bytes(shamir.SHARE_BYTES, "big") + key_shares[index].to_bytes(
            shamir.SHARE_BYTES, "big")
        sealed[receiver] = nonce + cipher.encrypt(nonce, plain, associated)
    unsigned = Join(round_.round_id, identity.factory_id,
                    mask_key.public_key().public_bytes(RawEncoding.Raw, PublicFormat.Raw),
                    _seed_commitment(round_.round_id, identity.factory_id, seed), _shares_digest(sealed), b"", sealed)
    join = replace(unsigned, signature=identity.sign(unsigned.signed_bytes()))
    own = _index(round_, identity.factory_id)
    secret = RoundSecret(round_, identity.factory_id, mask_private, seed, seed_shares[own], key_shares[own],
                         hashlib.sha256(join.signed_bytes()).hexdigest(), max(threshold, min_study))
    _save_secret(identity, secret)
    return join, secret


# --- round keys -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundKeys(JsonDocument):
    """The round and its verified joins (the joined set ``U1``); with or without the encrypted shares."""

    LABEL = "round keys"

    round: Round
    joins: tuple[Join, ...]

    @property
    def round_id(self) -> str:
        return self.round.round_id

    @property
    def joined(self) -> tuple[str, ...]:
        return tuple(j.factory_id for j in self.joins)

    @property
    def threshold(self) -> int:
        assert self.round.threshold is not None
        return self.round.threshold

    def join_of(self, factory_id: str) -> Join:
        for join in self.joins:
            if join.factory_id == factory_id:
                return join
        raise RoundError(f"{factory_id!r} did not join round {self.round_id}")

    def headers(self) -> RoundKeys:
        return RoundKeys(self.round, tuple(j.header() for j in self.joins))

    def digest(self) -> str:
        """What every manifest and reveal signs: the round and the signed joins (shares by their digest)."""
        body = {"round": self.round.to_dict(), "joins": [{**j.body(), "signature": j.signature.hex()}
                                                         for j in self.joins]}
        return hashlib.sha256(_canonical(body)).hexdigest()[:32]

    def check(self, roster: Roster, source: str = "round keys") -> None:
        """Every join signed by a distinct participant of the round, made from ``roster``; ≥ t joined."""
        if self.round.threshold is None:
            raise RoundError(f"{source}: not a version 2 round")
        if roster.digest() != self.round.roster_digest:
            raise RoundError(f"{source}: the roster differs from the one the round was made with")
        if list(self.joined) != sorted(set(self.joined)):
            raise RoundError(f"{source}: the joins must be of distinct factories, sorted by id")
        for join in self.joins:
            join.verify(roster, self.round, f"{source} ({join.factory_id})")
        if len(self.joins) < self.threshold:
            raise RoundError(f"{source}: {len(self.joins)} factories joined; the round needs {self.threshold}")

    def to_dict(self, with_shares: bool = True) -> dict[str, Any]:
        joins = self.joins if with_shares else tuple(j.header() for j in self.joins)
        return {"format": KEYS_FORMAT, "version": MESSAGE_VERSION, "round": self.round.to_dict(),
                "joins": [j.to_dict() for j in joins]}

    @classmethod
    def from_dict(cls, obj: Any, source: str = "round keys") -> RoundKeys:
        obj = _fields(obj, source, KEYS_FORMAT, "round keys", {"round", "joins"})
        round_ = Round.from_dict(obj["round"], source)
        raw = obj["joins"]
        if not isinstance(raw, list) or len(raw) > len(round_.participants):
            raise InvalidFileError(f"{source}: 'joins' must be a list of at most one join per participant")
        return cls(round_, tuple(Join.from_dict(j, f"{source} join {i}") for i, j in enumerate(raw)))


def start_round(round_: Round, roster: Roster, joins: Iterable[Join]) -> RoundKeys:
    """Aggregator: the round keys from the joins received (each verified; at least the threshold)."""
    if round_.threshold is None:
        raise UsageError(f"round {round_.round_id} is a version 1 round: nothing to start", parameters=("round",))
    if roster.digest() != round_.roster_digest:
        raise RoundError("the roster differs from the one the round was made with")
    by_id: dict[str, Join] = {}
    for join in joins:
        join.verify(roster, round_, f"join of {join.factory_id!r}")
        if join.shares is None:
            raise RoundError(f"join of {join.factory_id!r}: carries no encrypted shares")
        if join.factory_id in by_id and by_id[join.factory_id] != join:
            raise DuplicateContributorError(f"{join.factory_id!r} joined round {round_.round_id} twice")
        by_id[join.factory_id] = join
    missing = [p for p in round_.participants if p not in by_id]
    if len(by_id) < round_.threshold:
        raise IncompleteRoundError(
            f"round {round_.round_id}: {len(by_id)} of {len(round_.participants)} joined (missing "
            f"{', '.join(missing)}); the round needs {round_.threshold}", missing, sorted(by_id))
    return RoundKeys(round_, tuple(by_id[f] for f in sorted(by_id)))


def accept_round_keys(keys: RoundKeys, identity: FactoryIdentity, roster: Roster,
                      secret: RoundSecret | None = None) -> RoundSecret:
    """Factory: verify the round keys before encrypting with them; returns (and saves) the secret
    with the keys' digest and joined set recorded."""
    secret = load_secret(identity, keys.round_id, secret)
    check_round_membership(identity, roster, keys.round)
    keys.check(roster)
    if keys.round != secret.round:
        raise RoundError(f"the round keys describe another round than the one {identity.factory_id!r} joined")
    if identity.factory_id not in keys.joined:
        raise RoundError(f"the round keys leave out {identity.factory_id!r}'s own join")
    if hashlib.sha256(keys.join_of(identity.factory_id).signed_bytes()).hexdigest() != secret.join_digest:
        raise RoundError(f"the round keys carry another join for {identity.factory_id!r} than the one it made")
    established = _established(identity, keys.round.study)
    if established is not None and keys.joined != established:
        raise RoundError(f"the joined set {list(keys.joined)} is not the study's established set {list(established)}")
    if secret.round_keys_digest is not None and secret.round_keys_digest != keys.digest():
        raise RoundError(f"{identity.factory_id!r} already encrypted with other round keys for round {keys.round_id}")
    if secret.round_keys_digest is None:
        secret.round_keys_digest, secret.joined = keys.digest(), keys.joined
        _save_secret(identity, secret)
    return secret


# --- masks ----------------------------------------------------------------------------------------
def _pair_key(round_id: str, first: str, second: str, shared: bytes) -> bytes:
    low, high = sorted([first, second])
    return HKDF(hashes.SHA256(), 32, bytes.fromhex(round_id), _PAIR_INFO + f"|{low}|{high}".encode()).derive(shared)


def _exchange(private: bytes, public: bytes, who: str) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise RoundError(f"{who}'s mask key yields no shared secret") from None


def pair_mask(round_id: str, me: str, peer: str, shared: bytes, bundle: Bundle) -> list[int]:
    """The pairwise mask ``me`` adds for ``peer`` (+ for the smaller id, − for the larger), mod n."""
    n = bundle.public_key.n
    values = _mask_values(_pair_key(round_id, me, peer, shared), _context(bundle), len(bundle.ciphertexts), n)
    return values if me < peer else [(-v) % n for v in values]


def self_mask(round_id: str, factory_id: str, seed: bytes, bundle: Bundle) -> list[int]:
    """The self-mask expanded from a factory's seed, mod n."""
    key = HKDF(hashes.SHA256(), 32, bytes.fromhex(round_id), _SELF_INFO + f"|{factory_id}".encode()).derive(seed)
    return _mask_values(key, _context(bundle), len(bundle.ciphertexts), bundle.public_key.n)


def _add(totals: list[int], values: Sequence[int], n: int) -> list[int]:
    return [(t + v) % n for t, v in zip(totals, values, strict=True)]


def factory_masks_v2(keys: RoundKeys, secret: RoundSecret, bundle: Bundle) -> list[int]:
    """The total mask of this factory: its self-mask plus its pairwise masks with every joined peer."""
    n, me = bundle.public_key.n, secret.factory_id
    totals = self_mask(keys.round_id, me, secret.seed, bundle)
    for join in keys.joins:
        if join.factory_id != me:
            shared = _exchange(secret.mask_private, join.mask_public, join.factory_id)
            totals = _add(totals, pair_mask(keys.round_id, me, join.factory_id, shared, bundle), n)
    return totals


def mask_contribution(bundle: Bundle, identity: FactoryIdentity, roster: Roster, keys: RoundKeys,
                      secret: RoundSecret | None = None) -> Bundle:
    """Factory: the bundle masked (self-mask + pairwise masks over the joined set) and signed for the round keys.

    A study's bundle goes only into a round made for that study (and the reverse)."""
    check_plain_contribution(bundle, identity)
    if bundle.study != keys.round.study:
        raise RoundError(f"the bundle was made for {bundle.study or 'no study'}, but round {keys.round_id} serves "
                         f"{keys.round.study or 'no study'}")
    secret = accept_round_keys(keys, identity, roster, secret)
    return sign_masked(bundle, identity, factory_masks_v2(keys, secret, bundle), keys.round_id, keys.joined,
                       keys.digest())


@dataclass(frozen=True, init=False)
class Masking:
    """How a factory masks and signs a contribution: the round (a version 1 :class:`Round`, or the
    :class:`RoundKeys` of a version 2 round), its own identity, and the roster; for a version 2 round
    in process, the :class:`RoundSecret` its join returned (else it is read from the identity folder).

    ``masking.round`` is always the :class:`Round`; ``masking.keys`` the round keys, if any.
    """

    round: Round
    identity: FactoryIdentity
    roster: Roster
    secret: RoundSecret | None
    keys: RoundKeys | None

    def __init__(self, round: Round | RoundKeys, identity: FactoryIdentity, roster: Roster,  # noqa: A002
                 secret: RoundSecret | None = None) -> None:
        if not (isinstance(round, (Round, RoundKeys)) and isinstance(identity, FactoryIdentity)
                and isinstance(roster, Roster)):
            raise UsageError("a masked round needs the round, the factory's identity and the roster together",
                             parameters=("round", "identity", "roster"))
        keys = round if isinstance(round, RoundKeys) else None
        proposal = round.round if isinstance(round, RoundKeys) else round
        if keys is None and proposal.threshold is not None:
            raise UsageError(f"round {proposal.round_id} is a version 2 round: give its round keys "
                             "(hefed round start), not the round", parameters=("round",))
        check_round_membership(identity, roster, proposal)
        if keys is not None and identity.factory_id not in keys.joined:
            raise RoundError(f"{identity.factory_id!r} did not join round {proposal.round_id}")
        object.__setattr__(self, "round", proposal)
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "roster", roster)
        object.__setattr__(self, "secret", secret)
        object.__setattr__(self, "keys", keys)

    def apply(self, bundle: Bundle) -> Bundle:
        """The bundle masked with this factory's masks and signed for the round."""
        if self.keys is None:
            return mask_and_sign(bundle, self.identity, self.roster, self.round)
        return mask_contribution(bundle, self.identity, self.roster, self.keys, self.secret)


def load_round_inputs(roster_path: str | os.PathLike[str] | None, round_path: str | os.PathLike[str] | None,
                      ) -> tuple[Roster | None, Round | RoundKeys | None]:
    """Read the roster and the round a masked round needs (both or neither): a version 1 round file,
    or the round keys of a version 2 round (``hefed round start``)."""
    if (roster_path is None) != (round_path is None):
        raise UsageError("a masked round needs both the roster and the round", parameters=("roster", "round"))
    if roster_path is None or round_path is None:
        return None, None
    obj = read_json_object(round_path, "round")
    if obj.get("format") == KEYS_FORMAT:
        return Roster.load(roster_path), RoundKeys.from_dict(obj, str(round_path))
    round_ = Round.from_dict(obj, str(round_path))
    if round_.threshold is not None:
        raise UsageError(f"{round_path}: a version 2 round; give its round keys (hefed round start) instead",
                         parameters=("round",))
    return Roster.load(roster_path), round_


def verify_round_contribution(bundle: Bundle, roster: Roster, round_: Round | RoundKeys,
                              name: str = "bundle") -> None:
    """Aggregator-side check of one factory's bundle: for a version 1 :class:`Round`, or for a version 2
    round's :class:`RoundKeys` (signed for the joined set and the keys' digest)."""
    if isinstance(round_, RoundKeys):
        verify_contribution(bundle, roster, round_.round, name, participants=round_.joined,
                            round_keys_digest=round_.digest())
    else:
        verify_contribution(bundle, roster, round_, name)


# --- unmask request -------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnmaskRequest(JsonDocument):
    """Aggregator → survivors: who delivered, who dropped out, and each survivor's encrypted shares."""

    LABEL = "unmask request"

    round_id: str
    round_keys_digest: str
    survivors: tuple[str, ...]
    dropouts: tuple[str, ...]
    shares: Mapping[str, Mapping[str, bytes]]

    def for_factory(self, factory_id: str) -> UnmaskRequest:
        """The request as sent to one survivor: only its own shares."""
        return replace(self, shares={factory_id: dict(self.shares.get(factory_id, {}))})

    def to_dict(self) -> dict[str, Any]:
        return {"format": REQUEST_FORMAT, "version": MESSAGE_VERSION, "round_id": self.round_id,
                "round_keys_digest": self.round_keys_digest, "survivors": list(self.survivors),
                "dropouts": list(self.dropouts),
                "shares": {r: {s: _b64(v) for s, v in sorted(by.items())} for r, by in sorted(self.shares.items())}}

    @classmethod
    def from_dict(cls, obj: Any, source: str = "unmask request") -> UnmaskRequest:
        obj = _fields(obj, source, REQUEST_FORMAT, "unmask request",
                      {"round_id", "round_keys_digest", "survivors", "dropouts", "shares"})
        if not is_digest(obj["round_id"]) or not is_digest(obj["round_keys_digest"]):
            raise InvalidFileError(f"{source}: 'round_id' and 'round_keys_digest' must be 32 hex digits")
        survivors, dropouts = _ids(obj["survivors"], source, "survivors"), _ids(obj["dropouts"], source, "dropouts")
        raw = obj["shares"]
        if not isinstance(raw, dict) or not set(raw) <= set(survivors):
            raise InvalidFileError(f"{source}: 'shares' must map survivors to the shares they hold")
        shares: dict[str, dict[str, bytes]] = {}
        for receiver, by in raw.items():
            if not isinstance(by, dict) or not set(by) <= set(survivors) | set(dropouts):
                raise InvalidFileError(f"{source}: the shares for {receiver!r} must be keyed by joined factories")
            shares[receiver] = {s: _unb64(v, source, f"share {s}→{receiver}", _SEALED_BYTES) for s, v in by.items()}
        return cls(obj["round_id"], obj["round_keys_digest"], survivors, dropouts, shares)


def make_unmask_request(keys: RoundKeys, survivors: Iterable[str], min_contributors: int = 1) -> UnmaskRequest:
    """Aggregator: the unmask request once the valid contributions are in (their senders are ``survivors``).

    Fewer survivors than the threshold (or ``min_contributors``) fail the round, naming who is missing."""
    chosen = sorted(set(survivors))
    strangers = [s for s in chosen if s not in keys.joined]
    if strangers:
        raise RoundError(f"{strangers[0]!r} did not join round {keys.round_id}")
    needed = max(keys.threshold, min_contributors)
    dropouts = tuple(j for j in keys.joined if j not in chosen)
    if len(chosen) < needed:
        raise IncompleteRoundError(
            f"round {keys.round_id} failed: {len(chosen)} of {len(keys.joined)} joined factories delivered "
            f"(missing {', '.join(dropouts)}); at least {needed} are needed to unmask their sum",
            list(dropouts), chosen)
    shares = {}
    for receiver in chosen:
        held = {}
        for join in keys.joins:
            if join.factory_id == receiver:
                continue
            if join.shares is None:
                raise UsageError("the round keys carry no encrypted shares (give the aggregator's full round keys)",
                                 parameters=("round",))
            held[join.factory_id] = join.shares[receiver]
        shares[receiver] = held
    return UnmaskRequest(keys.round_id, keys.digest(), tuple(chosen), dropouts, shares)


# --- reveal ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reveal(JsonDocument):
    """A survivor's signed answer: per joined factory, its share of the seed (survivor) or of the mask key
    (drop-out)."""

    LABEL = "reveal"

    round_id: str
    factory_id: str
    round_keys_digest: str
    survivors: tuple[str, ...]
    seed_shares: Mapping[str, int]
    key_shares: Mapping[str, int]
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "factory_id": self.factory_id, "round_keys_digest": self.round_keys_digest,
                "survivors": list(self.survivors),
                "seed_shares": {f: _share_hex(v) for f, v in sorted(self.seed_shares.items())},
                "key_shares": {f: _share_hex(v) for f, v in sorted(self.key_shares.items())}}

    def signed_bytes(self) -> bytes:
        return _canonical({"message": REVEAL_FORMAT, **self.body()})

    def to_dict(self) -> dict[str, Any]:
        return {"format": REVEAL_FORMAT, "version": MESSAGE_VERSION, **self.body(), "signature": self.signature.hex()}

    @classmethod
    def from_dict(cls, obj: Any, source: str = "reveal") -> Reveal:
        obj = _fields(obj, source, REVEAL_FORMAT, "reveal",
                      {"round_id", "factory_id", "round_keys_digest", "survivors", "seed_shares", "key_shares",
                       "signature"})
        if not is_digest(obj["round_id"]) or not is_digest(obj["round_keys_digest"]) \
                or not isinstance(obj["factory_id"], str) or not FACTORY_ID_PATTERN.fullmatch(obj["factory_id"]):
            raise InvalidFileError(f"{source}: invalid 'round_id', 'round_keys_digest' or 'factory_id'")
        maps = []
        for name in ("seed_shares", "key_shares"):
            raw = obj[name]
            if not isinstance(raw, dict) or len(raw) > MAX_PARTICIPANTS \
                    or not all(isinstance(k, str) and FACTORY_ID_PATTERN.fullmatch(k) for k in raw):
                raise InvalidFileError(f"{source}: {name!r} must map factory ids to shares")
            maps.append({k: _parse_share(v, source, f"{name}[{k!r}]") for k, v in raw.items()})
        signature = _parse_signature(obj["signature"], source)
        return cls(obj["round_id"], obj["factory_id"], obj["round_keys_digest"],
                   _ids(obj["survivors"], source, "survivors"), maps[0], maps[1], signature)

    def verify(self, roster: Roster, keys: RoundKeys, survivors: Sequence[str], source: str = "reveal") -> None:
        """Signed by a survivor, for these round keys and this survivor set, with exactly one share per
        joined factory: of the seed for survivors, of the mask key for drop-outs."""
        if self.round_id != keys.round_id or self.round_keys_digest != keys.digest():
            raise RoundError(f"{source}: a reveal for other round keys")
        if self.factory_id not in survivors:
            raise RoundError(f"{source}: {self.factory_id!r} is not a survivor")
        _verify_member_signature(roster, self.factory_id, self.signature, self.signed_bytes(), source, "reveal")
        if list(self.survivors) != sorted(survivors):
            raise RoundError(f"{source}: {self.factory_id!r} revealed for survivors {list(self.survivors)}, not "
                             f"{sorted(survivors)}")
        dropouts = [j for j in keys.joined if j not in survivors]
        if sorted(self.seed_shares) != sorted(survivors) or sorted(self.key_shares) != dropouts:
            raise RoundError(f"{source}: {self.factory_id!r} must reveal seed shares of exactly the survivors and "
                             "mask-key shares of exactly the drop-outs")


def reveal(request: UnmaskRequest, identity: FactoryIdentity, roster: Roster,
           secret: RoundSecret | None = None) -> Reveal:
    """Factory: answer an unmask request with its signed shares, after checking it.

    Refused: a request for other round keys than those it encrypted with, survivors outside the joined
    set or below ``max(t, the study's min_contributors)``, a request naming it a drop-out, survivors that
    are not the study's established set, and a second survivor set for a round it already revealed in
    (the same set again gets the same reveal). The first reveal in a study records its established set.
    The round's private mask key and seed are deleted afterwards."""
    ledger = read_ledger(identity)
    reveals = ledger.get("reveals", [])
    reveals = reveals if isinstance(reveals, list) else []
    for entry in reveals:
        if isinstance(entry, dict) and entry.get("round_id") == request.round_id:
            if entry.get("survivors") == list(request.survivors):
                return Reveal.from_dict(entry.get("reveal"), "round ledger")
            raise RoundError(
                f"{identity.factory_id!r} already revealed in round {request.round_id} for survivors "
                f"{entry.get('survivors')}; another survivor set could unmask a factory's seed and mask key "
                "together. Refused")
    secret = load_secret(identity, request.round_id, secret)
    me, round_ = identity.factory_id, secret.round
    if secret.round_keys_digest is None or secret.joined is None:
        raise RoundError(f"{me!r} did not contribute to round {request.round_id}, so it reveals nothing")
    if request.round_keys_digest != secret.round_keys_digest:
        raise RoundError(f"the unmask request is for other round keys than the ones {me!r} encrypted with")
    survivors, dropouts = list(request.survivors), list(request.dropouts)
    if set(survivors) & set(dropouts) or sorted(survivors + dropouts) != list(secret.joined):
        raise RoundError("the unmask request's survivors and drop-outs do not split the joined set")
    if me not in survivors:
        raise RoundError(f"the unmask request declares {me!r} a drop-out; it reveals nothing")
    if len(survivors) < secret.min_survivors:
        raise TooFewContributorsError(f"the unmask request names {len(survivors)} survivor(s); round "
                                      f"{request.round_id} needs {secret.min_survivors}")
    established = _established(identity, round_.study)
    if established is not None and tuple(survivors) != established:
        raise RoundError(f"survivors {survivors} are not the study's established set {list(established)}; the "
                         "difference of the sums would single out factories")
    held = request.shares.get(me, {})
    if sorted(held) != sorted(j for j in secret.joined if j != me):
        raise RoundError(f"the unmask request does not carry {me!r}'s shares from every other joined factory")
    seed_shares: dict[str, int] = {me: secret.own_seed_share}
    key_shares: dict[str, int] = {}
    for sender, sealed in held.items():
        cipher, associated = _share_cipher(identity, roster, request.round_id, sender, me)
        try:
            plain = cipher.decrypt(sealed[:12], sealed[12:], associated)
        except InvalidTag:
            raise RoundError(f"the share from {sender!r} does not open: not the one {sender!r} sealed for {me!r}") \
                from None
        seed_share = int.from_bytes(plain[:shamir.SHARE_BYTES], "big")
        key_share = int.from_bytes(plain[shamir.SHARE_BYTES:], "big")
        if sender in survivors:
            seed_shares[sender] = seed_share
        else:
            key_shares[sender] = key_share
    unsigned = Reveal(request.round_id, me, request.round_keys_digest, tuple(survivors), seed_shares, key_shares)
    answer = replace(unsigned, signature=identity.sign(unsigned.signed_bytes()))
    reveals.append({"round_id": request.round_id, "survivors": survivors, "reveal": answer.to_dict()})
    update: dict[str, Any] = {"reveals": reveals}
    if round_.study is not None and established is None:
        recorded = ledger.get("established", {})
        update["established"] = {**(recorded if isinstance(recorded, dict) else {}), round_.study: survivors}
    if identity.folder is not None:
        write_ledger(identity, {**ledger, **update})
        path = secret_path(identity, request.round_id)
        if path is not None and path.exists():
            path.unlink()
    secret.revealed = True
    return answer


# --- unmask ---------------------------------------------------------------------------------------
def _reconstruct(keys: RoundKeys, reveals: Sequence[Reveal], survivors: Sequence[str]) -> tuple[
        dict[str, bytes], dict[str, bytes]]:
    """Survivors' seeds and drop-outs' mask keys from the reveals' shares, each checked against what its
    owner signed in its join (seed commitment, mask public key)."""
    if len({r.factory_id for r in reveals}) != len(reveals):
        raise DuplicateContributorError("two reveals of the same factory")
    if len(reveals) < keys.threshold:
        raise TooFewContributorsError(f"{len(reveals)} reveal(s); round {keys.round_id} needs {keys.threshold}")
    index = {r.factory_id: _index(keys.round, r.factory_id) for r in reveals}
    weights = shamir.lagrange_at_zero([index[r.factory_id] for r in reveals])  # the same points for every member
    seeds, mask_keys = {}, {}
    for member in keys.joined:
        join = keys.join_of(member)
        pool = "seed_shares" if member in survivors else "key_shares"
        shares = {index[r.factory_id]: getattr(r, pool)[member] for r in reveals}
        try:
            secret = shamir.combine_bytes(shares, 32, weights)
        except ValueError:
            secret = b""
        if member in survivors:
            if not secret or _seed_commitment(keys.round_id, member, secret) != join.seed_commitment:
                raise RoundError(f"the revealed shares of {member!r}'s seed do not match its commitment: a reveal "
                                 "is wrong")
            seeds[member] = secret
        else:
            ok = bool(secret) and X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
                RawEncoding.Raw, PublicFormat.Raw) == join.mask_public
            if not ok:
                raise RoundError(f"the revealed shares of {member!r}'s mask key do not match its public key: a "
                                 "reveal is wrong")
            mask_keys[member] = secret
    return seeds, mask_keys


def recovery_correction(bundle: Bundle, keys: RoundKeys, reveals: Sequence[Reveal],
                        survivors: Sequence[str]) -> list[int]:
    """The plaintext correction that leaves the survivors' exact sum: minus their self-masks and minus
    their pairwise masks with the drop-outs, mod n."""
    seeds, mask_keys = _reconstruct(keys, reveals, survivors)
    n = bundle.public_key.n
    total = [0] * len(bundle.ciphertexts)
    for survivor, seed in seeds.items():
        total = _add(total, self_mask(keys.round_id, survivor, seed, bundle), n)
        survivor_public = keys.join_of(survivor).mask_public
        for dropout, private in mask_keys.items():
            shared = _exchange(private, survivor_public, survivor)
            total = _add(total, pair_mask(keys.round_id, survivor, dropout, shared, bundle), n)
    return [(-t) % n for t in total]


RECOVERY_FIELDS = ("round_keys", "reveals")


def unmask(collected: Bundle, keys: RoundKeys, reveals: Iterable[Reveal], roster: Roster) -> Bundle:
    """Aggregator: the survivors' aggregate from the collected product and ≥ t signed reveals; it carries
    the round keys (without shares) and the reveals, so the key holder can recompute the correction.

    A reveal whose shares do not reconstruct what their owners committed to (a survivor signed a wrong
    share) is left out when the others still number t or more; otherwise the round fails."""
    keys.check(roster)
    survivors = sorted(collected.contributors)
    if collected.round_id != keys.round_id or collected.recovery is not None:
        raise UsageError("the collected bundle is not the product of this round's contributions, or is unmasked "
                         "already")
    manifests = check_signed_manifests(collected, roster, keys.joined, keys.digest())
    product = check_signed_product(collected, manifests)
    if [int(p) for p in product] != list(collected.ciphertexts):
        raise RoundError("the collected bundle is not the product of its signed contributions")
    chosen = sorted(reveals, key=lambda r: r.factory_id)
    for answer in chosen:
        answer.verify(roster, keys, survivors, f"reveal of {answer.factory_id!r}")
    try:
        correction = recovery_correction(collected, keys, chosen, survivors)
    except RoundError:
        # a survivor signed a wrong share: with a reveal to spare, leave one out at a time
        if len(chosen) <= keys.threshold:
            raise
        for liar in chosen:
            rest = [r for r in chosen if r is not liar]
            try:
                correction = recovery_correction(collected, keys, rest, survivors)
            except RoundError:
                continue
            chosen = rest
            break
        else:
            raise
    result = replace(collected, ciphertexts=add_plaintexts(collected, correction),
                     manifests=[dict(m) for m in collected.manifests],
                     contributions={f: list(c) for f, c in collected.contributions.items()},
                     recovery={"round_keys": keys.to_dict(with_shares=False),
                               "reveals": [r.to_dict() for r in chosen]})
    return result


def verify_aggregate(bundle: Bundle, roster: Roster, min_contributors: int) -> tuple[str, ...]:
    """Key holder: check a round aggregate and return its verified contributor set.

    Version 1: the signed manifests of exactly its contributors, the aggregate their product.
    Version 2 (it carries ``recovery``): the round keys' joins signed by roster members; every manifest
    signed for the joined set and those keys; the contributors (survivors) at least ``max(t,
    min_contributors)``; ≥ t reveals, each signed by a survivor for exactly this survivor set; the
    correction recomputed from the reveals (seeds checked against their commitments, mask keys against
    their public keys) and the aggregate equal to ``Π signed contributions · (1 + correction·n)``."""
    if not bundle.round_id:
        raise RoundError("the bundle is not a masked, signed round aggregate")
    if bundle.recovery is None:
        return verify_aggregate_v1(bundle, roster, min_contributors)
    recovery = bundle.recovery
    if not isinstance(recovery, dict) or set(recovery) != set(RECOVERY_FIELDS):
        raise RoundError("the aggregate's recovery must have exactly 'round_keys' and 'reveals'")
    try:
        keys = RoundKeys.from_dict(recovery["round_keys"], "aggregate round keys")
        raw = recovery["reveals"]
        if not isinstance(raw, list) or len(raw) > len(keys.joins):
            raise InvalidFileError("aggregate: 'reveals' must be a list of at most one reveal per joined factory")
        reveals = [Reveal.from_dict(r, f"aggregate reveal {i}") for i, r in enumerate(raw)]
    except InvalidFileError as exc:
        raise RoundError(str(exc)) from None
    if keys.round_id != bundle.round_id:
        raise RoundError(f"the aggregate's round keys are of round {keys.round_id}, not {bundle.round_id}")
    keys.check(roster, "aggregate round keys")
    manifests = check_signed_manifests(bundle, roster, keys.joined, keys.digest())
    survivors = sorted(bundle.contributors)
    strangers = [s for s in survivors if s not in keys.joined]
    if strangers:
        raise RoundError(f"{strangers[0]!r} did not join round {keys.round_id}")
    needed = max(keys.threshold, min_contributors)
    if len(survivors) < needed:
        raise TooFewContributorsError(f"bundle has {len(survivors)} contributor(s); at least {needed} are required "
                                      f"(round threshold {keys.threshold}, min_contributors {min_contributors})")
    for i, answer in enumerate(reveals):
        answer.verify(roster, keys, survivors, f"aggregate reveal {i}")
    correction = recovery_correction(bundle, keys, reveals, survivors)
    expected = add_plaintexts(bundle, correction, [int(p) for p in check_signed_product(bundle, manifests)])
    if expected != list(bundle.ciphertexts):
        raise RoundError("the aggregate is not the product of its signed contributions times the correction its "
                         "signed reveals give")
    return tuple(survivors)


# --- one whole round in process -------------------------------------------------------------------
@dataclass
class RoundRun:
    """What :func:`run_round` produced: every message, for tests, simulations and benchmarks."""

    round: Round
    joins: dict[str, Join]
    keys: RoundKeys
    contributions: dict[str, Bundle]
    request: UnmaskRequest
    reveals: dict[str, Reveal]
    aggregate: Bundle
    secrets: dict[str, RoundSecret]


def collect_contributions(bundles: Iterable[Bundle], roster: Roster, keys: RoundKeys,
                          min_contributors: int = 1) -> tuple[Bundle, UnmaskRequest]:
    """Aggregator (in process): verify each contribution, multiply them, and make the unmask request.
    (:func:`hefed.roles.collect_round` does the same from files, with a study's checks.)"""
    keys.check(roster)
    digest = keys.digest()
    items = list(bundles)
    if not items:
        raise UsageError("no contributions to collect")
    nsq = items[0].public_key.nsquare
    product = [1] * len(items[0].ciphertexts)
    seen: set[str] = set()
    for bundle in items:
        verify_contribution(bundle, roster, keys.round, f"bundle of {bundle.contributors}",
                            participants=keys.joined, round_keys_digest=digest)
        if bundle.contributors[0] in seen:
            raise DuplicateContributorError(f"factory {bundle.contributors[0]!r} contributed twice")
        diffs = items[0].schema_differences(bundle)
        if diffs:
            raise RoundError(f"bundle of {bundle.contributors} does not match the first: " + "; ".join(diffs))
        seen.add(bundle.contributors[0])
        product = [p * c % nsq for p, c in zip(product, bundle.ciphertexts, strict=True)]
    first = items[0]
    contributors = sorted(seen)
    request = make_unmask_request(keys, contributors, min_contributors)
    collected = replace(first, contributors=contributors, ciphertexts=product,
                        manifests=[b.manifests[0] for b in sorted(items, key=lambda b: b.contributors[0])],
                        contributions={b.contributors[0]: list(b.ciphertexts) for b in items}, recovery=None)
    return collected, request


def run_round(bundles: Mapping[str, Bundle], identities: Mapping[str, FactoryIdentity], roster: Roster, *,
              dropouts: Iterable[str] = (), absent: Iterable[str] = (), threshold: int | None = None,
              study: Study | None = None, min_contributors: int = 1) -> RoundRun:
    """Run a whole version 2 round in one process for the factories' plain ``bundles``: every factory in
    ``bundles`` is invited; ``absent`` ones never join; ``dropouts`` join but deliver nothing; the rest
    contribute and reveal. Returns every message, the aggregate last."""
    gone, away = set(dropouts), set(absent)
    round_ = propose_round(roster, bundles, threshold=threshold, study=study)
    joins, held = {}, {}
    for factory_id in round_.participants:
        if factory_id not in away:
            joins[factory_id], held[factory_id] = join_round(identities[factory_id], roster, round_, study=study)
    keys = start_round(round_, roster, joins.values())
    contributions = {f: mask_contribution(bundles[f], identities[f], roster, keys, held[f])
                     for f in keys.joined if f not in gone}
    collected, request = collect_contributions(contributions.values(), roster, keys,
                                               max(min_contributors, study.min_contributors if study else 1))
    reveals = {f: reveal(request.for_factory(f), identities[f], roster, held[f]) for f in request.survivors}
    aggregate = unmask(collected, keys, reveals.values(), roster)
    return RoundRun(round_, joins, keys, contributions, request, reveals, aggregate, held)
