"""Kind ``statistics``: the exact sufficient statistics of linear regression.

One contribution packs the upper triangle of the exact integer Gram matrix of
``[1, X·2^F, y·2^F]`` (canonical column order: see :class:`~hefed.stats.SufficientStatistics`).
Summed over factories it is the Gram matrix of the pooled rows, from which OLS, ridge and
their inference follow exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError
from ..stats import Encoding, SufficientStatistics, gram_bounds
from ._registry import Computed, Header, Kind, register


@dataclass(frozen=True)
class StatisticsRequest:
    """Ask a factory for the exact statistics of its rows (no parameters)."""


def check_gram(stats: SufficientStatistics) -> None:
    """A decrypted Gram matrix must have non-negative sums of squares."""
    if any(stats.gram[a][a] < 0 for a in range(len(stats.gram))):
        raise IntegrityError("decrypted statistics have a negative sum of squares")


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
