"""Factory identities and the consortium roster.

A factory enrolls once (``hefed enroll``): it makes an Ed25519 signing key,
to sign its contributions, and an X25519 key-agreement key, from which every
pair of factories derives the shared secrets behind the zero-sum masks
(:mod:`hefed.protocol._rounds`). The private halves stay at the factory (mode 0600);
the public halves go into the consortium **roster** (``hefed roster add``),
the only source of who may contribute.

Files (JSON, keys as base64url of their raw 32 bytes):

* ``identity.pub.json``: ``format`` (hefed.identity), ``version``, ``factory_id``,
  ``signing_public``, ``agreement_public``
* ``identity.key.json``: the same plus ``signing_private`` and ``agreement_private`` (mode 0600)
* roster: ``format`` (hefed.roster), ``version``, ``members``:
  ``{factory_id: {"signing_public", "agreement_public"}}``
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding as RawEncoding
from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat, PublicFormat

from .._files import atomic_write_json, check_format, check_writable, read_json_object, stat_file
from ..errors import InsecureKeyError, InvalidFileError, UsageError
from ._ids import check_factory_id

IDENTITY_FORMAT = "hefed.identity"
# A fixed private key used only to probe that a peer's X25519 public key is not a low-order point.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ROSTER_FORMAT = "hefed.roster"
VERSION = 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: Any, source: str, field_name: str) -> bytes:
    if not isinstance(text, str) or len(text) != 43:
        raise InvalidFileError(f"{source}: {field_name!r} must be 32 bytes in base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise InvalidFileError(f"{source}: {field_name!r} is not valid base64url") from None
    if len(raw) != 32:
        raise InvalidFileError(f"{source}: {field_name!r} must be 32 bytes")
    return raw


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(RawEncoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Member:
    """A roster entry: a factory's public signing and key-agreement keys."""

    factory_id: str
    signing_public: bytes
    agreement_public: bytes

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.signing_public)

    def agreement_key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.agreement_public)

    def public_dict(self) -> dict[str, Any]:
        return {"signing_public": _b64(self.signing_public), "agreement_public": _b64(self.agreement_public)}


@dataclass
class FactoryIdentity:
    """A factory's private signing and key-agreement keys (never leave the factory)."""

    factory_id: str
    signing_key: Ed25519PrivateKey
    agreement_key: X25519PrivateKey
    #: The enrollment folder it was loaded from (holds the round ledger), if any.
    folder: Path | None = None

    @property
    def member(self) -> Member:
        return Member(self.factory_id, _raw_public(self.signing_key.public_key()),
                      _raw_public(self.agreement_key.public_key()))

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message)

    def shared_secret(self, peer: Member) -> bytes:
        try:
            return self.agreement_key.exchange(peer.agreement_key())
        except ValueError:  # a low-order point: no shared secret, and no masks, can come of it
            raise InvalidFileError(f"roster: {peer.factory_id!r} has an invalid key-agreement key") from None


def enroll(factory_id: str, out_dir: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Make a factory identity: ``identity.key.json`` (0600) and ``identity.pub.json`` in ``out_dir``."""
    check_factory_id(factory_id)
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / "identity.key.json", out_dir / "identity.pub.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (private_path, public_path):
        check_writable(path, force)
    identity = FactoryIdentity(factory_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())
    public = {"format": IDENTITY_FORMAT, "version": VERSION, "factory_id": factory_id, **identity.member.public_dict()}
    private = {
        **public,
        "signing_private": _b64(identity.signing_key.private_bytes(RawEncoding.Raw, PrivateFormat.Raw, NoEncryption())),
        "agreement_private": _b64(identity.agreement_key.private_bytes(RawEncoding.Raw, PrivateFormat.Raw,
                                                                       NoEncryption())),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(private_path, private, force=force, mode=0o600)
    atomic_write_json(public_path, public, force=force)
    return private_path, public_path


def _identity_fields(obj: dict[str, Any], source: str) -> tuple[str, bytes, bytes]:
    check_format(obj, source, IDENTITY_FORMAT, VERSION, "identity")
    try:
        factory_id = check_factory_id(obj.get("factory_id"))
    except UsageError:
        raise InvalidFileError(f"{source}: invalid 'factory_id'") from None
    return factory_id, _unb64(obj.get("signing_public"), source, "signing_public"), _unb64(
        obj.get("agreement_public"), source, "agreement_public")


def load_member(path: str | os.PathLike[str]) -> Member:
    """Read a factory's public identity (``identity.pub.json``)."""
    obj = read_json_object(path, "identity")
    return Member(*_identity_fields(obj, str(path)))


def read_private_file(path: str | os.PathLike[str], file_name: str, what: str, label: str,
                      allow_insecure_permissions: bool = False) -> tuple[Path, dict[str, Any]]:
    """The JSON object of a private key file (``path`` or ``path/file_name``), refused when group- or
    world-accessible unless ``allow_insecure_permissions``, as ssh does; ``what`` names it in that refusal,
    ``label`` in any other."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    mode = stat_file(path, label).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not allow_insecure_permissions:
        raise InsecureKeyError(f"{path}: {what} is accessible by group or others; run chmod 600 on it",
                               parameters=("allow_insecure_permissions",))
    return path, read_json_object(path, label)


def load_identity(path: str | os.PathLike[str], allow_insecure_permissions: bool = False) -> FactoryIdentity:
    """Read a factory's private identity (a directory holding ``identity.key.json``, or the file)."""
    path, obj = read_private_file(path, "identity.key.json", "identity key", "identity", allow_insecure_permissions)
    factory_id, signing_public, agreement_public = _identity_fields(obj, str(path))
    signing = Ed25519PrivateKey.from_private_bytes(_unb64(obj.get("signing_private"), str(path), "signing_private"))
    agreement = X25519PrivateKey.from_private_bytes(
        _unb64(obj.get("agreement_private"), str(path), "agreement_private"))
    identity = FactoryIdentity(factory_id, signing, agreement, path.parent)
    if identity.member != Member(factory_id, signing_public, agreement_public):
        raise InvalidFileError(f"{path}: private keys do not match the public keys in the same file")
    return identity


@dataclass
class Roster:
    """Who may contribute: factory ids with their public keys."""

    members: dict[str, Member] = field(default_factory=dict)

    def add(self, member: Member, replace: bool = False) -> None:
        if member.factory_id in self.members and not replace and self.members[member.factory_id] != member:
            raise UsageError(f"roster already has {member.factory_id!r} with other keys; not replaced unless asked",
                             parameters=("replace",))
        self.members[member.factory_id] = member

    def get(self, factory_id: str) -> Member:
        try:
            return self.members[factory_id]
        except KeyError:
            raise UsageError(f"factory {factory_id!r} is not in the roster") from None

    def digest(self) -> str:
        """Hash of the roster's contents; rounds record it, so a swapped roster is noticed."""
        blob = json.dumps(self.to_dict()["members"], sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {"format": ROSTER_FORMAT, "version": VERSION,
                "members": {fid: m.public_dict() for fid, m in sorted(self.members.items())}}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Roster:
        return cls.from_dict(read_json_object(path, "roster"), str(path))

    @classmethod
    def from_dict(cls, obj: Any, source: str = "roster") -> Roster:
        if not isinstance(obj, dict):
            raise InvalidFileError(f"{source}: a roster must be a JSON object")
        check_format(obj, source, ROSTER_FORMAT, VERSION, "roster")
        members = obj.get("members")
        if not isinstance(members, dict) or set(obj) != {"format", "version", "members"}:
            raise InvalidFileError(f"{source}: a roster has exactly 'format', 'version' and 'members'")
        roster = cls()
        for fid, entry in members.items():
            if not isinstance(entry, dict) or set(entry) != {"signing_public", "agreement_public"}:
                raise InvalidFileError(f"{source}: member {fid!r} needs signing_public and agreement_public")
            try:
                check_factory_id(fid)
            except UsageError:
                raise InvalidFileError(f"{source}: invalid factory id {fid!r}") from None
            member = Member(fid, _unb64(entry["signing_public"], source, f"{fid}.signing_public"),
                            _unb64(entry["agreement_public"], source, f"{fid}.agreement_public"))
            try:  # a low-order X25519 point yields no shared secret: refuse it now, not mid-round
                _PROBE.exchange(member.agreement_key())
                member.verifier()
            except ValueError:
                raise InvalidFileError(f"{source}: member {fid!r} has an invalid public key") from None
            roster.members[fid] = member
        return roster


def roster_add(roster_path: str | os.PathLike[str], identity_paths: list[str | os.PathLike[str]],
               replace: bool = False) -> Roster:
    """Add public identities to a roster file (created when missing), atomically."""
    roster_path = Path(roster_path)
    roster = Roster.load(roster_path) if roster_path.exists() else Roster()
    for path in identity_paths:
        roster.add(load_member(path), replace)
    roster.save(roster_path, force=True)
    return roster
