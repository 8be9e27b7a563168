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

import hashlib
import itertools
import json
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload


class PackingError(ValueError):
    """A value outside its slot's declared bound, or an unpacked slot failing its guard check."""

    def __init__(self, message: str, slot: int | None = None) -> None:
        super().__init__(message)
        self.slot = slot


def slot_width(lo: int, hi: int, max_count: int) -> int:
    """Bits of a slot holding the sum of ``max_count`` values in ``[lo, hi]`` (stored as ``v - lo``)."""
    return max(1, (max_count * (hi - lo)).bit_length())


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


class _Slots(Sequence[Slot]):
    """A layout's slots, made on demand from its compact arrays (a layout of a million slots keeps ~20 bytes
    per slot, not a :class:`Slot` object each)."""

    __slots__ = ("_layout",)

    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    def __len__(self) -> int:
        return len(self._layout._widths)

    @overload
    def __getitem__(self, index: int) -> Slot: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Slot]: ...

    def __getitem__(self, index: int | slice) -> Slot | Sequence[Slot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        layout = self._layout
        lo, hi = layout._bounds[index]
        offset = layout._offsets[index]
        return Slot(lo, hi, layout._widths[index], offset // layout.chunk_bits, offset)

    def __iter__(self) -> Iterator[Slot]:
        layout, chunk = self._layout, self._layout.chunk_bits
        for (lo, hi), width, offset in zip(layout._bounds, layout._widths, layout._offsets, strict=True):
            yield Slot(lo, hi, width, offset // chunk, offset)


class Layout:
    """Where every statistic sits in the concatenated slots; identical for all parties.

    Kept compact: the bounds as given (kinds share one ``(lo, hi)`` tuple between the many slots with the
    same bounds) and two arrays of widths and offsets; :attr:`slots` makes :class:`Slot` objects on demand.
    """

    __slots__ = ("_bounds", "_widths", "_offsets", "n_plaintexts", "capacity_bits", "max_count", "total_bits",
                 "_digest_value")

    def __init__(self, bounds: Sequence[tuple[int, int]], widths: array[int], offsets: array[int],
                 n_plaintexts: int, capacity_bits: int, max_count: int, total_bits: int) -> None:
        self._bounds = bounds
        self._widths = widths
        self._offsets = offsets
        self.n_plaintexts = n_plaintexts
        self.capacity_bits = capacity_bits
        self.max_count = max_count
        self.total_bits = total_bits
        self._digest_value: str | None = None

    @property
    def slots(self) -> Sequence[Slot]:
        return _Slots(self)

    @property
    def chunk_bits(self) -> int:
        """Bits of ``B`` each plaintext carries; the rest of its capacity is headroom for sums."""
        return self.capacity_bits - self.max_count.bit_length()

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
        bounds = bounds if isinstance(bounds, (list, tuple)) else list(bounds)
        # Kinds share one (lo, hi) tuple between the many slots with the same bounds: each distinct bound is
        # worked out once, and the per-slot work runs in C (a Gram of 1000 features has half a million slots).
        known: dict[int, int] = {}
        for key, (lo, hi) in dict(zip(map(id, bounds), bounds, strict=True)).items():  # in order of first use
            if lo > hi:
                i = [id(bound) for bound in bounds].index(key)
                raise PackingError(f"slot {i}: lower bound above upper bound", i)
            known[key] = slot_width(lo, hi, max_count)
            if known[key] >> 32:
                i = [id(bound) for bound in bounds].index(key)
                raise PackingError(f"slot {i}: a slot of {known[key]} bits", i)
        widths = array("I", map(known.__getitem__, map(id, bounds)))  # a slot of 2^32 bits is no slot
        offsets = array("Q", itertools.accumulate(widths, initial=0))
        total = offsets.pop()
        return cls(bounds, widths, offsets, -(-total // chunk), capacity_bits, max_count, total)

    def digest(self) -> str:
        """A short hash that changes whenever any slot, bound or capacity changes.

        See :func:`layout_digest`, which gives the same digest without building the layout.
        """
        if self._digest_value is None:
            self._digest_value = layout_digest(self._bounds, self.capacity_bits, self.max_count)
        return self._digest_value

    def pack(self, values: Sequence[int]) -> list[int]:
        """Pack one contribution; every value must lie within its slot's declared bounds."""
        if len(values) != len(self._widths):
            raise PackingError(f"expected {len(self._widths)} values, got {len(values)}")
        joined = 0
        for i, (value, (lo, hi), offset) in enumerate(zip(values, self._bounds, self._offsets, strict=True)):
            if not lo <= value <= hi:
                raise PackingError(
                    f"value at slot {i} is outside its declared bound [{lo}, {hi}]", i
                )
            joined |= (value - lo) << offset
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
        for i, ((lo, hi), width, offset) in enumerate(zip(self._bounds, self._widths, self._offsets, strict=True)):
            stored = (joined >> offset) & ((1 << width) - 1)
            if stored > count * (hi - lo):
                raise PackingError(f"slot {i} fails its guard check (overflow or corruption)", i)
            values.append(stored + count * lo)
        return values


def layout_digest(bounds: Sequence[tuple[int, int]], capacity_bits: int, max_count: int) -> str:
    """The digest of the layout :meth:`Layout.build` would make of these arguments, without making it.

    The SHA-256 of ``json.dumps({"scheme", "capacity_bits", "max_count", "slots": [[lo, hi, width,
    plaintext, offset], …]}, separators=(",", ":"))``, hashed as it is written out, a few thousand slots at a
    time: neither the text nor the slots are ever held whole, so a file's stated digest is checked in memory
    proportional to its bounds (shared tuples: 8 bytes a slot) before any layout is built for it.
    """
    chunk = capacity_bits - max_count.bit_length()
    distinct = dict(zip(map(id, bounds), bounds, strict=True))
    widths = {key: slot_width(lo, hi, max_count) for key, (lo, hi) in distinct.items()}
    texts = {key: f"{_json(lo)},{_json(hi)}" for key, (lo, hi) in distinct.items()}
    h = hashlib.sha256(f'{{"scheme":"spanning-slots-v2","capacity_bits":{_json(capacity_bits)},'
                       f'"max_count":{_json(max_count)},"slots":['.encode())
    offset, step = 0, 1 << 12
    for start in range(0, len(bounds), step):
        part = bounds[start:start + step]
        part_widths = list(map(widths.__getitem__, map(id, part)))
        offsets = list(itertools.accumulate(part_widths, initial=offset))
        offset = offsets.pop()
        piece = ",".join([f"[{texts[id(bound)]},{width},{at // chunk},{at}]"
                          for bound, width, at in zip(part, part_widths, offsets, strict=True)])
        h.update(((',' if start else '') + piece).encode())
    h.update(b"]}")
    return h.hexdigest()[:32]


def _json(value: object) -> str:
    """``value`` as ``json.dumps(value, default=str)`` writes it (an int as its digits)."""
    return str(value) if type(value) is int else json.dumps(value, default=str)
