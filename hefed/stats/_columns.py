"""Per-column count, Σx and Σx² over the non-missing values: the summary round's plain sums.

A first, cheap encrypted round (``hefed encrypt --summary``) sends these exact
sums per column; summed over factories they give the consortium's per-column
count, mean and standard deviation, and no factory's own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import (
    atomic_write_json,
    check_format,
    format_rational,
    parse_rational,
    parse_str_list,
    read_json_object,
    split_study,
    study_field,
)
from ..errors import InvalidFileError
from ._encoding import Encoding, Rounding
from ._support import reference_groups, reference_name

FORMAT = "hefed.summary"
VERSION = 1


@dataclass
class ColumnSummary:
    """Exact per-column count, Σx and Σx² over the non-missing values of a consortium (or one factory)."""

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    columns: list[str]
    count: dict[str, int]
    total: dict[str, Fraction]
    total_sq: dict[str, Fraction]
    contributors: list[str] = field(default_factory=list)
    #: The digest of the study these sums belong to, if any.
    study: str | None = None
    #: Per indicator column (:func:`summary_support_columns`) two values, "has values" and "non-zero": one
    #: factory's 0/1 indicators, or an aggregate's counts of factories as decrypted. Travels after the sums;
    #: never written to files nor compared.
    support: list[int] | None = field(default=None, compare=False, repr=False)

    def mean(self, column: str) -> float:
        return float(self.total[column] / self.count[column]) if self.count[column] else float("nan")

    def variance_exact(self, column: str) -> Fraction | None:
        """Sample variance (n − 1 in the denominator, as pandas' default), exact."""
        n = self.count[column]
        if n < 2:
            return None
        return (self.total_sq[column] - self.total[column] ** 2 / n) / (n - 1)

    def std(self, column: str) -> float:
        var = self.variance_exact(column)
        return float("nan") if var is None else math.sqrt(float(var))

    def table(self) -> list[tuple[str, int, float, float]]:
        return [(c, self.count[c], self.mean(c), self.std(c)) for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "contributors": self.contributors,
            "columns": {c: {"count": self.count[c], "mean": _js(self.mean(c)), "std": _js(self.std(c)),
                            "sum": format_rational(self.total[c]), "sum_sq": format_rational(self.total_sq[c])}
                        for c in self.columns},
            **study_field(self.study),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ColumnSummary:
        return cls.from_dict(read_json_object(path, "summary"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "summary") -> ColumnSummary:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "summary")
        columns = obj.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidFileError(f"{source}: 'columns' must be a non-empty object")
        count, total, total_sq = {}, {}, {}
        for name, entry in columns.items():
            n = entry.get("count") if isinstance(entry, dict) else None
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise InvalidFileError(f"{source}: column {name!r}: needs a non-negative integer count")
            count[name] = n
            total[name] = parse_rational(entry.get("sum"), source, f"{name}.sum")
            total_sq[name] = parse_rational(entry.get("sum_sq"), source, f"{name}.sum_sq", non_negative=True)
            # Cauchy–Schwarz: (Σx)² ≤ n·Σx², and nothing at all without values
            if total[name] ** 2 > n * total_sq[name] or (n == 0 and (total[name] or total_sq[name])):
                raise InvalidFileError(f"{source}: column {name!r}: count, sum and sum_sq are inconsistent")
        result = cls(list(columns), count, total, total_sq,
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False))
        result.study = study
        return result


def _js(value: float) -> float | None:
    return None if value != value else value


def canonical_summary_columns(columns: Sequence[str]) -> list[str]:
    """Travel order of summary columns: features sorted by name, then the target (last)."""
    return [*sorted(columns[:-1]), columns[-1]]


def summary_support_columns(columns: Sequence[str]) -> list[str]:
    """The indicator columns of a summary's support: its columns in travel order, then each categorical
    feature's reference level (``1 − Σ its dummies``, :mod:`hefed.stats._support`)."""
    ordered = canonical_summary_columns(columns)
    return [*ordered, *(reference_name(f) for f, _ in reference_groups(ordered[:-1]))]


def summary_support_size(columns: Sequence[str]) -> int:
    """How many 0/1 support values one summary packs after its sums (two per indicator column)."""
    return 2 * len(summary_support_columns(columns))


def summary_support(columns: dict[str, np.ndarray], encoded: dict[str, np.ndarray]) -> list[int]:
    """One factory's summary support: per indicator column, 1 if it has a value, 1 if one is non-zero.
    ``columns`` are the raw values (``NaN`` missing), ``encoded`` the present ones on their grid."""
    ordered = canonical_summary_columns(list(columns))
    support: list[int] = []
    for name in ordered:
        support += [int(len(encoded[name]) > 0), int(bool(np.any(encoded[name] != 0)))]
    for _, group in reference_groups(ordered[:-1]):
        values = np.vstack([columns[ordered[g]] for g in group])
        present = ~np.isnan(values).any(axis=0)
        reference = present & ((1.0 - np.where(np.isnan(values), 0.0, values).sum(axis=0)) != 0)
        support += [int(bool(present.any())), int(bool(reference.any()))]
    return support


def summary_values(summary: ColumnSummary, encoding: Encoding) -> list[int]:
    """The exact integers (count, Σx·2^F, Σx²·2^2F per column, canonical order) a summary travels as."""
    values = []
    for name in canonical_summary_columns(summary.columns):
        f = Fraction(2) ** encoding.frac_bits_of(name)
        total, total_sq = summary.total[name] * f, summary.total_sq[name] * f * f
        if total.denominator != 1 or total_sq.denominator != 1:
            raise ValueError(f"summary of {name!r} is not on the encoding's grid")
        values += [summary.count[name], total.numerator, total_sq.numerator]
    return values


def column_summary(columns: dict[str, np.ndarray], encoding: Encoding, source: str = "data",
                   contributors: Sequence[str] = (), rounding: Rounding | None = None) -> ColumnSummary:
    """The exact summary of float64 columns (``NaN`` marks a missing value). ``columns`` maps names,
    the features then the target, to their values. Values finer than their grid are rounded and
    counted in ``rounding`` (refused without it)."""
    names = list(columns)
    values: list[int] = []
    grid: dict[str, np.ndarray] = {}
    for name in canonical_summary_columns(names):
        col = columns[name]
        present = col[~np.isnan(col)]
        grid[name] = encoding.encode_column(present, name, source, rounding)
        encoded = [int(v) for v in grid[name]]
        values += [len(encoded), sum(encoded), sum(v * v for v in encoded)]
    summary = summary_from_values(values, names, encoding, contributors)
    summary.support = summary_support(columns, grid)
    return summary


def summary_from_values(values: Sequence[int], columns: Sequence[str], encoding: Encoding,
                        contributors: Sequence[str]) -> ColumnSummary:
    """``values`` in canonical order; ``columns`` (features then target) in display order."""
    count, total, total_sq = {}, {}, {}
    for i, name in enumerate(canonical_summary_columns(columns)):
        n, s, ss = values[3 * i: 3 * i + 3]
        f = Fraction(2) ** encoding.frac_bits_of(name)
        count[name], total[name], total_sq[name] = int(n), s / f, ss / (f * f)
    return ColumnSummary(list(columns), count, total, total_sq, list(contributors))
