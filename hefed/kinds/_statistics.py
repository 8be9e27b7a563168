"""Kind ``statistics``: the exact sufficient statistics of linear regression.

One contribution packs the upper triangle of the exact integer Gram matrix of
``[1, X·2^F, y·2^F]`` (canonical column order: see :class:`~hefed.stats.SufficientStatistics`).
Summed over factories it is the Gram matrix of the pooled rows, from which OLS, ridge and
their inference follow exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError
from ..primitives.packing import slot_width
from ..stats import Encoding, SufficientStatistics, canonical_columns, gram_bounds
from ._registry import Computed, Header, Kind, register


@dataclass(frozen=True)
class StatisticsRequest:
    """Ask a factory for the exact statistics of its rows (no parameters)."""


def check_gram(stats: SufficientStatistics) -> None:
    """A decrypted Gram matrix must have non-negative sums of squares."""
    if any(stats.gram[a][a] < 0 for a in range(len(stats.gram))):
        raise IntegrityError("decrypted statistics have a negative sum of squares")


def gram_size(features: Sequence[str], target: str, encoding: Encoding) -> tuple[int, int]:
    """(values, bits) of :func:`~hefed.stats.gram_bounds`' slots, without making them: columns with the same
    value bits have slots of the same width, so the sum runs over pairs of distinct widths (a handful)."""
    bits = [0] + [encoding.value_bits_of(c) for c in canonical_columns(features, target)[1:]]
    rows, count = encoding.max_rows_bits, encoding.max_contributors
    classes = sorted(Counter(bits).items())
    total = 0
    for i, (u, cu) in enumerate(classes):
        hi = (1 << (2 * u + rows)) - 1
        total += cu * slot_width(0, hi, count) + cu * (cu - 1) // 2 * slot_width(-hi, hi, count)
        for v, cv in classes[i + 1:]:
            hi = (1 << (u + v + rows)) - 1
            total += cu * cv * slot_width(-hi, hi, count)
    m = len(bits)
    return m * (m + 1) // 2, total


class StatisticsKind(Kind[SufficientStatistics, StatisticsRequest]):
    name = "statistics"
    description = "the exact Gram matrix of [1, X, y]: the pooled OLS or ridge model and its inference"
    result_type = SufficientStatistics
    result_format = SufficientStatistics.FORMAT
    order = 20
    request_type = StatisticsRequest
    travels_by_flower = True

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        return gram_bounds(features, target, encoding)

    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        return gram_size(features, target, encoding)

    def values(self, sums: SufficientStatistics, header: Header) -> list[int]:
        return sums.to_vector()

    def result(self, values: Sequence[int], header: Header) -> SufficientStatistics:
        return SufficientStatistics.from_vector(values, header.target, header.features, header.encoding,
                                                header.contributors)

    def check_result(self, result: SufficientStatistics) -> None:
        check_gram(result)

    def compute(self, table: Any, encoding: Encoding, request: StatisticsRequest) -> Computed[SufficientStatistics]:
        [stats], report, holdout = table.statistics(encoding)
        return Computed(stats, Header(stats.target, tuple(stats.features), encoding), report, holdout)


STATISTICS = register(StatisticsKind())
