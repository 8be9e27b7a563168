"""Kind ``statistics``: the exact sufficient statistics of linear regression.

One contribution packs the upper triangle of the exact integer Gram matrix of
``[1, X·2^F, y·2^F]`` (canonical column order: see :class:`~hefed.stats.SufficientStatistics`).
Summed over factories it is the Gram matrix of the pooled rows, from which OLS, ridge and
their inference follow exactly. After the Gram matrix, one 0/1 value per pair of indicator
columns (:func:`~hefed.stats.support_columns`): summed, the number of factories behind each
entry, which the key holder checks against its threshold (:mod:`hefed.stats._support`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError, SingledOutColumnError, SingledOutColumnWarning
from ..primitives.packing import slot_width
from ..stats import (
    ONES,
    Encoding,
    SufficientStatistics,
    canonical_columns,
    describe_problems,
    gram_bounds,
    support_columns,
    support_from_gram,
    support_problems,
    support_size,
)
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


def statistics_size(features: Sequence[str], target: str, encoding: Encoding) -> tuple[int, int]:
    """(values, bits) one contribution of statistics packs: the Gram matrix, then its support."""
    values, bits = gram_size(features, target, encoding)
    support = support_size(features, target)
    return values + support, bits + support * slot_width(0, 1, encoding.max_contributors)


def statistics_bounds(features: Sequence[str], target: str, encoding: Encoding) -> list[tuple[int, int]]:
    """Bounds of one contribution of statistics: the Gram matrix's, then 0/1 per support pair."""
    return [*gram_bounds(features, target, encoding), *[(0, 1)] * support_size(features, target)]


def support_values(stats: SufficientStatistics) -> list[int]:
    """One factory's support indicators: those computed with its rows, or (statistics built without rows) an
    upper bound from its Gram matrix (:func:`~hefed.stats.support_from_gram`)."""
    expected = support_size(stats.features, stats.target)
    support = stats.support if stats.support is not None else support_from_gram(stats)
    if len(support) != expected:
        raise IntegrityError(f"statistics carry {len(support)} support values; their columns have {expected}")
    return list(support)


def split_support(values: Sequence[int], features: Sequence[str], target: str) -> tuple[list[int], list[int]]:
    """Decrypted values of one set of statistics: (the Gram matrix's, the support counts)."""
    support = support_size(features, target)
    return list(values[:len(values) - support]), list(values[len(values) - support:])


def check_support(stats: SufficientStatistics, threshold: int, refuse: bool, what: str = "decrypted statistics"
                  ) -> None:
    """Refuse (or, for a trial, warn about) statistics where some entry's count of factories is neither 0 nor at
    least ``threshold`` (names the columns; no factory)."""
    if stats.support is None:
        return
    problems = support_problems(support_columns(stats.features, stats.target), stats.support, threshold, ONES)
    if not problems:
        return
    message = describe_problems(problems, threshold, what)
    if refuse:
        raise SingledOutColumnError(message)
    warnings.warn(message, SingledOutColumnWarning, stacklevel=4)


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
        return statistics_bounds(features, target, encoding)

    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        return statistics_size(features, target, encoding)

    def values(self, sums: SufficientStatistics, header: Header) -> list[int]:
        return [*sums.to_vector(), *support_values(sums)]

    def result(self, values: Sequence[int], header: Header) -> SufficientStatistics:
        gram, support = split_support(values, header.features, header.target)
        stats = SufficientStatistics.from_vector(gram, header.target, header.features, header.encoding,
                                                 header.contributors)
        stats.support = support
        return stats

    def check_result(self, result: SufficientStatistics, threshold: int = 1, *, refuse: bool = True) -> None:
        check_gram(result)
        check_support(result, threshold, refuse)

    def compute(self, table: Any, encoding: Encoding, request: StatisticsRequest) -> Computed[SufficientStatistics]:
        [stats], report, holdout = table.statistics(encoding)
        return Computed(stats, Header(stats.target, tuple(stats.features), encoding), report, holdout)


STATISTICS = register(StatisticsKind())
