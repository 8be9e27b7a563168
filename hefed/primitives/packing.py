"""Packing many exact integers into few Paillier plaintexts, with guard bits.

A :class:`Layout` is public: every party derives it from the same public
parameters. Slot ``i`` holds one integer statistic ``v_i`` with a declared bound
per contribution, ``lo_i <= v_i <= hi_i``. A contribution stores
``v_i - lo_i`` (so every stored value is non-negative: signed values travel
by offset), and the slot is wide enough that the sum of ``max_count``
contributions, at most ``max_count · (hi_i - lo_i)``, never carries into the
next slot. Slots are concatenated little-end first into plaintexts of at
most ``capacity_bits`` bits (below the key's ``n``, so plaintext sums never
wrap modulo n)::

    P = Σ_i (v_i - lo_i) · 2^(offset_i)

After summing ``k`` contributions the key holder unpacks every slot, checks it
lies within ``[0, k·(hi_i - lo_i)]`` (the guard bits above must be zero), that
no bits are set above the last slot, and adds back ``k·lo_i``. A corrupted
ciphertext or an overflowed sum fails this check instead of decoding silently
to a wrong value.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass


class PackingError(ValueError):
    """A value outside its slot's declared bound, or an unpacked slot failing its guard check."""

    def __init__(self, message: str, slot: int | None = None) -> None:
        super().__init__(message)
        self.slot = slot


@dataclass(frozen=True)
class Slot:
    """One packed integer: its declared bounds per contribution and its bit position."""

    lo: int
    hi: int
    width: int
    plaintext: int
    offset: int

    @property
    def span(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Layout:
    """Where every statistic sits in which plaintext; identical for all parties."""

    slots: tuple[Slot, ...]
    n_plaintexts: int
    capacity_bits: int
    max_count: int

    @classmethod
    def build(
        cls, bounds: Sequence[tuple[int, int]], capacity_bits: int, max_count: int
    ) -> Layout:
        """Lay out slots for ``bounds`` (lo, hi) allowing sums of up to ``max_count`` contributions.

        Raises :class:`PackingError` if one slot alone needs more than ``capacity_bits``.
        """
        if max_count < 1:
            raise PackingError("max_count must be at least 1")
        slots: list[Slot] = []
        plaintext, used = 0, 0
        for i, (lo, hi) in enumerate(bounds):
            if lo > hi:
                raise PackingError(f"slot {i}: lower bound above upper bound", i)
            width = max(1, (max_count * (hi - lo)).bit_length())
            if width > capacity_bits:
                raise PackingError(
                    f"slot {i} needs {width} bits but a plaintext holds {capacity_bits}", i
                )
            if used + width > capacity_bits:
                plaintext, used = plaintext + 1, 0
            slots.append(Slot(lo, hi, width, plaintext, used))
            used += width
        return cls(tuple(slots), plaintext + 1 if slots else 0, capacity_bits, max_count)

    def digest(self) -> str:
        """A short hash that changes whenever any slot, bound or capacity changes."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:  # layouts are immutable; bundles ask for the digest often
        desc = {
            "capacity_bits": self.capacity_bits,
            "max_count": self.max_count,
            "slots": [[s.lo, s.hi, s.width, s.plaintext, s.offset] for s in self.slots],
        }
        blob = json.dumps(desc, separators=(",", ":"), default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def pack(self, values: Sequence[int]) -> list[int]:
        """Pack one contribution; every value must lie within its slot's declared bounds."""
        if len(values) != len(self.slots):
            raise PackingError(f"expected {len(self.slots)} values, got {len(values)}")
        plaintexts = [0] * self.n_plaintexts
        for i, (value, slot) in enumerate(zip(values, self.slots, strict=True)):
            if not slot.lo <= value <= slot.hi:
                raise PackingError(
                    f"value at slot {i} is outside its declared bound [{slot.lo}, {slot.hi}]", i
                )
            plaintexts[slot.plaintext] |= (value - slot.lo) << slot.offset
        return plaintexts

    def unpack(self, plaintexts: Sequence[int], count: int) -> list[int]:
        """Unpack the sum of ``count`` contributions, verifying every slot's guard bits."""
        if len(plaintexts) != self.n_plaintexts:
            raise PackingError(f"expected {self.n_plaintexts} plaintexts, got {len(plaintexts)}")
        if not 1 <= count <= self.max_count:
            raise PackingError(f"contribution count {count} outside [1, {self.max_count}]")
        ends = [0] * self.n_plaintexts
        for slot in self.slots:
            ends[slot.plaintext] = slot.offset + slot.width
        for p, (value, end) in enumerate(zip(plaintexts, ends, strict=True)):
            if value < 0 or value >> end:
                raise PackingError(f"plaintext {p} has bits set above its last slot")
        values = []
        for i, slot in enumerate(self.slots):
            stored = (plaintexts[slot.plaintext] >> slot.offset) & ((1 << slot.width) - 1)
            if stored > count * slot.span:
                raise PackingError(f"slot {i} fails its guard check (overflow or corruption)", i)
            values.append(stored + count * slot.lo)
        return values
