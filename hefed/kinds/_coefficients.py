"""Kind ``coefficients``: n and n·θ of a factory's own model (coefficient mode, encrypted FedAvg).

A factory fits its own model exactly (OLS or ridge), rounds it to float64 as any published
model is, and packs

    n,   n·θ₀,   n·θ₁ … n·θ_d                   (features in canonical, sorted order)

Each float64 coefficient is a dyadic rational; with ``coef_frac_bits`` public fractional
bits it encodes as the exact integer ``θ·2^coef_frac_bits`` (refused, never rounded, if it
has finer digits or reaches ``2^coef_int_bits``). The decrypted sum gives the exact
n-weighted average model ``Σ nᵢθᵢ / Σ nᵢ`` — which is *not* the pooled model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..errors import EncodingError, IntegrityError, SingularSystemError, UsageError
from ..stats import CoefficientAggregate, Encoding, ridge_fraction, solve_exact_coefficients
from ._registry import Computed, Header, Kind, register

DEFAULT_COEF_FRAC_BITS = 96
DEFAULT_COEF_INT_BITS = 40


@dataclass(frozen=True)
class CoefficientsRequest:
    """Ask a factory for its own model, fitted exactly with ``ridge`` (n-weighted, encoded with the
    public ``coef_frac_bits`` and ``coef_int_bits``)."""

    ridge: float = 0.0
    fit_intercept: bool = True
    coef_frac_bits: int = DEFAULT_COEF_FRAC_BITS
    coef_int_bits: int = DEFAULT_COEF_INT_BITS

    def __post_init__(self) -> None:
        ridge_fraction(self.ridge)

    def parameters(self) -> dict[str, int]:
        """The public parameters of the bundle (identical at every factory)."""
        return {"coef_frac_bits": self.coef_frac_bits, "coef_int_bits": self.coef_int_bits,
                "fit_intercept": int(self.fit_intercept)}


def encode_coefficient(value: float, name: str, parameters: Mapping[str, Any], source: str) -> Fraction:
    """A float64 coefficient as the exact rational it is, refused if the public encoding cannot hold it."""
    exact = Fraction(float(value))
    if abs(exact) >= 2 ** parameters["coef_int_bits"]:
        raise EncodingError(f"{source}: coefficient of {name!r} ({float(value)!r}) reaches "
                            f"2^{parameters['coef_int_bits']}", parameters=("coef_int_bits",))
    if (exact * (1 << parameters["coef_frac_bits"])).denominator != 1:
        raise EncodingError(
            f"{source}: coefficient of {name!r} ({float(value)!r}) has binary digits below "
            f"2^-{parameters['coef_frac_bits']}; raise coef_frac_bits for every factory",
            parameters=("coef_frac_bits",))
    return exact


def coefficient_sums(
    target: str, features: Sequence[str], coef: Sequence[float], intercept: float, n: int,
    parameters: Mapping[str, Any], source: str = "model", contributors: Sequence[str] = (),
) -> CoefficientAggregate:
    """``n`` and ``n·θ`` of one factory's float64 model (coefficients in ``features`` order)."""
    if len(coef) != len(features):
        raise UsageError(f"{source}: {len(coef)} coefficients for {len(features)} features")
    theta = {f: encode_coefficient(c, f, parameters, source) for f, c in zip(features, coef, strict=True)}
    theta0 = encode_coefficient(intercept, "(intercept)", parameters, source)
    return CoefficientAggregate(target, list(features), int(n), n * theta0, {f: n * v for f, v in theta.items()},
                                bool(parameters["fit_intercept"]), list(contributors))


class CoefficientsKind(Kind[CoefficientAggregate, CoefficientsRequest]):
    name = "coefficients"
    description = "n and n·θ of each factory's own model: the n-weighted average model (encrypted FedAvg)"
    parameter_names = ("coef_frac_bits", "coef_int_bits", "fit_intercept")
    result_type = CoefficientAggregate
    result_format = CoefficientAggregate.FORMAT
    order = 40
    request_type = CoefficientsRequest
    travels_by_flower = True

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        """(n, n·θ₀, n·θ₁ … n·θ_d) with ``|θ·2^coef_frac_bits| < 2^(coef_frac_bits + coef_int_bits)``."""
        rows = encoding.max_rows_bits
        hi = (1 << (rows + parameters["coef_frac_bits"] + parameters["coef_int_bits"])) - 1
        return [(0, (1 << rows) - 1)] + [(-hi, hi)] * (len(features) + 1)

    def values(self, sums: CoefficientAggregate, header: Header) -> list[int]:
        scale = 1 << header.parameters["coef_frac_bits"]
        scaled = [sums.weighted_intercept * scale, *(sums.weighted_coef[f] * scale for f in sorted(sums.features))]
        if any(v.denominator != 1 for v in scaled):
            raise EncodingError("coefficients are not on the declared grid", parameters=("coef_frac_bits",))
        return [sums.n, *(v.numerator for v in scaled)]

    def result(self, values: Sequence[int], header: Header) -> CoefficientAggregate:
        scale = 1 << header.parameters["coef_frac_bits"]
        n, intercept, *coefs = values
        return CoefficientAggregate(
            header.target, list(header.features), int(n), Fraction(intercept, scale),
            {f: Fraction(v, scale) for f, v in zip(sorted(header.features), coefs, strict=True)},
            bool(header.parameters["fit_intercept"]), list(header.contributors))

    def check_result(self, result: CoefficientAggregate, threshold: int = 1, *, refuse: bool = True) -> None:
        if result.n < 1:
            raise IntegrityError(f"decrypted {self.name} aggregate covers no rows")

    def bundle_parameters(self, request: CoefficientsRequest) -> dict[str, Any]:
        return dict(request.parameters())

    def compute(self, table: Any, encoding: Encoding, request: CoefficientsRequest) -> Computed[CoefficientAggregate]:
        """Fit the factory's own model exactly on its (cleaned, training) rows and weight it by n."""
        [stats], report, holdout = table.statistics(encoding)
        try:
            coef_sorted, intercept = solve_exact_coefficients(stats, request.ridge, request.fit_intercept)
        except SingularSystemError as exc:
            raise SingularSystemError(
                f"{table.source}: this factory's own data cannot identify its model in coefficient mode: {exc}",
                exc.columns) from None
        parameters = self.bundle_parameters(request)
        by_name = dict(zip(sorted(stats.features), coef_sorted, strict=True))
        # the model as any published model is: each exact coefficient rounded once to float64
        coef = [float(_in_range(by_name[f], f, parameters, table.source)) for f in stats.features]
        theta0 = float(_in_range(intercept, "(intercept)", parameters, table.source))
        sums = coefficient_sums(stats.target, stats.features, coef, theta0, stats.n, parameters, table.source)
        return Computed(sums, Header(stats.target, tuple(stats.features), encoding, parameters), report, holdout)


def _in_range(value: Fraction, name: str, parameters: Mapping[str, Any], source: str) -> Fraction:
    # refuse before rounding: float() of a huge rational would overflow instead of naming the coefficient
    if abs(value) >= 2 ** parameters["coef_int_bits"]:
        digits = len(str(int(abs(value)))) - 1
        raise EncodingError(f"{source}: coefficient of {name!r} is about 10^{digits}, reaching "
                            f"2^{parameters['coef_int_bits']}", parameters=("coef_int_bits",))
    return value


COEFFICIENTS = register(CoefficientsKind())
