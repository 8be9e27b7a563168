"""Kind ``residual_moments``: the second round of robust and cluster-robust inference.

After the key holder releases (and signs) the pooled model, each factory computes on the rows it
used for the statistics the exact residuals of that model and, for the covariance type the study
agreed, one meat (:mod:`hefed.stats._moments`): ``Σ e²·x xᵀ`` (HC0/HC1), the leverage-weighted
``Σ e²/(1−h)^p·x xᵀ`` (HC2/HC3, from the released pooled ``(XᵀX)⁻¹``), its score's outer product
(cluster by plant) or its Newey–West sum within its own time order (HAC). One contribution packs the
meat's upper triangle and the row count; ``model_digest`` names the model, so moments of different
models never mix, and the row count lets the analyst check that they cover the statistics' rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from ..data import PreprocessReport, select_xy
from ..errors import IntegrityError, InvalidFileError, TooFewContributorsError, UsageError
from ..stats import (
    MAX_LAGS,
    MEATS,
    MIN_CLUSTERS,
    MOMENTS_GRID_BITS,
    MOMENTS_LEVERAGE_BITS,
    Encoding,
    ResidualMoments,
    check_positive_semidefinite,
    meat_bounds,
    meat_of,
    moments_digest,
    moments_from_values,
    moments_to_values,
    residual_bits,
    residual_moments,
    residual_scale_bits,
)
from ._registry import Computed, Header, Kind, register


class ReleasedModel(Protocol):
    """What residual moments need of a released model: its columns, float64 coefficients, digest and, for
    HC2/HC3, the pooled (XᵀX)⁻¹ it was released with."""

    target_: str
    feature_names_in_: Any
    coef_: np.ndarray
    intercept_: float
    fit_intercept: bool

    def digest(self) -> str: ...

    def released_xtx_inv(self) -> list[list[Fraction]] | None: ...

    def classical_xtx_inv(self) -> list[list[Fraction]] | None: ...


@dataclass(frozen=True)
class ResidualMomentsRequest:
    """Ask a factory for the meat of ``cov_type`` (statsmodels' names: HC0, HC1, HC2, HC3, cluster, HAC) of a
    released ``model`` on the rows it used; ``maxlags`` for HAC, ``grid_bits`` and ``leverage_bits`` for HC2/HC3."""

    model: ReleasedModel
    cov_type: str = "HC1"
    maxlags: int = 0
    grid_bits: int = MOMENTS_GRID_BITS
    leverage_bits: int = MOMENTS_LEVERAGE_BITS

    def __post_init__(self) -> None:
        meat = meat_of(self.cov_type)
        for name, value, hi in (("maxlags", self.maxlags, MAX_LAGS), ("grid_bits", self.grid_bits, 256),
                                ("leverage_bits", self.leverage_bits, 64)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
                raise UsageError(f"{name} must be an integer in [0, {hi}]", parameters=(name,))
        if meat == "hac" and self.maxlags < 1:
            raise UsageError("HAC needs maxlags of at least 1", parameters=("maxlags",))

    @property
    def meat(self) -> str:
        return meat_of(self.cov_type)


def moments_parameters(request: ResidualMomentsRequest, encoding: Encoding, target: str) -> dict[str, Any]:
    """The public parameters of a request's bundles (the same at every factory): the meat, its grids, and the
    model's residual scale and bound and digest."""
    model = request.model
    coef = [float(c) for c in model.coef_]
    features = [str(f) for f in model.feature_names_in_]
    meat = request.meat
    leveraged = meat in ("hc2", "hc3")
    xtx_inv = model.released_xtx_inv() if leveraged else None
    return {"meat": MEATS.index(meat), "maxlags": request.maxlags if meat == "hac" else 0,
            "grid_bits": request.grid_bits if leveraged else 0,
            "leverage_bits": request.leverage_bits if leveraged else 0,
            "fit_intercept": int(bool(model.fit_intercept)),
            "scale_bits": residual_scale_bits(coef, model.intercept_, features, target, encoding),
            "residual_bits": residual_bits(coef, model.intercept_, features, target, encoding),
            "model_digest": moments_digest(model.digest(), meat, xtx_inv)}


class ResidualMomentsKind(Kind[ResidualMoments, ResidualMomentsRequest]):
    name = "residual_moments"
    description = ("the meat of a robust covariance (HC0–HC3, cluster by plant, HAC) of a released model on each "
                   "factory's rows: its robust standard errors")
    parameter_names = ("meat", "maxlags", "grid_bits", "leverage_bits", "fit_intercept", "scale_bits",
                       "residual_bits", "model_digest")
    runtime_fields = ("model",)
    needs_signed_model = True
    result_type = ResidualMoments
    result_format = ResidualMoments.FORMAT
    order = 55
    request_type = ResidualMomentsRequest

    def _check_parameters(self, parameters: dict[str, Any], source: str) -> None:
        if parameters["meat"] >= len(MEATS) or parameters["fit_intercept"] > 1:
            raise InvalidFileError(f"{source}: 'meat' or 'fit_intercept' of a residual_moments bundle is out of range")
        if parameters["maxlags"] > MAX_LAGS:
            raise InvalidFileError(f"{source}: 'maxlags' is at most {MAX_LAGS}")

    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        return meat_bounds(MEATS[parameters["meat"]], features, bool(parameters["fit_intercept"]), encoding,
                           parameters["residual_bits"], parameters["grid_bits"], parameters["leverage_bits"],
                           parameters["maxlags"])

    def values(self, sums: ResidualMoments, header: Header) -> list[int]:
        return moments_to_values(sums, header.encoding, header.parameters["scale_bits"])

    def result(self, values: Sequence[int], header: Header) -> ResidualMoments:
        p = header.parameters
        return moments_from_values(values, meat=MEATS[p["meat"]], target=header.target, features=header.features,
                                   fit_intercept=bool(p["fit_intercept"]), encoding=header.encoding,
                                   residual_scale=p["scale_bits"], grid_bits=p["grid_bits"], maxlags=p["maxlags"],
                                   model_digest=p["model_digest"], contributors=header.contributors)

    def check_result(self, result: ResidualMoments, threshold: int = 1, *, refuse: bool = True) -> None:
        if result.n < 1:
            raise IntegrityError(f"decrypted {self.name} aggregate covers no rows")
        check_positive_semidefinite(result.meat, f"decrypted {self.name} aggregate")
        plants = len(set(result.contributors))
        if result.meat_name == "cluster" and plants < max(MIN_CLUSTERS, threshold):
            raise TooFewContributorsError(
                f"a cluster meat of {plants} plants is not decrypted (at least {max(MIN_CLUSTERS, threshold)}): "
                "the sum of few plants' score outer products gives a colluding plant the others' scores; use HC1 "
                "or HC3 (cluster-robust errors from so few plants are biased downwards anyway)")

    def check_study(self, agreed: Mapping[str, Any], min_contributors: int) -> None:
        """Cluster meats only in studies whose threshold is at least :data:`~hefed.stats.MIN_CLUSTERS`: the
        factories then contribute only to rounds of that many (the masks of a roster study enforce it), so a key
        holder skipping its own check still gets no cluster meat of few plants."""
        if meat_of(str(agreed.get("cov_type", "HC1"))) == "cluster" and min_contributors < MIN_CLUSTERS:
            raise UsageError(f"study: cluster-robust residual moments need min_contributors of at least "
                             f"{MIN_CLUSTERS} (a cluster meat of few plants gives a colluding plant the others' "
                             "scores); use HC1 or HC3", parameters=("cov_type", "min_contributors"))

    def parameters_agree(self, parameters: Mapping[str, Any], agreed: Mapping[str, Any]) -> bool:
        """Whether a bundle's parameters are those a study's agreed request parameters make (the model, and so
        the scale, bound and digest, is the run's: the signed release the factory checked)."""
        try:
            request = ResidualMomentsRequest(_NO_MODEL, **agreed)
        except (TypeError, UsageError):
            return False
        leveraged = request.meat in ("hc2", "hc3")
        expected = {"meat": MEATS.index(request.meat), "maxlags": request.maxlags if request.meat == "hac" else 0,
                    "grid_bits": request.grid_bits if leveraged else 0,
                    "leverage_bits": request.leverage_bits if leveraged else 0}
        return all(parameters.get(name) == value for name, value in expected.items())

    def compute(self, table: Any, encoding: Encoding, request: ResidualMomentsRequest) -> Computed[ResidualMoments]:
        model = request.model
        if getattr(model, "weights_", None) or getattr(model, "fixed_effects_", 0) or getattr(model, "ridge", 0):
            raise UsageError("residual moments are for OLS models (not weighted, ridge or fixed-effects ones)",
                             parameters=("cov_type",))
        features = [str(f) for f in model.feature_names_in_]
        frame, report, holdout = table.prepared()  # the rows the statistics used: cleaned, holdout kept back
        X, y, features = select_xy(frame, table.target, features, table.source)
        parameters = moments_parameters(request, encoding, table.target)
        report = report if report is not None else PreprocessReport(len(y), len(y))
        moments = residual_moments(
            [float(c) for c in model.coef_], model.intercept_, bool(model.fit_intercept), X, y, features,
            table.target, encoding, meat=request.meat, model_digest=parameters["model_digest"],
            grid_bits=request.grid_bits, leverage_bits=request.leverage_bits, maxlags=request.maxlags,
            xtx_inv=model.released_xtx_inv() if request.meat in ("hc2", "hc3") else None, source=table.source,
            rounding=report.rounding)
        return Computed(moments, Header(table.target, tuple(features), encoding, parameters), report, holdout)


#: Stands for the run's model when only the agreed parameters of a request are compared.
_NO_MODEL: Any = None

RESIDUAL_MOMENTS = register(ResidualMomentsKind())
