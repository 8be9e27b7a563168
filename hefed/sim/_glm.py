"""``FederatedGLM``: logistic, Poisson and Gamma models by encrypted IRLS among simulated factories.

``FederatedGLM(family="binomial").fit(X, y, groups=...)`` runs the real protocol in-process, round
after round: the key holder signs the coefficients of each iteration (Ed25519 release key); each
factory checks the signature, the study and the iteration against its own record of the fit
(:class:`~hefed.roles.GLMFactoryLog`), encrypts its round's exact sums (``XᵀŴX``, ``XᵀÛ``, deviance and
Pearson parts; each row's working weight and weighted working response rounded once to the public
``2^-64`` grid) under the consortium key; the aggregator multiplies the ciphertexts; the key holder
decrypts only the sum (threshold, integrity, support and its ledger: every round of the fit over the
same contributor set), solves the next coefficients exactly and signs them. It stops when
``max_j |Δβ_j| / (|β_j| + 1e-8) ≤ tol`` and runs one more round at the estimate for its inference.

The estimate is the pooled maximum-likelihood estimate (tested against statsmodels ``GLM`` on the pooled
rows: coefficients to 1e-8 relative, standard errors to 1e-6). ``results_`` has statsmodels'
``GLMResults`` names. Like :class:`~hefed.sim.FederatedLinearRegression` this is a simulation: every
factory's rows are in this process, and the key is an insecure test key.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey

from ..errors import DataError, SingledOutColumnWarning, UsageError
from ..models._glm import GLMResults
from ..protocol import KeyHolderSigner
from ..roles import DEFAULT_MIN_CONTRIBUTORS, DecryptionLedger, aggregate
from ..roles._glm import GLMFactoryLog, GLMKeyHolder, encrypt_glm_arrays, start_fit
from ..stats import Encoding, Rounding
from ..stats._glm import GLMGrid, check_family
from ._consortium import Consortium
from ._defaults import SIMULATION_KEY_BITS
from ._estimator import FederatedLinearRegression, _check_finite, _target_name

__all__ = ["FederatedGLM"]


def _offset(offset: Any, exposure: Any, n: int) -> np.ndarray | None:
    if offset is not None and exposure is not None:
        raise UsageError("give offset or exposure, not both")
    if offset is None and exposure is None:
        return None
    values = np.asarray(offset if offset is not None else exposure, dtype=np.float64).reshape(-1)
    what = "offset" if offset is not None else "exposure"
    if values.shape != (n,) or not np.isfinite(values).all():
        raise DataError(f"{what} must be {n} finite values, one per row")
    if exposure is not None:
        if not (values > 0).all():
            raise DataError("exposure must be positive")
        values = np.log(values)
    return values


class FederatedGLM:
    """A GLM fitted by encrypted IRLS among simulated factories (module docstring).

    Parameters:
        family: ``"binomial"`` (0/1 responses, logit link), ``"poisson"`` (counts, log link) or ``"gamma"``
            (positive responses, **log** link).
        link: ``None`` for the family's link above. The Gamma family supports only ``"log"``: statsmodels'
            default for Gamma, ``inverse_power``, is not supported (compare with
            ``sm.families.Gamma(sm.families.links.Log())``).
        max_iter: most IRLS iterations before the fit stops with :class:`~hefed.stats._glm.GLMConvergenceError`.
        tol: converged when ``max_j |Δβ_j| / (|β_j| + 1e-8) ≤ tol``.
        key_bits, min_contributors, encoding, public_key, private_key: as
            :class:`~hefed.sim.FederatedLinearRegression`.
        grid: the public grid and declared bounds of the rounds' per-row values (:class:`~hefed.stats._glm.GLMGrid`).

    Attributes after ``fit``: ``params_`` (``const`` first, then X's columns), ``coef_``, ``intercept_``,
    ``results_`` (:class:`~hefed.models._glm.GLMResults`), ``n_iter_`` (IRLS solves to convergence),
    ``n_rounds_`` (encrypted rounds run, the final one at the estimate and any null-model rounds included),
    ``contributors_``, ``deviance_path_`` (the deviance at each iteration's coefficients: what the key holder saw).
    """

    def __init__(self, family: str = "binomial", link: str | None = None, max_iter: int = 100, tol: float = 1e-12,
                 key_bits: int = SIMULATION_KEY_BITS, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
                 encoding: Encoding | None = None, public_key: PaillierPublicKey | None = None,
                 private_key: PaillierPrivateKey | None = None, grid: GLMGrid | None = None) -> None:
        self.family = family
        self.link = link
        self.max_iter = max_iter
        self.tol = tol
        self.key_bits = key_bits
        self.min_contributors = min_contributors
        self.encoding = encoding
        self.public_key = public_key
        self.private_key = private_key
        self.grid = grid

    def fit(self, X: Any, y: Any, groups: Any = None, offset: Any = None, exposure: Any = None) -> FederatedGLM:
        """Run the encrypted IRLS rounds among the factories ``groups`` names; returns ``self``."""
        family, link = check_family(self.family, self.link)
        encoding = self.encoding or Encoding()
        grid = self.grid or GLMGrid()
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            X_arr = X.to_numpy(dtype=np.float64)
        else:
            X_arr = np.asarray(X, dtype=np.float64)
            if X_arr.ndim != 2:
                raise DataError(f"X must be two-dimensional, got shape {X_arr.shape}")
            names = [f"x{j}" for j in range(X_arr.shape[1])]
        y_arr = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y, dtype=np.float64).reshape(-1)
        n = len(y_arr)
        if X_arr.shape[0] != n:
            raise DataError(f"X has {X_arr.shape[0]} rows but y has {n}")
        if X_arr.shape[1] < 1:
            raise DataError("X needs at least one column")
        if len(set(names)) != len(names):
            raise DataError("X: duplicate column names")
        _check_finite(X_arr, names)
        _check_finite(y_arr[:, None], ["y"], "y")
        target = _target_name(y, names)
        off = _offset(offset, exposure, n)
        parts = FederatedLinearRegression(min_contributors=self.min_contributors)._factories(groups, n)
        consortium = Consortium.simulated(self.key_bits, self.public_key, self.private_key, int(self.min_contributors),
                                          encoding)
        signer = KeyHolderSigner.generate()
        study = secrets.token_hex(16)  # the simulated study's digest: every signature and bundle names it
        ledger = DecryptionLedger("0" * 32)
        keyholder = GLMKeyHolder(consortium.private_key, signer, int(self.min_contributors), ledger,
                                 allow_unsigned=True)
        logs = {factory: GLMFactoryLog() for factory in parts}
        fit = start_fit(signer, study, family, link, target, names, max_iter=self.max_iter, tol=self.tol,
                        offset=off is not None)
        rounds = 0
        rounding = Rounding()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SingledOutColumnWarning)  # a simulation: see Consortium
            while not fit.done:
                bundles = [
                    encrypt_glm_arrays(X_arr[rows], y_arr[rows], names, target, fit.coefficients,
                                       study_digest=study, keyholder=signer.public, encoding=encoding, grid=grid,
                                       public_key=consortium.public_key, factory_id=factory, log=logs[factory],
                                       offset=None if off is None else off[rows], rounding=rounding)
                    for factory, rows in parts.items()]
                keyholder.step(fit, aggregate(bundles))
                rounds += 1
        assert fit.results is not None
        self.results_: GLMResults = fit.results
        self.params_: np.ndarray = fit.results.params.copy()
        self.intercept_: float = float(self.params_[0])
        self.coef_: np.ndarray = self.params_[1:].copy()
        self.n_iter_: int = fit.n_iter
        self.n_rounds_: int = rounds
        self.contributors_: list[str] = list(parts)
        self.deviance_path_: list[float] = list(fit.deviances)
        self.feature_names_in_: list[str] = names
        return self

    def fit_parties(self, parties: Mapping[str, tuple[Any, Any]]) -> FederatedGLM:
        """Fit on each factory's own ``(X, y)``: the same as :meth:`fit` on the stacked rows."""
        X = np.vstack([np.asarray(x, dtype=np.float64) for x, _ in parties.values()])
        y = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for _, v in parties.values()])
        groups = np.concatenate([[name] * len(np.asarray(v).reshape(-1)) for name, (_, v) in parties.items()])
        return self.fit(X, y, groups=groups)

    def predict(self, X: Any, offset: Any = None, exposure: Any = None) -> np.ndarray:
        """The mean response of each row (a probability for binomial), with its offset or exposure."""
        if not hasattr(self, "results_"):
            raise UsageError("this FederatedGLM is not fitted yet: call fit first")
        X_arr = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
        if X_arr.ndim != 2 or X_arr.shape[1] != len(self.coef_):
            raise DataError(f"X must have {len(self.coef_)} columns")
        return self.results_.predict(X_arr, _offset(offset, exposure, X_arr.shape[0]))
