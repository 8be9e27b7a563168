"""The fitted global model: scikit-learn style attributes, prediction, JSON files.

A :class:`LinearModel` is what :func:`hefed.solve` returns. Fitted attributes
end in ``_`` as in scikit-learn: ``coef_`` (in the order of
``feature_names_in_``), ``intercept_``, ``n_features_in_``; ``predict`` and
``score`` behave as ``sklearn.linear_model.LinearRegression``'s. The exact
rational solution is kept (``coef_exact_``) and saved, so anyone can check
the rounding.
"""

from __future__ import annotations

import copy
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
from ..errors import DataError, InvalidFileError, UsageError
from ..protocol import ReleaseSignature, body_digest, open_release
from ..stats import ONES, SufficientStatistics, r2_score, r_squared
from ._inference import InferenceResults, inference

FORMAT = "hefed.model"
VERSION = 1


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
        # A callable is computed on first use: exact standard errors invert the Gram matrix
        # in rationals, which a caller that only wants coefficients should not wait for.
        self._inference = inference
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
        self.coef_exact_ = list(coef_exact)
        self.intercept_exact_ = intercept_exact
        self.coef_ = np.array([float(c) for c in coef_exact], dtype=np.float64)
        self.intercept_ = float(intercept_exact)
        self.n_samples_ = int(n_samples)
        self.sse_exact_ = sse
        self.sst_exact_ = sst
        self.sse_ = float(sse) if sse is not None else float("nan")
        if sse is None or sst is None:
            self.r2_ = float("nan")  # e.g. an averaged model: no training residuals are known
        else:
            self.r2_ = r_squared(sse, sst)
        self.ridge = float(ridge)
        self.fit_intercept = bool(fit_intercept)
        self.contributors_ = list(contributors)

    @classmethod
    def from_exact(
        cls,
        stats: SufficientStatistics,
        coef_exact: Sequence[Fraction],
        intercept_exact: Fraction,
        ridge: float | Fraction,
        fit_intercept: bool,
    ) -> LinearModel:
        """Build the model, its exact training fit (SSE, SST) and its inference from the statistics."""
        sse = stats.residual_sum_of_squares(dict(zip(stats.features, coef_exact, strict=True)), intercept_exact)
        sy, syy = stats.exact(ONES, stats.target), stats.exact(stats.target, stats.target)
        sst = syy - sy * sy / stats.n
        return cls(
            stats.features, stats.target, coef_exact, intercept_exact,
            n_samples=stats.n, sse=sse, sst=sst, ridge=float(ridge),
            fit_intercept=fit_intercept, contributors=stats.contributors,
            inference=functools.partial(inference, copy.deepcopy(stats), ridge, fit_intercept),
        )

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

    def summary(self) -> str:
        """A statsmodels-like text summary of the fit."""
        return self.inference().summary()

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
        obj = self._body()
        # The key holder's signature travels with the model only while the contents are what it signed.
        if self._release_block is not None and self._release_block.get("digest") == body_digest(obj):
            obj["release"] = self._release_block
        return obj

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target_,
            "features": [str(f) for f in self.feature_names_in_],
            "coef": [float(c) for c in self.coef_],
            "intercept": self.intercept_,
            "n": self.n_samples_,
            "r2": None if math.isnan(self.r2_) else self.r2_,
            "sse": None if math.isnan(self.sse_) else self.sse_,
            "ridge": self.ridge,
            "fit_intercept": self.fit_intercept,
            "contributors": self.contributors_,
            "exact": {
                "coef": [format_rational(c) for c in self.coef_exact_],
                "intercept": format_rational(self.intercept_exact_),
                "sse": None if self.sse_exact_ is None else format_rational(self.sse_exact_),
                "sst": None if self.sst_exact_ is None else format_rational(self.sst_exact_),
            },
            **({"inference": self.inference().to_dict()} if self._inference is not None else {}),
            **({"standardized": self.standardized_} if self.standardized_ else {}),
            **({"differential_privacy": self.dp_} if self.dp_ else {}),
            **study_field(self.study_),
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearModel:
        return cls.from_dict(read_json_object(path, "model"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "model") -> LinearModel:
        if obj.get("format") != FORMAT:
            raise InvalidFileError(f"{source}: not a hefed model file (format {obj.get('format')!r})")
        if not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: unsupported model version {obj.get('version')!r}")
        features, target, exact = obj.get("features"), obj.get("target"), obj.get("exact")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidFileError(f"{source}: 'features' must be a list of strings")
        if not isinstance(target, str):
            raise InvalidFileError(f"{source}: 'target' must be a string")
        if not isinstance(exact, dict) or not isinstance(exact.get("coef"), list):
            raise InvalidFileError(f"{source}: 'exact' coefficients missing")
        check_names([target, *features], source, "target or features")
        coef, intercept = obj.get("coef"), obj.get("intercept")
        if (not isinstance(coef, list) or len(coef) != len(features)
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in [*coef, intercept])):
            raise InvalidFileError(f"{source}: 'coef' must list one number per feature, and 'intercept' be a number")
        if len(exact["coef"]) != len(features):
            raise InvalidFileError(f"{source}: {len(exact['coef'])} exact coefficients for {len(features)} features")
        n = obj.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidFileError(f"{source}: 'n' must be a non-negative integer")
        ridge = obj.get("ridge", 0.0)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or ridge < 0:
            raise InvalidFileError(f"{source}: 'ridge' must be a non-negative number")
        model = cls(
            features, target,
            [parse_rational(c, source, "exact.coef") for c in exact["coef"]],
            parse_rational(exact.get("intercept"), source, "exact.intercept"),
            n_samples=n,
            sse=None if exact.get("sse") is None else parse_rational(exact.get("sse"), source, "exact.sse"),
            sst=None if exact.get("sst") is None else parse_rational(exact.get("sst"), source, "exact.sst"),
            ridge=float(ridge),
            fit_intercept=bool(obj.get("fit_intercept", True)),
            contributors=parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False),
            inference=InferenceResults.from_dict(obj["inference"], source) if "inference" in obj else None,
        )
        if isinstance(obj.get("differential_privacy"), dict):
            model.dp_ = obj["differential_privacy"]
        if isinstance(obj.get("standardized"), dict):
            model.standardized_ = obj["standardized"]
        model.release_ = open_release(obj, source)  # a signature that does not verify is refused here
        if model.release_ is not None:
            model._release_block = obj["release"]
        model.study_ = split_study(obj, source)[1]
        if list(model.coef_) != list(obj.get("coef", [])) or model.intercept_ != obj.get("intercept"):
            raise InvalidFileError(f"{source}: 'coef'/'intercept' do not match the exact solution")
        return model
