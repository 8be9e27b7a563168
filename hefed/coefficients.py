"""Coefficient-vector mode: encrypted, n-weighted averaging of local models (encrypted FedAvg).

Some consortia allow only models, not statistics, to leave a plant. In
coefficient mode a factory fits its own model (OLS or ridge, exactly), rounds
it to float64 as any published model is, and encrypts

    n,   n·θ₀,   n·θ₁ … n·θ_d                   (features in canonical, sorted order)

Each float64 coefficient is a dyadic rational; with ``coef_frac_bits`` public
fractional bits it encodes as the exact integer ``θ·2^coef_frac_bits`` (refused,
never rounded, if it has finer digits or reaches ``2^coef_int_bits``). After
aggregation and decryption, ``Σ nᵢθᵢ / Σ nᵢ`` is the exact n-weighted average
model. Unlike statistics mode it is *not* the pooled model: averaging local
fits ignores how the factories' data differ (see ``hefed simulate``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle, check_factory_id
from .encoding import Encoding
from .errors import EncodingError, InvalidFileError, SingularSystemError
from .fileio import atomic_write_json, is_version, parse_rational, parse_str_list, read_json_object
from .model import LinearModel
from .solve import solve
from .statistics import compute_statistics

FORMAT = "hefed.coefficients"
VERSION = 1
DEFAULT_COEF_FRAC_BITS = 96
DEFAULT_COEF_INT_BITS = 40


def coefficient_parameters(
    fit_intercept: bool = True,
    coef_frac_bits: int = DEFAULT_COEF_FRAC_BITS,
    coef_int_bits: int = DEFAULT_COEF_INT_BITS,
) -> dict[str, int]:
    """The public parameters of a coefficient bundle (identical at every factory)."""
    return {"coef_frac_bits": coef_frac_bits, "coef_int_bits": coef_int_bits, "fit_intercept": int(fit_intercept)}


def _encode_coefficient(value: float, name: str, params: dict[str, int], source: str) -> int:
    exact = Fraction(float(value))
    scaled = exact * (1 << params["coef_frac_bits"])
    if scaled.denominator != 1:
        raise EncodingError(
            f"{source}: coefficient of {name!r} ({float(value)!r}) has binary digits below "
            f"2^-{params['coef_frac_bits']}; raise coef_frac_bits for every factory"
        )
    if abs(exact) >= 2 ** params["coef_int_bits"]:
        raise EncodingError(f"{source}: coefficient of {name!r} ({float(value)!r}) reaches 2^{params['coef_int_bits']}")
    return int(scaled)


def coefficient_bundle(
    model: LinearModel,
    public_key: PaillierPublicKey,
    factory_id: str,
    encoding: Encoding | None = None,
    coef_frac_bits: int = DEFAULT_COEF_FRAC_BITS,
    coef_int_bits: int = DEFAULT_COEF_INT_BITS,
) -> Bundle:
    """Encrypt ``n`` and ``n·θ`` of a factory's own (float64) model into a ``coefficients`` bundle."""
    check_factory_id(factory_id)
    encoding = encoding or Encoding()
    params = coefficient_parameters(model.fit_intercept, coef_frac_bits, coef_int_bits)
    features = [str(f) for f in model.feature_names_in_]
    by_name = dict(zip(features, model.coef_, strict=True))
    n = model.n_samples_
    values = [n, n * _encode_coefficient(model.intercept_, "(intercept)", params, factory_id)]
    values += [n * _encode_coefficient(by_name[f], f, params, factory_id) for f in sorted(features)]
    return Bundle.seal("coefficients", public_key, model.target_, features, encoding, factory_id, values, params)


def encrypt_coefficients(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    public_key: PaillierPublicKey,
    features: Sequence[str] | None = None,
    factory_id: str = "factory",
    encoding: Encoding | None = None,
    ridge: float = 0.0,
    fit_intercept: bool = True,
) -> Bundle:
    """Fit the factory's own model exactly on ``data`` and encrypt its n-weighted coefficients."""
    check_factory_id(factory_id)
    source = str(data) if not isinstance(data, pd.DataFrame) else factory_id
    try:
        local = solve(compute_statistics(data, target, features, encoding, factory_id), ridge, fit_intercept)
    except SingularSystemError as exc:
        raise SingularSystemError(
            f"{source}: this factory's own data cannot identify its model in coefficient mode: {exc}", exc.columns
        ) from None
    return coefficient_bundle(local, public_key, factory_id, encoding)


@dataclass
class CoefficientAggregate:
    """Decrypted ``Σ nᵢ`` and ``Σ nᵢθᵢ`` of a coefficient aggregate (exact rationals)."""

    target: str
    features: list[str]
    n: int
    weighted_intercept: Fraction
    weighted_coef: dict[str, Fraction]
    fit_intercept: bool = True
    contributors: list[str] = field(default_factory=list)

    @classmethod
    def from_values(cls, values: Sequence[int], bundle: Bundle) -> CoefficientAggregate:
        scale = 1 << bundle.parameters["coef_frac_bits"]
        n, intercept, *coefs = values
        return cls(bundle.target, list(bundle.features), int(n), Fraction(intercept, scale),
                   {f: Fraction(v, scale) for f, v in zip(sorted(bundle.features), coefs, strict=True)},
                   bool(bundle.parameters["fit_intercept"]), list(bundle.contributors))

    def average(self) -> tuple[list[Fraction], Fraction]:
        """Exact n-weighted average (coefficients in ``features`` order, intercept)."""
        return [self.weighted_coef[f] / self.n for f in self.features], self.weighted_intercept / self.n

    def to_model(self) -> LinearModel:
        """The n-weighted average model (no training fit statistics: only coefficients travelled)."""
        coef, intercept = self.average()
        return LinearModel(self.features, self.target, coef, intercept, n_samples=self.n, sse=None, sst=None,
                           fit_intercept=self.fit_intercept, contributors=self.contributors)

    def to_dict(self) -> dict[str, Any]:
        def frac(v: Fraction) -> str:
            return f"{v.numerator}/{v.denominator}"

        return {
            "format": FORMAT, "version": VERSION, "target": self.target, "features": self.features,
            "n": self.n, "fit_intercept": self.fit_intercept, "contributors": self.contributors,
            "weighted_intercept": frac(self.weighted_intercept),
            "weighted_coef": {f: frac(self.weighted_coef[f]) for f in self.features},
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CoefficientAggregate:
        obj = read_json_object(path, "coefficients")
        return cls.from_dict(obj, str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "coefficients") -> CoefficientAggregate:
        if obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed coefficients file (version {VERSION})")
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
        return cls(target, features, n, intercept, coef, bool(obj.get("fit_intercept", True)),
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False))
