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

**Drop-outs.** If a listed factory fails to deliver, the round cannot
complete: start a new round (new id, new masks) for the survivors and have
them encrypt again.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._files import atomic_write_json, check_format, is_digest, read_json_object
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
_MASK_INFO = b"hefed-mask-v1"


@dataclass(frozen=True)
class Round:
    """A round: its random id, the fixed participant list and the roster it was made from."""

    round_id: str
    participants: tuple[str, ...]
    roster_digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "round_id": self.round_id,
                "participants": list(self.participants), "roster_digest": self.roster_digest}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Round:
        return cls.from_dict(read_json_object(path, "round"), str(path))

    @classmethod
    def from_dict(cls, obj: Any, source: str = "round") -> Round:
        if not isinstance(obj, dict):
            raise InvalidFileError(f"{source}: a round must be a JSON object")
        check_format(obj, source, FORMAT, VERSION, "round")
        round_id, participants, digest = obj.get("round_id"), obj.get("participants"), obj.get("roster_digest")
        if not is_digest(round_id) or not is_digest(digest):
            raise InvalidFileError(f"{source}: 'round_id' and 'roster_digest' must be 32 hex digits")
        if (not isinstance(participants, list) or len(participants) < 2
                or not all(isinstance(p, str) for p in participants)
                or participants != sorted(set(participants))):
            raise InvalidFileError(f"{source}: 'participants' must be a sorted list of at least two distinct ids")
        return cls(str(round_id), tuple(participants), str(digest))


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


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    body = {k: manifest[k] for k in _MANIFEST_FIELDS}
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
    """Add this factory's zero-sum masks to its bundle and sign the result for ``round_``.

    A factory contributes at most once per round and kind of bundle: two different
    bundles masked alike would reveal their difference to whoever held both. When the
    identity was loaded from its folder, a ledger there (``rounds-used.json``) records
    every contribution and refuses a second one; re-run a round instead.
    """
    if bundle.round_id or bundle.manifests:
        raise UsageError("the bundle is already masked and signed")
    if bundle.contributors != [identity.factory_id]:
        raise UsageError(f"the bundle's factory id {bundle.contributors} is not the identity's {identity.factory_id!r}")
    check_round_membership(identity, roster, round_)
    n, nsq = bundle.public_key.n, gmpy2.mpz(bundle.public_key.nsquare)
    masks = factory_masks(identity, roster, round_, bundle)
    # g^M = (1 + n)^M = 1 + M·n (mod n²): adds M to the plaintext without re-encrypting.
    masked = [int(gmpy2.f_mod(c * (1 + m * n), nsq)) for c, m in zip(bundle.ciphertexts, masks, strict=True)]
    result = Bundle(bundle.kind, bundle.public_key, bundle.target, list(bundle.features), bundle.encoding,
                    list(bundle.contributors), masked, bundle.layout_digest, dict(bundle.parameters),
                    round_id=round_.round_id, study=bundle.study)
    manifest: dict[str, Any] = {
        "factory_id": identity.factory_id, "round_id": round_.round_id, "participants": list(round_.participants),
        "key_fingerprint": result.key_fingerprint, "kind": result.kind, "schema_digest": schema_digest(result),
        "layout_digest": result.layout_digest, "ciphertext_digest": ciphertext_digest(result),
    }
    _record_contribution(identity, round_, manifest["schema_digest"], manifest["ciphertext_digest"])
    manifest["signature"] = identity.sign(_signed_bytes(manifest)).hex()
    result.manifests = [manifest]
    return result


def _record_contribution(identity: FactoryIdentity, round_: Round, schema: str, digest: str) -> None:
    """Refuse a second, different contribution of this identity to the same round and schema."""
    if identity.folder is None:
        return
    ledger = identity.folder / LEDGER
    entries: list[dict[str, str]] = []
    if ledger.exists():
        obj = read_json_object(ledger, "round ledger")
        entries = obj.get("contributions", []) if isinstance(obj.get("contributions"), list) else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("round_id") == round_.round_id and entry.get("schema") == schema:
            raise RoundError(
                f"{identity.factory_id!r} already contributed to round {round_.round_id}; a second bundle masked "
                "alike would reveal the difference between the two. Start a new round instead"
            )
    entries.append({"round_id": round_.round_id, "schema": schema, "ciphertext_digest": digest})
    atomic_write_json(ledger, {"format": "hefed.round_ledger", "version": 1, "contributions": entries}, force=True,
                      mode=0o600)


def _check_manifest(manifest: Any, bundle: Bundle, roster: Roster, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or set(manifest) != {*_MANIFEST_FIELDS, "signature"}:
        raise RoundError(f"{where}: malformed manifest")
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
    for key, value in expected.items():
        if manifest[key] != value:
            raise RoundError(f"{where}: {factory_id!r} signed {key} {manifest[key]!r}, not {value!r} "
                             "(a contribution from another round or of another kind?)")
    return manifest


def verify_contribution(bundle: Bundle, roster: Roster, round_: Round, name: str = "bundle") -> None:
    """Aggregator-side check of one factory's bundle for ``round_``."""
    if bundle.round_id is None:
        raise RoundError(f"{name}: a plain bundle, not a masked, signed contribution to round {round_.round_id}")
    if bundle.round_id != round_.round_id:
        raise RoundError(f"{name}: belongs to round {bundle.round_id}, not the current round {round_.round_id}")
    if len(bundle.manifests) != 1 or len(bundle.contributors) != 1:
        raise RoundError(f"{name}: expected one factory's signed contribution")
    manifest = _check_manifest(bundle.manifests[0], bundle, roster, name)
    if manifest["factory_id"] != bundle.contributors[0]:
        raise RoundError(f"{name}: signed by {manifest['factory_id']!r} but labelled {bundle.contributors[0]!r}")
    if manifest["participants"] != list(round_.participants):
        raise RoundError(f"{name}: signed for other participants than the round's")
    if manifest["factory_id"] not in round_.participants:
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


def verify_aggregate(bundle: Bundle, roster: Roster, min_contributors: int) -> None:
    """Key-holder-side check: signed manifests of exactly the round's participants, over the threshold."""
    if not bundle.round_id:
        raise RoundError("the bundle is not a masked, signed round aggregate")
    contributors = list(bundle.contributors)
    if len(bundle.manifests) != len(contributors):
        raise RoundError("the aggregate does not carry one signed manifest per contributor")
    signers = []
    for i, manifest in enumerate(bundle.manifests):
        checked = _check_manifest(manifest, bundle, roster, f"manifest {i}")
        if checked["participants"] != sorted(contributors):
            raise RoundError(f"manifest {i}: {checked['factory_id']!r} signed for participants "
                             f"{checked['participants']}, but the aggregate lists {sorted(contributors)}")
        signers.append(checked["factory_id"])
    if sorted(signers) != sorted(contributors) or len(set(signers)) != len(signers):
        raise RoundError("the signed manifests do not match the contributor list one to one")
    # The aggregate must be exactly the product of the signed contributions it carries (masked, hence
    # uniformly random on their own): no offset or substitution can slip in between.
    if sorted(bundle.contributions) != sorted(contributors):
        raise RoundError("the aggregate does not carry every signed contribution's ciphertexts")
    nsq = gmpy2.mpz(bundle.public_key.nsquare)
    product = [gmpy2.mpz(1)] * len(bundle.ciphertexts)
    for manifest in bundle.manifests:
        ciphertexts = bundle.contributions[manifest["factory_id"]]
        if len(ciphertexts) != len(product) or manifest["ciphertext_digest"] != ciphertext_digest(bundle, ciphertexts):
            raise RoundError(f"the ciphertexts carried for {manifest['factory_id']!r} are not the ones it signed")
        product = [gmpy2.f_mod(p * c, nsq) for p, c in zip(product, ciphertexts, strict=True)]
    if [int(p) for p in product] != list(bundle.ciphertexts):
        raise RoundError("the aggregate is not the product of its signed contributions")
    if len(contributors) < min_contributors:
        raise TooFewContributorsError(
            f"bundle has {len(contributors)} contributor(s); at least {min_contributors} are required")


@dataclass(frozen=True)
class Masking:
    """How a factory masks and signs a contribution: the round, its own identity, and the roster."""

    round: Round
    identity: FactoryIdentity
    roster: Roster

    def __post_init__(self) -> None:
        if not (isinstance(self.round, Round) and isinstance(self.identity, FactoryIdentity)
                and isinstance(self.roster, Roster)):
            raise UsageError("a masked round needs the round, the factory's identity and the roster together",
                             parameters=("round", "identity", "roster"))
        check_round_membership(self.identity, self.roster, self.round)

    def apply(self, bundle: Bundle) -> Bundle:
        """The bundle masked with this factory's zero-sum masks and signed for the round."""
        return mask_and_sign(bundle, self.identity, self.roster, self.round)


def load_round_inputs(roster_path: str | os.PathLike[str] | None,
                      round_path: str | os.PathLike[str] | None) -> tuple[Roster | None, Round | None]:
    """Read the roster and round files a masked round needs (both or neither)."""
    if (roster_path is None) != (round_path is None):
        raise UsageError("a masked round needs both the roster and the round", parameters=("roster", "round"))
    if roster_path is None or round_path is None:
        return None, None
    return Roster.load(roster_path), Round.load(round_path)
