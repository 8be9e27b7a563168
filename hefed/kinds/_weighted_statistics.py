"""Kind ``weighted_statistics``: the exact sums of weighted least squares (statsmodels ``WLS``).

One contribution packs the upper triangle of the exact integer weighted Gram matrix
``Σ (w·2^F_w)(z·2^F)(z·2^F)ᵀ`` of ``z = [1, X, y]`` (canonical column order), then the row count, the count of
zero weights and the per-row ``ln w`` rounded to ``2^−64`` and summed (:class:`~hefed.stats.WeightedStatistics`),
then the support of the columns over the rows of positive weight, as in ``statistics``. Summed over factories it
is the same of the pooled rows: WLS and its inference, equal to statsmodels ``WLS(y, X, weights=w)``.

The weights column is data like any other column (read, cleaned, put on its grid from the study's encoding:
rounded and counted, or refused); a negative weight is refused naming the file, column and row. Its name is the
bundle's public parameter ``weights``: fixed by the study, compared at aggregation, so bundles weighted by
different columns never mix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._files import check_names
from ..data import default_features, missing_columns_error, numeric_column, select_xy
from ..errors import DataError, IntegrityError, InvalidFileError, UsageError
from ..primitives.packing import slot_width
from ..stats import (
    LOG_GRID_BITS,
    Encoding,
    Rounding,
    WeightedStatistics,
    canonical_block,
    canonical_columns,
    support_size,
    weighted_gram_bounds,
)
from ._registry import Computed, Header, Kind, register
from ._statistics import check_gram, check_support, split_support, support_values


@dataclass(frozen=True)
class WeightedStatisticsRequest:
    """Ask a factory for the exact weighted statistics of its rows, each weighted by its ``weights`` column."""

    weights: str

    def __post_init__(self) -> None:
        if not isinstance(self.weights, str) or not self.weights.strip():
            raise UsageError(f"weights must name a column, got {self.weights!r}")


def _weighted_size(features: Sequence[str], target: str, encoding: Encoding, weights: str) -> tuple[int, int]:
    """(values, bits) of :func:`~hefed.stats.weighted_gram_bounds`' slots, without making them (as
    :func:`~hefed.kinds._statistics.gram_size`: columns of the same value bits have slots of the same width)."""
    bits = [0] + [encoding.value_bits_of(c) for c in canonical_columns(features, target)[1:]]
    extra = encoding.value_bits_of(weights) + encoding.max_rows_bits
    count = encoding.max_contributors
    classes = sorted(Counter(bits).items())
    total = 0
    for i, (u, cu) in enumerate(classes):
        hi = (1 << (2 * u + extra)) - 1
        total += cu * slot_width(0, hi, count) + cu * (cu - 1) // 2 * slot_width(-hi, hi, count)
        for v, cv in classes[i + 1:]:
            hi = (1 << (u + v + extra)) - 1
            total += cu * cv * slot_width(-hi, hi, count)
    m = len(bits)
    return m * (m + 1) // 2, total


def _tail_bounds(encoding: Encoding, weights: str) -> list[tuple[int, int]]:
    """Bounds of one factory's row count, zero-weight count and log-weight sum ``L``. A positive grid weight lies in
    ``[2^−F_w, 2^I_w)``, so ``|ln w| <= max(F_w, I_w)·ln 2 < 2^bit_length(max(F_w, I_w))``, on the grid ``2^−g``."""
    rows = (0, (1 << encoding.max_rows_bits) - 1)
    column = encoding.column(weights)
    e = LOG_GRID_BITS + max(column.frac_bits, column.int_bits).bit_length() + encoding.max_rows_bits
    return [rows, rows, (-((1 << e) - 1), (1 << e) - 1)]


class WeightedStatisticsKind(Kind[WeightedStatistics, WeightedStatisticsRequest]):
    name = "weighted_statistics"
    description = ("the exact weighted Gram matrix Σ w·z zᵀ of [1, X, y], the row count and Σ log w: weighted least "
                   "squares (WLS) and its inference")
    parameter_names = ("weights",)
    result_type = WeightedStatistics
    result_format = WeightedStatistics.FORMAT
    order = 22
    request_type = WeightedStatisticsRequest

    def check_parameters(self, parameters: object, source: str = "bundle") -> dict[str, Any]:
        """Exactly ``weights``: a column name (the one parameter of any kind that is text, not a number)."""
        if not isinstance(parameters, Mapping) or set(parameters) != {"weights"}:
            raise InvalidFileError(f"{source}: 'parameters' of a {self.name} bundle must be exactly ['weights']")
        weights = parameters["weights"]
        if not isinstance(weights, str) or not weights.strip() or len(weights) > 1000:
            raise InvalidFileError(f"{source}: parameter 'weights' must name a column")
        check_names([weights], source, "parameter 'weights'")
        return {"weights": weights}

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        weights = parameters["weights"]
        return [*weighted_gram_bounds(features, target, encoding, weights), *_tail_bounds(encoding, weights),
                *[(0, 1)] * support_size(features, target)]

    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        weights = parameters["weights"]
        values, bits = _weighted_size(features, target, encoding, weights)
        count = encoding.max_contributors
        tail = sum(slot_width(lo, hi, count) for lo, hi in _tail_bounds(encoding, weights))
        support = support_size(features, target)
        return values + 3 + support, bits + tail + support * slot_width(0, 1, count)

    def values(self, sums: WeightedStatistics, header: Header) -> list[int]:
        return [*sums.to_vector(), *support_values(sums.weighted)]

    def result(self, values: Sequence[int], header: Header) -> WeightedStatistics:
        packed, support = split_support(values, header.features, header.target)
        result = WeightedStatistics.from_vector(packed, header.target, header.features, header.encoding,
                                                header.parameters["weights"], header.contributors)
        result.weighted.support = support
        return result

    def check_result(self, result: WeightedStatistics, threshold: int = 1, *, refuse: bool = True) -> None:
        check_gram(result.weighted)
        try:
            result.check_consistent("decrypted weighted statistics")
        except InvalidFileError as exc:
            raise IntegrityError(str(exc)) from None
        check_support(result.weighted, threshold, refuse, "decrypted weighted statistics")

    def bundle_parameters(self, request: WeightedStatisticsRequest) -> dict[str, Any]:
        return {"weights": request.weights}

    def compute(self, table: Any, encoding: Encoding,
                request: WeightedStatisticsRequest) -> Computed[WeightedStatistics]:
        """The factory's weighted sums. The table is read with the weights column as one more used column, so
        cleaning, holdout, grids and every cell's checks are those of ``statistics``, and errors name the file's
        rows; a negative weight is refused first, naming its row of the table as given."""
        weights, target, source = request.weights, table.target, table.source
        raw = table.frame()
        labels = [str(c) for c in raw.columns]
        if weights not in labels:
            raise missing_columns_error(source, [weights], labels, "weights column")
        features = table.feature_list
        if weights == target or (features is not None and weights in features):
            raise DataError(f"{source}: the weights column {weights!r} is also the target or a feature")
        names = features if features is not None else [f for f in default_features(raw, target) if f != weights]
        column = numeric_column(raw, weights, source, allow_missing=True)
        with np.errstate(invalid="ignore"):
            negative = np.flatnonzero(column < 0)
        if len(negative):
            raise DataError(f"{source}: column {weights!r}, row {int(negative[0]) + 1}: a negative weight (precision "
                            "weights must be >= 0)")
        used = replace(table, features=[*names, weights])
        [plain], report, holdout = used.statistics(encoding)  # every cell checked, rounding counted, rows named
        # the same rows, cleaned and held out alike, from the table already read (any error was raised just above,
        # naming the file's rows)
        frame, _, _ = replace(used, data=raw).prepared()
        X, y, _ = select_xy(frame, target, names, source)
        block = canonical_block(X, y, names)
        w = numeric_column(frame, weights, source)
        counted_already = Rounding()
        for i, name in enumerate([*sorted(names), target], start=1):
            block[i] = encoding.to_grid(block[i], name, counted_already, source)
        w = encoding.to_grid(w, weights, counted_already, source)
        sums = WeightedStatistics.of_rows(block, w, names, target, weights, encoding, table.factory_id, source)
        if sums.n != plain.n:  # both paths read the same rows; a difference is a bug, not data
            raise RuntimeError(f"{source}: the weighted rows ({sums.n}) are not the rows read ({plain.n})")
        header = Header(target, tuple(names), encoding, self.bundle_parameters(request))
        return Computed(sums, header, report, holdout)


WEIGHTED_STATISTICS = register(WeightedStatisticsKind())
