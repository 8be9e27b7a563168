"""Exact residual sums of a model on rows a factory holds out: the plain sums of an evaluation.

Given a model's float64 coefficients, a factory computes on its holdout the exact sums

    n,  SSE = Σ r²,  SAE = Σ |r|,  Σy,  Σy²        with r = y − ŷ

where the residuals are exact: float64 coefficients are dyadic rationals and
the data are encoded exactly, so ``r·2^S`` is an integer for the public scale
``S`` (:func:`residual_scale_bits`: each column's grid bits plus its coefficient's binary digits).
Summed over factories they give the consortium's MSE, RMSE, MAE and R² without
any factory's own metrics. Absolute errors are not a polynomial of the
statistics, which is why they travel as their own sums.
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
from ._metrics import r_squared

FORMAT = "hefed.evaluation"
VERSION = 1


@dataclass
class EvaluationSums:
    """Exact residual sums of a model on one or more holdouts, and the metrics they give."""

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    target: str
    features: list[str]
    n: int
    sse: Fraction
    sae: Fraction
    sum_y: Fraction
    sum_y2: Fraction
    contributors: list[str] = field(default_factory=list)
    #: The digest of the study these sums belong to, if any.
    study: str | None = None

    @property
    def mse(self) -> float:
        return float(self.sse / self.n)

    @property
    def rmse(self) -> float:
        return math.sqrt(self.mse)

    @property
    def mae(self) -> float:
        return float(self.sae / self.n)

    @property
    def r2(self) -> float:
        """1 − SSE/SST with SST = Σy² − (Σy)²/n, the holdout's own centred total sum of squares."""
        return r_squared(self.sse, self.sum_y2 - self.sum_y * self.sum_y / self.n)

    def metrics(self) -> dict[str, float]:
        return {"n": self.n, "mse": self.mse, "rmse": self.rmse, "mae": self.mae, "r2": self.r2}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "features": self.features,
            "contributors": self.contributors,
            "metrics": self.metrics(),
            "exact": {"n": self.n, "sse": format_rational(self.sse), "sae": format_rational(self.sae),
                      "sum_y": format_rational(self.sum_y), "sum_y2": format_rational(self.sum_y2)},
            **study_field(self.study),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvaluationSums:
        return cls.from_dict(read_json_object(path, "evaluation"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "evaluation") -> EvaluationSums:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "evaluation")
        exact = obj.get("exact")
        if (not isinstance(exact, dict) or not isinstance(exact.get("n"), int) or isinstance(exact["n"], bool)
                or exact["n"] < 1):
            raise InvalidFileError(f"{source}: 'exact' sums missing or malformed")
        values = {k: parse_rational(exact.get(k), source, f"exact.{k}", non_negative=k != "sum_y")
                  for k in ("sse", "sae", "sum_y", "sum_y2")}
        target = obj.get("target", "")
        if not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'target' must be a string")
        return cls(target, parse_str_list(obj.get("features", []), source, "features", non_empty=False), exact["n"],
                   values["sse"], values["sae"], values["sum_y"], values["sum_y2"],
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False), study)


def dyadic_exponent(value: Fraction) -> int:
    """K with value·2^K an integer (value is a float64, so its denominator is a power of two)."""
    return value.denominator.bit_length() - 1


def residual_scale_bits(coef: Sequence[float], intercept: float, features: Sequence[str], target: str,
                        encoding: Encoding) -> int:
    """The public scale S: ``r·2^S`` is an integer for every residual of this model on encoded data.

    ``S = max(F_y, max_j (F_j + K_j), K_0, 0)`` with ``F`` each column's grid bits and ``2^K``
    each coefficient's denominator (float64 coefficients are dyadic rationals).
    """
    terms = [encoding.frac_bits_of(target), dyadic_exponent(Fraction(float(intercept))), 0]
    terms += [encoding.frac_bits_of(f) + dyadic_exponent(Fraction(float(c))) for f, c in zip(features, coef,
                                                                                                strict=True)]
    return max(terms)


def residual_bits(coef: Sequence[float], intercept: float, features: Sequence[str], target: str,
                  encoding: Encoding) -> int:
    """A public bound on the residuals: ``|r·2^S| < 2^residual_bits`` for any data the encoding allows."""
    scale = residual_scale_bits(coef, intercept, features, target, encoding)
    bound = Fraction(2) ** encoding.column(target).int_bits + abs(Fraction(float(intercept)))
    bound += sum(abs(Fraction(float(c))) * Fraction(2) ** encoding.column(f).int_bits
                 for f, c in zip(features, coef, strict=True))
    return math.ceil(bound * 2**scale).bit_length()


def residual_integers(coef: Sequence[float], intercept: float, X: np.ndarray, y: np.ndarray,
                      features: Sequence[str], target: str, encoding: Encoding, source: str = "data",
                      rounding: Rounding | None = None) -> tuple[np.ndarray, int, list[np.ndarray], np.ndarray]:
    """The exact residuals ``r·2^S`` of ``r = y − intercept − X·coef`` (an object array of Python integers),
    the scale ``S``, the encoded feature columns ``x·2^F`` and target ``y·2^F`` (object arrays), one pass.

    Values finer than their column's grid are rounded and counted in ``rounding`` (refused without it).
    """
    scale = residual_scale_bits(coef, intercept, features, target, encoding)
    # every term of r·2^S as an exact integer: (value·2^F)·(coefficient·2^K)·2^(S − F − K)
    columns = []
    f_y = encoding.frac_bits_of(target)
    y_int = np.array([int(v) for v in encoding.encode_column(y, target, source, rounding)], dtype=object)
    residual = y_int * (1 << (scale - f_y)) - int(Fraction(float(intercept)) * 2**scale)
    for j, (name, c) in enumerate(zip(features, coef, strict=True)):
        theta = Fraction(float(c))
        k = dyadic_exponent(theta)
        shift = scale - encoding.frac_bits_of(name) - k
        x = np.array([int(v) for v in encoding.encode_column(X[:, j], name, source, rounding)], dtype=object)
        columns.append(x)
        residual = residual - x * (int(theta * 2**k) << shift)
    return residual, scale, columns, y_int


def residual_values(coef: Sequence[float], intercept: float, X: np.ndarray, y: np.ndarray,
                    features: Sequence[str], target: str, encoding: Encoding, source: str = "data",
                    rounding: Rounding | None = None) -> list[int]:
    """(n, Σ(r·2^S)², Σ|r·2^S|, Σ y·2^F, Σ (y·2^F)²) as exact integers, for ``r = y − intercept − X·coef``.

    Values finer than their column's grid are rounded and counted in ``rounding`` (refused without it).
    """
    residual, _, _, y_int = residual_integers(coef, intercept, X, y, features, target, encoding, source, rounding)
    return [
        len(y),
        int(sum(r * r for r in residual)),
        int(sum(abs(r) for r in residual)),
        int(sum(y_int)),
        int(sum(v * v for v in y_int)),
    ]


def sums_from_values(
    values: Sequence[int], scale_bits: int, encoding: Encoding, target: str,
    features: Sequence[str], contributors: Sequence[str],
) -> EvaluationSums:
    """Turn the exact integer sums back into rationals in the data's units."""
    s, f = Fraction(2) ** scale_bits, Fraction(2) ** encoding.frac_bits_of(target)
    n, sse, sae, sy, syy = values
    return EvaluationSums(target, list(features), int(n), sse / (s * s), sae / s, sy / f, syy / (f * f),
                          list(contributors))


def sums_to_values(sums: EvaluationSums, scale_bits: int, encoding: Encoding) -> list[int]:
    """The exact integers an evaluation travels as (inverse of :func:`sums_from_values`)."""
    s, f = Fraction(2) ** scale_bits, Fraction(2) ** encoding.frac_bits_of(sums.target)
    scaled = [sums.sse * s * s, sums.sae * s, sums.sum_y * f, sums.sum_y2 * f * f]
    if any(v.denominator != 1 for v in scaled):
        raise ValueError("evaluation sums are not on the declared scale")
    return [sums.n, *(v.numerator for v in scaled)]
