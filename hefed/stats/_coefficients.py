"""Σnᵢ and Σnᵢθᵢ of factories' own models: the plain sums of coefficient mode (encrypted FedAvg).

Some consortia allow only models, not statistics, to leave a plant. In
coefficient mode a factory fits its own model exactly, rounds it to float64 as
any published model is, and sends ``n`` and ``n·θ``; the sum over factories
gives the exact n-weighted average model ``Σ nᵢθᵢ / Σ nᵢ``. Unlike statistics
mode it is *not* the pooled model: averaging local fits ignores how the
factories' data differ (see ``hefed simulate``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

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

FORMAT = "hefed.coefficients"
VERSION = 1


@dataclass
class CoefficientAggregate:
    """Decrypted ``Σ nᵢ`` and ``Σ nᵢθᵢ`` of a coefficient aggregate (exact rationals)."""

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    target: str
    features: list[str]
    n: int
    weighted_intercept: Fraction
    weighted_coef: dict[str, Fraction]
    fit_intercept: bool = True
    contributors: list[str] = field(default_factory=list)
    #: The digest of the study these sums belong to, if any.
    study: str | None = None

    def average(self) -> tuple[list[Fraction], Fraction]:
        """Exact n-weighted average (coefficients in ``features`` order, intercept)."""
        return [self.weighted_coef[f] / self.n for f in self.features], self.weighted_intercept / self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "target": self.target, "features": self.features,
            "n": self.n, "fit_intercept": self.fit_intercept, "contributors": self.contributors,
            "weighted_intercept": format_rational(self.weighted_intercept),
            "weighted_coef": {f: format_rational(self.weighted_coef[f]) for f in self.features},
            **study_field(self.study),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CoefficientAggregate:
        obj = read_json_object(path, "coefficients")
        return cls.from_dict(obj, str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "coefficients") -> CoefficientAggregate:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "coefficients")
        features, weighted = obj.get("features"), obj.get("weighted_coef")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or not features:
            raise InvalidFileError(f"{source}: 'features' must be a non-empty list of strings")
        if not isinstance(weighted, dict) or set(weighted) != set(features):
            raise InvalidFileError(f"{source}: 'weighted_coef' must give one value per feature")
        n = obj.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidFileError(f"{source}: 'n' must be a positive integer")
        coef = {f: parse_rational(weighted[f], source, f"weighted_coef.{f}") for f in features}
        intercept = parse_rational(obj.get("weighted_intercept"), source, "weighted_intercept")
        target = obj.get("target", "")
        if not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'target' must be a string")
        result = cls(target, features, n, intercept, coef, bool(obj.get("fit_intercept", True)),
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False))
        result.study = study
        return result
