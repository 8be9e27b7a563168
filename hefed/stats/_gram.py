"""Sufficient statistics of linear regression, held as exact integers.

For a table with features ``X`` (n × d) and target ``y``, all of OLS and ridge
follows from the Gram matrix of ``Z = [1, X, y]``::

    ZᵀZ = | n     Σxᵀ    Σy  |
          | Σx    XᵀX    Xᵀy |
          | Σy    yᵀX    yᵀy |

hefed stores it for the integer-encoded columns ``Z̃ = [1, X·2^F, y·2^F]``
(``F`` = the encoding's ``frac_bits``), so every entry is an exact integer and
``(ZᵀZ)[a, b] = (Z̃ᵀZ̃)[a, b] / 2^(F_a + F_b)`` with ``F_0 = 0`` for the column
of ones. Statistics of several factories add entry by entry; the sum equals
the statistics of the pooled data exactly.

Columns are kept in a canonical order (the intercept column, the features
sorted by name, the target), so factories may order their columns however
they like; ``features`` remembers the order the user gave, for display.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import atomic_write_json, check_names, is_version, read_json_object, split_study, study_field
from ..errors import DataError, InvalidFileError, SchemaMismatchError
from ..primitives.exactgram import GramAccumulator, bit_range
from ._encoding import Encoding, Rounding
from ._support import SupportAccumulator, pair_count, reference_groups, reference_name

FORMAT = "hefed.statistics"
_INTEGER = re.compile(r"-?[0-9]+")
VERSION = 1


#: Name of the column of ones in the canonical order (the intercept's column).
ONES = "(intercept)"


def canonical_columns(features: Sequence[str], target: str) -> list[str]:
    """The canonical column order of the Gram matrix: ones, sorted features, target."""
    return [ONES, *sorted(features), target]


def support_columns(features: Sequence[str], target: str) -> list[str]:
    """The indicator columns of a Gram matrix's support (:mod:`hefed.stats._support`): its canonical columns,
    then each categorical feature's reference level."""
    return [*canonical_columns(features, target), *(reference_name(f) for f, _ in reference_groups(sorted(features)))]


def support_groups(features: Sequence[str]) -> list[list[int]]:
    """Positions, among the canonical columns, of each categorical feature's dummies."""
    return [group for _, group in reference_groups(sorted(features), first=1)]


def support_size(features: Sequence[str], target: str) -> int:
    """How many 0/1 support values one contribution of a Gram matrix packs after it."""
    return pair_count(len(support_columns(features, target)))


def support_from_gram(stats: SufficientStatistics) -> list[int]:
    """Support indicators of one factory's statistics built without their rows (e.g. by hand): a column is
    non-zero where its sum of squares is, a reference level where the row count exceeds the rows its dummies
    count; a pair is taken as non-zero together where both are non-zero (an upper bound: the rows are gone)."""
    gram, bits = stats.gram, stats.scale_bits
    nonzero = [gram[a][a] != 0 for a in range(len(gram))]
    for group in support_groups(stats.features):
        counted = sum((Fraction(gram[0][g], 1 << bits[g]) for g in group), Fraction(0))
        nonzero.append(gram[0][0] != counted)
    size = len(nonzero)
    return [int(nonzero[a] and nonzero[b]) for a in range(size) for b in range(a, size)]


def column_scales(features: Sequence[str], target: str, encoding: Encoding) -> list[int]:
    """Fractional bits per canonical column (0 for the column of ones)."""
    return [0] + [encoding.frac_bits_of(c) for c in canonical_columns(features, target)[1:]]


def upper_triangle_index(m: int) -> list[tuple[int, int]]:
    """(a, b) pairs with a <= b, row by row: the order statistics travel in."""
    return [(a, b) for a in range(m) for b in range(a, m)]


def gram_bounds(features: Sequence[str], target: str, encoding: Encoding) -> list[tuple[int, int]]:
    """Bounds of one factory's upper-triangle Gram entries, in travel order (canonical columns).

    With column ``a``'s encoded values ``|v| < 2^bits_a`` (its ``value_bits``) and at most
    ``2^max_rows_bits`` rows, ``|Σ v_a·v_b| < 2^(bits_a + bits_b + max_rows_bits)``; diagonal
    entries are sums of squares, hence non-negative.
    """
    m = len(features) + 2
    bits = [0] + [encoding.value_bits_of(c) for c in canonical_columns(features, target)[1:]]
    rows = encoding.max_rows_bits
    bounds: list[tuple[int, int]] = []
    # one tuple per distinct bound, shared by every entry with it: 8 bytes per entry (a packing layout of a
    # 1000-feature Gram stays small), and each row is filled in C
    off: dict[int, tuple[int, int]] = {}
    for a in range(m):
        hi = (1 << (2 * bits[a] + rows)) - 1
        bounds.append((0, hi))
        row: dict[int, tuple[int, int]] = {}
        for b in set(bits[a + 1:]):
            e = bits[a] + b + rows
            if e not in off:
                off[e] = (-((1 << e) - 1), (1 << e) - 1)
            row[b] = off[e]
        bounds.extend(map(row.__getitem__, bits[a + 1:]))
    return bounds


def as_exact_float64(values: object, name: str, source: str = "data") -> np.ndarray:
    """``values`` as float64, refusing integers that float64 cannot hold exactly (|v| > 2^53)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuO" and arr.size:
        flat = arr.reshape(-1)
        if arr.dtype.kind == "O":
            big = [i for i, v in enumerate(flat) if isinstance(v, (int, np.integer)) and abs(int(v)) > 2**53]
        else:
            big = np.flatnonzero(np.abs(flat.astype(object)) > 2**53).tolist()
        if big:
            raise DataError(f"{source}: {name}: integer {flat[big[0]]} is beyond 2^53 and cannot be represented "
                            "exactly as float64")
    try:
        return arr.astype(np.float64, copy=False)  # float64 input is used as it is: callers only read it
    except (TypeError, ValueError):
        raise DataError(f"{source}: {name} must be numeric") from None


@dataclass
class SufficientStatistics:
    """Exact integer sufficient statistics of one factory or of an aggregate.

    Attributes:
        target: name of the response column.
        features: feature names in the user's order (display only).
        encoding: the public encoding the integers were made with.
        gram: exact integer Gram matrix of ``[1, X·2^F, y·2^F]`` in canonical column order.
        contributors: factory ids whose data these statistics sum.
    """

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    target: str
    features: list[str]
    encoding: Encoding
    gram: list[list[int]]
    contributors: list[str] = field(default_factory=list)
    #: The digest of the study these statistics belong to, if any.
    study: str | None = None
    #: Support of the columns (:func:`support_columns`, pairs in travel order): one factory's 0/1
    #: indicators, computed with its rows, or an aggregate's counts of factories as the key holder decrypted
    #: them. Travels packed after the Gram matrix; never written to files nor compared.
    support: list[int] | None = field(default=None, compare=False, repr=False)

    # --- structure -----------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return canonical_columns(self.features, self.target)

    @property
    def scale_bits(self) -> list[int]:
        """Fractional bits per canonical column (0 for the column of ones)."""
        return column_scales(self.features, self.target, self.encoding)

    @property
    def n(self) -> int:
        """Number of rows summed."""
        return self.gram[0][0]

    def exact(self, a: str, b: str) -> Fraction:
        """The exact rational statistic Σ a·b for two column names (:data:`ONES` for the ones)."""
        cols = self.columns
        i, j = cols.index(a), cols.index(b)
        return Fraction(self.gram[i][j], 1 << (self.scale_bits[i] + self.scale_bits[j]))

    def residual_sum_of_squares(self, coef: dict[str, Fraction], intercept: Fraction) -> Fraction:
        """Exact Σ (y − θ₀ − Σ θ_j x_j)² of a model over these rows: the quadratic form wᵀ(ZᵀZ)w
        with w = (θ₀, θ, −1); ``coef`` maps feature names to exact coefficients."""
        weights = {ONES: Fraction(intercept), self.target: Fraction(-1)}
        weights.update((name, Fraction(value)) for name, value in coef.items())
        cols = self.columns
        w = [weights.get(a, Fraction(0)) for a in cols]
        # One common denominator q·2^top and integer arithmetic throughout: a Fraction per
        # term would reduce by a gcd of huge numbers 500 times.
        q = math.lcm(*(v.denominator for v in w))
        p = [v.numerator * (q // v.denominator) for v in w]
        bits = self.scale_bits
        top = 2 * max(bits)
        total = 0
        for i in range(len(cols)):
            if not p[i]:
                continue
            row = 0
            for j in range(i + 1, len(cols)):
                if p[j]:
                    row += p[j] * self.gram[i][j] << (top - bits[i] - bits[j])
            total += p[i] * (2 * row + (p[i] * self.gram[i][i] << (top - 2 * bits[i])))
        return Fraction(total, q * q << top)

    def subset(self, features: Sequence[str]) -> SufficientStatistics:
        """The statistics of the listed features only (in that display order), exactly: the Gram matrix
        restricted to the column of ones, those features and the target — what the same rows would give
        with the other columns left out, so any sub-model is solved from one aggregate without a new round.
        The support indicators are not carried over (they describe the encrypted contributions)."""
        chosen = list(features)
        if len(set(chosen)) != len(chosen):
            raise DataError("subset: the features are listed more than once")
        unknown = [f for f in chosen if f not in self.features]
        if unknown:
            raise DataError(f"subset: {', '.join(map(repr, unknown))} not among the features {self.features}")
        gram = self.gram_of(canonical_columns(chosen, self.target))
        return SufficientStatistics(self.target, chosen, self.encoding, gram, list(self.contributors), self.study)

    def gram_of(self, columns: Sequence[str]) -> list[list[int]]:
        """The exact Gram entries of the listed columns (names among :attr:`columns`), in that order."""
        cols = self.columns
        index = [cols.index(c) for c in columns]
        return [[self.gram[a][b] for b in index] for a in index]

    def schema_key(self) -> tuple[Any, ...]:
        return (self.target, tuple(sorted(self.features)), self.encoding)

    # --- combination -----------------------------------------------------------------
    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        """The statistics of both sets of rows (entry-wise sum; contributors concatenated)."""
        if self.schema_key() != other.schema_key():
            raise SchemaMismatchError("cannot add statistics with different target, features or encoding")
        m = len(self.gram)
        gram = [[self.gram[a][b] + other.gram[a][b] for b in range(m)] for a in range(m)]
        return SufficientStatistics(
            self.target, list(self.features), self.encoding, gram,
            [*self.contributors, *other.contributors],
        )

    def __sub__(self, part: SufficientStatistics) -> SufficientStatistics:
        """The statistics of the rows here but not in ``part`` (a subset of them, e.g. one fold):
        the entry-wise difference; the contributors stay those of ``self``."""
        if self.schema_key() != part.schema_key():
            raise SchemaMismatchError("cannot subtract statistics with different target, features or encoding")
        m = len(self.gram)
        gram = [[self.gram[a][b] - part.gram[a][b] for b in range(m)] for a in range(m)]
        return SufficientStatistics(self.target, list(self.features), self.encoding, gram, list(self.contributors))

    def to_vector(self) -> list[int]:
        """The upper triangle of the Gram matrix, row by row (what gets packed)."""
        return [self.gram[a][b] for a, b in upper_triangle_index(len(self.gram))]

    @classmethod
    def from_vector(
        cls,
        values: Sequence[int],
        target: str,
        features: Sequence[str],
        encoding: Encoding,
        contributors: Sequence[str] = (),
    ) -> SufficientStatistics:
        m = len(features) + 2
        gram = [[0] * m for _ in range(m)]
        for (a, b), v in zip(upper_triangle_index(m), values, strict=True):
            gram[a][b] = gram[b][a] = int(v)
        return cls(target, list(features), encoding, gram, list(contributors))

    # --- files -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "features": self.features,
            "columns": self.columns,
            "encoding": self.encoding.to_dict(),
            "contributors": self.contributors,
            "gram_upper": [str(v) for v in self.to_vector()],
            **study_field(self.study),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        """Write the statistics as JSON (integers as decimal strings, so no tool rounds them)."""
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SufficientStatistics:
        obj = read_json_object(path, "statistics")
        return cls.from_dict(obj, str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "statistics") -> SufficientStatistics:
        obj, study = split_study(obj, source)
        if obj.get("format") != FORMAT:
            raise InvalidFileError(f"{source}: not a hefed statistics file (format {obj.get('format')!r})")
        if not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: unsupported statistics version {obj.get('version')!r}")
        expected = {"format", "version", "target", "features", "columns", "encoding", "contributors", "gram_upper"}
        if set(obj) != expected:
            raise InvalidFileError(
                f"{source}: fields wrong (missing {sorted(expected - set(obj))}, extra {sorted(set(obj) - expected)})"
            )
        target, features = obj["target"], obj["features"]
        if not isinstance(target, str) or not _str_list(features) or not features:
            raise InvalidFileError(f"{source}: 'target' must be a string and 'features' a non-empty list of strings")
        if len(set(features)) != len(features) or target in features:
            raise InvalidFileError(f"{source}: 'features' has duplicates or contains the target")
        if len(features) > 1000:
            raise InvalidFileError(f"{source}: {len(features)} features; at most 1000 are supported")
        if obj["columns"] != canonical_columns(features, target):
            raise InvalidFileError(f"{source}: 'columns' does not match target and features")
        if not _str_list(obj["contributors"]):
            raise InvalidFileError(f"{source}: 'contributors' must be a list of strings")
        encoding = Encoding.from_dict(obj["encoding"], source)
        raw = obj["gram_upper"]
        m = len(features) + 2
        if not isinstance(raw, list) or len(raw) != m * (m + 1) // 2:
            raise InvalidFileError(f"{source}: 'gram_upper' must list {m * (m + 1) // 2} integers")
        values = []
        for i, v in enumerate(raw):
            if not isinstance(v, str) or len(v) > 4000 or not _INTEGER.fullmatch(v):
                raise InvalidFileError(f"{source}: 'gram_upper'[{i}] is not an integer string")
            values.append(int(v))
        check_names([target, *features, *obj["contributors"]], source, "target, features or contributors")
        stats = cls.from_vector(values, target, features, encoding, obj["contributors"])
        stats.check_consistent(source)
        stats.study = study
        return stats

    def check_consistent(self, source: str = "statistics") -> None:
        """Refuse statistics no data can produce: sums beyond the encoding's bounds for the most
        contributors it allows, negative sums of squares, or a Gram matrix violating Cauchy–Schwarz
        (|Σab|² ≤ Σa²·Σb²), e.g. a variance that would be negative."""
        bounds = gram_bounds(self.features, self.target, self.encoding)
        limit = self.encoding.max_contributors
        cols, gram, m = self.columns, self.gram, len(self.gram)
        for (a, b), (lo, hi) in zip(upper_triangle_index(m), bounds, strict=True):
            if not limit * lo <= gram[a][b] <= limit * hi:
                raise InvalidFileError(f"{source}: statistic ({cols[a]}, {cols[b]}) is beyond what the encoding allows")
        for a in range(m):
            for b in range(a + 1, m):
                if gram[a][b] ** 2 > gram[a][a] * gram[b][b]:
                    raise InvalidFileError(
                        f"{source}: statistics ({cols[a]}, {cols[b]}) are inconsistent (no data gives them)")


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def canonical_order(features: Sequence[str]) -> list[int]:
    """Row of each feature (in the order given) in the canonical block ``[1, sorted features, target]``."""
    rank = sorted(range(len(features)), key=lambda j: features[j])
    rows = [0] * len(features)
    for i, j in enumerate(rank):
        rows[j] = 1 + i
    return rows


def canonical_block(X: np.ndarray, y: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """The canonical block of float64 arrays: one ``(d + 2) × n`` array whose rows are the column of ones, the
    columns of ``X`` by sorted feature name, and ``y`` (the one copy the statistics make)."""
    columns = np.empty((len(features) + 2, X.shape[0]))
    columns[0] = 1.0
    for j, row in enumerate(canonical_order(features)):
        columns[row] = X[:, j]
    columns[-1] = y
    return columns


def accumulate_rows(
    accumulators: Sequence[GramAccumulator], X: np.ndarray, y: np.ndarray, features: Sequence[str], target: str,
    encoding: Encoding, source: str = "data", groups: np.ndarray | None = None, rounding: Rounding | None = None,
    support: SupportAccumulator | None = None,
) -> None:
    """Add the exact Gram of ``[1, X·2^F, y·2^F]`` (canonical column order) to ``accumulators[0]``,
    or with ``groups`` (one integer per row) row ``i``'s to ``accumulators[groups[i]]``: see
    :func:`accumulate_block`, which this calls on :func:`canonical_block` of ``X`` and ``y``."""
    accumulate_block(accumulators, canonical_block(X, y, features), features, target, encoding, source, groups,
                     rounding, support)


def accumulate_block(
    accumulators: Sequence[GramAccumulator], columns: np.ndarray, features: Sequence[str], target: str,
    encoding: Encoding, source: str = "data", groups: np.ndarray | None = None, rounding: Rounding | None = None,
    support: SupportAccumulator | None = None,
) -> None:
    """Add the exact Gram of a canonical block (:func:`canonical_block`: rows ``[1, sorted features, target]``,
    float64, the caller's own array) to ``accumulators[0]``, or with ``groups`` (one integer per row) row ``i``'s
    to ``accumulators[groups[i]]``.

    Every value is checked against its column's grid and range first, on all rows at once, so
    errors name the column and the row whatever group the row falls in. A value finer
    than its grid is rounded to it (in ``columns``, in place) and counted in ``rounding``; without
    ``rounding`` it is refused. Out-of-range values are always refused. With ``support`` (an accumulator of
    :func:`support_columns`), the block's support indicators are ORed into it (all rows, whatever their group).
    """
    names = [*sorted(features), target]
    frac = np.array([encoding.frac_bits_of(c) for c in names])
    ints = np.array([encoding.column(c).int_bits for c in names])
    try:
        lo, hi = bit_range(columns)
        ok = bool((hi[1:] <= ints).all() and (lo[1:] >= -frac).all())
    except ValueError:  # not finite
        ok = False
    if not ok:  # round to the grid or refuse, naming the value (slow path: tiny, huge or bad values only)
        for i, name in enumerate(names, start=1):
            columns[i] = encoding.to_grid(columns[i], name, rounding, source)
        lo, hi = bit_range(columns)
    if lo[0] < 0 and bool((columns[0] == 1.0).all()):
        # bit_range bounds the column of ones by 2^-52 (from its magnitude alone), which would make the
        # accumulator confirm, with full-size temporaries, that its values have no digits below 2^0
        lo[0] = 0
    if support is not None:
        support.update(columns)
    # the whole block's bit range bounds any of its rows
    if groups is None:
        accumulators[0].update_columns(columns, (lo, hi))
        return
    for k, acc in enumerate(accumulators):
        acc.update_columns(columns[:, groups == k], (lo, hi))


def grouped_statistics(
    X: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    target: str,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    source: str = "data",
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    rounding: Rounding | None = None,
) -> list[SufficientStatistics]:
    """Exact statistics of float64 arrays, one per group of rows (``groups[i]`` in
    ``range(n_groups)``, e.g. cross-validation folds), or of all rows without ``groups``.
    Values finer than their grid are rounded and counted in ``rounding`` (refused without it)."""
    X = as_exact_float64(X, "X", source)
    y = as_exact_float64(y, "y", source).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(features):
        raise SchemaMismatchError(f"{source}: X, y and feature names do not agree in shape")
    return block_statistics(canonical_block(X, y, features), features, target, encoding, factory_id, source, groups,
                            n_groups, rounding)


def block_statistics(
    columns: np.ndarray,
    features: Sequence[str],
    target: str,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    source: str = "data",
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    rounding: Rounding | None = None,
) -> list[SufficientStatistics]:
    """:func:`grouped_statistics` of a canonical block (:func:`canonical_block`, or filled straight from a
    table by the data layer), which it may change in place (values rounded to their grid)."""
    encoding = encoding or Encoding()
    if columns.ndim != 2 or columns.shape[0] != len(features) + 2 or columns.dtype != np.float64:
        raise SchemaMismatchError(f"{source}: the block and feature names do not agree in shape")
    if columns.shape[1] >= 1 << encoding.max_rows_bits:
        raise SchemaMismatchError(f"{source}: more rows than the encoding allows (2^{encoding.max_rows_bits})")
    if ONES in features or target == ONES:
        raise DataError(f"{source}: the column name {ONES!r} is reserved for the intercept")
    accs = [GramAccumulator(column_scales(features, target, encoding)) for _ in range(n_groups)]
    support = new_support(features, target)
    accumulate_block(accs, columns, features, target, encoding, source, groups, rounding, support)
    return statistics_of(accs, support, features, target, encoding, factory_id)


def new_support(features: Sequence[str], target: str) -> SupportAccumulator:
    """An empty support accumulator for the statistics of these columns."""
    return SupportAccumulator(len(features) + 2, support_groups(features))


def statistics_of(accs: Sequence[GramAccumulator], support: SupportAccumulator, features: Sequence[str], target: str,
                  encoding: Encoding, factory_id: str | None) -> list[SufficientStatistics]:
    """One factory's statistics per accumulator, each with the support of all its rows (one set of indicators for
    every fold: a fold whose non-zero rows of a column happen to come from few factories is not told apart)."""
    ids = [factory_id] if factory_id else []
    indicators = support.result()
    return [SufficientStatistics(target, list(features), encoding, acc.result(), ids, support=list(indicators))
            for acc in accs]


def statistics_from_arrays(
    X: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    target: str,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    source: str = "data",
    rounding: Rounding | None = None,
) -> SufficientStatistics:
    """Exact statistics of float64 arrays (columns of ``X`` named by ``features``); values finer than
    their grid are rounded and counted in ``rounding`` (refused without it)."""
    return grouped_statistics(X, y, features, target, encoding, factory_id, source, rounding=rounding)[0]
