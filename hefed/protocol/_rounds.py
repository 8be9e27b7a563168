"""Rounds with pairwise zero-sum masks and signed contributions: only the full sum can be read.

Paillier alone lets the key holder decrypt whatever it is handed, and the
contributor list of an aggregate is mere metadata. A *round* fixes, before
anything is encrypted, the exact list of participants (the cheap "ready"
step, ``hefed round new``). Then, following the idea of Bonawitz et al.'s
secure aggregation on top of Paillier:

**Masks.** Every pair of participants ``i < j`` derives a shared secret with
X25519 and expands it with HKDF-SHA256 (salt: the round id; info: the pair's
ids, the key fingerprint, the bundle kind and layout, the plaintext index)
into one mask ``r_ij,p`` per packed plaintext ``p``, uniform modulo ``n``.
Factory ``i`` adds ``Σ_{j>i} r_ij,p − Σ_{j<i} r_ji,p`` to its plaintext ``p``
— homomorphically, by multiplying its ciphertext by ``g^M = 1 + M·n mod n²``.
Each bundle's plaintexts are thus uniformly random on their own, any partial
sum too; over the exact participant list the masks cancel modulo ``n`` and
the sum is unchanged, so exactness is untouched. A sum that takes any
factory a different number of times than the others does not cancel either,
and fails the key holder's guard-bit and counter checks.

**Signatures.** Each bundle carries a manifest signed with the factory's
Ed25519 key over (round id, participants, key fingerprint, kind, schema and
layout hashes, hash of its ciphertexts). The aggregator accepts only roster
members with valid signatures for the current round, each once, and only
when every listed participant delivered; the aggregate carries all the
manifests; the key holder checks them against the roster and the threshold.
A bundle replayed from another round, an unknown factory, a dropped
factory or a single bundle posing as an aggregate are refused — and would
decrypt to noise anyway.

**Drop-outs.** If a listed factory of a version 1 round fails to deliver,
the round cannot complete. Version 2 rounds (:mod:`hefed.protocol._recovery`,
``hefed round new|join|start|collect|reveal|unmask``) add self-masks and
Shamir-shared round keys, so the survivors' sum is recovered without anyone
encrypting again. This module keeps what both versions share: the round file,
masks, manifests, the factory's ledger and the version 1 checks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._files import JsonDocument, atomic_write_json, check_format, is_digest, read_json_object
from ..errors import (
    DuplicateContributorError,
    IncompleteRoundError,
    InvalidFileError,
    RoundError,
    TooFewContributorsError,
    UsageError,
)
from ._bundle import Bundle
from ._identity import FactoryIdentity, Member, Roster

FORMAT = "hefed.round"
#: Per-identity record of the rounds a factory has contributed to (in its enrollment folder).
LEDGER = "rounds-used.json"
VERSION = 1
#: Rounds that survive drop-outs (self-masks and Shamir-shared round keys).
VERSION_RECOVERY = 2
#: Most participants a round may list (the join messages grow with the square of it).
MAX_PARTICIPANTS = 1000
_MASK_INFO = b"hefed-mask-v1"


@dataclass(frozen=True)
class Round(JsonDocument):
    """A round: its random id, the fixed participant list and the roster it was made from.

    Version 1 (:func:`new_round`): every participant must deliver. Version 2
    (:func:`~hefed.protocol.propose_round`, :mod:`hefed.protocol._recovery`) also has a
    ``threshold`` t (any t joined factories can unmask the survivors' sum, fewer cannot) and the
    digest of the ``study`` it serves, if any.
    """

    LABEL = "round"

    round_id: str
    participants: tuple[str, ...]
    roster_digest: str
    threshold: int | None = None
    study: str | None = None

    @property
    def version(self) -> int:
        return VERSION if self.threshold is None else VERSION_RECOVERY

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "version": self.version, "round_id": self.round_id,
                               "participants": list(self.participants), "roster_digest": self.roster_digest}
        if self.threshold is not None:
            out.update(threshold=self.threshold, study=self.study)
        return out

    @classmethod
    def from_dict(cls, obj: Any, source: str = "round") -> Round:
        if not isinstance(obj, dict):
            raise InvalidFileError(f"{source}: a round must be a JSON object")
        version = VERSION_RECOVERY if obj.get("version") == VERSION_RECOVERY else VERSION
        check_format(obj, source, FORMAT, version, "round")
        fields = {"format", "version", "round_id", "participants", "roster_digest"}
        if version == VERSION_RECOVERY:
            fields |= {"threshold", "study"}
        if set(obj) != fields:
            raise InvalidFileError(f"{source}: a version {version} round has exactly the fields {sorted(fields)}")
        round_id, participants, digest = obj.get("round_id"), obj.get("participants"), obj.get("roster_digest")
        if not is_digest(round_id) or not is_digest(digest):
            raise InvalidFileError(f"{source}: 'round_id' and 'roster_digest' must be 32 hex digits")
        if (not isinstance(participants, list) or len(participants) < 2 or len(participants) > MAX_PARTICIPANTS
                or not all(isinstance(p, str) for p in participants)
                or participants != sorted(set(participants))):
            raise InvalidFileError(f"{source}: 'participants' must be a sorted list of 2 to {MAX_PARTICIPANTS} "
                                   "distinct ids")
        threshold, study = obj.get("threshold"), obj.get("study")
        if version == VERSION_RECOVERY:
            if type(threshold) is not int or not 2 <= threshold <= len(participants):
                raise InvalidFileError(f"{source}: 'threshold' must be an integer from 2 to the number of "
                                       "participants")
            if study is not None and not is_digest(study):
                raise InvalidFileError(f"{source}: 'study' must be a study digest (32 hex digits) or null")
        return cls(str(round_id), tuple(participants), str(digest), threshold, study)


def new_round(roster: Roster, participants: Iterable[str]) -> Round:
    """Fix the participants of a new round (random 128-bit id); all must be roster members."""
    chosen = sorted(set(participants))
    if len(chosen) < 2:
        raise UsageError("a round needs at least two participants (masks are pairwise)")
    for factory_id in chosen:
        roster.get(factory_id)
    return Round(secrets.token_hex(16), tuple(chosen), roster.digest())


# --- masks ----------------------------------------------------------------------------------------
def _pair_key(identity: FactoryIdentity, peer: Member, round_: Round) -> bytes:
    low, high = sorted([identity.factory_id, peer.factory_id])
    return HKDF(hashes.SHA256(), 32, bytes.fromhex(round_.round_id),
                _MASK_INFO + f"|pair|{low}|{high}".encode()).derive(identity.shared_secret(peer))


def _mask_values(pair_key: bytes, context: bytes, count: int, n: int) -> list[int]:
    # 128 extra bits make the reduction modulo n statistically uniform (bias < 2^-128).
    width = (n.bit_length() + 7) // 8 + 16
    return [
        int.from_bytes(HKDF(hashes.SHA256(), width, None, context + p.to_bytes(4, "big")).derive(pair_key), "big") % n
        for p in range(count)
    ]


def _context(bundle: Bundle) -> bytes:
    return b"|".join([_MASK_INFO, bundle.key_fingerprint.encode(), bundle.kind.encode(),
                      bundle.layout_digest.encode(), schema_digest(bundle).encode(), b"plaintext"])


def factory_masks(identity: FactoryIdentity, roster: Roster, round_: Round, bundle: Bundle) -> list[int]:
    """The total mask ``M_i,p`` this factory adds to each of its plaintexts (sums to 0 over the round)."""
    n = bundle.public_key.n
    totals = [0] * len(bundle.ciphertexts)
    for peer_id in round_.participants:
        if peer_id == identity.factory_id:
            continue
        masks = _mask_values(_pair_key(identity, roster.get(peer_id), round_), _context(bundle), len(totals), n)
        sign = 1 if identity.factory_id < peer_id else -1
        totals = [(t + sign * m) % n for t, m in zip(totals, masks, strict=True)]
    return totals


# --- manifests ------------------------------------------------------------------------------------
def schema_digest(bundle: Bundle) -> str:
    desc = {"target": bundle.target, "features": sorted(bundle.features), "encoding": bundle.encoding.to_dict(),
            "parameters": bundle.parameters}
    if bundle.study:  # a study's bundles sign the study they were made for
        desc["study"] = bundle.study
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]


def ciphertext_digest(bundle: Bundle, ciphertexts: Sequence[int] | None = None) -> str:
    width = (bundle.public_key.nsquare.bit_length() + 7) // 8
    h = hashlib.sha256()
    for c in bundle.ciphertexts if ciphertexts is None else ciphertexts:
        h.update(c.to_bytes(width, "big"))
    return h.hexdigest()


_MANIFEST_FIELDS = ("factory_id", "round_id", "participants", "key_fingerprint", "kind", "schema_digest",
                    "layout_digest", "ciphertext_digest")
#: A version 2 round's manifest also signs the digest of the round keys the masks came from.
_MANIFEST_FIELDS_V2 = (*_MANIFEST_FIELDS, "round_keys_digest")


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    fields = _MANIFEST_FIELDS_V2 if "round_keys_digest" in manifest else _MANIFEST_FIELDS
    body = {k: manifest[k] for k in fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def check_round_membership(identity: FactoryIdentity, roster: Roster, round_: Round) -> None:
    """Refuse a round this factory must not join: it is not a participant, the round was made with
    another roster, the roster holds other keys for it, or a participant is not a roster member
    (a Sybil whose mask keys the aggregator would hold). Checked before any data is read."""
    if identity.factory_id not in round_.participants:
        raise RoundError(f"{identity.factory_id!r} is not a participant of round {round_.round_id}")
    if roster.digest() != round_.roster_digest:
        raise RoundError("the roster differs from the one the round was made with")
    if roster.get(identity.factory_id) != identity.member:
        raise RoundError(f"the roster holds other keys for {identity.factory_id!r} than this identity")
    strangers = [p for p in round_.participants if p not in roster.members]
    if strangers:
        raise RoundError(f"factory {strangers[0]!r} is not in the roster")


def mask_and_sign(bundle: Bundle, identity: FactoryIdentity, roster: Roster, round_: Round) -> Bundle:
    """Add this factory's zero-sum masks to its bundle and sign the result for ``round_`` (version 1).

    A factory contributes at most once per round and kind of bundle: two different
    bundles masked alike would reveal their difference to whoever held both. When the
    identity was loaded from its folder, a ledger there (``rounds-used.json``) records
    every contribution and refuses a second one; re-run a round instead.
    """
    if round_.threshold is not None:
        raise UsageError(f"round {round_.round_id} is a version 2 round: join it (hefed round join) and encrypt "
                         "with its round keys (hefed round start)", parameters=("round",))
    check_plain_contribution(bundle, identity)
    check_round_membership(identity, roster, round_)
    return sign_masked(bundle, identity, factory_masks(identity, roster, round_, bundle), round_.round_id,
                       round_.participants)


def check_plain_contribution(bundle: Bundle, identity: FactoryIdentity) -> None:
    """A bundle to mask: not masked yet, and this identity's own."""
    if bundle.round_id or bundle.manifests:
        raise UsageError("the bundle is already masked and signed")
    if bundle.contributors != [identity.factory_id]:
        raise UsageError(f"the bundle's factory id {bundle.contributors} is not the identity's {identity.factory_id!r}")


def add_plaintexts(bundle: Bundle, values: Sequence[int], ciphertexts: Sequence[int] | None = None) -> list[int]:
    """``ciphertexts`` (default: the bundle's) with ``values[p]`` added to plaintext ``p``, homomorphically:
    ``c · g^v = c · (1 + v·n) mod n²`` — deterministic, no re-encryption."""
    n, nsq = bundle.public_key.n, gmpy2.mpz(bundle.public_key.nsquare)
    source = bundle.ciphertexts if ciphertexts is None else ciphertexts
    return [int(gmpy2.f_mod(c * (1 + (v % n) * n), nsq)) for c, v in zip(source, values, strict=True)]


def sign_masked(bundle: Bundle, identity: FactoryIdentity, masks: Sequence[int], round_id: str,
                participants: Sequence[str], round_keys_digest: str | None = None) -> Bundle:
    """The bundle with ``masks`` added, labelled for the round and signed (one manifest); recorded in the
    identity's ledger first, so a second, different contribution to the same round and schema is refused."""
    result = Bundle(bundle.kind, bundle.public_key, bundle.target, list(bundle.features), bundle.encoding,
                    list(bundle.contributors), add_plaintexts(bundle, masks), bundle.layout_digest,
                    dict(bundle.parameters), round_id=round_id, study=bundle.study)
    manifest: dict[str, Any] = {
        "factory_id": identity.factory_id, "round_id": round_id, "participants": list(participants),
        "key_fingerprint": result.key_fingerprint, "kind": result.kind, "schema_digest": schema_digest(result),
        "layout_digest": result.layout_digest, "ciphertext_digest": ciphertext_digest(result),
    }
    if round_keys_digest is not None:
        manifest["round_keys_digest"] = round_keys_digest
    _record_contribution(identity, round_id, manifest["schema_digest"], manifest["ciphertext_digest"])
    manifest["signature"] = identity.sign(_signed_bytes(manifest)).hex()
    result.manifests = [manifest]
    return result


def read_ledger(identity: FactoryIdentity) -> dict[str, Any]:
    """The identity's round ledger (``rounds-used.json`` in its folder): contributions, reveals, and the
    established contributor set of each study; empty when there is none (or no folder)."""
    if identity.folder is None or not (identity.folder / LEDGER).exists():
        return {}
    obj = read_json_object(identity.folder / LEDGER, "round ledger")
    return obj


def write_ledger(identity: FactoryIdentity, ledger: dict[str, Any]) -> None:
    """Write the ledger back (atomically, 0600); nothing when the identity has no folder."""
    if identity.folder is None:
        return
    atomic_write_json(identity.folder / LEDGER, {**ledger, "format": "hefed.round_ledger", "version": 1},
                      force=True, mode=0o600)


def _record_contribution(identity: FactoryIdentity, round_id: str, schema: str, digest: str) -> None:
    """Refuse a second, different contribution of this identity to the same round and schema."""
    if identity.folder is None:
        return
    ledger = read_ledger(identity)
    entries = ledger.get("contributions", [])
    entries = entries if isinstance(entries, list) else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("round_id") == round_id and entry.get("schema") == schema:
            raise RoundError(
                f"{identity.factory_id!r} already contributed to round {round_id}; a second bundle masked "
                "alike would reveal the difference between the two. Start a new round instead"
            )
    entries.append({"round_id": round_id, "schema": schema, "ciphertext_digest": digest})
    write_ledger(identity, {**ledger, "contributions": entries})


def _check_manifest(manifest: Any, bundle: Bundle, roster: Roster, where: str,
                    round_keys_digest: str | None = None) -> dict[str, Any]:
    """A manifest's fields and signature, and that it signs this bundle's round, key, kind and schema;
    for a version 2 round also the digest of its round keys (``round_keys_digest``)."""
    fields = _MANIFEST_FIELDS if round_keys_digest is None else _MANIFEST_FIELDS_V2
    if not isinstance(manifest, dict) or set(manifest) != {*fields, "signature"}:
        raise RoundError(f"{where}: malformed manifest" + (" (not one of a version 2 round)" if round_keys_digest
                                                             else " (not one of a version 1 round)"))
    factory_id = manifest["factory_id"]
    if not isinstance(factory_id, str) or factory_id not in roster.members:
        raise RoundError(f"{where}: factory {factory_id!r} is not in the roster")
    try:
        signature = bytes.fromhex(manifest["signature"])
        roster.members[factory_id].verifier().verify(signature, _signed_bytes(manifest))
    except (InvalidSignature, ValueError, TypeError):
        raise RoundError(f"{where}: invalid signature for factory {factory_id!r}") from None
    expected = {"round_id": bundle.round_id, "key_fingerprint": bundle.key_fingerprint, "kind": bundle.kind,
                "schema_digest": schema_digest(bundle), "layout_digest": bundle.layout_digest}
    if round_keys_digest is not None:
        expected["round_keys_digest"] = round_keys_digest
    for key, value in expected.items():
        if manifest[key] != value:
            raise RoundError(f"{where}: {factory_id!r} signed {key} {manifest[key]!r}, not {value!r} "
                             "(a contribution from another round or of another kind?)")
    return manifest


def verify_contribution(bundle: Bundle, roster: Roster, round_: Round, name: str = "bundle", *,
                        participants: Sequence[str] | None = None, round_keys_digest: str | None = None) -> None:
    """Aggregator-side check of one factory's bundle for ``round_`` (version 1; for version 2 the masks'
    ``participants`` are the joined set and the manifest signs the ``round_keys_digest``)."""
    if round_keys_digest is None and round_.threshold is not None:
        raise UsageError(f"round {round_.round_id} is a version 2 round: check contributions against its round keys",
                         parameters=("round",))
    if bundle.round_id is None:
        raise RoundError(f"{name}: a plain bundle, not a masked, signed contribution to round {round_.round_id}")
    if bundle.round_id != round_.round_id:
        raise RoundError(f"{name}: belongs to round {bundle.round_id}, not the current round {round_.round_id}")
    if len(bundle.manifests) != 1 or len(bundle.contributors) != 1:
        raise RoundError(f"{name}: expected one factory's signed contribution")
    manifest = _check_manifest(bundle.manifests[0], bundle, roster, name, round_keys_digest)
    expected = list(round_.participants if participants is None else participants)
    if manifest["factory_id"] != bundle.contributors[0]:
        raise RoundError(f"{name}: signed by {manifest['factory_id']!r} but labelled {bundle.contributors[0]!r}")
    if manifest["participants"] != expected:
        raise RoundError(f"{name}: signed for other participants than the round's")
    if manifest["factory_id"] not in expected:
        raise RoundError(f"{name}: {manifest['factory_id']!r} is not a participant of this round")
    if manifest["ciphertext_digest"] != ciphertext_digest(bundle):
        raise RoundError(f"{name}: ciphertexts do not match their signature")


def check_round_complete(contributors: Sequence[str], round_: Round) -> None:
    """Every listed participant must have delivered; otherwise the round must be re-run."""
    if len(set(contributors)) != len(contributors):
        raise DuplicateContributorError("a factory contributed twice")
    missing = sorted(set(round_.participants) - set(contributors))
    if missing:
        survivors = [p for p in round_.participants if p not in missing]
        raise IncompleteRoundError(
            f"round {round_.round_id} is incomplete: missing {', '.join(missing)}; their masks would not cancel. "
            f"Start a new round for the survivors ({', '.join(survivors)}) and have them encrypt again",
            missing, survivors,
        )


def check_signed_product(bundle: Bundle, manifests: Sequence[dict[str, Any]]) -> list[gmpy2.mpz]:
    """The product of the signed contributions the aggregate carries (one per manifest, each checked
    against the digest its factory signed)."""
    if sorted(bundle.contributions) != sorted(m["factory_id"] for m in manifests):
        raise RoundError("the aggregate does not carry every signed contribution's ciphertexts")
    nsq = gmpy2.mpz(bundle.public_key.nsquare)
    product = [gmpy2.mpz(1)] * len(bundle.ciphertexts)
    for manifest in manifests:
        ciphertexts = bundle.contributions[manifest["factory_id"]]
        if len(ciphertexts) != len(product) or manifest["ciphertext_digest"] != ciphertext_digest(bundle, ciphertexts):
            raise RoundError(f"the ciphertexts carried for {manifest['factory_id']!r} are not the ones it signed")
        product = [gmpy2.f_mod(p * c, nsq) for p, c in zip(product, ciphertexts, strict=True)]
    return product


def check_signed_manifests(bundle: Bundle, roster: Roster, participants: Sequence[str] | None,
                           round_keys_digest: str | None = None) -> list[dict[str, Any]]:
    """Every manifest valid and signed, one per contributor, each signed for ``participants`` (default:
    the contributors themselves, as in a version 1 round)."""
    contributors = list(bundle.contributors)
    if len(bundle.manifests) != len(contributors):
        raise RoundError("the aggregate does not carry one signed manifest per contributor")
    expected = sorted(contributors) if participants is None else list(participants)
    signers = []
    for i, manifest in enumerate(bundle.manifests):
        checked = _check_manifest(manifest, bundle, roster, f"manifest {i}", round_keys_digest)
        if checked["participants"] != expected:
            raise RoundError(f"manifest {i}: {checked['factory_id']!r} signed for participants "
                             f"{checked['participants']}, but the aggregate lists {expected}")
        signers.append(checked["factory_id"])
    if sorted(signers) != sorted(contributors) or len(set(signers)) != len(signers):
        raise RoundError("the signed manifests do not match the contributor list one to one")
    return list(bundle.manifests)


def verify_aggregate_v1(bundle: Bundle, roster: Roster, min_contributors: int) -> tuple[str, ...]:
    """Key-holder-side check of a version 1 aggregate: signed manifests of exactly the round's participants,
    over the threshold, and the aggregate exactly their product; returns the contributors."""
    if not bundle.round_id:
        raise RoundError("the bundle is not a masked, signed round aggregate")
    manifests = check_signed_manifests(bundle, roster, None)
    # The aggregate must be exactly the product of the signed contributions it carries (masked, hence
    # uniformly random on their own): no offset or substitution can slip in between.
    if [int(p) for p in check_signed_product(bundle, manifests)] != list(bundle.ciphertexts):
        raise RoundError("the aggregate is not the product of its signed contributions")
    if len(bundle.contributors) < min_contributors:
        raise TooFewContributorsError(
            f"bundle has {len(bundle.contributors)} contributor(s); at least {min_contributors} are required")
    return tuple(sorted(bundle.contributors))
