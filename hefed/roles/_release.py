"""What ``hefed solve`` does with a decrypted aggregate, as one library call.

Chooses among the ways a model is released from an aggregate: exact OLS or ridge; ridge with
α chosen by exact K-fold cross-validation (fold statistics); an (ε, δ)-differentially private
release; or, for a coefficient aggregate, the n-weighted average model. Optionally adds
standardised coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UsageError
from ..kinds import kind_of_result
from ..models import LinearModel, covariance_releasable
from ..protocol import KeyHolderSigner, Study, check_signer
from ..stats import ResidualMoments, SufficientStatistics
from ._analyst import solve, standardized_coefficients
from ._keyholder import DEFAULT_MIN_CONTRIBUTORS
from ._privacy import DifferentialPrivacy, dp_solve
from ._ridgecv import RidgeCVResult, solve_auto_ridge


@dataclass
class Release:
    """A released model, the validation curve when α was chosen by cross-validation, and notes."""

    model: LinearModel
    curve: RidgeCVResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.model.to_dict().items() if k not in ("format", "version", "exact")},
                "validation_curve": self.curve.to_dict() if self.curve is not None else None, "notes": self.notes}


def parse_ridge(ridge: object) -> float | Literal["auto"]:
    """A ridge penalty: a non-negative number, or ``"auto"`` (chosen by cross-validation)."""
    if isinstance(ridge, str):
        text = ridge.strip().lower()
        if text == "auto":
            return "auto"
        try:
            ridge = float(text)
        except ValueError:
            raise UsageError(f"ridge must be a number or 'auto', got {ridge!r}", parameters=("ridge",)) from None
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0 or ridge == float("inf"):
        raise UsageError(f"ridge must be a finite non-negative number or 'auto', got {ridge!r}",
                         parameters=("ridge",))
    return float(ridge)


def release_model(
    aggregate: Any,
    ridge: float | str = 0.0,
    alphas: Sequence[float] | None = None,
    fit_intercept: bool = True,
    standardize: bool = False,
    privacy: DifferentialPrivacy | None = None,
    study: Study | None = None,
    signer: KeyHolderSigner | None = None,
    exact: bool = False,
    robust: ResidualMoments | None = None,
    cov_type: str | None = None,
) -> Release:
    """The model to publish from decrypted sums, and the validation curve when ``ridge="auto"``.

    ``privacy`` makes an (ε, δ)-differentially private release (from plain statistics with a
    fixed ridge); ``alphas`` are the candidates of ``ridge="auto"``. With a ``study`` the sums must
    be the study's, and the study's DP bounds are the ones clipped to. ``signer`` (the key
    holder's release key) signs the model with its study and contributor set. ``exact`` keeps the exact
    rationals in the model file (and in what is signed). ``robust`` (the decrypted residual moments of the
    model released from these sums, a second round) replaces its covariance by the robust one of ``cov_type``.
    """
    if signer is not None:
        # The key holder vouches only for models of sums it released itself: unsigned sums (say, a file the
        # aggregator fabricated with y = c on every row, labelled with the study) would get its signature and
        # be evaluated by every factory.
        check_signer(getattr(aggregate, "release", None), signer.public, "the decrypted sums",
                     kind_of_result(aggregate).name)
        if study is not None and study.keyholder is not None and signer.public != study.keyholder:
            raise UsageError("the release key is not the one the study names for its key holder",
                             parameters=("release_key",))
    if study is not None:
        study.check_digest(getattr(aggregate, "study", None), "the decrypted sums")
        # A study that names its key holder takes only sums that key holder signed for it.
        study.check_release(getattr(aggregate, "release", None), "the decrypted sums", kind_of_result(aggregate).name)
    choice = parse_ridge(ridge)
    if alphas and choice != "auto":
        raise UsageError("candidate alphas need ridge 'auto'", parameters=("alphas", "ridge"))
    curve = None
    if privacy is not None:
        if choice == "auto" or not isinstance(aggregate, SufficientStatistics):
            raise UsageError("a differentially private release needs plain statistics and a fixed ridge")
        # the bounds are checked against the study's, and standardisation comes from the noised statistics
        model = dp_solve(aggregate, privacy, choice, fit_intercept, standardize=standardize, study=study)
    elif choice == "auto":
        model, curve = solve_auto_ridge(aggregate, alphas, fit_intercept=fit_intercept)
    else:
        model = solve(aggregate, ridge=choice, fit_intercept=fit_intercept)
    if robust is not None or cov_type is not None:
        if privacy is not None or choice == "auto" or robust is None:
            raise UsageError("a robust covariance needs the decrypted residual moments (--robust) of an OLS model "
                             "(no ridge, no differential privacy)", parameters=("robust", "cov_type"))
        if signer is not None:
            check_signer(getattr(robust, "release", None), signer.public, "the residual moments", "residual_moments")
        if study is not None:
            study.check_digest(robust.study, "the residual moments")
            study.check_release(getattr(robust, "release", None), "the residual moments", "residual_moments")
        model.set_robust_covariance(robust, cov_type or "HC1")
    if standardize and privacy is None:
        model.standardized_ = standardized_coefficients(model, aggregate)
    model.study_ = getattr(aggregate, "study", None)
    model.keep_exact = exact
    if study is not None and model.has_inference:  # the emission-factor report needs the study's units
        model.inference().set_units(study)
    # The file's full covariance gives back the pooled Gram: not below the study's threshold + 1 contributors.
    model.release_covariance = covariance_releasable(
        model.contributors_, study.min_contributors if study is not None else DEFAULT_MIN_CONTRIBUTORS)
    if signer is not None:  # signed over the study and contributors the key holder released the sums for
        model.study_ = aggregate.release.study
        model = sign_model(model, signer)
    return Release(model, curve, list(curve.notes) if curve is not None else [])


def sign_model(model: LinearModel, signer: KeyHolderSigner) -> LinearModel:
    """The model signed by the key holder's release key, with its study and contributor set.

    The signed model is rebuilt from its signed JSON, so what is returned is exactly what a
    reader of the file gets (its ``release_`` verified); a change after signing drops the
    signature from what is written (``to_dict`` keeps it only while the contents match)."""
    signed = signer.sign(model.to_dict(), "model", model.study_, list(model.contributors_))
    return LinearModel.from_dict(signed, "the signed model")
