"""The fitted global model: scikit-learn style attributes, prediction, JSON files.

A :class:`LinearModel` is what :func:`hefed.solve` returns. Fitted attributes
end in ``_`` as in scikit-learn: ``coef_`` (in the order of
``feature_names_in_``), ``intercept_``, ``n_features_in_``; ``predict`` and
``score`` behave as ``sklearn.linear_model.LinearRegression``'s. The float64
values are the exact solution correctly rounded (certified, see
:mod:`hefed.models._certified`); the exact rationals (``coef_exact_``) are
computed on request, and saved only when asked (``save(path, exact=True)``),
so anyone can check the rounding.

Files: ``model.json`` version 2 holds the float64 results and the inference
with its full covariance matrix (what prediction intervals need); the exact
rationals only when asked. Version 1 files (which always held the exact
rationals) still load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._files import (
    atomic_write_json,
    check_names,
    format_rational,
    is_version,
    parse_rational,
    parse_str_list,
    read_json_object,
    split_study,
    study_field,
)
from ..errors import DataError, InvalidFileError, SchemaMismatchError, UsageError
from ..protocol import ReleaseSignature, body_digest, open_release
from ..stats import ONES, ResidualMoments, SufficientStatistics, meat_of, moments_digest, r2_score, r_squared
from ._certified import Weighting
from ._inference import InferenceResults, inference
from ._prediction import PredictionResults, TotalResults, get_prediction, predict_total
from ._robust import robust_inference

FORMAT = "hefed.model"
VERSION = 2
#: Files of version 1 always held the exact rationals; they still load.
VERSION_EXACT = 1


#: Contributors a model file's full covariance needs beyond the disclosure threshold (see
#: :func:`covariance_releasable`).
COVARIANCE_MARGIN = 1


def covariance_releasable(contributors: Sequence[str], min_contributors: int) -> bool:
    """Whether a model of these contributors may carry its full covariance matrix.

    σ̂²(XᵀX)⁻¹ with the SSE, n and the coefficients gives back the pooled Gram matrix, so each
    contributor learns the sum of the others' statistics: one fewer than the pool. That is allowed
    only with at least ``min_contributors + 1`` contributors (so the others' sum still spans the
    threshold). Statistics without contributors (a party's own rows, computed locally) hide nobody.
    """
    distinct = len(set(contributors))
    return distinct == 0 or distinct >= min_contributors + COVARIANCE_MARGIN


class _ExactFit:
    """The exact rational solution and training fit: given, or computed on first use by ``compute``."""

    def __init__(self, coef: Sequence[Fraction] | None = None, intercept: Fraction | None = None,
                 sse: Fraction | None = None, sst: Fraction | None = None,
                 compute: Callable[[], tuple[list[Fraction], Fraction, Fraction | None, Fraction | None]] | None = None
                 ) -> None:
        self._compute = compute
        self.coef = None if coef is None else list(coef)
        self.intercept, self.sse, self.sst = intercept, sse, sst

    def ensure(self) -> _ExactFit:
        if self._compute is not None:
            self.coef, self.intercept, self.sse, self.sst = self._compute()
            self._compute = None
        return self


class LinearModel:
    """A linear model ``ŷ = intercept_ + X · coef_`` fitted from aggregate statistics.

    Attributes:
        coef_: float64 coefficients, ordered as ``feature_names_in_``.
        intercept_: float64 intercept (0.0 for a model through the origin).
        feature_names_in_: feature names (numpy array of str).
        n_features_in_: number of features.
        target_: name of the response.
        n_samples_: pooled number of rows the model was fitted on.
        r2_: coefficient of determination on the pooled training data (centred, as scikit-learn).
        sse_: residual sum of squares on the pooled training data.
        coef_exact_, intercept_exact_: the exact rational solution.
        contributors_: ids of the factories whose data the model pools.
    """

    def __init__(
        self,
        features: Sequence[str],
        target: str,
        coef_exact: Sequence[Fraction],
        intercept_exact: Fraction,
        *,
        n_samples: int,
        sse: Fraction | None,
        sst: Fraction | None,
        ridge: float = 0.0,
        fit_intercept: bool = True,
        contributors: Sequence[str] = (),
        inference: InferenceResults | Callable[[], InferenceResults] | None = None,
    ) -> None:
        """A model from its exact rational solution (each float64 is its exact value rounded once)."""
        r2 = float("nan") if sse is None or sst is None else r_squared(sse, sst)
        self._setup(features, target, [float(c) for c in coef_exact], float(intercept_exact), n_samples=n_samples,
                    sse=float("nan") if sse is None else float(sse), r2=r2, ridge=ridge, fit_intercept=fit_intercept,
                    contributors=contributors, inference=inference,
                    exact=_ExactFit(list(coef_exact), Fraction(intercept_exact), sse, sst))

    def _setup(self, features: Sequence[str], target: str, coef: Sequence[float], intercept: float, *,
               n_samples: int, sse: float, r2: float, ridge: float, fit_intercept: bool, contributors: Sequence[str],
               inference: InferenceResults | Callable[[], InferenceResults] | None, exact: _ExactFit | None) -> None:
        # A callable is computed on first use (an averaged or fine-tuned model's inference).
        self._inference = inference
        self._exact = exact
        #: Whether :meth:`to_dict`/:meth:`save` include the exact rationals (``hefed solve --exact``).
        self.keep_exact = False
        #: Plants whose intercepts a fixed-effects fit absorbed (0: none); its ``intercept_`` is then 0 and
        #: each plant adds its own (:meth:`plant_intercept`).
        self.fixed_effects_ = 0
        #: The weights column of a weighted least-squares (WLS) fit; None for OLS and ridge.
        self.weights_: str | None = None
        #: Whether the model file carries the full covariance (:func:`covariance_releasable`).
        self.release_covariance = covariance_releasable(contributors, 3)
        #: Standardised coefficients, when computed (``hefed solve --standardize``).
        self.standardized_: dict[str, dict[str, float]] | None = None
        #: Differential-privacy accounting, when the model was released with noise (``hefed solve --dp-epsilon``).
        self.dp_: dict[str, Any] | None = None
        #: The digest of the study whose sums the model was solved from, if any.
        self.study_: str | None = None
        #: Who released the model (the key holder's verified signature), when it was signed.
        self.release_: ReleaseSignature | None = None
        self._release_block: dict[str, Any] | None = None
        self.feature_names_in_ = np.array(list(features), dtype=object)
        self.n_features_in_ = len(features)
        self.target_ = target
        self.coef_ = np.array(coef, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.n_samples_ = int(n_samples)
        self.sse_ = float(sse)
        self.r2_ = float(r2)  # NaN e.g. for an averaged model: no training residuals are known
        self.ridge = float(ridge)
        self.fit_intercept = bool(fit_intercept)
        self.contributors_ = list(contributors)

    @classmethod
    def from_statistics(cls, stats: SufficientStatistics, ridge: float | Fraction = 0.0,
                        fit_intercept: bool = True, *, absorbed: int = 0,
                        totals: tuple[int, Fraction, Fraction] | None = None,
                        weighting: Weighting | None = None) -> LinearModel:
        """The pooled model of the statistics: every float64 certified (the exact value correctly rounded)
        by :func:`~hefed.models.inference`, which comes with it; the exact rationals on request.
        ``absorbed``/``totals``: a fixed-effects fit from within-plant statistics (see ``inference``);
        ``weighting``: weighted least squares from weighted statistics (the file records the weights column)."""
        results = inference(stats, ridge, fit_intercept, absorbed=absorbed, totals=totals, weighting=weighting)
        k0 = int(fit_intercept)
        params = results.params
        model = cls.__new__(cls)
        model._setup(stats.features, stats.target, list(params[k0:]), float(params[0]) if fit_intercept else 0.0,
                     n_samples=results.nobs, sse=results.ssr, r2=results.rsquared_centered, ridge=float(ridge),
                     fit_intercept=fit_intercept, contributors=stats.contributors, inference=results,
                     exact=_ExactFit(compute=functools.partial(_exact_of, results)))
        model.weights_ = weighting.column if weighting is not None else None
        return model

    # --- the exact rationals -----------------------------------------------------------
    def _exact_fit(self) -> _ExactFit:
        if self._exact is None:
            raise UsageError("this model carries no exact rationals (it was saved without them: "
                             "save with exact=True, hefed solve --exact)")
        return self._exact.ensure()

    @property
    def has_exact(self) -> bool:
        """Whether the exact rationals are available (computed on request, or read from the file)."""
        return self._exact is not None

    @property
    def coef_exact_(self) -> list[Fraction]:
        """The exact rational coefficients (ordered as ``feature_names_in_``), computed on first use."""
        coef = self._exact_fit().coef
        assert coef is not None
        return coef

    @property
    def intercept_exact_(self) -> Fraction:
        intercept = self._exact_fit().intercept
        assert intercept is not None
        return intercept

    @property
    def sse_exact_(self) -> Fraction | None:
        """The exact training residual sum of squares (None when unknown, e.g. an averaged model)."""
        return self._exact_fit().sse

    @sse_exact_.setter
    def sse_exact_(self, value: Fraction | None) -> None:
        self._exact_fit().sse = value

    @property
    def sst_exact_(self) -> Fraction | None:
        return self._exact_fit().sst

    # --- prediction ------------------------------------------------------------------
    def _design(self, X: Any) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [f for f in self.feature_names_in_ if f not in X.columns]
            if missing:
                raise DataError(f"data lacks the model's feature column(s): {', '.join(missing)}")
            X = X[list(self.feature_names_in_)]
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise DataError(f"expected {self.n_features_in_} feature columns, got shape {arr.shape}")
        return arr

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target for the rows of ``X`` (DataFrame columns matched by name)."""
        return self._design(X) @ self.coef_ + self.intercept_

    def plant_intercept(self, X: Any, y: Any) -> float:
        """A plant's own intercept under a fixed-effects model, from its own rows (computed at the plant:
        nothing leaves it): ``mean(y) − mean(X)·coef_``. Add it to :meth:`predict` for that plant."""
        design = self._design(X)
        target = np.asarray(y, dtype=np.float64)
        if len(target) != len(design) or len(target) == 0:
            raise DataError("plant_intercept needs the plant's rows of X and y, as many of each")
        return float(np.mean(target) - np.mean(design, axis=0) @ self.coef_)

    def score(self, X: Any, y: Any) -> float:
        """R² of the predictions on (X, y), as scikit-learn's ``score`` (:func:`hefed.stats.r2_score`)."""
        return r2_score(np.asarray(y, dtype=np.float64), self.predict(X))

    # --- inference -------------------------------------------------------------------
    @property
    def has_inference(self) -> bool:
        """Whether standard errors and tests are available (not for averaged coefficient-mode models)."""
        return self._inference is not None

    def inference(self) -> InferenceResults:
        """Standard errors, tests and fit statistics, with statsmodels' names (see :mod:`hefed.models`)."""
        if self._inference is None:
            raise UsageError("this model carries no inference record")
        if callable(self._inference):
            self._inference = self._inference()
        return self._inference

    def set_robust_covariance(self, moments: ResidualMoments, cov_type: str) -> LinearModel:
        """Replace the classical covariance by the robust one of ``cov_type`` (HC0–HC3, cluster, HAC) from the
        consortium's residual moments of this very model (:func:`~hefed.models.robust_inference`); returns self.

        The moments must name this model (and for HC2/HC3 the (XᵀX)⁻¹ it carries: :func:`~hefed.stats.moments_digest`)
        and come from its contributors."""
        if sorted(moments.contributors) != sorted(self.contributors_):
            raise SchemaMismatchError("the residual moments come from other factories than the model's statistics")
        meat = meat_of(cov_type)
        expected = moments_digest(self.digest(), meat, self.classical_xtx_inv() if meat in ("hc2", "hc3") else None)
        self._inference = robust_inference(self.inference(), moments, cov_type, model_digest=expected)
        return self

    def classical_xtx_inv(self) -> list[list[Fraction]] | None:
        """The pooled ``(XᵀX)⁻¹`` of the classical fit, as exact rationals of the model's floats
        (``cov_params / scale``), in ``(intercept), features`` order; None for ridge, fixed-effects or averaged
        models, or when the covariance is not at hand or is already a robust one (its sandwich is not (XᵀX)⁻¹)."""
        if not self.has_inference or self.ridge or self.fixed_effects_:
            return None
        results = self.inference()
        if results.cov_type != "nonrobust" or getattr(results, "weights", None):
            return None
        try:
            cov = results.cov_params()
        except UsageError:
            return None
        scale = Fraction(float(results.scale))
        if not np.all(np.isfinite(cov)) or not scale > 0:
            return None
        return [[Fraction(float(v)) / scale for v in row] for row in cov]

    def released_xtx_inv(self) -> list[list[Fraction]] | None:
        """:meth:`classical_xtx_inv` when the model is released with its covariance (at least
        ``min_contributors + 1`` contributors), else None. Factories compute HC2/HC3 leverages from it."""
        return self.classical_xtx_inv() if self.release_covariance else None

    def summary(self) -> str:
        """A statsmodels-like text summary of the fit."""
        return self.inference().summary()

    def get_prediction(self, X: Any, *, alpha: float = 0.05) -> PredictionResults:
        """Predictions for the rows of ``X`` with standard errors and mean/observation intervals, as statsmodels'
        ``get_prediction`` (``summary_frame(alpha)``); needs the full covariance (:mod:`hefed.models._prediction`)."""
        return get_prediction(self, X, alpha=alpha)

    def predict_total(self, X: Any, *, alpha: float = 0.05,
                      activity_uncertainty: dict[str, float] | None = None) -> TotalResults:
        """The total of the predictions over the rows of ``X`` (a plant's year) with the interval of the expected
        total, the prediction interval of the realised total and the relative uncertainty in % (MRR/IPCC);
        ``activity_uncertainty`` adds declared relative 95 % uncertainties per column (GUM propagation)."""
        return predict_total(self, X, alpha=alpha, activity_uncertainty=activity_uncertainty)

    # --- presentation ----------------------------------------------------------------
    @property
    def rmse_(self) -> float:
        """Root mean squared training residual."""
        return math.sqrt(self.sse_ / self.n_samples_) if self.n_samples_ else float("nan")

    def coefficients(self) -> list[tuple[str, float]]:
        """(name, value) pairs, the intercept first when fitted."""
        rows = [("(intercept)", self.intercept_)] if self.fit_intercept else []
        return rows + [(str(f), float(c)) for f, c in zip(self.feature_names_in_, self.coef_, strict=True)]

    def digest(self) -> str:
        """A short hash of what predictions depend on: target, features, exact coefficients."""
        desc = {
            "target": self.target_,
            "features": [str(f) for f in self.feature_names_in_],
            "coef": [float(c).hex() for c in self.coef_],
            "intercept": float(self.intercept_).hex(),
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        kind = f"ridge={self.ridge:g}" if self.ridge else "OLS"
        features = list(self.feature_names_in_)
        return f"LinearModel({kind}, target={self.target_!r}, features={features}, n={self.n_samples_})"

    # --- files -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The model file's contents (version 2): the exact rationals only with :attr:`keep_exact`."""
        obj = self._body()
        # The key holder's signature travels with the model only while the contents are what it signed.
        if self._release_block is not None and self._release_block.get("digest") == body_digest(obj):
            obj["release"] = self._release_block
        return obj

    def _body(self) -> dict[str, Any]:
        def js(x: float) -> float | None:
            return None if math.isnan(x) else x

        body: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target_,
            "features": [str(f) for f in self.feature_names_in_],
            "coef": [float(c) for c in self.coef_],
            "intercept": self.intercept_,
            "n": self.n_samples_,
            "r2": js(self.r2_),
            "sse": js(self.sse_),
            "ridge": self.ridge,
            "fit_intercept": self.fit_intercept,
            "contributors": self.contributors_,
        }
        if self.fixed_effects_:
            body["fixed_effects"] = self.fixed_effects_
        if self.weights_ is not None:  # weighted least squares (statsmodels WLS) by this column
            body["weights"] = self.weights_
        if self.keep_exact:
            fit = self._exact_fit()
            body["exact"] = {
                "coef": [format_rational(c) for c in self.coef_exact_],
                "intercept": format_rational(self.intercept_exact_),
                "sse": None if fit.sse is None else format_rational(fit.sse),
                "sst": None if fit.sst is None else format_rational(fit.sst),
            }
        if self._inference is not None:
            body["inference"] = self.inference().to_dict(exact=self.keep_exact, covariance=self.release_covariance)
            if self.inference().units and self.release_covariance:  # the emission-factor report (its SEs)
                body["emission_factors"] = [factor.to_dict() for factor in self.inference().emission_factors()]
        if self.standardized_:
            body["standardized"] = self.standardized_
        if self.dp_:
            body["differential_privacy"] = self.dp_
        body.update(study_field(self.study_))
        return body

    def save(self, path: str | os.PathLike[str], force: bool = False, exact: bool | None = None) -> Path:
        """Write the model file; ``exact`` (default :attr:`keep_exact`) adds the exact rationals."""
        if exact is not None:
            self.keep_exact = exact
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearModel:
        return cls.from_dict(read_json_object(path, "model"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "model") -> LinearModel:
        if obj.get("format") != FORMAT:
            raise InvalidFileError(f"{source}: not a hefed model file (format {obj.get('format')!r})")
        version = obj.get("version")
        if not (is_version(version, VERSION) or is_version(version, VERSION_EXACT)):
            raise InvalidFileError(f"{source}: unsupported model version {version!r}")
        features, target, exact = obj.get("features"), obj.get("target"), obj.get("exact")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidFileError(f"{source}: 'features' must be a list of strings")
        if not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'target' must be a string")
        if is_version(version, VERSION_EXACT) or exact is not None:
            if not isinstance(exact, dict) or not isinstance(exact.get("coef"), list):
                raise InvalidFileError(f"{source}: 'exact' coefficients missing")
        check_names([target, *features], source, "target or features")
        coef, intercept = obj.get("coef"), obj.get("intercept")
        if (not isinstance(coef, list) or len(coef) != len(features)
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and _finite(c)
                           for c in [*coef, intercept])):
            raise InvalidFileError(f"{source}: 'coef' must list one number per feature, and 'intercept' be a number")
        n = obj.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidFileError(f"{source}: 'n' must be a non-negative integer")
        ridge = obj.get("ridge", 0.0)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or ridge < 0:
            raise InvalidFileError(f"{source}: 'ridge' must be a non-negative number")
        contributors = parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False)
        inference = InferenceResults.from_dict(obj["inference"], source) if "inference" in obj else None
        if isinstance(exact, dict):
            if len(exact["coef"]) != len(features):
                raise InvalidFileError(
                    f"{source}: {len(exact['coef'])} exact coefficients for {len(features)} features")
            model = cls(
                features, target,
                [parse_rational(c, source, "exact.coef") for c in exact["coef"]],
                parse_rational(exact.get("intercept"), source, "exact.intercept"),
                n_samples=n,
                sse=None if exact.get("sse") is None else parse_rational(exact.get("sse"), source, "exact.sse"),
                sst=None if exact.get("sst") is None else parse_rational(exact.get("sst"), source, "exact.sst"),
                ridge=float(ridge),
                fit_intercept=bool(obj.get("fit_intercept", True)),
                contributors=contributors,
                inference=inference,
            )
            model.keep_exact = True
            if list(model.coef_) != list(coef) or model.intercept_ != intercept:
                raise InvalidFileError(f"{source}: 'coef'/'intercept' do not match the exact solution")
        else:
            model = cls.__new__(cls)
            model._setup(features, target, [float(c) for c in coef], float(intercept or 0), n_samples=n,
                         sse=_optional_number(obj.get("sse"), source, "sse"),
                         r2=_optional_number(obj.get("r2"), source, "r2"), ridge=float(ridge),
                         fit_intercept=bool(obj.get("fit_intercept", True)), contributors=contributors,
                         inference=inference, exact=None)
        if inference is not None:
            model.release_covariance = inference._cov is not None  # written again as it was read
            expected = ([model.intercept_] if model.fit_intercept else []) + list(model.coef_)
            if inference.params.tolist() != expected:
                raise InvalidFileError(f"{source}: 'coef'/'intercept' do not match the inference record's 'params'")
            names = ([ONES] if model.fit_intercept else []) + list(features)
            if (inference.param_names != names or inference.target != target or inference.nobs != n
                    or inference.fit_intercept != model.fit_intercept or inference.ridge != model.ridge):
                raise InvalidFileError(f"{source}: the inference record is not this model's (parameters, target, "
                                       "rows, intercept or ridge differ)")
        fixed = obj.get("fixed_effects", 0)
        if isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 0:
            raise InvalidFileError(f"{source}: 'fixed_effects' must be a count of plants")
        model.fixed_effects_ = fixed
        weights = obj.get("weights")
        if weights is not None and (not isinstance(weights, str) or not weights):
            raise InvalidFileError(f"{source}: 'weights' must name the weights column of a weighted fit")
        if inference is not None and inference.weights != weights:
            raise InvalidFileError(f"{source}: the inference record is not this model's (its weights differ)")
        model.weights_ = weights
        if isinstance(obj.get("differential_privacy"), dict):
            model.dp_ = obj["differential_privacy"]
        if isinstance(obj.get("standardized"), dict):
            model.standardized_ = obj["standardized"]
        model.release_ = open_release(obj, source)  # a signature that does not verify is refused here
        if model.release_ is not None:
            model._release_block = obj["release"]
        model.study_ = split_study(obj, source)[1]
        return model


def _exact_of(results: InferenceResults) -> tuple[list[Fraction], Fraction, Fraction | None, Fraction | None]:
    """(coefficients, intercept, SSE, SST) exactly, from certified results (their exact solve)."""
    theta = results.params_exact
    k0 = int(results.fit_intercept)
    return theta[k0:], theta[0] if k0 else Fraction(0), results.ssr_exact, results.centered_tss_exact


def _finite(value: float) -> bool:
    """Whether a JSON number is a finite float64 (an integer beyond float64 range is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _optional_number(value: Any, source: str, field: str) -> float:
    """A finite number of a model file, or null (NaN: not known)."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise InvalidFileError(f"{source}: {field!r} must be a finite number or null")
    return float(value)
