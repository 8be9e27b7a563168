"""Releases signed by the key holder: who released decrypted sums or a model, for which study and factories.

The key holder is the only party that sees consortium sums in clear, so it is the one that
vouches for what comes out of them. Besides its Paillier key pair it holds an Ed25519
**release key** (``hefed keygen`` writes ``keyholder.key.json``, mode 0600, and
``keyholder.pub.json``). A study may name the release key's public half (``keyholder``);
then every reader of decrypted sums or of a model (``solve``, factories evaluating a model,
``predict``) accepts only what that key signed.

A signed file is the usual JSON object plus one member::

    "release": {"what": "statistics" | "model" | …, "study": <digest> | null,
                "contributors": [sorted factory ids], "digest": <sha256 of the rest>,
                "signer": <base64url Ed25519 public key>, "signature": <hex>}

``digest`` is SHA-256 of the canonical JSON (sorted keys, no spaces) of the object without
``release``; the signature covers ``hefed-release-v1`` and the canonical JSON of the other five
members. Reading a signed file checks the signature against the signer it names; whether
that signer is the one the reader trusts is the reader's check (:func:`check_signer`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding as RawEncoding
from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat, PublicFormat

from .._files import atomic_write_json, check_format, check_writable, read_json_object
from ..errors import InvalidFileError, ReleaseError
from ._identity import _b64, _unb64, read_private_file

KEYHOLDER_FORMAT = "hefed.keyholder"
VERSION = 1
_DOMAIN = b"hefed-release-v1|"
_RELEASE_FIELDS = ("what", "study", "contributors", "digest", "signer")


def body_digest(obj: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``obj`` without its ``release`` member."""
    body = {k: v for k, v in obj.items() if k != "release"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _signed_bytes(release: dict[str, Any]) -> bytes:
    return _DOMAIN + json.dumps({k: release[k] for k in _RELEASE_FIELDS}, sort_keys=True,
                                separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class ReleaseSignature:
    """Who released a file (the signer's public key, base64url), what, for which study and factories."""

    what: str
    study: str | None
    contributors: tuple[str, ...]
    signer: str

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "study": self.study, "contributors": list(self.contributors),
                "signer": self.signer}


class KeyHolderSigner:
    """The key holder's Ed25519 release key (private; never leaves the key holder)."""

    def __init__(self, signing_key: Ed25519PrivateKey) -> None:
        self._key = signing_key

    @property
    def public(self) -> str:
        """The public half, base64url: what a study names as ``keyholder``."""
        return _b64(self._key.public_key().public_bytes(RawEncoding.Raw, PublicFormat.Raw))

    def sign(self, obj: dict[str, Any], what: str, study: str | None, contributors: Sequence[str]) -> dict[str, Any]:
        """``obj`` with a ``release`` member signed by this key."""
        release: dict[str, Any] = {"what": what, "study": study, "contributors": sorted(contributors),
                                   "digest": body_digest(obj), "signer": self.public}
        release["signature"] = self._key.sign(_signed_bytes(release)).hex()
        return {**{k: v for k, v in obj.items() if k != "release"}, "release": release}

    @classmethod
    def generate(cls) -> KeyHolderSigner:
        return cls(Ed25519PrivateKey.generate())


def make_release_key(out_dir: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Write a new release key: ``keyholder.key.json`` (mode 0600) and ``keyholder.pub.json``."""
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / "keyholder.key.json", out_dir / "keyholder.pub.json"
    for path in (private_path, public_path):
        check_writable(path, force)
    key = Ed25519PrivateKey.generate()
    signer = KeyHolderSigner(key)
    public = {"format": KEYHOLDER_FORMAT, "version": VERSION, "signing_public": signer.public}
    private = {**public, "signing_private": _b64(key.private_bytes(RawEncoding.Raw, PrivateFormat.Raw,
                                                                   NoEncryption()))}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(private_path, private, force=force, mode=0o600)
    atomic_write_json(public_path, public, force=force)
    return private_path, public_path


def load_release_key(path: str | os.PathLike[str], allow_insecure_permissions: bool = False) -> KeyHolderSigner:
    """Read the key holder's release key (``keyholder.key.json``, or the folder holding it)."""
    path, obj = read_private_file(path, "keyholder.key.json", "release key", "release key",
                                  allow_insecure_permissions)
    check_format(obj, str(path), KEYHOLDER_FORMAT, VERSION, "release key")
    if "signing_private" not in obj:
        raise InvalidFileError(f"{path}: a public release key (keyholder.pub.json), not the private one")
    signer = KeyHolderSigner(Ed25519PrivateKey.from_private_bytes(
        _unb64(obj.get("signing_private"), str(path), "signing_private")))
    if signer.public != obj.get("signing_public"):
        raise InvalidFileError(f"{path}: the private release key does not match the public key in the same file")
    return signer


def load_release_public(path: str | os.PathLike[str]) -> str:
    """The public release key (base64url) from ``keyholder.pub.json`` (or the private file)."""
    obj = read_json_object(path, "release key")
    check_format(obj, str(path), KEYHOLDER_FORMAT, VERSION, "release key")
    return check_release_public(obj.get("signing_public"), str(path))


def check_release_public(text: Any, source: str) -> str:
    """A base64url Ed25519 public key, checked."""
    raw = _unb64(text, source, "signing_public")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidFileError(f"{source}: not an Ed25519 public key") from None
    return str(text)


def open_release(obj: dict[str, Any], source: str) -> ReleaseSignature | None:
    """The verified release of a JSON object that carries one (``None`` when it carries none).

    The signature is checked against the signer the release names and the digest against the
    object's other members; a mismatch in either is refused.
    """
    release = obj.get("release")
    if release is None:
        return None
    if not isinstance(release, dict) or set(release) != {*_RELEASE_FIELDS, "signature"}:
        raise InvalidFileError(f"{source}: malformed 'release' signature block")
    contributors = release["contributors"]
    if (not isinstance(release["what"], str) or not isinstance(contributors, list)
            or not all(isinstance(c, str) for c in contributors)
            or not (release["study"] is None or isinstance(release["study"], str))):
        raise InvalidFileError(f"{source}: malformed 'release' signature block")
    signer = check_release_public(release["signer"], source)
    try:
        Ed25519PublicKey.from_public_bytes(_unb64(signer, source, "signer")).verify(
            bytes.fromhex(release["signature"]), _signed_bytes(release))
    except (InvalidSignature, ValueError, TypeError):
        raise ReleaseError(f"{source}: the release signature is not valid") from None
    if release["digest"] != body_digest(obj):
        raise ReleaseError(f"{source}: the contents were changed after the key holder signed them")
    return ReleaseSignature(release["what"], release["study"], tuple(contributors), signer)


def check_signer(release: ReleaseSignature | None, expected: str | None, source: str, what: str) -> None:
    """Refuse ``release`` unless it was signed by ``expected`` (the study's key holder), for ``what``.

    ``expected`` ``None``: nothing is required (a study that names no key holder).
    """
    if expected is None:
        return
    if release is None:
        raise ReleaseError(f"{source}: not signed by the study's key holder (it carries no release signature)")
    if release.signer != expected:
        raise ReleaseError(f"{source}: signed by another key than the study's key holder")
    if release.what != what:
        raise ReleaseError(f"{source}: the key holder released {release.what}, not {what}")
