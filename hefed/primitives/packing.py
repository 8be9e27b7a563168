"""Packing many exact integers into few Paillier plaintexts, with guard bits.

A :class:`Layout` is public: every party derives it from the same public
parameters. Slot ``i`` holds one integer statistic ``v_i`` with a declared bound
per contribution, ``lo_i <= v_i <= hi_i``. A contribution stores
``v_i - lo_i`` (so every stored value is non-negative: signed values travel
by offset), and the slot is wide enough (its guard bits) that the sum of
``max_count`` contributions, at most ``max_count · (hi_i - lo_i)``, never
carries into the next slot. The slots are concatenated, little end first, into
one long integer::

    B = Σ_i (v_i - lo_i) · 2^(offset_i),      offset_i = Σ_{j<i} width_j

which is cut into chunks of ``chunk_bits`` bits, one chunk per plaintext:
``P_j = ⌊B / 2^(j·chunk_bits)⌋ mod 2^chunk_bits``. Each plaintext keeps
``capacity_bits − chunk_bits`` bits of headroom (guard bits for the whole
chunk), so the sum of ``max_count`` plaintexts stays below ``2^capacity_bits``,
below the key's ``n``: plaintext sums never wrap. Slots may straddle two
plaintexts, so no bits are wasted at the end of a plaintext.

After summing ``k`` contributions the key holder checks every plaintext sum is
at most ``k·(2^chunk_bits − 1)``, recombines ``B_k = Σ_j P_j · 2^(j·chunk_bits)``
(carries out of a chunk land where they belong), checks that no bit is set
above the last slot and that every slot lies within ``[0, k·(hi_i − lo_i)]``
(its guard bits), and adds back ``k·lo_i``. A corrupted ciphertext or an
overflowed sum fails these checks instead of decoding silently to a wrong value.
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
    """One packed integer: its declared bounds per contribution and its bit position in ``B``."""

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
    """Where every statistic sits in the concatenated slots; identical for all parties."""

    slots: tuple[Slot, ...]
    n_plaintexts: int
    capacity_bits: int
    max_count: int

    @property
    def chunk_bits(self) -> int:
        """Bits of ``B`` each plaintext carries; the rest of its capacity is headroom for sums."""
        return self.capacity_bits - self.max_count.bit_length()

    @property
    def total_bits(self) -> int:
        return sum(slot.width for slot in self.slots)

    @classmethod
    def build(
        cls, bounds: Sequence[tuple[int, int]], capacity_bits: int, max_count: int
    ) -> Layout:
        """Lay out slots for ``bounds`` (lo, hi) allowing sums of up to ``max_count`` contributions.

        Raises :class:`PackingError` if the plaintexts leave no room once the headroom
        for ``max_count`` contributions is set aside.
        """
        if max_count < 1:
            raise PackingError("max_count must be at least 1")
        chunk = capacity_bits - max_count.bit_length()
        if chunk < 1:
            raise PackingError(f"a {capacity_bits}-bit plaintext has no room left for sums of {max_count}")
        slots: list[Slot] = []
        offset = 0
        for i, (lo, hi) in enumerate(bounds):
            if lo > hi:
                raise PackingError(f"slot {i}: lower bound above upper bound", i)
            width = max(1, (max_count * (hi - lo)).bit_length())
            slots.append(Slot(lo, hi, width, offset // chunk, offset))
            offset += width
        return cls(tuple(slots), -(-offset // chunk), capacity_bits, max_count)

    def digest(self) -> str:
        """A short hash that changes whenever any slot, bound or capacity changes."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:  # layouts are immutable; bundles ask for the digest often
        desc = {
            "scheme": "spanning-slots-v2",
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
        joined = 0
        for i, (value, slot) in enumerate(zip(values, self.slots, strict=True)):
            if not slot.lo <= value <= slot.hi:
                raise PackingError(
                    f"value at slot {i} is outside its declared bound [{slot.lo}, {slot.hi}]", i
                )
            joined |= (value - slot.lo) << slot.offset
        chunk, mask = self.chunk_bits, (1 << self.chunk_bits) - 1
        return [(joined >> (j * chunk)) & mask for j in range(self.n_plaintexts)]

    def unpack(self, plaintexts: Sequence[int], count: int) -> list[int]:
        """Unpack the sum of ``count`` contributions, verifying the headroom and every slot's guard bits."""
        if len(plaintexts) != self.n_plaintexts:
            raise PackingError(f"expected {self.n_plaintexts} plaintexts, got {len(plaintexts)}")
        if not 1 <= count <= self.max_count:
            raise PackingError(f"contribution count {count} outside [1, {self.max_count}]")
        chunk = self.chunk_bits
        ceiling = count * ((1 << chunk) - 1)
        joined = 0
        for j, value in enumerate(plaintexts):
            if not 0 <= value <= ceiling:
                raise PackingError(f"plaintext {j} exceeds what {count} contributions can sum to")
            joined += value << (j * chunk)
        if joined >> self.total_bits:
            raise PackingError("bits are set above the last slot")
        values = []
        for i, slot in enumerate(self.slots):
            stored = (joined >> slot.offset) & ((1 << slot.width) - 1)
            if stored > count * slot.span:
                raise PackingError(f"slot {i} fails its guard check (overflow or corruption)", i)
            values.append(stored + count * slot.lo)
        return values
