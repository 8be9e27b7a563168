"""Kind ``glm_round``: one IRLS iteration of a generalised linear model, bound to its signed coefficients.

One contribution packs the exact integer sums of :class:`~hefed.stats._glm.GLMRoundSums` — ``XᵀŴX``
(upper triangle), ``XᵀÛ``, ``n``, ``Σy``, the deviance, Pearson and constant parts, each row's
working weight and weighted working response rounded once to the public grid ``2^-grid_bits`` —
then the 0/1 support of the design's columns (as ``statistics``: the key holder refuses a column
fewer factories than its threshold fill). Its public parameters name the family and link, the
declared grid and bounds, the iteration, whether it is a round of the intercept-only (null) fit, and
``coef_digest``: the digest of the key-holder-signed coefficients the round used. Bundles of two
iterations, two fits or two studies therefore never add up (the aggregator refuses bundles whose
parameters differ), and a factory computes a round only for coefficients the study's key holder signed
for that iteration (checked one layer up, :mod:`hefed.roles`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..data import PreprocessReport, numeric_column, select_xy
from ..errors import IntegrityError, InvalidFileError, SingledOutColumnError, SingledOutColumnWarning, UsageError
from ..stats import Encoding
from ..stats._glm import (
    DEFAULT_GRID_BITS,
    DEFAULT_RESPONSE_BITS,
    DEFAULT_ROW_BITS,
    DEFAULT_WEIGHT_BITS,
    FAMILY_CODES,
    LINK_CODES,
    GLMGrid,
    GLMRoundSums,
    check_family,
    design_columns,
    glm_round_sums,
    glm_support_columns,
    glm_support_size,
    round_bounds,
)
from ..stats._support import describe_problems, support_problems
from ._registry import Computed, Header, Kind, register

_FAMILY_OF = {code: name for name, code in FAMILY_CODES.items()}
_LINK_OF = {code: name for name, code in LINK_CODES.items()}


class RoundCoefficients(Protocol):
    """What a round needs of the coefficients it uses (signed by the key holder, checked by the caller)."""

    family: str
    link: str
    iteration: int
    null_model: bool
    #: In design order (the intercept, then the features sorted by name); ``None`` at iteration 0.
    params: tuple[float, ...] | None

    def digest(self) -> str: ...


@dataclass(frozen=True)
class GLMRoundRequest:
    """Ask a factory for one IRLS round's sums at ``model`` (the signed coefficients; a study fixes the rest).

    ``offset`` / ``exposure`` name a column of the factory's table added to the linear predictor (its log,
    for ``exposure``), as statsmodels' ``GLM(offset=, exposure=)``.
    """

    family: str = "binomial"
    link: str | None = None
    grid_bits: int = DEFAULT_GRID_BITS
    weight_bits: int = DEFAULT_WEIGHT_BITS
    response_bits: int = DEFAULT_RESPONSE_BITS
    row_bits: int = DEFAULT_ROW_BITS
    offset: str | None = None
    exposure: str | None = None
    model: RoundCoefficients | None = None

    def __post_init__(self) -> None:
        check_family(self.family, self.link)
        self.grid  # noqa: B018  (checks the grid and bounds)
        if self.offset is not None and self.exposure is not None:
            raise UsageError("give an offset or an exposure column, not both")

    @property
    def grid(self) -> GLMGrid:
        return GLMGrid(self.grid_bits, self.weight_bits, self.response_bits, self.row_bits)

    @property
    def family_link(self) -> tuple[str, str]:
        return check_family(self.family, self.link)


def round_parameters(family: str, link: str, grid: GLMGrid, iteration: int, null_model: bool,
                     coef_digest: str) -> dict[str, Any]:
    """The public parameters of a round's bundles (the same at every factory)."""
    return {"family_code": FAMILY_CODES[family], "link_code": LINK_CODES[link], "iteration": iteration,
            "null_model": int(null_model), **grid.to_dict(), "coef_digest": coef_digest}


def _grid(parameters: Mapping[str, Any]) -> GLMGrid:
    return GLMGrid(parameters["grid_bits"], parameters["weight_bits"], parameters["response_bits"],
                   parameters["row_bits"])


class GLMRoundKind(Kind[GLMRoundSums, GLMRoundRequest]):
    name = "glm_round"
    description = ("one IRLS iteration of a GLM (binomial, Poisson, Gamma) at the key holder's signed coefficients: "
                   "XᵀWX, XᵀWz, deviance and Pearson parts")
    parameter_names = ("family_code", "link_code", "iteration", "null_model", "grid_bits", "weight_bits",
                       "response_bits", "row_bits", "coef_digest")
    runtime_fields = ("model",)
    result_type = GLMRoundSums
    result_format = GLMRoundSums.FORMAT
    order = 60
    request_type = GLMRoundRequest
    travels_by_flower = False

    def _check_parameters(self, parameters: dict[str, Any], source: str) -> None:
        family = _FAMILY_OF.get(parameters["family_code"])
        link = _LINK_OF.get(parameters["link_code"])
        try:
            check_family(family, link)
            _grid(parameters)
        except UsageError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        if parameters["null_model"] not in (0, 1):
            raise InvalidFileError(f"{source}: 'null_model' must be 0 or 1")

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        return round_bounds(features, target, encoding, _grid(parameters), bool(parameters["null_model"]))

    def values(self, sums: GLMRoundSums, header: Header) -> list[int]:
        support = sums.support
        if support is None or len(support) != glm_support_size(sums.features):
            raise IntegrityError("GLM round sums carry no support indicators of their columns")
        return [*sums.to_vector(), *support]

    def result(self, values: Sequence[int], header: Header) -> GLMRoundSums:
        p = header.parameters
        family, link = _FAMILY_OF[p["family_code"]], _LINK_OF[p["link_code"]]
        null_model = bool(p["null_model"])
        size = GLMRoundSums.vector_size(len(design_columns(header.features, null_model)))
        empty = GLMRoundSums(family, link, header.target, list(header.features), header.encoding, _grid(p),
                             p["iteration"], p["coef_digest"], null_model, 0, 0, [], [], 0, 0, 0, 0,
                             list(header.contributors))
        result = empty.with_vector(values[:size])
        result.support = list(values[size:])
        return result

    def check_result(self, result: GLMRoundSums, threshold: int = 1, *, refuse: bool = True) -> None:
        m = len(result.xtwx)
        if result.n < 1 or any(result.xtwx[a][a] < 0 for a in range(m)) or result.pearson < 0:
            raise IntegrityError(f"decrypted {self.name} aggregate is impossible (no rows, or negative sums of "
                                 "non-negative terms)")
        if result.support is None:
            return
        problems = support_problems(glm_support_columns(result.features), result.support, threshold,
                                    design_columns(result.features)[0])
        if problems:
            message = describe_problems(problems, threshold, "decrypted GLM round")
            if refuse:
                raise SingledOutColumnError(message)
            warnings.warn(message, SingledOutColumnWarning, stacklevel=3)

    def bundle_parameters(self, request: GLMRoundRequest) -> dict[str, Any]:
        model = request.model
        if model is None:
            raise UsageError("a glm_round request needs the key holder's signed coefficients of the round")
        family, link = request.family_link
        return round_parameters(family, link, request.grid, model.iteration, model.null_model, model.digest())

    def compute(self, table: Any, encoding: Encoding, request: GLMRoundRequest) -> Computed[GLMRoundSums]:
        model = request.model
        if model is None:
            raise UsageError("a glm_round request needs the key holder's signed coefficients of the round")
        family, link = request.family_link
        if (model.family, model.link) != (family, link):
            raise UsageError(f"the coefficients are of a {model.family}/{model.link} model, the study's rounds of a "
                             f"{family}/{link} one")
        frame, report, holdout = table.prepared()
        X, y, features = select_xy(frame, table.target, table.feature_list, table.source)
        offset = None
        column = request.offset or request.exposure
        if column is not None:
            if column not in frame.columns:
                raise UsageError(f"{table.source}: the offset/exposure column {column!r} is not in the table")
            offset = numeric_column(frame, column, table.source)
            if request.exposure is not None:
                if not (offset > 0).all():
                    raise UsageError(f"{table.source}: column {column!r}: an exposure must be positive")
                offset = np.log(offset)
        report = report or PreprocessReport(len(y), len(y))
        sums = glm_round_sums(X, y, features, table.target, encoding, family, link, request.grid,
                              model.params, model.iteration, model.digest(), offset=offset,
                              null_model=model.null_model, factory_id=table.factory_id, source=table.source,
                              rounding=report.rounding)
        header = Header(sums.target, tuple(sums.features), encoding, self.bundle_parameters(request))
        return Computed(sums, header, report, holdout)


GLM_ROUND = register(GLMRoundKind())
