"""Encrypted bundles: what a factory sends and what the aggregator returns.

A bundle holds Paillier ciphertexts and public metadata only: format
version, kind, the public key (its ``n`` and fingerprint), the schema (target
and feature names), the public encoding, the packing layout's digest and the
contributing factory ids. No plaintext statistic travels, not even the row
count ``n``. The ciphertexts are packed plaintexts (see
:mod:`hefed.primitives.packing`) whose layout every party re-derives from the
public metadata; a bundle whose stated layout differs is refused.

File format (JSON)::

    {"format": "hefed.bundle", "version": 1, "kind": "statistics",
     "public_key": {"n": "<base64url>"}, "key_fingerprint": "<hex>",
     "schema": {"target": "co2_t", "features": ["coal_t", ...]},
     "encoding": {...}, "parameters": {...}, "layout_digest": "<hex>",
     "contributors": ["plant-a", ...],
     "ciphertexts": ["<base64 of big-endian bytes>", ...]}
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phe import PaillierPublicKey
from phe.util import base64_to_int, int_to_base64

from .._files import (
    atomic_write_json,
    check_names,
    is_digest,
    is_version,
    parse_json_object,
    read_json_object,
    split_study,
    study_field,
)
from .._keys import MAX_BITS, check_public_key, key_fingerprint
from ..errors import InsecureKeyError, InvalidFileError, OverflowRiskError, UsageError
from ..kinds import MAX_ENCODING_COLUMNS, MAX_FEATURES, Header, Kind, get_kind, layout_size
from ..kinds import layout as kind_layout
from ..primitives.encryption import DEFAULT_METHOD, Encryption, encrypt_plaintexts
from ..primitives.packing import Layout, PackingError
from ..primitives.paillier import is_valid_ciphertext
from ..stats import Encoding
from ._ids import FACTORY_ID_PATTERN, check_factory_id

FORMAT = "hefed.bundle"
VERSION = 1


@dataclass
class Bundle:
    """Ciphertexts plus public metadata; see the module docstring for the file format."""

    kind: str
    public_key: PaillierPublicKey
    target: str
    features: list[str]
    encoding: Encoding
    contributors: list[str]
    ciphertexts: list[int]
    layout_digest: str = field(default="")
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Set for masked, signed contributions of a round (see :mod:`hefed.protocol`).
    round_id: str | None = None
    #: Signed manifests, one per contributor, of a round's bundles.
    manifests: list[dict[str, Any]] = field(default_factory=list)
    #: In a round aggregate: every factory's signed (masked) ciphertexts, so the key holder can
    #: check that the aggregate is exactly their product.
    contributions: dict[str, list[int]] = field(default_factory=dict)
    #: The digest of the study the bundle was made for (:class:`~hefed.protocol.Study`), if any.
    study: str | None = None
    #: In a version 2 round aggregate: the round keys and the signed reveals its drop-out correction
    #: came from (:mod:`hefed.protocol._recovery`), for the key holder to recompute it.
    recovery: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.layout_digest:
            self.layout_digest = self.layout().digest()

    @classmethod
    def seal(
        cls,
        kind: str | Kind[Any, Any],
        header: Header,
        sums: Any,
        public_key: PaillierPublicKey,
        factory_id: str,
        *,
        source: str | None = None,
        encryption: Encryption = DEFAULT_METHOD,
        study: str | None = None,
    ) -> Bundle:
        """Pack one contribution's plain ``sums`` (plus the contribution counter) and encrypt them.

        Every bundle is made here: the kind turns ``sums`` into exact integers, which must lie
        within the kind's public bounds (:mod:`hefed.kinds`); a value outside is refused, never
        wrapped. ``encryption`` is ``"djn"`` (default) or ``"classic"``
        (:mod:`hefed.primitives.encryption`); ``study`` is the digest of the study it is made for.
        """
        kind = get_kind(kind, "seal") if isinstance(kind, str) else kind
        check_factory_id(factory_id)
        where = source or factory_id
        target, features = header.target, list(header.features)
        if len(set(features)) != len(features) or target in features:
            raise UsageError(f"{where}: features must be distinct and must not include the target")
        check_names([target, *features], where, "target or features")
        parameters = kind.check_parameters(dict(header.parameters), where)
        packing = kind_layout(kind, features, target, header.encoding, public_key.n, parameters)
        try:
            plaintexts = packing.pack([*kind.values(sums, header), 1])
        except PackingError as exc:
            raise OverflowRiskError(
                f"{where}: a {kind.name} value exceeds the encoding's declared bounds ({exc})"
            ) from None
        ciphertexts = encrypt_plaintexts(public_key, plaintexts, encryption)
        return cls(kind.name, public_key, target, features, header.encoding, [factory_id], ciphertexts,
                   packing.digest(), parameters, study=study)

    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def layout(self) -> Layout:
        return kind_layout(self.kind, self.features, self.target, self.encoding, self.public_key.n, self.parameters)

    @property
    def header(self) -> Header:
        """What the bundle states publicly about its contents (for its kind to read the decrypted values)."""
        return Header(self.target, tuple(self.features), self.encoding, dict(self.parameters),
                      tuple(self.contributors))

    def schema_differences(self, other: Bundle) -> list[str]:
        """Human-readable differences that forbid adding ``other`` to this bundle."""
        diffs = []
        if self.kind != other.kind:
            diffs.append(f"kind {self.kind!r} vs {other.kind!r}")
        if self.key_fingerprint != other.key_fingerprint:
            diffs.append(f"public key {self.key_fingerprint} vs {other.key_fingerprint}")
        if self.target != other.target:
            diffs.append(f"target {self.target!r} vs {other.target!r}")
        if set(self.features) != set(other.features):
            only_a = sorted(set(self.features) - set(other.features))
            only_b = sorted(set(other.features) - set(self.features))
            diffs.append(f"features only in the first: {only_a}, only in the second: {only_b}")
        if self.round_id != other.round_id:
            diffs.append(f"round {self.round_id} vs {other.round_id}")
        if self.study != other.study:
            diffs.append(f"study {self.study} vs {other.study}")
        if self.parameters != other.parameters:
            diffs.append(f"parameters {self.parameters} vs {other.parameters}")
        if self.encoding != other.encoding:
            diffs.append(f"encoding {self.encoding.to_dict()} vs {other.encoding.to_dict()}")
        if not diffs and self.layout_digest != other.layout_digest:
            diffs.append("packing layout")
        return diffs

    # --- files -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        width = (self.public_key.nsquare.bit_length() + 7) // 8

        def encode(c: int) -> str:
            return base64.b64encode(c.to_bytes(width, "big")).decode("ascii")

        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "public_key": {"n": int_to_base64(self.public_key.n)},
            "key_fingerprint": self.key_fingerprint,
            "schema": {"target": self.target, "features": list(self.features)},
            "encoding": self.encoding.to_dict(),
            "parameters": dict(self.parameters),
            "layout_digest": self.layout_digest,
            "contributors": list(self.contributors),
            "ciphertexts": [encode(c) for c in self.ciphertexts],
            **study_field(self.study),
            **({"round_id": self.round_id, "manifests": self.manifests} if self.round_id else {}),
            **({"contributions": {f: [encode(c) for c in cs] for f, cs in self.contributions.items()}}
               if self.contributions else {}),
            **({"recovery": self.recovery} if self.recovery is not None and self.round_id else {}),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bundle:
        """Read and fully check a bundle file (see :meth:`from_dict`; the file's size and JSON are checked
        before parsing: :func:`hefed._files.read_json_object`)."""
        return cls.from_dict(read_json_object(path, "bundle"), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "bundle") -> Bundle:
        """A bundle received as bytes (UTF-8 JSON, as it travels through Flower), checked as a file is: its size
        and JSON before parsing (:func:`hefed._files.parse_json_object`), then :meth:`from_dict`."""
        return cls.from_dict(parse_json_object(data, source, "bundle"), source)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "bundle") -> Bundle:
        """A bundle from its parsed JSON, every field checked; nothing is sized from the file before it is measured.

        The embedded key must be a sound modulus (:func:`~hefed._keys.check_public_key`; any size from 256 bits:
        the size rule is for whoever encrypts data under the key, and the key holder decrypts only under its own).
        The header's features, parameters and encoding are checked against the caps of :mod:`hefed.kinds`, and
        the ciphertext count they imply against the count present, before the layout is built. Every refusal is
        one :class:`~hefed.errors.InvalidFileError` line naming ``source`` and the field.
        """
        if obj.get("format") != FORMAT:
            raise InvalidFileError(f"{source}: not a hefed bundle (format {obj.get('format')!r})")
        if not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: unsupported bundle version {obj.get('version')!r}")
        expected = {
            "format", "version", "kind", "public_key", "key_fingerprint", "schema",
            "encoding", "parameters", "layout_digest", "contributors", "ciphertexts",
        }
        present = set(obj) - ({"round_id", "manifests", "contributions", "recovery"} if "round_id" in obj
                              else set()) - {"study"}
        if present != expected:
            raise InvalidFileError(
                f"{source}: fields wrong (missing {sorted(expected - present)}, "
                f"extra {sorted(present - expected)})"
            )
        study = split_study(obj, source)[1]
        round_id, manifests = obj.get("round_id"), obj.get("manifests", [])
        if "round_id" in obj:
            if not is_digest(round_id):
                raise InvalidFileError(f"{source}: 'round_id' must be 32 hex digits")
            if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
                raise InvalidFileError(f"{source}: 'manifests' must be a list of objects")
            if not isinstance(obj.get("recovery", {}), dict):
                raise InvalidFileError(f"{source}: 'recovery' must be an object")
        kind = get_kind(obj["kind"], source)
        pk = obj["public_key"]
        if not isinstance(pk, dict) or set(pk) != {"n"} or not isinstance(pk["n"], str) or len(pk["n"]) > MAX_BITS:
            raise InvalidFileError(f"{source}: 'public_key' must be {{\"n\": <base64url>}}")
        try:
            n = base64_to_int(pk["n"])
        except Exception:
            raise InvalidFileError(f"{source}: 'public_key.n' is not valid base64url") from None
        public_key = PaillierPublicKey(n)
        try:
            check_public_key(public_key, insecure_test_key=True, source=f"{source}: 'public_key'")
        except InsecureKeyError as exc:
            raise InvalidFileError(str(exc)) from None
        if obj["key_fingerprint"] != key_fingerprint(public_key):
            raise InvalidFileError(f"{source}: 'key_fingerprint' does not match 'public_key'")
        schema = obj["schema"]
        if not isinstance(schema, dict) or set(schema) != {"target", "features"}:
            raise InvalidFileError(f"{source}: 'schema' must have exactly 'target' and 'features'")
        target, features = schema["target"], schema["features"]
        if not isinstance(target, str) or not isinstance(features, list) or not features or not all(
            isinstance(f, str) for f in features
        ):
            raise InvalidFileError(f"{source}: schema 'target' must be a string, 'features' a list of strings")
        if len(features) > MAX_FEATURES:
            raise InvalidFileError(f"{source}: schema 'features': {len(features)} features; at most {MAX_FEATURES} "
                                   "are supported")
        if len(set(features)) != len(features) or target in features:
            raise InvalidFileError(f"{source}: schema features have duplicates or contain the target")
        check_names([target, *features], source, "schema")
        raw_encoding = obj["encoding"]
        if isinstance(raw_encoding, dict) and isinstance(raw_encoding.get("columns"), dict) and len(
                raw_encoding["columns"]) > MAX_ENCODING_COLUMNS:
            raise InvalidFileError(f"{source}: 'encoding' lists {len(raw_encoding['columns'])} column grids; at most "
                                   f"{MAX_ENCODING_COLUMNS}")
        encoding = Encoding.from_dict(raw_encoding, source)
        contributors = obj["contributors"]
        if not isinstance(contributors, list) or not contributors or not all(
            isinstance(c, str) and FACTORY_ID_PATTERN.fullmatch(c) for c in contributors
        ):
            raise InvalidFileError(f"{source}: 'contributors' must be a non-empty list of factory ids")
        parameters = kind.check_parameters(obj["parameters"], source)
        try:  # measured from the header alone: nothing is built yet
            count = layout_size(kind, features, target, encoding, n, parameters)
        except OverflowRiskError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        _check_count(obj["ciphertexts"], count, source, "'ciphertexts'")
        raw_contributions = obj.get("contributions", {})
        if not isinstance(raw_contributions, dict) or len(raw_contributions) > len(contributors):
            raise InvalidFileError(f"{source}: 'contributions' must map contributors to their ciphertexts")
        for factory, raw in raw_contributions.items():
            if factory not in contributors:
                raise InvalidFileError(f"{source}: 'contributions' names {factory!r}, not a contributor")
            _check_count(raw, count, source, f"'contributions' of {factory!r}")
        if not isinstance(obj["layout_digest"], str):
            raise InvalidFileError(f"{source}: 'layout_digest' must be a string")
        try:  # its digest is checked before the layout is built
            packing = kind_layout(kind, features, target, encoding, n, parameters, expected_digest=obj["layout_digest"])
        except InvalidFileError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        ciphertexts = _ciphertexts(obj["ciphertexts"], packing.n_plaintexts, n, source)
        contributions = {factory: _ciphertexts(raw, packing.n_plaintexts, n, f"{source} ({factory})")
                         for factory, raw in raw_contributions.items()}
        return cls(
            kind.name, public_key, target, list(features), encoding, list(contributors), ciphertexts,
            obj["layout_digest"], parameters, round_id, list(manifests), contributions, study, obj.get("recovery"),
        )


def _check_count(raw: Any, count: int, source: str, field: str) -> None:
    """The header implies ``count`` ciphertexts: refuse a list of another length before anything is built for it."""
    if not isinstance(raw, list):
        raise InvalidFileError(f"{source}: {field} must be a list of base64 ciphertexts")
    if len(raw) != count:
        raise InvalidFileError(f"{source}: {field} holds {len(raw)} ciphertexts; the schema, encoding, parameters "
                               f"and key imply {count}")


def _ciphertexts(raw: Any, count: int, n: int, source: str) -> list[int]:
    """Parse and validate a list of base64 ciphertexts: each in [1, n²) and coprime to n."""
    if not isinstance(raw, list) or len(raw) != count:
        raise InvalidFileError(f"{source}: expected {count} ciphertexts")
    ciphertexts = []
    for i, text in enumerate(raw):
        if not isinstance(text, str) or len(text) > MAX_BITS:
            raise InvalidFileError(f"{source}: ciphertext {i} is not a base64 string")
        try:
            value = int.from_bytes(base64.b64decode(text, validate=True), "big")
        except (binascii.Error, ValueError):
            raise InvalidFileError(f"{source}: ciphertext {i} is not valid base64") from None
        if not is_valid_ciphertext(n, value):
            raise InvalidFileError(f"{source}: ciphertext {i} is not in [1, n²) or not coprime to n")
        ciphertexts.append(value)
    return ciphertexts
