"""Held-out evaluation without pooling: local metrics, and encrypted sums for global ones.

A factory keeps a reproducible random holdout of its rows out of its
training statistics (:func:`split_holdout`). Given the global model, it
computes on that holdout the exact sums

    n,  SSE = Σ r²,  SAE = Σ |r|,  Σy,  Σy²        with r = y − ŷ

where the residuals are exact: the model's float64 coefficients are dyadic
rationals and the data are encoded exactly, so ``r·2^S`` is an integer for
the public scale ``S = frac_bits + K`` (``2^K`` the largest denominator among
the coefficients). The sums travel encrypted in an ``evaluation`` bundle,
aggregate and decrypt like statistics, and give the consortium's MSE, RMSE,
MAE and R² without any factory's own metrics being revealed. Absolute
errors are not a polynomial of the statistics, which is why they travel as
their own sums.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle, check_factory_id
from .data import read_table, select_xy, split_holdout
from .encoding import Encoding
from .errors import InvalidFileError
from .fileio import atomic_write_json, is_version, parse_rational, parse_str_list, read_json_object
from .model import LinearModel

__all__ = [
    "EvaluationSums", "encrypt_evaluation", "evaluate_local", "evaluation_parameters", "split_holdout",
    "sums_from_values",
]

FORMAT = "hefed.evaluation"
VERSION = 1


@dataclass
class EvaluationSums:
    """Exact residual sums of a model on one or more holdouts, and the metrics they give."""

    target: str
    features: list[str]
    n: int
    sse: Fraction
    sae: Fraction
    sum_y: Fraction
    sum_y2: Fraction
    contributors: list[str] = field(default_factory=list)

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
        sst = self.sum_y2 - self.sum_y * self.sum_y / self.n
        if sst == 0:
            return 1.0 if self.sse == 0 else 0.0
        return float(1 - self.sse / sst)

    def metrics(self) -> dict[str, float]:
        return {"n": self.n, "mse": self.mse, "rmse": self.rmse, "mae": self.mae, "r2": self.r2}

    def to_dict(self) -> dict[str, Any]:
        def frac(v: Fraction) -> str:
            return f"{v.numerator}/{v.denominator}"

        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "features": self.features,
            "contributors": self.contributors,
            "metrics": self.metrics(),
            "exact": {"n": self.n, "sse": frac(self.sse), "sae": frac(self.sae),
                      "sum_y": frac(self.sum_y), "sum_y2": frac(self.sum_y2)},
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvaluationSums:
        obj = read_json_object(path, "evaluation")
        source = str(path)
        if obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed evaluation file (version {VERSION})")
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
                   contributors=parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False),
                   **values)


def _dyadic_exponent(value: Fraction) -> int:
    """K with value·2^K an integer (value is a float64, so its denominator is a power of two)."""
    return value.denominator.bit_length() - 1


def evaluation_parameters(model: LinearModel, encoding: Encoding) -> dict[str, Any]:
    """Public scale, residual bound and model digest of a model's evaluation bundles (same at every factory)."""
    coefs = [Fraction(float(c)) for c in model.coef_]
    intercept = Fraction(model.intercept_)
    k = max(_dyadic_exponent(v) for v in [*coefs, intercept])
    scale = encoding.frac_bits + k
    bound = (2 ** encoding.int_bits * (1 + sum(abs(c) for c in coefs)) + abs(intercept)) * 2**scale
    return {"scale_bits": scale, "residual_bits": math.ceil(bound).bit_length(), "model_digest": model.digest()}


def _exact_residual_values(
    model: LinearModel, X: np.ndarray, y: np.ndarray, features: Sequence[str], target: str,
    encoding: Encoding, source: str,
) -> tuple[list[int], dict[str, Any]]:
    """(n, Σ(r·2^S)², Σ|r·2^S|, Σ y·2^F, Σ (y·2^F)²) as exact integers, and the parameters."""
    params = evaluation_parameters(model, encoding)
    k = params["scale_bits"] - encoding.frac_bits
    coef = [int(Fraction(float(c)) * 2**k) for c in model.coef_]
    intercept = int(Fraction(model.intercept_) * 2 ** params["scale_bits"])
    x_int = np.empty(X.shape, dtype=object)
    for j, name in enumerate(features):
        x_int[:, j] = [int(v) for v in encoding.encode_column(X[:, j], name, source)]
    y_int = np.array([int(v) for v in encoding.encode_column(y, target, source)], dtype=object)
    residual = y_int * (1 << k) - intercept - x_int.dot(np.array(coef, dtype=object))
    values = [
        len(y),
        int(sum(r * r for r in residual)),
        int(sum(abs(r) for r in residual)),
        int(sum(y_int)),
        int(sum(v * v for v in y_int)),
    ]
    return values, params


def sums_from_values(
    values: Sequence[int], params: dict[str, Any], encoding: Encoding, target: str,
    features: Sequence[str], contributors: Sequence[str],
) -> EvaluationSums:
    """Turn the exact integer sums back into rationals in the data's units."""
    s, f = params["scale_bits"], encoding.frac_bits
    n, sse, sae, sy, syy = values
    return EvaluationSums(
        target, list(features), int(n),
        Fraction(sse, 1 << (2 * s)), Fraction(sae, 1 << s), Fraction(sy, 1 << f), Fraction(syy, 1 << (2 * f)),
        list(contributors),
    )


def _model_xy(model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], target: str,
              source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    return select_xy(frame, target, [str(f) for f in model.feature_names_in_], source)


def evaluate_local(
    model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None = None,
    encoding: Encoding | None = None,
) -> EvaluationSums:
    """A factory's own holdout metrics (plaintext; nothing leaves the factory)."""
    target = target or model.target_
    encoding = encoding or Encoding()
    source = str(data) if not isinstance(data, pd.DataFrame) else "data"
    X, y, features = _model_xy(model, data, target, source)
    values, params = _exact_residual_values(model, X, y, features, target, encoding, source)
    return sums_from_values(values, params, encoding, target, features, [])


def encrypt_evaluation(
    model: LinearModel, data: pd.DataFrame | str | os.PathLike[str], target: str | None,
    public_key: PaillierPublicKey, factory_id: str, encoding: Encoding | None = None,
) -> Bundle:
    """Encrypt a factory's exact holdout residual sums into an ``evaluation`` bundle."""
    check_factory_id(factory_id)
    target = target or model.target_
    encoding = encoding or Encoding()
    source = str(data) if not isinstance(data, pd.DataFrame) else factory_id
    X, y, features = _model_xy(model, data, target, source)
    values, params = _exact_residual_values(model, X, y, features, target, encoding, source)
    return Bundle.seal("evaluation", public_key, target, features, encoding, factory_id, values, params, source)
