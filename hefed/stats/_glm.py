"""Exact integer statistics of one IRLS round of a generalised linear model (GLM).

An IRLS step from coefficients ``β_t`` solves ``(XᵀWX) β_{t+1} = XᵀWz`` with, per row,
``η = xᵀβ_t + offset``, ``μ = g⁻¹(η)``, the working weight ``W = 1 / (V(μ) g'(μ)²)`` and the
working response ``z = η − offset + (y − μ) g'(μ)``. ``W`` and ``z`` are real numbers (logs and
exponentials), not dyadic: each factory rounds, **once per row**, to the public grid
``2^-grid_bits`` (round half to even, exact in float64: ``rint(ldexp(v, grid_bits))``)

* ``ŵ = round(W)`` and ``û = round(W·z)`` (the product is rounded, not ``z`` alone: ``W·z =
  W·(η − offset) + (y − μ)·W·g'(μ)`` stays bounded where ``z`` does not, as ``μ`` nears 0 or 1);
* the row's deviance ``d``, its Pearson term ``(y − μ)²/V(μ)`` and the family's constant terms
  ``a``, ``b`` (Poisson: ``y log y`` and ``log Γ(y+1)``; Gamma: ``log y`` and 0; binomial: 0, 0).

Then the statistics of the round are **exact integers** of those rounded values and of the rows'
encoded columns ``x·2^F`` (:func:`~hefed.primitives.exactgram.weighted_gram`): ``XᵀŴX`` (upper
triangle), ``XᵀÛ``, ``n``, ``Σy`` (exact: ``y`` is on its grid), ``Σd̂``, ``Σp̂``, ``Σâ``, ``Σb̂``.
Each entry of ``XᵀŴX`` differs from the exact ``XᵀWX`` by at most ``n · 2^-(grid_bits+1) ·
max|x_a x_b|`` and each of ``XᵀWz`` by ``n · 2^-(grid_bits+1) · max|x_a|`` (half a grid unit a row);
the default 2^-64 grid makes that ~5e-20 per row.

The declared bounds (public, part of the bundle parameters) size the packing: ``0 ≤ W <
2^weight_bits``, ``|W·z| < 2^response_bits`` and ``|d|, |p|, |a|, |b| < 2^row_bits``. A row beyond
them is **refused** (:class:`GLMBoundError`), never clipped: as coefficients run away (separation
in a logistic model, a zero-count level in a Poisson model) the weights and working responses leave
their range, and the fit stops with that error instead of diverging silently.

Nothing here is per row in what travels: every value is a sum over the factory's rows, and the
key holder decrypts only sums over at least its threshold of factories.
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
from scipy import special

from .._files import atomic_write_json, check_format, read_json_object, split_study, study_field
from ..errors import DataError, HefedError, InvalidFileError, UsageError
from ..primitives.exactgram import exact_gram, integer_columns, weighted_gram
from ._encoding import Encoding, Rounding
from ._gram import ONES, canonical_order, support_groups
from ._support import SupportAccumulator, reference_groups, reference_name

FORMAT = "hefed.glm_round"
VERSION = 1

#: The families, their links (the first is the default) and their codes in bundle parameters.
FAMILIES: dict[str, tuple[str, ...]] = {"binomial": ("logit",), "poisson": ("log",), "gamma": ("log",)}
FAMILY_CODES = {"binomial": 0, "poisson": 1, "gamma": 2}
LINK_CODES = {"logit": 0, "log": 1}

#: Default grid and bounds (see the module docstring).
DEFAULT_GRID_BITS = 64
DEFAULT_WEIGHT_BITS = 40
DEFAULT_RESPONSE_BITS = 48
DEFAULT_ROW_BITS = 48
_MAX_GRID_BITS = 200
_MAX_VALUE_BITS = 200


class GLMBoundError(HefedError, ArithmeticError):
    """A row's working weight, working response or deviance part left its declared range (or is not finite):
    refused, not clipped. Usually the coefficients are running away (separation, zero counts)."""


class GLMConvergenceError(HefedError, ArithmeticError):
    """The IRLS iterations did not converge, or a step is impossible (singular XᵀWX, separation)."""


def check_family(family: object, link: object = None) -> tuple[str, str]:
    """The family and link names, checked (``link`` ``None``: the family's default: logit, log, log)."""
    if not isinstance(family, str) or family.lower() not in FAMILIES:
        raise UsageError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    family = family.lower()
    links = FAMILIES[family]
    if link is None:
        return family, links[0]
    if not isinstance(link, str) or link.lower() not in links:
        raise UsageError(f"the {family} family supports the link(s) {', '.join(links)}, got {link!r}"
                         + (" (statsmodels' default for Gamma, inverse_power, is not supported: use 'log')"
                            if family == "gamma" else ""))
    return family, link.lower()


def _check_bits(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class GLMGrid:
    """The public grid the per-row quantities are rounded to, and their declared bounds (module docstring)."""

    grid_bits: int = DEFAULT_GRID_BITS
    weight_bits: int = DEFAULT_WEIGHT_BITS
    response_bits: int = DEFAULT_RESPONSE_BITS
    row_bits: int = DEFAULT_ROW_BITS

    def __post_init__(self) -> None:
        _check_bits("grid_bits", self.grid_bits, 8, _MAX_GRID_BITS)
        for name in ("weight_bits", "response_bits", "row_bits"):
            _check_bits(name, getattr(self, name), 1, _MAX_VALUE_BITS)

    def to_dict(self) -> dict[str, int]:
        return {"grid_bits": self.grid_bits, "weight_bits": self.weight_bits,
                "response_bits": self.response_bits, "row_bits": self.row_bits}


def design_columns(features: Sequence[str], null_model: bool = False) -> list[str]:
    """The design's columns in travel order: the intercept, then the features sorted by name (none for the
    intercept-only null model)."""
    return [ONES] if null_model else [ONES, *sorted(features)]


def design_scales(features: Sequence[str], encoding: Encoding, null_model: bool = False) -> list[int]:
    """Fractional bits of each design column (0 for the intercept)."""
    return [0 if c == ONES else encoding.frac_bits_of(c) for c in design_columns(features, null_model)]


def design_value_bits(features: Sequence[str], encoding: Encoding, null_model: bool = False) -> list[int]:
    """Bits of each design column's encoded values (``|x·2^F| < 2^bits``; 1 for the intercept)."""
    return [1 if c == ONES else encoding.value_bits_of(c) for c in design_columns(features, null_model)]


def glm_support_columns(features: Sequence[str]) -> list[str]:
    """The indicator columns of a round's support: the design's, then each categorical feature's reference level."""
    return [*design_columns(features), *(reference_name(f) for f, _ in reference_groups(sorted(features)))]


def glm_support_size(features: Sequence[str]) -> int:
    k = len(glm_support_columns(features))
    return k * (k + 1) // 2


# --- per-row working quantities ---------------------------------------------------------------------
def starting_mu(family: str, y: np.ndarray) -> np.ndarray:
    """The first round's means, from each row alone (R's ``glm`` initialisation; no consortium value needed):
    binomial ``(y + 1/2)/2``, Poisson ``y + 0.1``, Gamma ``y``."""
    if family == "binomial":
        return (y + 0.5) / 2.0
    if family == "poisson":
        return y + 0.1
    return y.astype(np.float64, copy=True)


def link_of(link: str, mu: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(mu / (1.0 - mu)) if link == "logit" else np.log(mu)


def mean_of(link: str, eta: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return special.expit(eta) if link == "logit" else np.exp(eta)


@dataclass
class Working:
    """The per-row quantities of one IRLS round (float64)."""

    mu: np.ndarray
    weight: np.ndarray
    weighted_response: np.ndarray
    deviance: np.ndarray
    pearson: np.ndarray


def working(family: str, link: str, eta: np.ndarray, offset: np.ndarray, y: np.ndarray) -> Working:
    """``μ``, ``W``, ``W·z``, the deviance and Pearson terms of each row at linear predictor ``eta``
    (offset included)."""
    mu = mean_of(link, eta)
    with np.errstate(all="ignore"):
        if family == "binomial":  # logit: W = μ(1−μ), W·g' = 1
            weight = mu * (1.0 - mu)
            wz = weight * (eta - offset) + (y - mu)
            # −2 log μ (y = 1) or −2 log(1 − μ) (y = 0), from η without cancellation
            deviance = 2.0 * np.where(y > 0.5, np.logaddexp(0.0, -eta), np.logaddexp(0.0, eta))
            pearson = np.exp(np.where(y > 0.5, -eta, eta))  # (y − μ)²/(μ(1 − μ)) for y ∈ {0, 1}
        elif family == "poisson":  # log: W = μ, W·g' = 1
            weight = mu.copy()
            wz = mu * (eta - offset) + (y - mu)
            ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
            deviance = 2.0 * (ylogy - y * eta - (y - mu))
            pearson = (y - mu) ** 2 / mu
        else:  # gamma, log: W = 1, W·g' = 1/μ
            weight = np.ones_like(mu)
            ratio = y / mu
            wz = (eta - offset) + (ratio - 1.0)
            deviance = 2.0 * (ratio - 1.0 - (np.log(y) - eta))
            pearson = (ratio - 1.0) ** 2
    return Working(mu, weight, wz, deviance, pearson)


def constant_terms(family: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The family's per-row terms that do not depend on the coefficients: the saturated log-likelihood's and
    the null deviance's (Poisson ``y log y``, ``log Γ(y+1)``; Gamma ``log y``, 0; binomial 0, 0)."""
    zero = np.zeros_like(y)
    if family == "poisson":
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        return ylogy, special.gammaln(y + 1.0)
    if family == "gamma":
        return np.log(y), zero
    return zero, zero.copy()


def check_response(family: str, y: np.ndarray, source: str, target: str) -> None:
    """Refuse responses the family cannot have, naming the first row (not its value): binomial 0/1, Poisson
    non-negative, Gamma positive."""
    if family == "binomial":
        bad = ~((y == 0.0) | (y == 1.0))
        rule = "must be 0 or 1"
    elif family == "poisson":
        bad = ~(y >= 0.0)
        rule = "must be a non-negative count"
    else:
        bad = ~(y > 0.0)
        rule = "must be positive"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column {target!r}, row {row + 1}: a {family} response {rule}")


def round_to_grid(values: np.ndarray, bits: int, grid_bits: int, what: str, source: str,
                  nonnegative: bool = False) -> list[int]:
    """``round(v · 2^grid_bits)`` of each value as Python integers (exact), after refusing a value that is not
    finite or reaches ``2^bits`` in magnitude (or is negative, with ``nonnegative``)."""
    bad = ~np.isfinite(values) | (np.abs(values) >= math.ldexp(1.0, bits))
    if nonnegative:
        bad |= values < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise GLMBoundError(
            f"{source}, row {row + 1}: the {what} is not finite or beyond its declared bound 2^{bits}: the "
            "coefficients are running away (separation, or a level with zero counts) or the bound is too small")
    scaled = np.rint(np.ldexp(values, grid_bits))
    return [int(v) for v in scaled]


# --- the sums ------------------------------------------------------------------------------------------
@dataclass
class GLMRoundSums:
    """One IRLS round's exact integer sums: a factory's own, or their sum over factories (module docstring).

    ``xtwx`` is the full symmetric matrix of ``Σ ŵ x_a x_b`` over the encoded design columns
    (:func:`design_columns`; scales ``2^-(grid_bits + F_a + F_b)``), ``xtwz`` ``Σ û x_a`` (scales
    ``2^-(grid_bits + F_a)``), ``sum_y`` ``Σ y·2^F_y``; ``deviance``, ``pearson``, ``const_a``, ``const_b`` are
    sums of values on the ``2^-grid_bits`` grid. ``iteration`` and ``coef_digest`` name the signed
    coefficients the round used, ``null_model`` whether it is a round of the intercept-only fit.
    """

    FORMAT: ClassVar[str] = FORMAT

    family: str
    link: str
    target: str
    features: list[str]
    encoding: Encoding
    grid: GLMGrid
    iteration: int
    coef_digest: str
    null_model: bool
    n: int
    sum_y: int
    xtwx: list[list[int]]
    xtwz: list[int]
    deviance: int
    pearson: int
    const_a: int
    const_b: int
    contributors: list[str] = field(default_factory=list)
    study: str | None = None
    support: list[int] | None = field(default=None, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        return design_columns(self.features, self.null_model)

    @property
    def scales(self) -> list[int]:
        return design_scales(self.features, self.encoding, self.null_model)

    def real(self, value: int, extra_bits: int = 0) -> Fraction:
        """A sum on the grid as an exact rational (``extra_bits`` more fractional bits)."""
        return Fraction(value, 1 << (self.grid.grid_bits + extra_bits))

    def y_total(self) -> Fraction:
        return Fraction(self.sum_y, 1 << self.encoding.frac_bits_of(self.target))

    def to_vector(self) -> list[int]:
        m = len(self.xtwx)
        upper = [self.xtwx[a][b] for a in range(m) for b in range(a, m)]
        return [*upper, *self.xtwz, self.n, self.sum_y, self.deviance, self.pearson, self.const_a, self.const_b]

    @classmethod
    def vector_size(cls, m: int) -> int:
        return m * (m + 1) // 2 + m + 6

    def with_vector(self, values: Sequence[int]) -> GLMRoundSums:
        """The same header with these (decrypted) values."""
        m = len(self.columns)
        xtwx = [[0] * m for _ in range(m)]
        k = 0
        for a in range(m):
            for b in range(a, m):
                xtwx[a][b] = xtwx[b][a] = int(values[k])
                k += 1
        xtwz = [int(v) for v in values[k:k + m]]
        n, sum_y, dev, pearson, ca, cb = (int(v) for v in values[k + m:k + m + 6])
        return GLMRoundSums(self.family, self.link, self.target, list(self.features), self.encoding, self.grid,
                            self.iteration, self.coef_digest, self.null_model, n, sum_y, xtwx, xtwz, dev, pearson,
                            ca, cb, list(self.contributors), self.study)

    # --- files -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "family": self.family, "link": self.link,
                "target": self.target, "features": list(self.features), "encoding": self.encoding.to_dict(),
                "grid": self.grid.to_dict(), "iteration": self.iteration, "coef_digest": self.coef_digest,
                "null_model": self.null_model, "contributors": list(self.contributors),
                "values": [str(v) for v in self.to_vector()], **study_field(self.study)}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "GLM round") -> GLMRoundSums:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "GLM round sums")
        try:
            family, link = check_family(obj.get("family"), obj.get("link"))
            grid_obj = obj.get("grid")
            if not isinstance(grid_obj, dict):
                raise InvalidFileError(f"{source}: 'grid' must be an object")
            grid = GLMGrid(**grid_obj)
        except (UsageError, TypeError) as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        features, target = obj.get("features"), obj.get("target")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or \
                not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'features' and 'target' must be names")
        iteration, digest, null_model = obj.get("iteration"), obj.get("coef_digest"), obj.get("null_model")
        contributors = obj.get("contributors")
        if (isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0
                or not isinstance(digest, str) or not isinstance(null_model, bool)
                or not isinstance(contributors, list) or not all(isinstance(c, str) for c in contributors)):
            raise InvalidFileError(f"{source}: malformed iteration, coef_digest, null_model or contributors")
        encoding = Encoding.from_dict(obj.get("encoding"), f"{source} encoding")
        values = obj.get("values")
        m = len(design_columns(features, null_model))
        if (not isinstance(values, list) or len(values) != cls.vector_size(m)
                or not all(isinstance(v, str) and len(v) < 2000 and v.lstrip("-").isdigit() for v in values)):
            raise InvalidFileError(f"{source}: 'values' must be {cls.vector_size(m)} integer strings")
        empty = cls(family, link, target, features, encoding, grid, iteration, digest, null_model, 0, 0,
                    [], [], 0, 0, 0, 0, contributors, study)
        result = empty.with_vector([int(v) for v in values])
        result.study = study
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GLMRoundSums:
        return cls.from_dict(read_json_object(path, "GLM round sums"), str(path))


def glm_round_sums(
    X: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    target: str,
    encoding: Encoding,
    family: str,
    link: str,
    grid: GLMGrid,
    coefficients: Sequence[float] | None,
    iteration: int,
    coef_digest: str,
    *,
    offset: np.ndarray | None = None,
    null_model: bool = False,
    factory_id: str | None = None,
    source: str = "data",
    rounding: Rounding | None = None,
) -> GLMRoundSums:
    """One factory's exact sums of one IRLS round over its rows (module docstring).

    ``X`` has the columns ``features`` (any order); ``coefficients`` are in :func:`design_columns` order (the
    intercept first, then the features sorted by name), or ``None`` for the first round, which starts from each
    row's own mean (:func:`starting_mu`). Values finer than their column's grid are rounded and counted in
    ``rounding`` (refused without it); a response the family cannot have, or a row beyond a declared bound,
    is refused.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape != (len(y), len(features)):
        raise DataError(f"{source}: X must have one row per response and the {len(features)} feature column(s)")
    n = len(y)
    if n == 0:
        raise DataError(f"{source}: no rows")
    if n >= 1 << encoding.max_rows_bits:
        raise DataError(f"{source}: more rows than the encoding's max_rows_bits allows")
    columns = design_columns(features, null_model)
    order = canonical_order(list(features))
    design = np.empty((n, len(features) + 1))
    design[:, 0] = 1.0
    for j, name in enumerate(features):
        design[:, order[j]] = encoding.to_grid(X[:, j], name, rounding, source)
    y = encoding.to_grid(y, target, rounding, source)
    check_response(family, y, source, target)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=np.float64).reshape(-1)
    if off.shape != (n,) or not np.isfinite(off).all():
        raise DataError(f"{source}: the offset must be one finite value per row")
    used = design[:, :1] if null_model else design
    if coefficients is None:
        eta = link_of(link, starting_mu(family, y))
    else:
        beta = np.asarray(coefficients, dtype=np.float64)
        if beta.shape != (len(columns),) or not np.isfinite(beta).all():
            raise UsageError(f"the coefficients must be {len(columns)} finite values (intercept, sorted features)")
        eta = used @ beta + off
    w = working(family, link, eta, off, y)
    g = grid.grid_bits
    weights = round_to_grid(w.weight, grid.weight_bits, g, "working weight", source, nonnegative=True)
    responses = round_to_grid(w.weighted_response, grid.response_bits, g, "working response", source)
    deviance = round_to_grid(w.deviance, grid.row_bits, g, "deviance of a row", source)
    pearson = round_to_grid(w.pearson, grid.row_bits, g, "Pearson term of a row", source)
    const_a, const_b = constant_terms(family, y)
    a = round_to_grid(const_a, grid.row_bits, g, "constant term of a row", source)
    b = round_to_grid(const_b, grid.row_bits, g, "constant term of a row", source)
    scales = design_scales(features, encoding, null_model)
    x_int = integer_columns(used, scales)
    if len(set(weights)) == 1:  # one weight for every row (Gamma, log link: W = 1): ŵ·XᵀX, at BLAS speed
        xtwx = [[weights[0] * v for v in row] for row in exact_gram(used, scales)]
    else:
        xtwx = weighted_gram(x_int, weights)
    u = np.asarray(responses, dtype=object)
    xtwz = [int(v) for v in (x_int * u[:, None]).sum(axis=0)]
    f_y = encoding.frac_bits_of(target)
    sum_y = sum(int(v) for v in np.ldexp(y, f_y))
    support = SupportAccumulator(len(features) + 1, support_groups(features))
    support.update(design.T)
    result = GLMRoundSums(family, link, target, list(features), encoding, grid, iteration, coef_digest, null_model,
                          n, sum_y, xtwx, xtwz, sum(deviance), sum(pearson), sum(a), sum(b),
                          [factory_id] if factory_id else [])
    result.support = support.result()
    return result


def round_bounds(features: Sequence[str], target: str, encoding: Encoding, grid: GLMGrid,
                 null_model: bool) -> list[tuple[int, int]]:
    """Bounds ``(lo, hi)`` of one contribution's sums in travel order (:meth:`GLMRoundSums.to_vector`), from the
    public encoding and declared grid alone; then the support indicators."""
    bits = design_value_bits(features, encoding, null_model)
    rows, g = encoding.max_rows_bits, grid.grid_bits
    m = len(bits)

    def signed(e: int) -> tuple[int, int]:
        return (-((1 << e) - 1), (1 << e) - 1)

    out: list[tuple[int, int]] = []
    for a in range(m):
        for b in range(a, m):
            e = rows + grid.weight_bits + g + bits[a] + bits[b]
            out.append((0, (1 << e) - 1) if a == b else signed(e))
    out += [signed(rows + grid.response_bits + g + bits[a]) for a in range(m)]
    out.append((0, (1 << rows) - 1))
    out.append(signed(rows + encoding.value_bits_of(target)))
    out += [signed(rows + grid.row_bits + g)] * 4
    out += [(0, 1)] * glm_support_size(features)
    return out


__all__ = [
    "DEFAULT_GRID_BITS",
    "FAMILIES",
    "FAMILY_CODES",
    "LINK_CODES",
    "GLMBoundError",
    "GLMConvergenceError",
    "GLMGrid",
    "GLMRoundSums",
    "Working",
    "check_family",
    "constant_terms",
    "design_columns",
    "design_scales",
    "glm_round_sums",
    "glm_support_columns",
    "glm_support_size",
    "link_of",
    "mean_of",
    "round_bounds",
    "starting_mu",
    "working",
]
