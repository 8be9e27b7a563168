"""Residual moments of a published model: the "meat" of robust and cluster-robust covariances.

Given a released model's float64 coefficients ``β`` (dyadic rationals), a factory's residuals
``e = y − Xβ`` on its encoded rows are exact: ``e·2^S`` is an integer for the public scale ``S``
(:func:`~hefed.stats.residual_scale_bits`). With ``x`` the design row (``1`` first when the model has an
intercept, then the model's features) a factory computes, for the covariance type it was asked for,

=========  =======================================================================================
meat        one factory's sum (integer, in units of ``2^-(2S + s_a + s_b)``; ``s`` the column grids)
=========  =======================================================================================
white       ``Σ e²·x xᵀ`` (HC0 and HC1), exact
hc2, hc3    ``Σ e²/(1−h)^p·x xᵀ`` (p = 1, 2) with the leverage ``h = xᵀ(XᵀX)⁻¹x`` from the pooled
            ``(XᵀX)⁻¹`` the key holder released; each row's weight ``e²/(1−h)^p`` is rounded once to
            the public grid ``2^-(2S + grid_bits)`` (error at most half a unit of it per row), the sum is
            exact. Rows with ``1/(1−h) > 2^leverage_bits`` are refused, not clipped.
cluster     ``u uᵀ`` with ``u = Σ e·x``, the plant's score (one factory is one cluster), exact
hac         ``(L+1)·[Γ₀ + Σ_{l=1..L} (1 − l/(L+1))·(Γ_l + Γ_lᵀ)]``, ``Γ_l = Σ_t s_t s_{t−l}ᵀ``,
            ``s_t = e_t·x_t`` in the factory's row order (Newey–West with Bartlett weights within the
            plant's time series; the factor ``L+1`` keeps it an integer), exact
=========  =======================================================================================

Summed over factories, each is the consortium's meat of statsmodels' ``cov_type`` ``HC0``/``HC1``,
``HC2``, ``HC3``, ``cluster`` (groups = plants) and ``hac-panel`` (groups = plants); the analyst forms the
sandwich ``(XᵀX)⁻¹·meat·(XᵀX)⁻¹`` (:mod:`hefed.models`).
"""

from __future__ import annotations

import hashlib
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
from ..errors import IntegrityError, InvalidFileError, SchemaMismatchError, UsageError
from ..primitives.exactgram import weighted_gram
from ._encoding import Encoding, Rounding
from ._gram import ONES, upper_triangle_index
from ._residuals import residual_integers

FORMAT = "hefed.residual-moments"
VERSION = 1

#: The meats a factory computes, by their code in bundle parameters.
MEATS = ("white", "hc2", "hc3", "cluster", "hac")
#: statsmodels' cov_type → the meat it needs (HC0 and HC1 share one).
COV_TYPES = {"HC0": "white", "HC1": "white", "HC2": "hc2", "HC3": "hc3", "cluster": "cluster", "HAC": "hac"}
#: Most lags a HAC meat may use (Newey–West's rule of thumb gives about 10 for a year of hourly rows).
MAX_LAGS = 100
#: A factory computes a HAC meat only with at least this many rows per lag (rows ≥ ROWS_PER_LAG·(maxlags + 1)):
#: with lags near its row count a plant's Newey–West sum tends to the outer product of its score, which would
#: single it out as the cluster meat of few plants does.
ROWS_PER_LAG = 10
#: Fewest contributors whose cluster meat is decrypted: Σ_g u_g u_gᵀ of few plants gives a colluding plant the
#: others' scores (three plants: both, up to which is which) and, with a model the key holder chose, each plant's
#: row count and sums; below about 20 clusters the estimator is biased downwards anyway (Cameron & Miller 2015).
MIN_CLUSTERS = 20
#: Bits a file's meat entries may take (numerator and power-of-two denominator): honest entries of the widest
#: encodings and float64 coefficients stay far below; a file of 60,000-digit rationals is refused, not computed.
MAX_ENTRY_BITS = 16384
MOMENTS_GRID_BITS = 40
MOMENTS_LEVERAGE_BITS = 10


def canonical_cov_type(cov_type: object) -> str:
    """statsmodels' spelling of a robust ``cov_type`` (HC0–HC3, cluster, HAC; ``hac-panel`` is HAC)."""
    text = str(cov_type)
    name = {"hac-panel": "HAC", "hac": "HAC", "nw-panel": "HAC", "cluster": "cluster"}.get(text.lower(), text.upper())
    if name not in COV_TYPES:
        raise UsageError(f"cov_type {text!r} is not one of {', '.join(COV_TYPES)}", parameters=("cov_type",))
    return name


def meat_of(cov_type: str) -> str:
    """The meat ``cov_type`` needs (:func:`canonical_cov_type` spellings)."""
    return COV_TYPES[canonical_cov_type(cov_type)]


def moments_digest(model_digest: str, meat: str, xtx_inv: Sequence[Sequence[Fraction]] | None) -> str:
    """The digest a residual-moments bundle names: the model's, and for HC2/HC3 also the exact (XᵀX)⁻¹ the
    leverages come from — two releases of one model with different inverses must never add up (their
    difference would be one plant's own leverage-weighted meat)."""
    if meat not in ("hc2", "hc3"):
        return model_digest
    if xtx_inv is None:
        raise UsageError(f"{meat.upper()} needs the pooled (XᵀX)⁻¹, which the released model does not carry "
                         "(it is released with at least min_contributors + 1 contributors)")
    text = model_digest + "|" + ";".join(",".join(f"{v.numerator}/{v.denominator}" for v in row) for row in xtx_inv)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_positive_semidefinite(matrix: Sequence[Sequence[Fraction]], source: str) -> None:
    """Refuse (:class:`~hefed.errors.IntegrityError`) a symmetric rational matrix that is not positive
    semi-definite, exactly: symmetric elimination, where a zero pivot needs a zero row."""
    a = [[Fraction(v) for v in row] for row in matrix]
    k = len(a)
    for j in range(k):
        pivot = a[j][j]
        if pivot < 0 or (pivot == 0 and any(a[j][i] != 0 for i in range(j + 1, k))):
            raise IntegrityError(f"{source}: the meat is not positive semi-definite, which no honest rows give")
        if pivot == 0:
            continue
        for i in range(j + 1, k):
            factor = a[i][j] / pivot
            if factor:
                for col in range(j + 1, k):
                    a[i][col] -= factor * a[j][col]


def design_columns(features: Sequence[str], fit_intercept: bool) -> list[str]:
    """The columns of a meat, in its order: the intercept's column of ones first when fitted, then ``features``."""
    return ([ONES] if fit_intercept else []) + list(features)


def design_scales(features: Sequence[str], fit_intercept: bool, encoding: Encoding) -> list[int]:
    return ([0] if fit_intercept else []) + [encoding.frac_bits_of(f) for f in features]


def meat_bounds(meat: str, features: Sequence[str], fit_intercept: bool, encoding: Encoding, residual_bits: int,
                grid_bits: int, leverage_bits: int, maxlags: int) -> list[tuple[int, int]]:
    """Bounds of one factory's upper-triangle meat entries (then its row count), from public parameters.

    With ``|e·2^S| < 2^residual_bits``, ``|x_a·2^s_a| < 2^bits_a`` and at most ``2^max_rows_bits`` rows, one
    row adds at most ``2^(2·residual_bits + bits_a + bits_b)``, times ``2^(grid_bits + p·leverage_bits)`` for
    HC2/HC3; the cluster meat is the square of a sum of rows, the HAC meat at most ``(L+1)²`` row sums.
    Diagonal entries are non-negative (every meat is positive semi-definite).
    """
    bits = ([0] if fit_intercept else []) + [encoding.value_bits_of(f) for f in features]
    rows = encoding.max_rows_bits
    extra = {"white": rows, "hc2": rows + grid_bits + leverage_bits + 1, "hc3": rows + grid_bits + 2 * leverage_bits
             + 1, "cluster": 2 * rows, "hac": rows + 2 * (maxlags + 1).bit_length()}[meat]
    out: list[tuple[int, int]] = []
    for a, b in upper_triangle_index(len(bits)):
        e = 2 * residual_bits + bits[a] + bits[b] + extra
        out.append((0 if a == b else -((1 << e) - 1), (1 << e) - 1))
    out.append((0, (1 << rows) - 1))
    return out


def meat_integers(meat: str, residuals: np.ndarray, design: np.ndarray, *, grid_bits: int = 0,
                  leverage_bits: int = 0, leverage: tuple[list[list[int]], int] | None = None,
                  maxlags: int = 0, source: str = "data") -> list[list[int]]:
    """One factory's meat (see the module docstring) as exact integers, from its exact integer residuals
    ``e·2^S`` (object array) and design ``x·2^s`` (rows × columns, object array).

    ``leverage`` (HC2/HC3) is ``(B, D)`` with ``h_i = x_iᵀ B x_i / D`` in these integer units (``B`` integers).
    """
    e = residuals
    if meat == "white":
        return weighted_gram(design, e * e)
    if meat in ("hc2", "hc3"):
        if leverage is None:
            raise UsageError(f"a {meat} meat needs the pooled (XᵀX)⁻¹")
        B, D = leverage
        q = np.sum((design @ np.array(B, dtype=object)) * design, axis=1)  # h·D per row, exact
        free = D - q  # (1 − h)·D
        p = 2 if meat == "hc3" else 1
        too_high = np.nonzero([(f << leverage_bits) < D for f in free])[0]
        if len(too_high):
            raise UsageError(f"{source}: row {int(too_high[0]) + 1} has leverage h with 1/(1−h) above "
                             f"2^{leverage_bits} (the study's leverage_bits): its {meat.upper()} weight is not "
                             "bounded; nothing was encrypted")
        num = (e * e) * ((D ** p) << grid_bits)
        den = free ** p
        weights = (2 * num + den) // (2 * den)  # round half up, once per row
        return weighted_gram(design, weights)
    if meat == "cluster":
        u = [int(v) for v in (design * e[:, None]).sum(axis=0)] if len(e) else [0] * design.shape[1]
        return [[a * b for b in u] for a in u]
    if meat == "hac":
        if len(e) < ROWS_PER_LAG * (maxlags + 1):
            raise UsageError(f"{source}: {len(e)} rows are too few for HAC with {maxlags} lags (at least "
                             f"{ROWS_PER_LAG}·(maxlags + 1)): a Newey–West sum with lags near the row count is the "
                             "plant's own score outer product; nothing was encrypted", parameters=("maxlags",))
        s = design * e[:, None]
        L = maxlags
        total = np.zeros((design.shape[1], design.shape[1]), dtype=object)
        total += (L + 1) * (s.T @ s)
        for lag in range(1, min(L, len(s) - 1) + 1):
            gamma = s[lag:].T @ s[:-lag]
            total += (L + 1 - lag) * (gamma + gamma.T)
        return [[int(v) for v in row] for row in total]
    raise UsageError(f"unknown meat {meat!r}")


def leverage_integers(xtx_inv: Sequence[Sequence[Fraction]], scales: Sequence[int]) -> tuple[list[list[int]], int]:
    """``(B, D)`` with ``x_realᵀ A x_real = x_intᵀ B x_int / D`` for ``A`` = the pooled (XᵀX)⁻¹ in real units
    (exact rationals) and ``x_int = x_real·2^scale``."""
    scaled = [[Fraction(v) / (1 << (scales[a] + scales[b])) for b, v in enumerate(row)]
              for a, row in enumerate(xtx_inv)]
    denominator = math.lcm(*(v.denominator for row in scaled for v in row))
    return [[int(v * denominator) for v in row] for row in scaled], denominator


@dataclass
class ResidualMoments:
    """The (consortium's) meat of a robust covariance of a released model, in the data's units."""

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    target: str
    features: list[str]
    fit_intercept: bool
    meat_name: str
    #: k × k exact rationals, in the order of :attr:`columns`.
    meat: list[list[Fraction]]
    n: int
    model_digest: str
    maxlags: int = 0
    grid_bits: int = 0
    contributors: list[str] = field(default_factory=list)
    study: str | None = None

    @property
    def columns(self) -> list[str]:
        return design_columns(self.features, self.fit_intercept)

    def __add__(self, other: ResidualMoments) -> ResidualMoments:
        """The moments of both sets of rows (what the key holder decrypts from their bundles); only moments of one
        model, meat and columns add up."""
        same = ("target", "features", "fit_intercept", "meat_name", "model_digest", "maxlags", "grid_bits")
        if any(getattr(self, name) != getattr(other, name) for name in same):
            raise SchemaMismatchError("residual moments of different models, meats or columns do not add up")
        meat = [[a + b for a, b in zip(r, s, strict=True)] for r, s in zip(self.meat, other.meat, strict=True)]
        return ResidualMoments(self.target, list(self.features), self.fit_intercept, self.meat_name, meat,
                               self.n + other.n, self.model_digest, self.maxlags, self.grid_bits,
                               [*self.contributors, *other.contributors], self.study)

    @property
    def default_cov_type(self) -> str:
        """The cov_type these moments give when none is named: HC1 for HC0/HC1 moments, else their own."""
        return {"white": "HC1", "hc2": "HC2", "hc3": "HC3", "cluster": "cluster", "hac": "HAC"}[self.meat_name]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "target": self.target, "features": list(self.features),
                "fit_intercept": self.fit_intercept, "meat_name": self.meat_name, "n": self.n,
                "model_digest": self.model_digest, "maxlags": self.maxlags, "grid_bits": self.grid_bits,
                "meat": [[format_rational(v) for v in row] for row in self.meat],
                "contributors": list(self.contributors), **study_field(self.study)}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ResidualMoments:
        return cls.from_dict(read_json_object(path, "residual moments"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "residual moments") -> ResidualMoments:
        check_format(obj, source, FORMAT, VERSION, "residual moments")
        obj, study = split_study(obj, source)
        expected = {"format", "version", "target", "features", "fit_intercept", "meat_name", "n", "model_digest",
                    "maxlags", "grid_bits", "meat", "contributors"}
        if set(obj) != expected:
            raise InvalidFileError(f"{source}: residual moments must have exactly the fields {sorted(expected)}")
        features = parse_str_list(obj["features"], source, "features")
        if not isinstance(obj["target"], str) or not isinstance(obj["fit_intercept"], bool):
            raise InvalidFileError(f"{source}: 'target' must be a string and 'fit_intercept' true or false")
        if obj["meat_name"] not in MEATS:
            raise InvalidFileError(f"{source}: 'meat_name' must be one of {', '.join(MEATS)}")
        for name in ("n", "maxlags", "grid_bits"):
            if not isinstance(obj[name], int) or isinstance(obj[name], bool) or obj[name] < 0:
                raise InvalidFileError(f"{source}: '{name}' must be a non-negative integer")
        k = len(features) + int(obj["fit_intercept"])
        meat = obj["meat"]
        if not isinstance(meat, list) or len(meat) != k or not all(isinstance(r, list) and len(r) == k for r in meat):
            raise InvalidFileError(f"{source}: 'meat' must be a {k} × {k} matrix")
        if not all(isinstance(v, str) and len(v) <= MAX_ENTRY_BITS // 3 for row in meat for v in row):
            raise InvalidFileError(f"{source}: 'meat' entries must be exact rationals of at most "
                                   f"{MAX_ENTRY_BITS} bits")
        parsed = [[parse_rational(v, source, "meat") for v in row] for row in meat]
        if any(parsed[a][b] != parsed[b][a] for a in range(k) for b in range(k)):
            raise InvalidFileError(f"{source}: 'meat' must be symmetric")
        if obj["maxlags"] > MAX_LAGS:
            raise InvalidFileError(f"{source}: 'maxlags' is at most {MAX_LAGS}")
        for v in (v for row in parsed for v in row):
            odd = v.denominator >> ((v.denominator & -v.denominator).bit_length() - 1)
            if ((obj["maxlags"] + 1) % odd or v.denominator.bit_length() > MAX_ENTRY_BITS
                    or abs(v.numerator).bit_length() > MAX_ENTRY_BITS):
                raise InvalidFileError(f"{source}: 'meat' entries are not on the grid residual moments are on")
        try:
            check_positive_semidefinite(parsed, source)
        except IntegrityError as exc:
            raise InvalidFileError(str(exc)) from None
        if not isinstance(obj["model_digest"], str):
            raise InvalidFileError(f"{source}: 'model_digest' must be a string")
        return cls(obj["target"], features, obj["fit_intercept"], obj["meat_name"], parsed, obj["n"],
                   obj["model_digest"], obj["maxlags"], obj["grid_bits"],
                   parse_str_list(obj["contributors"], source, "contributors", non_empty=False), study)


def moments_scale_bits(residual_scale: int, meat: str, grid_bits: int) -> int:
    """The meat's integers are in units of ``2^-(2S + s_a + s_b + extra)``: ``extra`` = grid_bits for HC2/HC3."""
    return 2 * residual_scale + (grid_bits if meat in ("hc2", "hc3") else 0)


def moments_from_values(values: Sequence[int], *, meat: str, target: str, features: Sequence[str],
                        fit_intercept: bool, encoding: Encoding, residual_scale: int, grid_bits: int, maxlags: int,
                        model_digest: str, contributors: Sequence[str]) -> ResidualMoments:
    """Exact rationals from the (decrypted) integers: the upper triangle, then the row count."""
    scales = design_scales(features, fit_intercept, encoding)
    k = len(scales)
    index = upper_triangle_index(k)
    if len(values) != len(index) + 1:
        raise ValueError("residual moments: wrong number of values")
    base = moments_scale_bits(residual_scale, meat, grid_bits)
    divisor = maxlags + 1 if meat == "hac" else 1
    out = [[Fraction(0)] * k for _ in range(k)]
    for (a, b), v in zip(index, values, strict=False):
        out[a][b] = out[b][a] = Fraction(int(v), divisor << (base + scales[a] + scales[b]))
    return ResidualMoments(target, list(features), fit_intercept, meat, out, int(values[-1]), model_digest, maxlags,
                           grid_bits if meat in ("hc2", "hc3") else 0, list(contributors))


def moments_to_values(moments: ResidualMoments, encoding: Encoding, residual_scale: int) -> list[int]:
    """The exact integers residual moments travel as (inverse of :func:`moments_from_values`)."""
    scales = design_scales(moments.features, moments.fit_intercept, encoding)
    base = moments_scale_bits(residual_scale, moments.meat_name, moments.grid_bits)
    divisor = moments.maxlags + 1 if moments.meat_name == "hac" else 1
    out = []
    for a, b in upper_triangle_index(len(scales)):
        v = moments.meat[a][b] * (divisor << (base + scales[a] + scales[b]))
        if v.denominator != 1:
            raise ValueError("residual moments are not on the declared scale")
        out.append(v.numerator)
    return [*out, moments.n]


def residual_moments(coef: Sequence[float], intercept: float, fit_intercept: bool, X: np.ndarray, y: np.ndarray,
                     features: Sequence[str], target: str, encoding: Encoding, *, meat: str, model_digest: str,
                     grid_bits: int = MOMENTS_GRID_BITS, leverage_bits: int = MOMENTS_LEVERAGE_BITS,
                     maxlags: int = 0, xtx_inv: Sequence[Sequence[Fraction]] | None = None, source: str = "data",
                     rounding: Rounding | None = None) -> ResidualMoments:
    """A factory's own residual moments of a model (see the module docstring) on its rows ``X``, ``y``."""
    residuals, scale, columns, _ = residual_integers(coef, intercept, X, y, features, target, encoding, source,
                                                     rounding)
    ones = [np.ones(len(y), dtype=object) * 1] if fit_intercept else []
    design = np.empty((len(y), len(columns) + len(ones)), dtype=object)
    for j, column in enumerate(ones + columns):
        design[:, j] = column
    scales = design_scales(features, fit_intercept, encoding)
    leverage = None
    if meat in ("hc2", "hc3"):
        if xtx_inv is None:
            raise UsageError(f"{meat.upper()} needs the pooled (XᵀX)⁻¹, which the released model does not carry "
                             "(it is released with at least min_contributors + 1 contributors)")
        leverage = leverage_integers(xtx_inv, scales)
    integers = meat_integers(meat, residuals, design, grid_bits=grid_bits, leverage_bits=leverage_bits,
                             leverage=leverage, maxlags=maxlags, source=source)
    values = [integers[a][b] for a, b in upper_triangle_index(len(scales))] + [len(y)]
    return moments_from_values(values, meat=meat, target=target, features=features, fit_intercept=fit_intercept,
                               encoding=encoding, residual_scale=scale, grid_bits=grid_bits, maxlags=maxlags,
                               model_digest=model_digest, contributors=[])
