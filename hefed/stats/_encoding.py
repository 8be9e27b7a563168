"""The public integer encoding of float64 data: a grid and a range per column, and rounding counted.

Every float64 is ``m · 2^e`` for integers ``m`` and ``e``. With ``F`` fractional bits (the
*grid* ``2^-F``), a value ``x`` encodes as the integer ``x · 2^F``; that is exact whenever
``x`` has no binary digits below ``2^-F``. A float64 of magnitude in ``[2^e, 2^(e+1))`` has
its last binary digit at ``2^(e−52)``, so with the default ``F = 84`` every value from about
``2^-32 ≈ 2.3e-10`` up encodes exactly; a finer value is **rounded to the nearest grid point**
(ties to even) and counted (:class:`Rounding`), never silently. A value whose magnitude
reaches ``2^int_bits`` (default ``2^64 ≈ 1.8e19``) is refused with the bits it needs. The
defaults are fixed in advance and need no data: they fit all eleven NIST StRD linear
regression sets exactly and columns from 1e-9 to 1e15 as read from CSV decimals.

A column may have its own grid and range (:class:`ColumnEncoding`, e.g. chosen in a study
from declared units, or from what ``hefed check`` reports): counts in Wh and masses in
tonnes need not share one grid, and tight widths make bundles smaller.

The encoding is public and must be the same for every factory of a consortium: bundles with
different encodings are refused by aggregation. Its bounds also fix the packing layout (see
:mod:`hefed.primitives.packing`): a statistic over at most ``2^max_rows_bits`` rows from at
most ``max_contributors`` factories can never overflow its slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EncodingError, InvalidFileError, UsageError

SCHEME = "hefed-fixed-binary-v1"

DEFAULT_FRAC_BITS = 84
DEFAULT_INT_BITS = 64


def _check_bits(name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise UsageError(f"encoding: {name} must be an integer in [{lo}, {hi}]", parameters=(name,))
    return value


@dataclass(frozen=True)
class ColumnEncoding:
    """One column's grid ``2^-frac_bits`` and range ``|x| < 2^int_bits``."""

    frac_bits: int
    int_bits: int

    def __post_init__(self) -> None:
        # grids coarser than 1 (frac_bits < 0) would save a few bits on columns of round thousands, but the
        # exact rationals divide by 2^frac_bits; integers already fit the grid 2^0 exactly
        _check_bits("frac_bits", self.frac_bits, 0, 900)
        _check_bits("int_bits", self.int_bits, 1, 900)
        if self.frac_bits + self.int_bits > 1000 or self.frac_bits + self.int_bits < 1:
            raise UsageError("encoding: frac_bits + int_bits must be between 1 and 1000")

    @property
    def value_bits(self) -> int:
        """Bound on the encoded integers: ``|x · 2^frac_bits| < 2^value_bits``."""
        return self.frac_bits + self.int_bits

    def to_dict(self) -> dict[str, int]:
        return {"frac_bits": self.frac_bits, "int_bits": self.int_bits}


@dataclass
class Rounding:
    """How many values each column had rounded to its grid, and the largest change (a factory's own record).

    Rounding ``x`` to the nearest multiple of ``2^-F`` moves it by at most ``2^-(F+1)``: every
    statistic then differs from that of the unrounded data by at most the sum of those
    changes' effects, which :meth:`bound` states per column.
    """

    counts: dict[str, int] = field(default_factory=dict)
    largest_change: dict[str, float] = field(default_factory=dict)
    smallest_rounded: dict[str, float] = field(default_factory=dict)
    grid: dict[str, int] = field(default_factory=dict)

    def add(self, column: str, before: np.ndarray, after: np.ndarray, frac_bits: int) -> None:
        changed = before != after
        count = int(changed.sum())
        if not count:
            return
        self.counts[column] = self.counts.get(column, 0) + count
        change = float(np.abs(before[changed] - after[changed]).max())
        self.largest_change[column] = max(self.largest_change.get(column, 0.0), change)
        smallest = float(np.abs(before[changed]).min())
        self.smallest_rounded[column] = min(self.smallest_rounded.get(column, math.inf), smallest)
        self.grid[column] = frac_bits

    def merge(self, other: Rounding) -> None:
        for column, count in other.counts.items():
            self.counts[column] = self.counts.get(column, 0) + count
            self.largest_change[column] = max(self.largest_change.get(column, 0.0), other.largest_change[column])
            self.smallest_rounded[column] = min(self.smallest_rounded.get(column, math.inf),
                                                other.smallest_rounded[column])
            self.grid[column] = other.grid[column]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def bound(self, column: str) -> str:
        """The stated bound on one column's rounding."""
        frac = self.grid[column]
        return (f"{self.counts[column]} value(s) of {column!r} rounded to the 2^-{frac} grid: each moved by at most "
                f"2^-{frac + 1} ({2.0 ** -(frac + 1):.3g}; largest change {self.largest_change[column]:.3g}, "
                f"smallest value rounded {self.smallest_rounded[column]:.3g})")

    def lines(self) -> list[str]:
        return [self.bound(column) for column in sorted(self.counts)]

    def to_dict(self) -> dict[str, Any]:
        return {column: {"count": self.counts[column], "grid_frac_bits": self.grid[column],
                         "max_change": self.largest_change[column], "bound": 2.0 ** -(self.grid[column] + 1)}
                for column in sorted(self.counts)}


@dataclass(frozen=True)
class Encoding:
    """Public parameters of the integer encoding.

    Attributes:
        frac_bits: the default grid: values are encoded on multiples of ``2^-frac_bits``
            (finer digits are rounded and counted).
        int_bits: the default range: values must satisfy ``|x| < 2^int_bits``.
        max_rows_bits: a factory contributes at most ``2^max_rows_bits`` rows.
        max_contributors: the most bundles any aggregate may sum (guard bits are sized for it).
        columns: per-column grids and ranges overriding the defaults, as ``(name, ColumnEncoding)``
            pairs sorted by name (:meth:`with_columns` builds it from a mapping).
    """

    frac_bits: int = DEFAULT_FRAC_BITS
    int_bits: int = DEFAULT_INT_BITS
    max_rows_bits: int = 32
    max_contributors: int = 10_000
    columns: tuple[tuple[str, ColumnEncoding], ...] = ()

    def __post_init__(self) -> None:
        ColumnEncoding(self.frac_bits, self.int_bits)  # the same rules for the default
        _check_bits("max_rows_bits", self.max_rows_bits, 1, 64)
        _check_bits("max_contributors", self.max_contributors, 1, 1 << 32)
        names = [name for name, _ in self.columns]
        if names != sorted(set(names)) or not all(isinstance(c, ColumnEncoding) for _, c in self.columns):
            raise UsageError("encoding: columns must be distinct (name, ColumnEncoding) pairs sorted by name")

    @classmethod
    def with_columns(cls, columns: Mapping[str, ColumnEncoding], **defaults: int) -> Encoding:
        """An encoding with per-column grids and ranges (other columns take the defaults)."""
        return cls(**defaults, columns=tuple(sorted(columns.items())))

    def column(self, name: str) -> ColumnEncoding:
        """The grid and range of column ``name`` (its own, or the defaults)."""
        for column, encoding in self.columns:
            if column == name:
                return encoding
        return ColumnEncoding(self.frac_bits, self.int_bits)

    def frac_bits_of(self, name: str) -> int:
        return self.column(name).frac_bits

    def value_bits_of(self, name: str) -> int:
        return self.column(name).value_bits

    @property
    def value_bits(self) -> int:
        """Bound on the encoded integers of a column with the default grid and range."""
        return self.frac_bits + self.int_bits

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"scheme": SCHEME, "frac_bits": self.frac_bits, "int_bits": self.int_bits,
                               "max_rows_bits": self.max_rows_bits, "max_contributors": self.max_contributors}
        if self.columns:  # absent when empty, so files of encodings without per-column grids are unchanged
            obj["columns"] = {name: encoding.to_dict() for name, encoding in self.columns}
        return obj

    @classmethod
    def from_dict(cls, obj: Any, source: str = "encoding") -> Encoding:
        if not isinstance(obj, dict):
            raise InvalidFileError(f"{source}: 'encoding' must be an object")
        if obj.get("scheme") != SCHEME:
            raise InvalidFileError(f"{source}: unknown encoding scheme {obj.get('scheme')!r}")
        expected = {"scheme", "frac_bits", "int_bits", "max_rows_bits", "max_contributors"}
        present = set(obj) - {"columns"}
        if present != expected:
            missing, extra = expected - present, present - expected
            raise InvalidFileError(
                f"{source}: encoding fields wrong (missing {sorted(missing)}, extra {sorted(extra)})"
            )
        try:
            columns = {}
            raw = obj.get("columns", {})
            if not isinstance(raw, dict) or ("columns" in obj and not raw):
                raise InvalidFileError(f"{source}: encoding 'columns' must be a non-empty object")
            for name, spec in raw.items():
                if not isinstance(spec, dict) or set(spec) != {"frac_bits", "int_bits"}:
                    raise InvalidFileError(f"{source}: encoding of column {name!r} needs exactly frac_bits, int_bits")
                columns[str(name)] = ColumnEncoding(spec["frac_bits"], spec["int_bits"])
            return cls.with_columns(columns, **{k: obj[k] for k in expected - {"scheme"}})
        except UsageError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None

    # --- values --------------------------------------------------------------------------------
    def check_range(self, values: np.ndarray, column: str, source: str = "data", first_row: int = 0) -> None:
        """Refuse a value that is not finite or reaches the column's range, naming the bits it needs."""
        x = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise EncodingError(f"{source}: column {column!r}, row {first_row + row + 1}: value {float(x[row])!r} "
                                "is not finite")
        int_bits = self.column(column).int_bits
        too_big = np.abs(x) >= 2.0**int_bits
        if too_big.any():
            row = int(np.flatnonzero(too_big)[0])
            needed = int(np.frexp(np.abs(x[too_big]).max())[1])
            raise EncodingError(
                f"{source}: column {column!r}, row {first_row + row + 1}: |{float(x[row])!r}| reaches 2^{int_bits}; "
                f"this column needs int_bits >= {needed}, the same at every factory (a per-column encoding in "
                "the study)", parameters=("int_bits",))

    def to_grid(self, values: np.ndarray, column: str, rounding: Rounding | None, source: str = "data",
                first_row: int = 0) -> np.ndarray:
        """The values on the column's grid: unchanged when they fit it, else rounded to the nearest
        grid point (ties to even) and counted in ``rounding``; without ``rounding`` a value that
        does not fit is refused instead. Values out of range are always refused."""
        x = np.asarray(values, dtype=np.float64)
        self.check_range(x, column, source, first_row)
        frac_bits = self.column(column).frac_bits
        scaled = np.ldexp(x, frac_bits)  # exact: a power-of-two scaling within float64's range
        whole = np.rint(scaled)
        if (whole == scaled).all():
            return x
        if rounding is None:
            row = int(np.flatnonzero(whole != scaled)[0])
            raise EncodingError(
                f"{source}: column {column!r}, row {first_row + row + 1}: {float(x[row])!r} has binary digits "
                f"below 2^-{frac_bits} and cannot be encoded exactly; a finer grid (frac_bits) for this column, the "
                "same at every factory, encodes it", parameters=("frac_bits",))
        on_grid = np.ldexp(whole, -frac_bits)
        rounding.add(column, x, on_grid, frac_bits)
        return on_grid

    def encode_column(self, values: np.ndarray, column: str, source: str = "data",
                      rounding: Rounding | None = None) -> np.ndarray:
        """``values · 2^frac_bits`` of the column as integer-valued float64 (see :meth:`to_grid`)."""
        return np.ldexp(self.to_grid(values, column, rounding, source), self.column(column).frac_bits)


def column_bits_needed(values: Iterable[float]) -> tuple[int, int]:
    """The smallest ``(frac_bits, int_bits)`` that hold every finite value exactly (for ``hefed check``):
    every value a multiple of ``2^-frac_bits`` (``frac_bits >= 0``) and below ``2^int_bits`` in magnitude.

    A double is ``m · 2^(e-53)`` with ``m`` a 53-bit integer; with ``t`` trailing zero bits in ``m`` it is a
    multiple of ``2^-(53 - e - t)`` and of no finer power: the largest such exponent over the column wins.
    """
    x = np.asarray(values if hasattr(values, "__array__") else list(values), dtype=np.float64)
    x = np.abs(x[np.isfinite(x) & (x != 0)])
    if not len(x):
        return 0, 1
    mantissa, exponent = np.frexp(x)  # x = mantissa · 2^exponent, 0.5 <= mantissa < 1
    integer = (mantissa * 2.0**53).astype(np.int64)  # exact: 53 significant bits
    lowest = integer & -integer  # the lowest set bit, a power of two
    trailing = np.log2(lowest.astype(np.float64)).astype(np.int64)  # exact for powers of two
    frac_bits = int((53 - exponent - trailing).max())
    return max(0, frac_bits), max(1, int(exponent.max()))
