"""Exact integer encoding of float64 data, and the public bounds every statistic obeys.

Every float64 is ``m · 2^e`` for integers ``m`` and ``e``. With ``F`` fractional
bits, a value ``x`` encodes as the integer ``x · 2^F``; that is exact, not
rounded, whenever ``x`` has no binary digits below ``2^-F`` (every float64 of
magnitude at least ``2^(52-F)`` qualifies; with the default ``F = 72`` that is
everything from about 1e-6 up). A value that does not encode exactly, or whose
magnitude reaches ``2^int_bits``, is refused with an error naming the column
and row: nothing is ever silently rounded or wrapped.

The encoding is public and must be the same for every factory of a
consortium: bundles with different encodings are refused by aggregation.
Its bounds also fix the packing layout (see :mod:`hefed.primitives.packing`):
a statistic over at most ``2^max_rows_bits`` rows from at most
``max_contributors`` factories can never overflow its slot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import EncodingError, InvalidFileError, UsageError

SCHEME = "hefed-fixed-binary-v1"


@dataclass(frozen=True)
class Encoding:
    """Public parameters of the exact integer encoding.

    Attributes:
        frac_bits: binary digits kept below the point; values with finer digits are refused.
        int_bits: values must satisfy ``|x| < 2^int_bits``.
        max_rows_bits: a factory contributes at most ``2^max_rows_bits`` rows.
        max_contributors: the most bundles any aggregate may sum (guard bits are sized for it).
    """

    frac_bits: int = 72
    int_bits: int = 40
    max_rows_bits: int = 32
    max_contributors: int = 10_000

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("frac_bits", 0, 900),
            ("int_bits", 1, 900),
            ("max_rows_bits", 1, 64),
            ("max_contributors", 1, 1 << 32),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise UsageError(f"encoding: {name} must be an integer in [{lo}, {hi}]")
        if self.frac_bits + self.int_bits > 1000:
            raise UsageError("encoding: frac_bits + int_bits must be at most 1000")

    @property
    def value_bits(self) -> int:
        """Bound on the encoded integers: ``|x · 2^frac_bits| < 2^value_bits``."""
        return self.frac_bits + self.int_bits

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": SCHEME, **asdict(self)}

    @classmethod
    def from_dict(cls, obj: Any, source: str = "encoding") -> Encoding:
        if not isinstance(obj, dict):
            raise InvalidFileError(f"{source}: 'encoding' must be an object")
        if obj.get("scheme") != SCHEME:
            raise InvalidFileError(f"{source}: unknown encoding scheme {obj.get('scheme')!r}")
        expected = {"scheme", "frac_bits", "int_bits", "max_rows_bits", "max_contributors"}
        if set(obj) != expected:
            missing, extra = expected - set(obj), set(obj) - expected
            raise InvalidFileError(
                f"{source}: encoding fields wrong (missing {sorted(missing)}, extra {sorted(extra)})"
            )
        try:
            return cls(**{k: obj[k] for k in expected - {"scheme"}})
        except UsageError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None

    def encode_column(self, values: np.ndarray, column: str, source: str = "data") -> np.ndarray:
        """Return ``values · 2^frac_bits`` as integer-valued float64, or refuse.

        Power-of-two scaling is exact in binary floating point, so the result is
        the exact integer encoding whenever the checks pass.
        """
        x = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise EncodingError(f"{source}: column {column!r}, row {row + 1}: value {float(x[row])!r} is not finite")
        too_big = np.abs(x) >= 2.0**self.int_bits
        if too_big.any():
            row = int(np.flatnonzero(too_big)[0])
            raise EncodingError(
                f"{source}: column {column!r}, row {row + 1}: |{float(x[row])!r}| reaches 2^{self.int_bits}; "
                f"raise int_bits, identically for every factory", parameters=("int_bits",)
            )
        scaled = np.ldexp(x, self.frac_bits)
        inexact = scaled != np.floor(scaled)
        if inexact.any():
            row = int(np.flatnonzero(inexact)[0])
            raise EncodingError(
                f"{source}: column {column!r}, row {row + 1}: {float(x[row])!r} has binary digits below "
                f"2^-{self.frac_bits} and cannot be encoded exactly; raise frac_bits, "
                f"identically for every factory", parameters=("frac_bits",)
            )
        return scaled
