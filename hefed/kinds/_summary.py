"""Kind ``summary``: per-column count, Σx and Σx² over the non-missing values (federated preprocessing).

The cheap first round: summed over factories it gives the consortium's per-column count,
mean and standard deviation (no factory's own), which factories then use to impute gaps
with the global means or drop outliers by |z|. Missing values are allowed (they are not
counted). Columns travel in canonical order (features sorted by name, then the target), so
factories may order their columns however they like. After the sums, per indicator column
(:func:`~hefed.stats.summary_support_columns`: the columns and each categorical feature's
reference level) two 0/1 values, "has values here" and "non-zero here": summed, the number of
factories behind each column's count and sums, which the key holder checks against its
threshold (:mod:`hefed.stats._support`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..data import PreprocessReport, missing_columns_error, numeric_column, used_columns
from ..errors import IntegrityError, SingledOutColumnError, SingledOutColumnWarning, UsageError
from ..stats import (
    ColumnSummary,
    Encoding,
    Rounding,
    canonical_summary_columns,
    column_summary,
    describe_problems,
    reference_groups,
    summary_from_values,
    summary_support_columns,
    summary_support_size,
    summary_values,
)
from ._registry import Computed, Header, Kind, register


@dataclass(frozen=True)
class SummaryRequest:
    """Ask a factory for the per-column count, Σx and Σx² of its table (missing values allowed)."""


def local_summary(table: Any, encoding: Encoding, rounding: Rounding | None = None) -> ColumnSummary:
    """A factory's own summary of its whole table (plaintext; nothing is cleaned or held out); values finer
    than their grid are rounded and counted in ``rounding`` (refused without it)."""
    return _summary_of(table.frame(), table, encoding, rounding)


def _summary_of(frame: Any, table: Any, encoding: Encoding, rounding: Rounding | None) -> ColumnSummary:
    columns = used_columns(frame, table.target, table.feature_list)
    labels = {str(c): c for c in frame.columns}
    absent = [c for c in columns if c not in labels]
    if absent:
        raise missing_columns_error(table.source, absent, list(labels))
    return column_summary({c: numeric_column(frame, c, table.source, labels[c], allow_missing=True) for c in columns},
                          encoding, table.source, rounding=rounding)


class SummaryKind(Kind[ColumnSummary, SummaryRequest]):
    name = "summary"
    description = "per-column count, Σx and Σx²: the consortium's means and standard deviations"
    cleans_rows = False
    result_type = ColumnSummary
    result_format = ColumnSummary.FORMAT
    order = 10
    request_type = SummaryRequest

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        rows, bounds = encoding.max_rows_bits, []
        for column in canonical_summary_columns([*features, target]):
            vb = encoding.value_bits_of(column)
            hi1, hi2 = (1 << (rows + vb)) - 1, (1 << (rows + 2 * vb)) - 1
            bounds += [(0, (1 << rows) - 1), (-hi1, hi1), (0, hi2)]
        return [*bounds, *[(0, 1)] * summary_support_size([*features, target])]

    def values(self, sums: ColumnSummary, header: Header) -> list[int]:
        return [*summary_values(sums, header.encoding), *summary_support_values(sums)]

    def result(self, values: Sequence[int], header: Header) -> ColumnSummary:
        columns = [*header.features, header.target]
        support = summary_support_size(columns)
        summary = summary_from_values(values[:len(values) - support], columns, header.encoding, header.contributors)
        summary.support = list(values[len(values) - support:])
        return summary

    def check_result(self, result: ColumnSummary, threshold: int = 1, *, refuse: bool = True) -> None:
        if result.support is None or threshold < 2:
            return
        names = summary_support_columns(result.columns)
        counts = result.support
        problems = [name for i, name in enumerate(names) if 0 < counts[2 * i] < threshold
                    or 0 < counts[2 * i + 1] < threshold]
        if not problems:
            return
        message = describe_problems(problems, threshold, "decrypted summary")
        if refuse:
            raise SingledOutColumnError(message)
        warnings.warn(message, SingledOutColumnWarning, stacklevel=3)

    def compute(self, table: Any, encoding: Encoding, request: SummaryRequest) -> Computed[ColumnSummary]:
        if table.holdout is not None:
            raise UsageError("a summary covers the whole table: no holdout", parameters=("test_fraction",))
        frame = table.frame()  # read once: the sums and the row count
        report = PreprocessReport(len(frame), len(frame))
        sums = _summary_of(frame, table, encoding, report.rounding)
        return Computed(sums, Header(table.target, tuple(sums.columns[:-1]), encoding), report)


def summary_support_values(sums: ColumnSummary) -> list[int]:
    """One factory's summary support: computed with its rows, or (a summary built without them) from its sums:
    a column has values where its count is positive and a non-zero one where its Σx² is; a reference level has
    values where its first dummy has, and a non-zero one where that count exceeds the dummies' Σx."""
    expected = summary_support_size(sums.columns)
    if sums.support is not None:
        support = list(sums.support)
    else:
        ordered = canonical_summary_columns(sums.columns)
        support = []
        for name in ordered:
            support += [int(sums.count[name] > 0), int(sums.total_sq[name] > 0)]
        for _, group in reference_groups(ordered[:-1]):
            first = sums.count[ordered[group[0]]]
            dummies = sum((sums.total[ordered[g]] for g in group), Fraction(0))
            support += [int(first > 0), int(first != dummies)]
    if len(support) != expected:
        raise IntegrityError(f"a summary carries {len(support)} support values; its columns have {expected}")
    return support


SUMMARY = register(SummaryKind())
