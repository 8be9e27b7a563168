"""Within-plant statistics: what the plant fixed-effects (within) estimator needs, and nothing per plant.

A factory ``g`` with ``n_g`` rows and exact integer Gram matrix ``G`` of ``[1, X·2^F, y·2^F]``
(see :class:`~hefed.stats.SufficientStatistics`) demeans its own rows: over the model columns
``a, b`` (features and target), with ``s_a = Σ_rows v_a``,

    W_ab = Σ (v_a − s_a/n_g)(v_b − s_b/n_g) = G_ab − s_a·s_b / n_g

exactly, a rational with denominator ``n_g``. To travel (and be summed) without revealing
``n_g``, it is rounded **once** to the integer unit of the encoded sums: ``W'_ab = round(W_ab)``, so
each entry moves by at most half a unit, ``2^−(1+F_a+F_b)`` in real units (below 1e-50 with the
default ``F = 84``). The grid is not finer on purpose (``grid_bits`` must be 0): with ``R`` more bits,
the low bits of the pooled entries are ``2^R · frac(Σ_g s_a s_b / n_g)``, a fraction whose denominator
``lcm(n_g)`` continued fractions give back, and with it every plant's row count and residues of its
sums (``tests/test_attack_issue15_16.py``). The pooled ``Σ_g W'_g`` is then exactly the Gram
matrix of the plant-demeaned rows ``[1, x̃, ỹ]`` up to that rounding, written as statistics with each
column's grid ``2^−(F_a + R/2)``: its row of ones is ``[n, 0, …, 0]`` (the demeaned columns sum to 0).
Least squares on it gives the within estimator of the slopes, ``θ = W_xx⁻¹ W_xy``, its SSR
``W_yy − θᵀW_xy``, and, with ``n − G − p`` residual degrees of freedom for ``G`` plants, the same
slopes, standard errors and tests as OLS with one dummy per plant.

The pooled ``Σy`` and ``Σy²`` travel too (the total sum of squares of the dummy model's R² and F);
no plant's own count, sums or means are in what is summed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from .._files import atomic_write_json, check_format, read_json_object, split_study, study_field
from ..errors import DataError, IntegrityError, InvalidFileError, SchemaMismatchError, UsageError
from ._encoding import ColumnEncoding, Encoding
from ._gram import SufficientStatistics, canonical_columns

FORMAT = "hefed.within_statistics"
VERSION = 1

#: The grid of the demeaned statistics: the entries' own integer unit (a finer one reveals the row counts).
DEFAULT_GRID_BITS = 0
#: The finest grid a bundle may ask for: none finer than the unit (see the module docstring).
MAX_GRID_BITS = 0


def check_grid_bits(grid_bits: object) -> int:
    if (isinstance(grid_bits, bool) or not isinstance(grid_bits, int) or not 0 <= grid_bits <= MAX_GRID_BITS
            or grid_bits % 2):
        raise UsageError(f"grid_bits must be {MAX_GRID_BITS}: a finer grid for the demeaned statistics would reveal "
                         f"each plant's row count, got {grid_bits!r}")
    return grid_bits


def within_encoding(encoding: Encoding, features: Sequence[str], target: str,
                    grid_bits: int) -> Encoding:
    """The encoding the demeaned statistics are written in: each model column's grid ``2^-(F + R/2)``."""
    half = grid_bits // 2
    columns = {}
    for name in canonical_columns(features, target)[1:]:
        column = encoding.column(name)
        columns[name] = ColumnEncoding(column.frac_bits + half, column.int_bits)
    return Encoding.with_columns(columns, frac_bits=encoding.frac_bits, int_bits=encoding.int_bits,
                                 max_rows_bits=encoding.max_rows_bits, max_contributors=encoding.max_contributors)


def _round_half_even(numerator: int, denominator: int) -> int:
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2):
        q += 1
    return q


@dataclass
class WithinStatistics:
    """Within-plant (demeaned) statistics of one factory, or their sum over factories.

    Attributes:
        within: the demeaned Gram matrix as statistics (row of ones ``[n, 0, …, 0]``; grids
            :func:`within_encoding`), summed over plants.
        encoding: the study's (public) encoding the factories' data were encoded with.
        grid_bits: ``R``, the grid the demeaned entries were rounded to.
        sum_y, sum_yy: the pooled ``Σy·2^F_y`` and ``Σy²·2^(2F_y)`` (integers).
    """

    FORMAT: ClassVar[str] = FORMAT

    within: SufficientStatistics
    encoding: Encoding
    grid_bits: int
    sum_y: int
    sum_yy: int
    #: The digest of the study these statistics belong to, if any.
    study: str | None = None

    @property
    def target(self) -> str:
        return self.within.target

    @property
    def features(self) -> list[str]:
        return self.within.features

    @property
    def contributors(self) -> list[str]:
        return self.within.contributors

    @property
    def n(self) -> int:
        return self.within.n

    @property
    def support(self) -> list[int] | None:
        return self.within.support

    @classmethod
    def of_plant(cls, stats: SufficientStatistics, grid_bits: int = DEFAULT_GRID_BITS) -> WithinStatistics:
        """One plant's demeaned statistics from its exact statistics (rounded once, see the module docstring)."""
        check_grid_bits(grid_bits)
        n = stats.n
        if n == 0:
            raise DataError("within-plant statistics need at least one row")
        g = stats.gram
        m = len(g)
        within = [[0] * m for _ in range(m)]
        within[0][0] = n
        for a in range(1, m):
            for b in range(a, m):
                value = _round_half_even((n * g[a][b] - g[0][a] * g[0][b]) << grid_bits, n)
                within[a][b] = within[b][a] = value
        demeaned = SufficientStatistics(
            stats.target, list(stats.features), within_encoding(stats.encoding, stats.features, stats.target,
                                                                grid_bits),
            within, list(stats.contributors))
        demeaned.support = stats.support
        y = m - 1
        return cls(demeaned, stats.encoding, grid_bits, g[0][y], g[y][y])

    def check_consistent(self, source: str = "within statistics") -> None:
        """Refuse sums no honest plants give (raises :class:`~hefed.errors.IntegrityError`): demeaned columns that do
        not sum to 0, Σy or Σy² beyond what the encoding allows, fewer rows than plants, or a total sum of squares
        of y below the within-plant one (the between-plant part cannot be negative)."""
        gram = self.within.gram
        if any(gram[0][a] for a in range(1, len(gram))):
            raise IntegrityError(f"{source}: demeaned columns do not sum to 0")
        enc = self.encoding
        bits = enc.value_bits_of(self.target) + enc.max_rows_bits + enc.max_contributors.bit_length()
        if abs(self.sum_y).bit_length() > bits or not 0 <= self.sum_yy < 1 << (bits + enc.value_bits_of(self.target)):
            raise IntegrityError(f"{source}: Σy or Σy² is beyond what the encoding allows")
        plants = len(set(self.contributors))
        if self.n < plants:
            raise IntegrityError(f"{source}: fewer rows ({self.n}) than plants ({plants})")
        n, sum_y, sum_yy = self.total_sums()
        total = sum_yy - sum_y * sum_y / n if n else Fraction(0)
        within = self.within.exact(self.target, self.target)
        slack = Fraction(max(plants, 1), 1 << (1 + 2 * self.within.scale_bits[-1]))  # the per-plant rounding
        if total + slack < within:
            raise IntegrityError(f"{source}: the total sum of squares of y is below the within-plant one")

    def rounding_bound(self, a: str, b: str) -> float:
        """Largest change the rounding made to the pooled Σ x̃_a x̃_b (real units): half a grid unit per plant."""
        scale = self.within.scale_bits
        cols = self.within.columns
        return float(len(self.contributors) or 1) * 2.0 ** -(1 + scale[cols.index(a)] + scale[cols.index(b)])

    def total_sums(self) -> tuple[int, Fraction, Fraction]:
        """(n, Σy, Σy²) of the pooled rows, exact."""
        f_y = self.encoding.frac_bits_of(self.target)
        return self.n, Fraction(self.sum_y, 1 << f_y), Fraction(self.sum_yy, 1 << (2 * f_y))

    def __add__(self, other: WithinStatistics) -> WithinStatistics:
        if (self.encoding, self.grid_bits) != (other.encoding, other.grid_bits):
            raise SchemaMismatchError("cannot add within statistics with different encodings or grids")
        return WithinStatistics(self.within + other.within, self.encoding, self.grid_bits,
                                self.sum_y + other.sum_y, self.sum_yy + other.sum_yy)

    def to_vector(self) -> list[int]:
        return [*self.within.to_vector(), self.sum_y, self.sum_yy]

    # --- files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "grid_bits": self.grid_bits,
                "encoding": self.encoding.to_dict(), "sum_y": str(self.sum_y), "sum_yy": str(self.sum_yy),
                "within": self.within.to_dict(), **study_field(self.study)}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "within statistics") -> WithinStatistics:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "within-statistics")
        grid_bits = obj.get("grid_bits")
        try:
            check_grid_bits(grid_bits)
        except UsageError:
            raise InvalidFileError(f"{source}: 'grid_bits' must be {MAX_GRID_BITS}") from None
        assert isinstance(grid_bits, int)
        encoding = Encoding.from_dict(obj.get("encoding"), f"{source} encoding")
        if not isinstance(obj.get("within"), dict):
            raise InvalidFileError(f"{source}: 'within' must be a statistics object")
        within = SufficientStatistics.from_dict(obj["within"], f"{source} within")
        if within.encoding != within_encoding(encoding, within.features, within.target, grid_bits):
            raise InvalidFileError(f"{source}: the within statistics' grids do not follow from the encoding")
        if any(within.gram[0][a] for a in range(1, len(within.gram))):
            raise InvalidFileError(f"{source}: demeaned columns must sum to 0")
        sums = []
        for field in ("sum_y", "sum_yy"):
            text = obj.get(field)
            if not isinstance(text, str) or not text.lstrip("-").isdigit() or len(text) > 2000:
                raise InvalidFileError(f"{source}: {field!r} must be an integer string")
            sums.append(int(text))
        result = cls(within, encoding, grid_bits, sums[0], sums[1], study)
        try:
            result.check_consistent(source)
        except IntegrityError as exc:
            raise InvalidFileError(str(exc)) from None
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WithinStatistics:
        return cls.from_dict(read_json_object(path, "within statistics"), str(path))


__all__ = ["DEFAULT_GRID_BITS", "WithinStatistics", "check_grid_bits", "within_encoding"]
