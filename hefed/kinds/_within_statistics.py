"""Kind ``within_statistics``: each plant's own rows demeaned, for plant fixed effects.

One contribution packs the upper triangle of the plant's demeaned Gram matrix, rounded once to
its integer unit (``grid_bits`` = 0) (:class:`~hefed.stats.WithinStatistics`: the row of ones carries
the plant's row count, its other entries are 0), then ``Σy`` and ``Σy²``, then the support of the
plant's columns as in ``statistics``. Summed over plants it is the within-plant Gram matrix of the
pooled rows: the fixed-effects (within) estimator of the slopes and its inference, with no plant's
own count, sums or means in the sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidFileError, UsageError
from ..primitives.packing import slot_width
from ..stats import (
    DEFAULT_GRID_BITS,
    Encoding,
    SufficientStatistics,
    WithinStatistics,
    check_grid_bits,
    gram_bounds,
    support_size,
    within_encoding,
)
from ._registry import Computed, Header, Kind, register
from ._statistics import check_gram, check_support, gram_size, split_support, support_values


@dataclass(frozen=True)
class WithinStatisticsRequest:
    """Ask a factory for its rows' demeaned statistics, rounded once to their integer unit (``grid_bits`` 0)."""

    grid_bits: int = DEFAULT_GRID_BITS

    def __post_init__(self) -> None:
        check_grid_bits(self.grid_bits)


def _sums_bounds(features: Sequence[str], target: str, encoding: Encoding) -> list[tuple[int, int]]:
    """Bounds of Σy and Σy²: those of the plain statistics' entries (1, y) and (y, y)."""
    bounds = gram_bounds(features, target, encoding)
    return [bounds[len(features) + 1], bounds[-1]]


class WithinStatisticsKind(Kind[WithinStatistics, WithinStatisticsRequest]):
    name = "within_statistics"
    description = ("each plant's rows demeaned (rounded once to a public grid): plant fixed effects, the within "
                   "estimator and its inference")
    parameter_names = ("grid_bits",)
    result_type = WithinStatistics
    result_format = WithinStatistics.FORMAT
    order = 25
    request_type = WithinStatisticsRequest

    def _check_parameters(self, parameters: dict[str, Any], source: str) -> None:
        try:
            check_grid_bits(parameters["grid_bits"])
        except UsageError:
            raise InvalidFileError(f"{source}: 'grid_bits' must be 0 (a finer grid reveals the row counts)") from None

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        shifted = within_encoding(encoding, features, target, parameters["grid_bits"])
        return [*gram_bounds(features, target, shifted), *_sums_bounds(features, target, encoding),
                *[(0, 1)] * support_size(features, target)]

    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        shifted = within_encoding(encoding, features, target, parameters["grid_bits"])
        values, bits = gram_size(features, target, shifted)
        sums = sum(slot_width(lo, hi, encoding.max_contributors) for lo, hi in _sums_bounds(features, target, encoding))
        support = support_size(features, target)
        return values + 2 + support, bits + sums + support * slot_width(0, 1, encoding.max_contributors)

    def values(self, sums: WithinStatistics, header: Header) -> list[int]:
        return [*sums.to_vector(), *support_values(sums.within)]

    def result(self, values: Sequence[int], header: Header) -> WithinStatistics:
        packed, support = split_support(values, header.features, header.target)
        grid_bits = header.parameters["grid_bits"]
        shifted = within_encoding(header.encoding, header.features, header.target, grid_bits)
        within = SufficientStatistics.from_vector(packed[:-2], header.target, header.features, shifted,
                                                  header.contributors)
        within.support = support
        return WithinStatistics(within, header.encoding, grid_bits, packed[-2], packed[-1])

    def check_result(self, result: WithinStatistics, threshold: int = 1, *, refuse: bool = True) -> None:
        check_gram(result.within)
        result.check_consistent("decrypted within statistics")
        check_support(result.within, threshold, refuse, "decrypted within statistics")

    def bundle_parameters(self, request: WithinStatisticsRequest) -> dict[str, Any]:
        return {"grid_bits": request.grid_bits}

    def compute(self, table: Any, encoding: Encoding,
                request: WithinStatisticsRequest) -> Computed[WithinStatistics]:
        [stats], report, holdout = table.statistics(encoding)
        header = Header(stats.target, tuple(stats.features), encoding, self.bundle_parameters(request))
        return Computed(WithinStatistics.of_plant(stats, request.grid_bits), header, report, holdout)


WITHIN_STATISTICS = register(WithinStatisticsKind())
