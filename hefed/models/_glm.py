"""The results of a federated GLM, with statsmodels' ``GLMResults`` names, from a round's exact sums.

After IRLS has converged at ``β̂`` the key holder runs one more round *at* ``β̂``; its decrypted sums
(:class:`~hefed.stats._glm.GLMRoundSums`) give everything the results need:

* ``cov_params = scale · (XᵀŴX)⁻¹``, the inverse taken exactly (FLINT rationals) from the integer
  Gram matrix and rounded once to float64 (statsmodels takes the inverse from the weights of its last
  iteration, which equal ours at convergence);
* ``deviance = Σd̂``, ``pearson_chi2 = Σp̂`` (the rows' terms rounded once to the grid);
* ``scale``: 1 for binomial and Poisson, ``pearson_chi2 / df_resid`` for Gamma (statsmodels' ``"X2"``);
* ``llf``: binomial ``−D/2``; Poisson ``−D/2 + Σ(y log y − y − log Γ(y+1))``; Gamma, with ``φ`` the scale,
  ``(n/φ)·log(1/φ) − (D/2 + n)/φ − n·log Γ(1/φ) − Σ log y`` (statsmodels' ``loglike`` at its scale);
* ``aic = −2 llf + 2p`` and ``bic = −2 llf + p·log n`` — statsmodels' ``bic_llf``, which is what
  ``GLMResults.bic`` returns in statsmodels 0.15 (0.14 returned ``bic_deviance`` by default with a
  FutureWarning; ``bic_deviance = D − df_resid·log n`` is here too);
* ``null_deviance``: without an offset the null model's mean is ``ȳ`` and the deviance follows from
  ``n``, ``Σy`` and the family's constant sum; with an offset it is the deviance of the intercept-only
  model fitted by its own IRLS rounds (as statsmodels refits the null model with the offset).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from ..errors import UsageError
from ..primitives.certified import rational_inverse
from ..stats._glm import GLMConvergenceError, GLMRoundSums, mean_of

FORMAT = "hefed.glm_results"
VERSION = 1


def null_deviance_closed_form(sums: GLMRoundSums) -> float:
    """The deviance of the intercept-only model without offset (its mean is ȳ), from n, Σy and the constant sum."""
    n = sums.n
    total = float(sums.y_total())
    ybar = total / n
    const_a = float(sums.real(sums.const_a))
    if sums.family == "binomial":
        if total in (0.0, float(n)):
            return 0.0
        return -2.0 * (total * math.log(ybar) + (n - total) * math.log1p(-ybar))
    if sums.family == "poisson":
        return 2.0 * (const_a - (total * math.log(ybar) if total > 0 else 0.0))
    return 2.0 * (n * math.log(ybar) - const_a)


def covariance_unscaled(sums: GLMRoundSums) -> np.ndarray:
    """``(XᵀŴX)⁻¹`` in real units, exact rationals rounded once to float64 (design order)."""
    inverse = rational_inverse(sums.xtwx)
    if inverse is None:
        raise GLMConvergenceError("XᵀWX is singular at the estimate: a column is constant or collinear, or the "
                                  "weights vanished (separation)")
    scales = sums.scales
    g = sums.grid.grid_bits
    m = len(scales)
    out = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            out[a, b] = float(inverse[a][b] * Fraction(1 << (g + scales[a] + scales[b])))
    return out


@dataclass
class GLMResults:
    """A fitted federated GLM's inference, with statsmodels' ``GLMResults`` names (module docstring).

    ``params`` and every per-parameter array are in the order ``["const", *features]`` (features in the
    order of ``fit``), as statsmodels orders ``GLM(y, add_constant(X))``.
    """

    family: str
    link: str
    param_names: list[str]
    params: np.ndarray
    normalized_cov_params: np.ndarray
    scale: float
    deviance: float
    pearson_chi2: float
    null_deviance: float
    llf: float
    nobs: int
    n_iter: int
    converged: bool = True
    contributors: list[str] = field(default_factory=list)
    study: str | None = None

    @property
    def df_model(self) -> int:
        return len(self.params) - 1

    @property
    def df_resid(self) -> int:
        return self.nobs - len(self.params)

    def cov_params(self) -> np.ndarray:
        return self.normalized_cov_params * self.scale

    @property
    def bse(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_params()))

    @property
    def tvalues(self) -> np.ndarray:
        """z statistics (statsmodels' GLM uses the normal distribution by default)."""
        return self.params / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        return 2.0 * stats.norm.sf(np.abs(self.tvalues))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        if not 0.0 < alpha < 1.0:
            raise UsageError(f"alpha must be in (0, 1), got {alpha!r}")
        q = stats.norm.ppf(1.0 - alpha / 2.0)
        return np.column_stack([self.params - q * self.bse, self.params + q * self.bse])

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * (self.df_model + 1)

    @property
    def bic(self) -> float:
        """statsmodels' ``bic_llf`` (``GLMResults.bic`` in statsmodels 0.15)."""
        return -2.0 * self.llf + (self.df_model + 1) * math.log(self.nobs)

    @property
    def bic_llf(self) -> float:
        return self.bic

    @property
    def bic_deviance(self) -> float:
        return self.deviance - self.df_resid * math.log(self.nobs)

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        ci = self.conf_int(alpha)
        return pd.DataFrame({"coef": self.params, "std err": self.bse, "z": self.tvalues, "P>|z|": self.pvalues,
                             f"[{alpha / 2:g}": ci[:, 0], f"{1 - alpha / 2:g}]": ci[:, 1]},
                            index=self.param_names)

    def predict(self, X: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """The mean response ``g⁻¹(const + X·β + offset)`` (columns of ``X`` in the order of ``param_names[1:]``)."""
        X = np.asarray(X, dtype=np.float64)
        eta = self.params[0] + X @ self.params[1:]
        if offset is not None:
            eta = eta + np.asarray(offset, dtype=np.float64)
        return np.asarray(mean_of(self.link, eta))

    def get_prediction(self, X: np.ndarray, offset: np.ndarray | None = None, alpha: float = 0.05) -> pd.DataFrame:
        """Each row's mean response with its standard error and confidence interval on the response scale, as
        statsmodels' ``get_prediction(X).summary_frame(alpha)`` (columns ``mean``, ``mean_se``, ``mean_ci_lower``,
        ``mean_ci_upper``): the interval of the linear predictor ``x·β ± q·√(x C xᵀ)`` mapped through the inverse
        link, the standard error by the delta method."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.params) - 1:
            raise UsageError(f"X must have {len(self.params) - 1} columns")
        if not 0.0 < alpha < 1.0:
            raise UsageError(f"alpha must be in (0, 1), got {alpha!r}")
        design = np.column_stack([np.ones(len(X)), X])
        eta = design @ self.params
        if offset is not None:
            eta = eta + np.asarray(offset, dtype=np.float64)
        se_eta = np.sqrt(np.einsum("ij,jk,ik->i", design, self.cov_params(), design))
        mean = np.asarray(mean_of(self.link, eta))
        slope = mean * (1.0 - mean) if self.link == "logit" else mean  # dμ/dη
        q = stats.norm.ppf(1.0 - alpha / 2.0)
        return pd.DataFrame({"mean": mean, "mean_se": np.abs(slope) * se_eta,
                             "mean_ci_lower": mean_of(self.link, eta - q * se_eta),
                             "mean_ci_upper": mean_of(self.link, eta + q * se_eta)})

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "family": self.family, "link": self.link,
                "param_names": self.param_names, "params": [float(v) for v in self.params],
                "bse": [float(v) for v in self.bse], "cov_params": self.cov_params().tolist(),
                "normalized_cov_params": self.normalized_cov_params.tolist(), "scale": self.scale,
                "deviance": self.deviance, "null_deviance": self.null_deviance, "pearson_chi2": self.pearson_chi2,
                "llf": self.llf, "aic": self.aic, "bic": self.bic, "nobs": self.nobs, "df_resid": self.df_resid,
                "df_model": self.df_model, "n_iter": self.n_iter, "contributors": list(self.contributors),
                **({"study": self.study} if self.study else {})}

    @classmethod
    def from_sums(cls, final: GLMRoundSums, params_design: Sequence[float], feature_order: Sequence[str],
                  n_iter: int, null_deviance: float | None = None) -> GLMResults:
        """The results at ``β̂`` (``params_design`` in design order) from the round run at ``β̂``; the features are
        reported in ``feature_order`` (the fit's); ``null_deviance`` from the null model's rounds when it had an
        offset (else the closed form)."""
        columns = final.columns  # intercept, sorted features
        position = {name: i for i, name in enumerate(columns)}
        order = [0, *(position[f] for f in feature_order)]
        params = np.asarray(params_design, dtype=np.float64)[order]
        cov = covariance_unscaled(final)[np.ix_(order, order)]
        n = final.n
        p = len(params)
        deviance = float(final.real(final.deviance))
        pearson = float(final.real(final.pearson))
        if final.family == "gamma":
            if n <= p:
                raise GLMConvergenceError(f"{n} rows for {p} parameters: the Gamma scale needs more rows")
            scale = pearson / (n - p)
        else:
            scale = 1.0
        const_a, const_b = float(final.real(final.const_a)), float(final.real(final.const_b))
        if final.family == "binomial":
            llf = -deviance / 2.0
        elif final.family == "poisson":
            llf = -deviance / 2.0 + const_a - float(final.y_total()) - const_b
        else:
            ws = 1.0 / scale
            llf = n * ws * math.log(ws) - ws * (deviance / 2.0 + n) - n * float(special.gammaln(ws)) - const_a
        null = null_deviance_closed_form(final) if null_deviance is None else null_deviance
        return cls(final.family, final.link, ["const", *feature_order], params, cov, scale, deviance, pearson,
                   null, llf, n, n_iter, True, list(final.contributors), final.study)


__all__ = ["GLMResults", "covariance_unscaled", "null_deviance_closed_form"]
