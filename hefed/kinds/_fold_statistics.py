"""Kind ``fold_statistics``: the exact statistics of each of K cross-validation folds.

Rows are assigned to folds by a seeded hash of their number (:func:`hefed.stats.fold_assignment`),
so folds are reproducible; one contribution packs the Gram matrix of fold 0, then fold 1, …,
then the support of all the factory's rows, once (:mod:`hefed.stats._support`; a fold whose
non-zero rows of a column happen to come from fewer factories than the threshold is not told
apart: the check is of the factories behind each column over all folds). Summed over factories,
fold ``k`` holds the statistics of the pooled rows assigned to ``k``: the exact K-fold
validation curve of ridge follows (``hefed solve --ridge auto``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidFileError, UsageError
from ..primitives.packing import slot_width
from ..stats import (
    Encoding,
    FoldStatistics,
    SufficientStatistics,
    check_seed,
    fold_assignment,
    gram_bounds,
    support_size,
)
from ._registry import Computed, Header, Kind, register
from ._statistics import check_gram, check_support, gram_size, split_support, support_values

#: Most folds a fold-statistics bundle may have.
MAX_FOLDS = 100


@dataclass(frozen=True)
class FoldStatisticsRequest:
    """Ask a factory for the statistics of ``folds`` folds of its rows, assigned with ``seed``."""

    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        fold_assignment(0, self.folds, self.seed)  # validates both
        check_seed(self.seed)
        if self.folds > MAX_FOLDS:
            raise UsageError(f"folds must be between 2 and {MAX_FOLDS}, got {self.folds}", parameters=("folds",))


class FoldStatisticsKind(Kind[FoldStatistics, FoldStatisticsRequest]):
    name = "fold_statistics"
    description = "the exact statistics of each of K cross-validation folds: ridge chosen by exact K-fold CV"
    parameter_names = ("folds", "fold_seed")
    result_type = FoldStatistics
    result_format = FoldStatistics.FORMAT
    order = 30
    request_type = FoldStatisticsRequest

    def _check_parameters(self, parameters: dict[str, Any], source: str) -> None:
        if not 2 <= parameters["folds"] <= MAX_FOLDS:
            raise InvalidFileError(f"{source}: 'folds' must be between 2 and {MAX_FOLDS}")

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        return [*gram_bounds(features, target, encoding) * parameters["folds"],
                *[(0, 1)] * support_size(features, target)]

    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        values, bits = gram_size(features, target, encoding)
        support = support_size(features, target)
        return (values * parameters["folds"] + support,
                bits * parameters["folds"] + support * slot_width(0, 1, encoding.max_contributors))

    def values(self, sums: FoldStatistics, header: Header) -> list[int]:
        return [*(v for fold in sums.folds for v in fold.to_vector()), *fold_support(sums)]

    def result(self, values: Sequence[int], header: Header) -> FoldStatistics:
        k = header.parameters["folds"]
        grams, support = split_support(values, header.features, header.target)
        size = len(grams) // k
        folds = [SufficientStatistics.from_vector(grams[i * size:(i + 1) * size], header.target, header.features,
                                                  header.encoding, header.contributors) for i in range(k)]
        for fold in folds:
            fold.support = support
        return FoldStatistics(folds, header.parameters["fold_seed"])

    def check_result(self, result: FoldStatistics, threshold: int = 1, *, refuse: bool = True) -> None:
        for fold in result.folds:
            check_gram(fold)
        check_support(result.folds[0], threshold, refuse, "decrypted fold statistics")

    def bundle_parameters(self, request: FoldStatisticsRequest) -> dict[str, Any]:
        return {"folds": request.folds, "fold_seed": request.seed}

    def compute(self, table: Any, encoding: Encoding, request: FoldStatisticsRequest) -> Computed[FoldStatistics]:
        parts, report, holdout = table.statistics(encoding, request.folds, request.seed)
        first = parts[0]
        header = Header(first.target, tuple(first.features), encoding, self.bundle_parameters(request))
        return Computed(FoldStatistics(parts, request.seed), header, report, holdout)


def fold_support(sums: FoldStatistics) -> list[int]:
    """One factory's support over all its folds: the OR of each fold's (the same set when computed with the
    rows; an upper bound from each fold's Gram matrix otherwise)."""
    per_fold = [support_values(fold) for fold in sums.folds]
    return [int(any(bits)) for bits in zip(*per_fold, strict=True)]


FOLD_STATISTICS = register(FoldStatisticsKind())
