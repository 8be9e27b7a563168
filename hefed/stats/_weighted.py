"""Weighted statistics: what weighted least squares (statsmodels ``WLS(y, X, weights=w)``) needs, exactly.

A factory with rows ``z_i = [1, x_i, y_i]`` on their column grids and a precision weight ``w_i >= 0``
on the weights column's grid ``2^−F_w`` (a column like any other: rounded to its grid and counted, or
refused) sends, as exact integers (:func:`~hefed.primitives.exactgram.weighted_gram`)::

    S_ab = Σ_i (w_i·2^F_w)(z_ia·2^F_a)(z_ib·2^F_b)     (the weighted Gram matrix: Σ w·z zᵀ = S / 2^(F_a+F_b+F_w))
    n    = its rows                                    (statsmodels' nobs and df_resid = n − k count rows, not Σw)
    n_0  = its rows of weight 0
    L    = Σ_{w_i > 0} round(ln(w_i) · 2^g)            (g = LOG_GRID_BITS, ties to even)

Summed over factories these are the same sums of the pooled rows. ``S`` held as
:class:`~hefed.stats.SufficientStatistics` (the study's encoding) is the Gram matrix of the rows weighted by
``w·2^F_w``: every WLS quantity that does not depend on the weights' overall scale (coefficients, standard
errors, t, R², F) comes out of it unchanged; the sums of squares are divided by ``2^F_w``
(:class:`~hefed.models.Weighting`).

statsmodels' ``WLS.loglike`` adds ``½·Σ log w_i``. The logarithm of a grid value is not a grid value, so each
row's ``ln w_i`` is evaluated in 256-bit binary floating point (MPFR, correctly rounded: within ``2^−240``) and
rounded once to the public grid ``2^−g``: the pooled ``L·2^−g`` differs from the exact ``Σ ln w_i`` by at most
``n·(2^−(g+1) + 2^−240)`` (:meth:`WeightedStatistics.log_weight_bound`), so the reported log-likelihood by at
most half that (``n·2^−66`` with ``g = 64``: far below a float64 ulp of any llf). A zero weight has
``log 0 = −inf``: statsmodels then reports ``llf = −inf`` and ``aic = bic = +inf`` (its coefficients and
errors are finite), and so does hefed, from the count ``n_0``. Negative weights are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import gmpy2
import numpy as np

from .._files import atomic_write_json, check_format, check_names, read_json_object, split_study, study_field
from ..errors import DataError, InvalidFileError, SchemaMismatchError
from ..primitives.exactgram import integer_columns, weighted_gram
from ._encoding import Encoding
from ._gram import (
    SufficientStatistics,
    canonical_columns,
    column_scales,
    new_support,
    upper_triangle_index,
)

FORMAT = "hefed.weighted_statistics"
_INTEGER = re.compile(r"-?[0-9]+")
VERSION = 1

#: The public grid ``2^−g`` each row's ``ln w`` is rounded to.
LOG_GRID_BITS = 64
#: Bits of the binary floating point ``ln w`` is evaluated in before that rounding.
_LOG_PRECISION = 256


def _ln_on_grid(w_int: int, frac_bits: int) -> int:
    """``round(ln(w_int · 2^−frac_bits) · 2^LOG_GRID_BITS)``, ties to even, from a 256-bit logarithm.

    MPFR's ``log`` and ``const_log2`` are correctly rounded; a weight from float64 has at most 53 significant
    bits, so ``w_int`` converts exactly; with ``|ln w_int|, frac_bits < 2^10`` the four roundings (the logarithm,
    ln 2, the product and the difference, each within ``2^−246``) leave it within ``2^−240`` of ``ln w`` before it
    is rounded to the grid (exactly: a multiplication by ``2^g`` and one rounding to an integer)."""
    with gmpy2.context(precision=_LOG_PRECISION, round=gmpy2.RoundToNearest):
        ln = gmpy2.log(gmpy2.mpfr(w_int)) - frac_bits * gmpy2.const_log2()
        return int(gmpy2.rint(ln * (1 << LOG_GRID_BITS)))


def log_weight_sum(weights: Sequence[int] | np.ndarray, frac_bits: int) -> int:
    """``Σ_{w > 0} round(ln(w·2^−frac_bits)·2^g)`` of integer weights (each distinct value's logarithm once)."""
    w = np.asarray(weights, dtype=object)
    values, counts = np.unique(w[w > 0], return_counts=True)
    return sum(int(c) * _ln_on_grid(int(v), frac_bits) for v, c in zip(values, counts, strict=True))


def weighted_gram_bounds(features: Sequence[str], target: str, encoding: Encoding,
                         weights: str) -> list[tuple[int, int]]:
    """Bounds of one factory's upper-triangle weighted Gram entries, in travel order: with ``|v_a| < 2^bits_a``,
    ``0 <= w·2^F_w < 2^bits_w`` and fewer than ``2^max_rows_bits`` rows, ``|S_ab| < 2^(bits_a + bits_b + bits_w +
    max_rows_bits)``; diagonal entries (weights are not negative) are non-negative."""
    bits = [0] + [encoding.value_bits_of(c) for c in canonical_columns(features, target)[1:]]
    extra = encoding.value_bits_of(weights) + encoding.max_rows_bits
    shared: dict[tuple[bool, int], tuple[int, int]] = {}
    bounds = []
    for a, b in upper_triangle_index(len(bits)):
        e = bits[a] + bits[b] + extra
        key = (a == b, e)
        if key not in shared:
            shared[key] = (0, (1 << e) - 1) if a == b else (-((1 << e) - 1), (1 << e) - 1)
        bounds.append(shared[key])
    return bounds


@dataclass
class WeightedStatistics:
    """Weighted statistics of one factory, or their sum over factories (see the module docstring).

    Attributes:
        weighted: ``S`` as statistics in the study's encoding (the Gram of the rows weighted by ``w·2^F_w``;
            its ``n`` is ``Σw·2^F_w``, not a row count).
        weights: the name of the weights column (what the factories agreed to weight by).
        n: rows summed (zero weights included, as statsmodels counts them).
        zero_weights: rows of weight 0.
        log_weight_sum: ``L``, the per-row ``ln w`` rounded to ``2^−LOG_GRID_BITS``, summed over positive weights.
    """

    FORMAT: ClassVar[str] = FORMAT

    weighted: SufficientStatistics
    weights: str
    n: int
    zero_weights: int
    log_weight_sum: int
    #: The digest of the study these statistics belong to, if any.
    study: str | None = None
    log_grid_bits: int = field(default=LOG_GRID_BITS)

    @property
    def target(self) -> str:
        return self.weighted.target

    @property
    def features(self) -> list[str]:
        return self.weighted.features

    @property
    def encoding(self) -> Encoding:
        return self.weighted.encoding

    @property
    def contributors(self) -> list[str]:
        return self.weighted.contributors

    @property
    def support(self) -> list[int] | None:
        return self.weighted.support

    @property
    def weight_bits(self) -> int:
        """``F_w``: the weighted sums are ``S / 2^(F_a + F_b + F_w)``."""
        return self.encoding.frac_bits_of(self.weights)

    def exact(self, a: str, b: str) -> Fraction:
        """The exact weighted sum ``Σ w·a·b`` (real units) of two columns (:data:`ONES` for the ones)."""
        return self.weighted.exact(a, b) / (1 << self.weight_bits)

    def log_weights(self) -> Fraction | None:
        """``Σ ln w`` on its grid (``L·2^−g``), or None when some weight is 0 (the sum is −inf)."""
        return None if self.zero_weights else Fraction(self.log_weight_sum, 1 << self.log_grid_bits)

    def log_weight_bound(self) -> float:
        """Largest distance between :meth:`log_weights` and the exact ``Σ ln w``: ``n·(2^−(g+1) + 2^−240)``."""
        return self.n * (2.0 ** -(self.log_grid_bits + 1) + 2.0 ** -240)

    # --- one factory's rows -------------------------------------------------------------------
    @classmethod
    def of_rows(cls, block: np.ndarray, weights: np.ndarray, features: Sequence[str], target: str,
                weights_name: str, encoding: Encoding, factory_id: str | None = None,
                source: str = "data") -> WeightedStatistics:
        """The weighted statistics of a canonical block (:func:`~hefed.stats.canonical_block`, values on their
        grids) and its weights (on the weights column's grid, none negative), exactly."""
        w = np.asarray(weights, dtype=np.float64)
        if block.ndim != 2 or block.shape[0] != len(features) + 2 or w.shape != (block.shape[1],):
            raise SchemaMismatchError(f"{source}: the block, its weights and the feature names do not agree in shape")
        negative = np.flatnonzero(w < 0)
        if len(negative):
            raise DataError(f"{source}: column {weights_name!r}, row {int(negative[0]) + 1}: a negative weight "
                            "(precision weights must be >= 0)")
        try:
            z = integer_columns(block.T, column_scales(features, target, encoding))
            w_int = integer_columns(w[:, None], [encoding.frac_bits_of(weights_name)])[:, 0]
        except ValueError:
            raise DataError(f"{source}: a value is not on its column's grid") from None
        gram = weighted_gram(z, w_int)
        support = new_support(features, target)
        support.update(block[:, w > 0])
        stats = SufficientStatistics(target, list(features), encoding, gram, [factory_id] if factory_id else [],
                                     support=list(support.result()))
        zeros = int(np.count_nonzero(w == 0))
        return cls(stats, weights_name, int(block.shape[1]), zeros,
                   log_weight_sum(w_int, encoding.frac_bits_of(weights_name)))

    # --- checks and sums ----------------------------------------------------------------------------
    def check_consistent(self, source: str = "weighted statistics") -> None:
        """Refuse sums no honest rows give (:class:`~hefed.errors.InvalidFileError`): entries beyond their bounds
        for the most contributors the encoding allows, a negative weighted sum of squares or one breaking
        Cauchy–Schwarz, zero weights beyond the rows, or the weights column among the model's columns."""
        if self.weights in self.weighted.columns:
            raise InvalidFileError(f"{source}: the weights column {self.weights!r} is also a model column")
        limit = self.encoding.max_contributors
        gram, cols, m = self.weighted.gram, self.weighted.columns, len(self.weighted.gram)
        bounds = weighted_gram_bounds(self.features, self.target, self.encoding, self.weights)
        for (a, b), (lo, hi) in zip(upper_triangle_index(m), bounds, strict=True):
            if not limit * lo <= gram[a][b] <= limit * hi:
                raise InvalidFileError(f"{source}: statistic ({cols[a]}, {cols[b]}) is beyond what the encoding allows")
        for a in range(m):
            for b in range(a + 1, m):
                if gram[a][b] ** 2 > gram[a][a] * gram[b][b]:
                    raise InvalidFileError(f"{source}: statistics ({cols[a]}, {cols[b]}) are inconsistent (no data "
                                           "gives them)")
        rows_hi = limit * ((1 << self.encoding.max_rows_bits) - 1)
        column = self.encoding.column(self.weights)  # |ln w| < 2^bit_length(max(F_w, I_w)) for a positive grid weight
        log_hi = limit * (1 << (self.log_grid_bits + max(column.frac_bits, column.int_bits).bit_length()
                                + self.encoding.max_rows_bits))
        if not 0 <= self.zero_weights <= self.n <= rows_hi or not -log_hi <= self.log_weight_sum <= log_hi:
            raise InvalidFileError(f"{source}: the row count, zero weights or log-weight sum are beyond what the "
                                   "encoding allows")
        if (gram[0][0] == 0) != (self.zero_weights == self.n):
            raise InvalidFileError(f"{source}: the sum of the weights and the count of zero weights disagree")

    def __add__(self, other: WeightedStatistics) -> WeightedStatistics:
        if self.weights != other.weights or self.log_grid_bits != other.log_grid_bits:
            raise SchemaMismatchError(f"cannot add statistics weighted by {self.weights!r} and by {other.weights!r}")
        return WeightedStatistics(self.weighted + other.weighted, self.weights, self.n + other.n,
                                  self.zero_weights + other.zero_weights, self.log_weight_sum + other.log_weight_sum)

    def to_vector(self) -> list[int]:
        """The integers that travel (support apart): ``S``'s upper triangle, ``n``, ``n_0``, ``L``."""
        return [*self.weighted.to_vector(), self.n, self.zero_weights, self.log_weight_sum]

    @classmethod
    def from_vector(cls, values: Sequence[int], target: str, features: Sequence[str], encoding: Encoding,
                    weights: str, contributors: Sequence[str] = ()) -> WeightedStatistics:
        stats = SufficientStatistics.from_vector(values[:-3], target, features, encoding, contributors)
        n, zeros, log_sum = values[-3:]
        return cls(stats, weights, int(n), int(zeros), int(log_sum))

    # --- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "target": self.target, "features": self.features,
                "columns": self.weighted.columns, "weights": self.weights, "encoding": self.encoding.to_dict(),
                "contributors": self.contributors, "gram_upper": [str(v) for v in self.weighted.to_vector()],
                "n": self.n, "zero_weights": self.zero_weights, "log_grid_bits": self.log_grid_bits,
                "log_weight_sum": str(self.log_weight_sum), **study_field(self.study)}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "weighted statistics") -> WeightedStatistics:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "weighted-statistics")
        expected = {"format", "version", "target", "features", "columns", "weights", "encoding", "contributors",
                    "gram_upper", "n", "zero_weights", "log_grid_bits", "log_weight_sum"}
        if set(obj) != expected:
            raise InvalidFileError(f"{source}: fields wrong (missing {sorted(expected - set(obj))}, extra "
                                   f"{sorted(set(obj) - expected)})")
        weights = obj["weights"]
        if not isinstance(weights, str):
            raise InvalidFileError(f"{source}: 'weights' must be a column name")
        check_names([weights], source, "weights")
        if obj["log_grid_bits"] != LOG_GRID_BITS or isinstance(obj["log_grid_bits"], bool):
            raise InvalidFileError(f"{source}: 'log_grid_bits' must be {LOG_GRID_BITS}")
        counts = []
        for name in ("n", "zero_weights"):
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidFileError(f"{source}: {name!r} must be a non-negative integer")
            counts.append(value)
        text = obj["log_weight_sum"]
        if not isinstance(text, str) or len(text) > 200 or not _INTEGER.fullmatch(text):
            raise InvalidFileError(f"{source}: 'log_weight_sum' must be an integer string")
        # the Gram part reads (and checks the names, columns and integers of) a statistics object
        stats = _statistics_unchecked(obj, source)
        result = cls(stats, weights, counts[0], counts[1], int(text), study)
        result.check_consistent(source)
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WeightedStatistics:
        return cls.from_dict(read_json_object(path, "weighted statistics"), str(path))


def _statistics_unchecked(obj: dict[str, Any], source: str) -> SufficientStatistics:
    """Statistics read from their JSON fields (names, columns, integers checked as for a statistics file) but
    not held to the plain Gram's bounds: the weighted entries are wider, and
    :meth:`WeightedStatistics.check_consistent` holds them to theirs."""
    target, features, contributors = obj["target"], obj["features"], obj["contributors"]
    if not isinstance(target, str) or not _str_list(features) or not features or not _str_list(contributors):
        raise InvalidFileError(f"{source}: 'target' must be a string, 'features' and 'contributors' lists of strings")
    if len(set(features)) != len(features) or target in features or len(features) > 1000:
        raise InvalidFileError(f"{source}: 'features' has duplicates, contains the target or has over 1000 names")
    if obj["columns"] != canonical_columns(features, target):
        raise InvalidFileError(f"{source}: 'columns' does not match target and features")
    check_names([target, *features, *contributors], source, "target, features or contributors")
    encoding = Encoding.from_dict(obj["encoding"], source)
    raw, m = obj["gram_upper"], len(features) + 2
    if not isinstance(raw, list) or len(raw) != m * (m + 1) // 2:
        raise InvalidFileError(f"{source}: 'gram_upper' must list {m * (m + 1) // 2} integers")
    values = []
    for i, v in enumerate(raw):
        if not isinstance(v, str) or len(v) > 4000 or not _INTEGER.fullmatch(v):
            raise InvalidFileError(f"{source}: 'gram_upper'[{i}] is not an integer string")
        values.append(int(v))
    return SufficientStatistics.from_vector(values, target, features, encoding, contributors)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


__all__ = ["LOG_GRID_BITS", "WeightedStatistics", "log_weight_sum", "weighted_gram_bounds"]
