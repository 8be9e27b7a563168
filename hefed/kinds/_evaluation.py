"""Kind ``evaluation``: exact residual sums of a published model on a factory's held-out rows.

One contribution packs ``n, Σr², Σ|r|, Σy, Σy²`` of the model's residuals ``r`` on the
factory's holdout, residuals scaled to integers by ``2^scale_bits`` and bounded by
``2^residual_bits`` (see :mod:`hefed.stats`); ``model_digest`` names the model evaluated, so
evaluations of different models never mix. The decrypted sum gives the consortium's MSE,
RMSE, MAE and R², and no factory's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..data import PreprocessReport, select_xy
from ..errors import IntegrityError, UsageError
from ..stats import (
    Encoding,
    EvaluationSums,
    Rounding,
    residual_bits,
    residual_scale_bits,
    residual_values,
    sums_from_values,
    sums_to_values,
)
from ._registry import Computed, Header, Kind, register


class PublishedModel(Protocol):
    """What an evaluation needs of a model: its columns, float64 coefficients and digest."""

    target_: str
    feature_names_in_: Any
    coef_: np.ndarray
    intercept_: float

    def digest(self) -> str: ...


@dataclass(frozen=True)
class EvaluationRequest:
    """Ask a factory for the exact residual sums of ``model`` on its (holdout) table."""

    model: PublishedModel


def evaluation_parameters(model: PublishedModel, encoding: Encoding, target: str | None = None) -> dict[str, Any]:
    """Public scale, residual bound and model digest of a model's evaluation bundles (same at every factory)."""
    coef = [float(c) for c in model.coef_]
    features = [str(f) for f in model.feature_names_in_]
    target = target or model.target_
    return {"scale_bits": residual_scale_bits(coef, model.intercept_, features, target, encoding),
            "residual_bits": residual_bits(coef, model.intercept_, features, target, encoding),
            "model_digest": model.digest()}


def evaluation_sums(model: PublishedModel, table: Any, encoding: Encoding,
                    rounding: Rounding | None = None) -> tuple[EvaluationSums, dict[str, Any]]:
    """The exact residual sums of ``model`` on the whole of ``table`` (nothing cleaned), and the parameters;
    values finer than their grid are rounded and counted in ``rounding`` (refused without it)."""
    features = [str(f) for f in model.feature_names_in_]
    X, y, features = select_xy(table.frame(), table.target, features, table.source)
    parameters = evaluation_parameters(model, encoding, table.target)
    values = residual_values([float(c) for c in model.coef_], model.intercept_, X, y, features, table.target,
                             encoding, table.source, rounding)
    return sums_from_values(values, parameters["scale_bits"], encoding, table.target, features, []), parameters


class EvaluationKind(Kind[EvaluationSums, EvaluationRequest]):
    name = "evaluation"
    description = "exact residual sums of a published model on each factory's holdout: consortium MSE, MAE, R²"
    parameter_names = ("scale_bits", "residual_bits", "model_digest")
    runtime_fields = ("model",)
    cleans_rows = False
    result_type = EvaluationSums
    result_format = EvaluationSums.FORMAT
    order = 50
    request_type = EvaluationRequest
    travels_by_flower = True

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        """Bounds of (n, Σr², Σ|r|, Σy, Σy²) with ``|r·2^scale| < 2^residual_bits``."""
        rows, vb, rb = encoding.max_rows_bits, encoding.value_bits_of(target), parameters["residual_bits"]
        return [
            (0, (1 << rows) - 1),
            (0, (1 << (rows + 2 * rb)) - 1),
            (0, (1 << (rows + rb)) - 1),
            (-(1 << (rows + vb)) + 1, (1 << (rows + vb)) - 1),
            (0, (1 << (rows + 2 * vb)) - 1),
        ]

    def values(self, sums: EvaluationSums, header: Header) -> list[int]:
        return sums_to_values(sums, header.parameters["scale_bits"], header.encoding)

    def result(self, values: Sequence[int], header: Header) -> EvaluationSums:
        return sums_from_values(values, header.parameters["scale_bits"], header.encoding, header.target,
                                header.features, header.contributors)

    def check_result(self, result: EvaluationSums, threshold: int = 1, *, refuse: bool = True) -> None:
        if result.n < 1:
            raise IntegrityError(f"decrypted {self.name} aggregate covers no rows")

    def compute(self, table: Any, encoding: Encoding, request: EvaluationRequest) -> Computed[EvaluationSums]:
        if table.holdout is not None or table.cleaning is not None:
            raise UsageError("an evaluation reads the holdout table as it is: no cleaning and no further holdout")
        report = PreprocessReport(0, 0)
        sums, parameters = evaluation_sums(request.model, table, encoding, report.rounding)
        report.rows_in = report.rows_out = sums.n
        return Computed(sums, Header(sums.target, tuple(sums.features), encoding, parameters), report)


EVALUATION = register(EvaluationKind())
