"""The key holder's ledger: no two decrypted sums under one key can be differenced.

Any sum the key holder decrypts is a sum over a *contributor set* of factories. Two sums over
overlapping but different sets (five factories, then four "after a drop-out") differ by the
statistics of the factories in one set and not the other: a single plant's exact Gram matrix.
The ledger therefore records every contributor set the key holder decrypted — under any of its
keys: a second study under a new key is no reason to forget the first, whose sums over the same
rows differ from the new ones by the departed factories' statistics — and a new decryption is
allowed only if its set

* has at least ``min_contributors`` members, and
* is **identical to or disjoint from** every set already decrypted (under any key).

Then the sets decrypted form a partition of some factories into blocks of at least
``min_contributors``, and any linear combination of decrypted sums is a combination of block
sums: each involves at least ``min_contributors`` factories. (Summary, statistics, fold
statistics, evaluation rounds and the GLM iterations of one study all share one set. A consortium
whose membership changes can release sums of the new set only over data the old sums did not
cover — a new period — and its key holder then starts a new ledger knowingly: the ledger cannot
tell periods apart.) The rule constrains *sets*, so it holds
across bundle kinds too: statistics and fold statistics of the same factories may both be
decrypted, those of four of them not.

One set's sums may not come from two *families* of kinds whose difference is a per-plant quantity: the
within-plant (fixed-effects) statistics of a set minus its pooled statistics is ``Σ_g s_g s_gᵀ / n_g``, a
sum over plants of each plant's means outer products — with one colluding plant, the others' means up to a
rotation. So a set decrypted as ``within_statistics`` is decrypted as nothing else, and a set decrypted as
anything else is never decrypted as ``within_statistics`` (:data:`KIND_FAMILIES`).

File (JSON, written atomically, mode 0600; give every key the same file, ``decrypt --ledger``)::

    {"format": "hefed.decryption_ledger", "version": 1, "key_fingerprint": "<32 hex, the first key>",
     "entries": [{"contributors": [...], "kind": "statistics", "study": "<digest>" | null,
                  "round_id": "<32 hex>" | null, "signed": true, "time": "2026-12-02T17:00:00Z",
                  "key_fingerprint": "<32 hex>"}]}
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import atomic_write_json, check_format, is_digest, read_json_object
from ..errors import InvalidFileError, LedgerError, TooFewContributorsError

FORMAT = "hefed.decryption_ledger"
VERSION = 1

#: Kinds whose sums must not meet those of other kinds over one contributor set (see the module docstring);
#: every kind not named here is in the family ``"pooled"``.
KIND_FAMILIES = {"within_statistics": "within"}


def kind_family(kind: str | None) -> str:
    return KIND_FAMILIES.get(kind or "", "pooled")


@dataclass
class DecryptionLedger:
    """The contributor sets a key holder decrypted, under any of its keys (see the module docstring);
    ``key_fingerprint`` is the key now in use, which each new entry records."""

    key_fingerprint: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @property
    def sets(self) -> list[frozenset[str]]:
        return [frozenset(entry["contributors"]) for entry in self.entries]

    def check(self, contributors: Sequence[str], min_contributors: int, kind: str | None = None) -> None:
        """Refuse a contributor set that is too small, or overlaps a decrypted one without being identical, or
        (with ``kind``) is the same set decrypted before as a kind of another family (:data:`KIND_FAMILIES`).

        The message names how many factories the sets share and differ by, never which ones' data.
        """
        new = frozenset(contributors)
        if len(new) != len(contributors):
            raise LedgerError("the contributor set lists a factory twice")
        if len(new) < min_contributors:
            raise TooFewContributorsError(
                f"{len(new)} contributor(s); at least {min_contributors} are required before anything is decrypted")
        for entry, old in zip(self.entries, self.sets, strict=True):
            if old == new and kind is not None and kind_family(entry.get("kind")) != kind_family(kind):
                raise LedgerError(
                    f"the ledger refuses this {kind} aggregate: the same {len(new)} contributors were decrypted as "
                    f"{entry.get('kind')}, and the difference of within-plant and pooled sums of one set is a sum of "
                    "per-plant means; decrypt one family of sums per set (a new set of factories, or a new period)")
            if old == new or not (old & new):
                continue
            raise LedgerError(
                f"the ledger refuses this aggregate: its {len(new)} contributors share {len(old & new)} with a set of "
                f"{len(old)} already decrypted, without being the same set; the difference of the two sums would "
                f"be the statistics of {len(old ^ new)} factories. Decrypt only sums of the set already decrypted "
                "(or of factories none of which is in it)")

    def record(self, contributors: Sequence[str], kind: str, study: str | None, round_id: str | None,
               signed: bool, key_fingerprint: str | None = None) -> None:
        """Add a decryption, and write the ledger file (before the decrypted sums are released)."""
        self.entries.append({
            "contributors": sorted(contributors), "kind": kind, "study": study, "round_id": round_id,
            "signed": bool(signed), "time": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "key_fingerprint": key_fingerprint or self.key_fingerprint,
        })
        if self.path is not None:
            self.save(self.path)

    def to_dict(self) -> dict[str, Any]:
        first = next((e["key_fingerprint"] for e in self.entries if "key_fingerprint" in e), self.key_fingerprint)
        return {"format": FORMAT, "version": VERSION, "key_fingerprint": first, "entries": self.entries}

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, self.to_dict(), force=True, mode=0o600)

    @classmethod
    def open(cls, path: str | os.PathLike[str], key_fingerprint: str) -> DecryptionLedger:
        """The ledger in ``path``, used now under the key ``key_fingerprint`` (a new, empty one if the file is
        missing). One file serves every key of a key holder: the sets decrypted under the others still count."""
        path = Path(path)
        if not path.exists():
            return cls(key_fingerprint, [], path)
        obj = read_json_object(path, "decryption ledger")
        check_format(obj, str(path), FORMAT, VERSION, "decryption ledger")
        if not is_digest(obj.get("key_fingerprint")) or not isinstance(obj.get("entries"), list):
            raise InvalidFileError(f"{path}: a decryption ledger needs 'key_fingerprint' and a list of 'entries'")
        entries = obj["entries"]
        for i, entry in enumerate(entries):
            members = entry.get("contributors") if isinstance(entry, dict) else None
            if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
                raise InvalidFileError(f"{path}: entry {i} has no list of contributors")
        return cls(key_fingerprint, entries, path)


def default_ledger_path(private_key_path: str | os.PathLike[str]) -> Path:
    """Where ``hefed decrypt`` keeps the ledger when not told: beside the private key."""
    return Path(private_key_path).resolve().parent / "decryption-ledger.json"
