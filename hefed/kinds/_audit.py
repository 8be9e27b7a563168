"""Kind ``audit``: the exact sums of a relative accuracy audit of a published model (PEMS, EPA PS-16).

On paired runs — a factory's process data, which the model turns into its prediction ŷ, and the reference
method's measurement y of the same period (the table's target column) — the audit needs the differences
``d = ŷ − y`` (the PEMS value minus the reference, as PS-16 writes them). One contribution packs

    n,   Σ d·2^S,   Σ (d·2^S)²,   Σ y·2^F

as exact integers: the model's float64 coefficients are dyadic rationals and the data are encoded on the
public grid, so ``d·2^S`` is an integer for the public scale ``S`` of the evaluation kind
(:func:`hefed.stats.residual_scale_bits`; ``2^F`` is the target's grid). ``model_digest`` names the model
audited, so audits of different models never add up. The decrypted sum gives the consortium's mean difference,
its standard deviation and the mean reference value — so the relative accuracy and the variability test
(:mod:`hefed.monitoring`) — and nothing of any one factory.

Σ d² and Σ y are those of the evaluation kind (Σ r² with r = −d; :func:`~hefed.stats.residual_values`); Σ d
is added here by linearity: ``Σ r·2^S = 2^(S−F_y)·Σ y·2^F_y − n·b·2^S − Σ_j θ_j 2^(S−F_j)·Σ x_j·2^F_j``, every
term an exact integer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import (
    atomic_write_json,
    check_format,
    format_rational,
    is_digest,
    parse_rational,
    parse_str_list,
    read_json_object,
    split_study,
    study_field,
)
from ..data import PreprocessReport, select_xy
from ..errors import (
    IntegrityError,
    InvalidFileError,
    SingledOutColumnError,
    SingledOutColumnWarning,
    UsageError,
)
from ..stats import Encoding, Rounding, describe_problems, residual_scale_bits, residual_values
from ._evaluation import PublishedModel, evaluation_parameters
from ._registry import Computed, Header, Kind, register

FORMAT = "hefed.audit"
VERSION = 1


@dataclass
class AuditSums:
    """Exact sums of paired differences ``d = prediction − reference`` and of the reference values.

    ``sum_d``, ``sum_d2`` and ``sum_reference`` are exact rationals in the data's units; ``model_digest`` names
    the model whose predictions were audited (``None`` for pairs read from a prediction column).
    """

    FORMAT: ClassVar[str] = FORMAT

    target: str
    features: list[str]
    n: int
    sum_d: Fraction
    sum_d2: Fraction
    sum_reference: Fraction
    model_digest: str | None = None
    contributors: list[str] = field(default_factory=list)
    #: The digest of the study these sums belong to, if any.
    study: str | None = None
    #: Per feature the audited model weights (non-zero coefficient), how many factories have a non-zero value in
    #: it (0 for a column the model does not use; None for local pairs): the per-column disclosure rule of the
    #: statistics applies to audits too.
    support: list[int] | None = None

    @classmethod
    def from_pairs(cls, prediction: Sequence[float], reference: Sequence[float], *, target: str = "reference",
                   model_digest: str | None = None) -> AuditSums:
        """The exact sums of float pairs (every float64 is a rational: nothing is rounded)."""
        if len(prediction) != len(reference):
            raise UsageError("an audit needs as many predictions as reference values")
        d = [Fraction(float(p)) - Fraction(float(r)) for p, r in zip(prediction, reference, strict=True)]
        return cls(target, [], len(d), sum(d, Fraction(0)), sum((v * v for v in d), Fraction(0)),
                   sum((Fraction(float(r)) for r in reference), Fraction(0)), model_digest)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "target": self.target, "features": self.features,
            "contributors": self.contributors,
            "exact": {"n": self.n, "sum_d": format_rational(self.sum_d), "sum_d2": format_rational(self.sum_d2),
                      "sum_reference": format_rational(self.sum_reference)},
            **study_field(self.study),
        }
        if self.model_digest is not None:
            out["model_digest"] = self.model_digest
        if self.support is not None:
            out["support"] = list(self.support)
        return out

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AuditSums:
        return cls.from_dict(read_json_object(path, "audit"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "audit") -> AuditSums:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "audit")
        exact = obj.get("exact")
        if (not isinstance(exact, dict) or not isinstance(exact.get("n"), int) or isinstance(exact["n"], bool)
                or exact["n"] < 1):
            raise InvalidFileError(f"{source}: 'exact' audit sums missing or malformed")
        values = {k: parse_rational(exact.get(k), source, f"exact.{k}", non_negative=k == "sum_d2")
                  for k in ("sum_d", "sum_d2", "sum_reference")}
        target = obj.get("target", "")
        digest = obj.get("model_digest")
        if not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'target' must be a string")
        if digest is not None and not is_digest(digest):
            raise InvalidFileError(f"{source}: 'model_digest' must be 32 hex digits")
        features = parse_str_list(obj.get("features", []), source, "features", non_empty=False)
        support = obj.get("support")
        if support is not None and (not isinstance(support, list) or len(support) != len(features) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in support)):
            raise InvalidFileError(f"{source}: 'support' must count factories for each feature")
        sums = cls(target, features, exact["n"], values["sum_d"], values["sum_d2"], values["sum_reference"], digest,
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False), study,
                   support)
        check_audit_sums(sums, source)
        return sums


def check_audit_sums(sums: AuditSums, source: str = "audit") -> None:
    """Refuse sums no real pairs give: Σd² below (Σd)²/n (Cauchy–Schwarz)."""
    if sums.n < 1 or sums.sum_d2 * sums.n < sums.sum_d * sums.sum_d:
        raise IntegrityError(f"{source}: the audit sums are inconsistent (Σd² < (Σd)²/n): no real pairs give them")


@dataclass(frozen=True)
class AuditRequest:
    """Ask a factory for the exact audit sums of ``model``'s predictions against its reference measurements."""

    model: PublishedModel


def audit_values(model: PublishedModel, X: Any, y: Any, features: Sequence[str], target: str, encoding: Encoding,
                 source: str = "data", rounding: Rounding | None = None) -> list[int]:
    """``(n, Σ d·2^S, Σ (d·2^S)², Σ y·2^F)`` as exact integers for ``d = ŷ − y`` (see the module)."""
    coef = [float(c) for c in model.coef_]
    intercept = float(model.intercept_)
    n, sse, _sae, sum_y, _syy = residual_values(coef, intercept, X, y, features, target, encoding, source, rounding)
    scale = residual_scale_bits(coef, intercept, features, target, encoding)
    again = Rounding()  # the columns were encoded (and any rounding counted) just above
    total_r = (sum_y << (scale - encoding.frac_bits_of(target))) - n * int(Fraction(intercept) * 2**scale)
    for j, (name, c) in enumerate(zip(features, coef, strict=True)):
        theta = Fraction(c)
        k = theta.denominator.bit_length() - 1
        column = sum(int(v) for v in encoding.encode_column(X[:, j], name, source, again))
        total_r -= column * (int(theta * 2**k) << (scale - encoding.frac_bits_of(name) - k))
    return [n, -total_r, sse, sum_y]


def audit_sums(model: PublishedModel, table: Any, encoding: Encoding,
               rounding: Rounding | None = None) -> tuple[AuditSums, dict[str, Any]]:
    """A factory's exact audit sums of ``model`` on the whole of ``table`` (nothing cleaned), and the bundle's
    public parameters (those of an evaluation of the same model)."""
    features = [str(f) for f in model.feature_names_in_]
    X, y, features = select_xy(table.frame(), table.target, features, table.source)
    parameters = evaluation_parameters(model, encoding, table.target)
    values = audit_values(model, X, y, features, table.target, encoding, table.source, rounding)
    # the support of each column the model uses: a column it does not weight reveals nothing through the sums
    values += [int(bool(float(c) != 0 and np.any(X[:, j] != 0))) for j, c in enumerate(model.coef_)]
    header = Header(table.target, tuple(features), encoding, parameters)
    return AUDIT.result(values, header), parameters


class AuditKind(Kind[AuditSums, AuditRequest]):
    name = "audit"
    description = ("exact sums of a published model's differences from reference measurements (n, Σd, Σd², "
                   "Σ reference): the consortium's relative accuracy audit")
    parameter_names = ("scale_bits", "residual_bits", "model_digest")
    runtime_fields = ("model",)
    cleans_rows = False
    result_type = AuditSums
    result_format = FORMAT
    order = 55
    request_type = AuditRequest

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        """Bounds of (n, Σd, Σd², Σy) with ``|d·2^scale| < 2^residual_bits``, then one 0/1 support bit a feature."""
        rows, vb, rb = encoding.max_rows_bits, encoding.value_bits_of(target), parameters["residual_bits"]
        return [
            (0, (1 << rows) - 1),
            (-(1 << (rows + rb)) + 1, (1 << (rows + rb)) - 1),
            (0, (1 << (rows + 2 * rb)) - 1),
            (-(1 << (rows + vb)) + 1, (1 << (rows + vb)) - 1),
            *[(0, 1)] * len(features),
        ]

    def values(self, sums: AuditSums, header: Header) -> list[int]:
        s = Fraction(2) ** header.parameters["scale_bits"]
        f = Fraction(2) ** header.encoding.frac_bits_of(sums.target)
        scaled = [sums.sum_d * s, sums.sum_d2 * s * s, sums.sum_reference * f]
        if any(v.denominator != 1 for v in scaled):
            raise ValueError("audit sums are not on the declared scale")
        if sums.support is None or len(sums.support) != len(header.features):
            raise ValueError("an audit bundle carries the support of each feature")
        return [sums.n, *(v.numerator for v in scaled), *sums.support]

    def result(self, values: Sequence[int], header: Header) -> AuditSums:
        s = Fraction(2) ** header.parameters["scale_bits"]
        f = Fraction(2) ** header.encoding.frac_bits_of(header.target)
        n, sum_d, sum_d2, sum_y, *support = values
        return AuditSums(header.target, list(header.features), int(n), sum_d / s, sum_d2 / (s * s), sum_y / f,
                         header.parameters["model_digest"], list(header.contributors), support=list(support))

    def check_result(self, result: AuditSums, threshold: int = 1, *, refuse: bool = True) -> None:
        if result.n < 1:
            raise IntegrityError(f"decrypted {self.name} aggregate covers no rows")
        check_audit_sums(result, f"decrypted {self.name} aggregate")
        if result.support is not None:  # the statistics' per-column rule: a model weighting a column that fewer
            # factories than the threshold fill would read their own sums of it (Σd + Σ reference)
            problems = [name for name, count in zip(result.features, result.support, strict=True)
                        if 0 < count < threshold and threshold >= 2]
            if problems:
                message = describe_problems(problems, threshold, f"decrypted {self.name} aggregate")
                if refuse:
                    raise SingledOutColumnError(message)
                warnings.warn(message, SingledOutColumnWarning, stacklevel=4)

    def compute(self, table: Any, encoding: Encoding, request: AuditRequest) -> Computed[AuditSums]:
        if table.holdout is not None or table.cleaning is not None:
            raise UsageError("an audit reads the paired runs as they are: no cleaning and no holdout")
        report = PreprocessReport(0, 0)
        sums, parameters = audit_sums(request.model, table, encoding, report.rounding)
        report.rows_in = report.rows_out = sums.n
        return Computed(sums, Header(sums.target, tuple(sums.features), encoding, parameters), report)


AUDIT = register(AuditKind())
