"""GLMs by encrypted IRLS: the key holder's signed coefficients, the factory's checks, the key holder's step.

One fit is a chain of rounds. The key holder starts it with **signed coefficients** for iteration 0
(no values: each row starts from its own mean), and after each round decrypts only the consortium sum
(through :func:`~hefed.roles.decrypt_bundle`: threshold, signatures of a signed round, support, and the
ledger, which lets every round of the fit be decrypted only over the *same* contributor set), solves
the next coefficients exactly from the decrypted integers and signs them for the next iteration.

:class:`GLMCoefficients` (file ``hefed.glm_coefficients``) carries the fit's random id, the study's
digest, the family and link, the columns, the iteration, whether it is a round of the intercept-only
(null) model, the coefficients (float64, each the exact rational solution rounded once), and the digest
of the previous iteration's coefficients: a hash chain. It is signed with the key holder's Ed25519
release key (``what = "glm_coefficients"``); its digest is the round bundles' ``coef_digest``.

A factory computes a round only for coefficients that (:meth:`GLMFactoryLog.check`)

* carry a valid signature by the key holder its study names, released for its study;
* are of its study's target, features, family and link;
* continue its own record of the fit: iteration 0 of a fit it has not seen, or iteration ``t + 1``
  whose ``previous`` is the digest of the iteration ``t`` it contributed to.

So a malicious aggregator cannot choose coefficients (say, ones that make the weights vanish outside
one plant's rows), cannot replay an old iteration, skip one or fork the chain, and cannot mix rounds of
two fits or studies (the bundles' ``coef_digest`` differ, and the aggregator refuses to add them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey

from .._files import atomic_write_json, check_format, check_writable, is_digest, read_json_object
from .._keys import key_fingerprint, load_private_key
from ..data import Table
from ..errors import InvalidFileError, ReleaseError, RoundError, SchemaMismatchError, UsageError
from ..kinds import Header
from ..kinds._glm_round import GLM_ROUND, GLMRoundRequest, round_parameters
from ..models._glm import GLMResults
from ..primitives.encryption import DEFAULT_METHOD, Encryption
from ..primitives.exactsolve import SingularMatrixError, solve_exact
from ..protocol import Bundle, KeyHolderSigner, Roster, Study, check_signer, load_release_key
from ..protocol._signed import ReleaseSignature, open_release
from ..stats import Encoding, Rounding
from ..stats._glm import (
    GLMConvergenceError,
    GLMGrid,
    GLMRoundSums,
    check_family,
    design_columns,
    glm_round_sums,
)
from ._factory import EncryptResult, _encrypt
from ._keyholder import DEFAULT_MIN_CONTRIBUTORS, decrypt_bundle
from ._ledger import DecryptionLedger, default_ledger_path

COEF_FORMAT = "hefed.glm_coefficients"
COEF_VERSION = 1
SIGNED_WHAT = "glm_coefficients"
STATE_FORMAT = "hefed.glm_fit_state"
#: The convergence rule's floor: converged when max_j |Δβ_j| / (|β_j| + 1e-8) ≤ tol.
CONVERGENCE_FLOOR = 1e-8


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class GLMCoefficients:
    """The coefficients of one IRLS iteration, as the key holder signs them (module docstring).

    ``params`` are in design order (the intercept, then the features sorted by name), ``None`` at the first
    iteration of a model (each row starts from its own mean).
    """

    fit_id: str
    study: str | None
    family: str
    link: str
    target: str
    features: tuple[str, ...]
    iteration: int
    null_model: bool
    params: tuple[float, ...] | None
    previous: str | None
    #: The fit's estimate: this round only computes the results at it (``"final"``), or it continues.
    stage: str = "irls"
    release: ReleaseSignature | None = field(default=None, compare=False)
    signed: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        return {"format": COEF_FORMAT, "version": COEF_VERSION, "fit_id": self.fit_id, "study": self.study,
                "family": self.family, "link": self.link, "target": self.target, "features": list(self.features),
                "iteration": self.iteration, "null_model": self.null_model,
                "params": None if self.params is None else [float(v) for v in self.params],
                "previous": self.previous, "stage": self.stage}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.signed) if self.signed is not None else self.body()

    def digest(self) -> str:
        """SHA-256 (32 hex digits) of the signed file: what the round's bundles name as ``coef_digest``."""
        return hashlib.sha256(_canonical(self.to_dict())).hexdigest()[:32]

    def sign(self, signer: KeyHolderSigner, contributors: Sequence[str] = ()) -> GLMCoefficients:
        signed = signer.sign(self.body(), SIGNED_WHAT, self.study, list(contributors))
        return GLMCoefficients.from_dict(signed, "the signed coefficients")

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GLMCoefficients:
        return cls.from_dict(read_json_object(path, "GLM coefficients"), str(path))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "GLM coefficients") -> GLMCoefficients:
        check_format(obj, source, COEF_FORMAT, COEF_VERSION, "GLM coefficients")
        release = open_release(obj, source)  # a signature present is checked (whose key: the reader's check)
        try:
            family, link = check_family(obj.get("family"), obj.get("link"))
        except UsageError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        features, params = obj.get("features"), obj.get("params")
        fields_ok = (
            is_digest(obj.get("fit_id")) and (obj.get("study") is None or is_digest(obj.get("study")))
            and isinstance(obj.get("target"), str) and isinstance(features, list)
            and all(isinstance(f, str) for f in features)
            and isinstance(obj.get("iteration"), int) and not isinstance(obj.get("iteration"), bool)
            and 0 <= obj["iteration"] <= 4096 and isinstance(obj.get("null_model"), bool)
            and (obj.get("previous") is None or is_digest(obj.get("previous")))
            and obj.get("stage") in ("irls", "final")
            and (params is None or (isinstance(params, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in params))))
        if not fields_ok:
            raise InvalidFileError(f"{source}: malformed GLM coefficients")
        assert isinstance(features, list)
        expected = len(design_columns(features, obj["null_model"]))
        if params is not None and len(params) != expected:
            raise InvalidFileError(f"{source}: {len(params)} coefficients for {expected} design columns")
        return cls(obj["fit_id"], obj.get("study"), family, link, obj["target"], tuple(features), obj["iteration"],
                   obj["null_model"], None if params is None else tuple(float(v) for v in params),
                   obj.get("previous"), obj["stage"], release, obj)


# --- factory side ---------------------------------------------------------------------------------------
#: Most GLM fits a factory computes rounds for in one study, and most rounds in all: a key holder that starts fit
#: after fit over the same rows would otherwise collect any number of weighted sums of them (the ledger allows
#: the same set again). A Gamma fit takes about 20 rounds; a study fits a few models.
MAX_GLM_FITS_PER_STUDY = 20
MAX_GLM_ROUNDS_PER_STUDY = 1000


@dataclass
class GLMFactoryLog:
    """A factory's record of the GLM fits it took part in: per fit id, the last iteration and its digest.

    Kept in memory, or in a JSON file (``path``) for factories run command by command."""

    fits: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    def check(self, coefficients: GLMCoefficients, study_digest: str | None, keyholder: str | None,
              target: str, features: Sequence[str], family: str, link: str) -> None:
        """Refuse coefficients this factory must not compute a round for (module docstring)."""
        if keyholder is None:
            raise ReleaseError("GLM rounds need the study's key holder release key: coefficients nobody can check "
                               "could be chosen to single out a plant's rows")
        check_signer(coefficients.release, keyholder, "the round's coefficients", SIGNED_WHAT)
        assert coefficients.release is not None
        if coefficients.release.study != study_digest or coefficients.study != study_digest:
            raise SchemaMismatchError("the round's coefficients were signed for another study")
        if coefficients.target != target or sorted(coefficients.features) != sorted(features):
            raise SchemaMismatchError("the round's coefficients are not of the study's target and features")
        if (coefficients.family, coefficients.link) != (family, link):
            raise SchemaMismatchError(f"the round's coefficients are of a {coefficients.family}/{coefficients.link} "
                                      f"model, the study's rounds of a {family}/{link} one")
        of_study = [fit for fit in self.fits.values() if fit.get("study") == study_digest]
        if sum(int(fit.get("rounds", 1)) for fit in of_study) >= MAX_GLM_ROUNDS_PER_STUDY:
            raise RoundError(f"refused: this factory computed {MAX_GLM_ROUNDS_PER_STUDY} GLM rounds in this study, "
                             "its budget (more weighted sums of the same rows would say more about them)")
        seen = self.fits.get(coefficients.fit_id)
        if seen is None:
            if coefficients.iteration != 0 or coefficients.previous is not None:
                raise RoundError(f"refused: coefficients of iteration {coefficients.iteration} of a fit this factory "
                                 "has not started (a fit starts at iteration 0)")
            if len(of_study) >= MAX_GLM_FITS_PER_STUDY:
                raise RoundError(f"refused: this factory took part in {MAX_GLM_FITS_PER_STUDY} GLM fits of this "
                                 "study, its budget (more fits of the same rows would say more about them)")
            return
        if coefficients.iteration != seen["iteration"] + 1 or coefficients.previous != seen["digest"]:
            raise RoundError(f"refused: coefficients of iteration {coefficients.iteration}, but this factory's last "
                             f"round of the fit was iteration {seen['iteration']} (a replayed, skipped or forked "
                             "iteration)")

    def record(self, coefficients: GLMCoefficients) -> None:
        rounds = int(self.fits.get(coefficients.fit_id, {}).get("rounds", 0)) + 1
        self.fits[coefficients.fit_id] = {"iteration": coefficients.iteration, "digest": coefficients.digest(),
                                          "study": coefficients.study, "rounds": rounds}
        if self.path is not None:
            atomic_write_json(self.path, {"format": "hefed.glm_factory_log", "version": 1, "fits": self.fits},
                              force=True, mode=0o600)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GLMFactoryLog:
        path = Path(path)
        if not path.exists():
            return cls({}, path)
        obj = read_json_object(path, "GLM factory log")
        check_format(obj, str(path), "hefed.glm_factory_log", 1, "GLM factory log")
        fits = obj.get("fits")
        if not isinstance(fits, dict) or not all(
                is_digest(k) and isinstance(v, dict) and isinstance(v.get("iteration"), int)
                and is_digest(v.get("digest")) for k, v in fits.items()):
            raise InvalidFileError(f"{path}: malformed GLM factory log")
        return cls(fits, path)


def glm_request(study: Study, coefficients: GLMCoefficients) -> GLMRoundRequest:
    """The study's ``glm_round`` request at these coefficients (refused if the study does not allow the kind)."""
    request: GLMRoundRequest = study.request(GLM_ROUND.name, model=coefficients)
    return request


def encrypt_glm_round(
    data: pd.DataFrame | str | os.PathLike[str],
    study: Study,
    coefficients: GLMCoefficients,
    *,
    factory_id: str,
    log: GLMFactoryLog,
    encryption: Encryption = DEFAULT_METHOD,
    insecure_test_key: bool = False,
) -> EncryptResult:
    """What ``hefed encrypt --kind glm_round --model beta.json`` does: check the coefficients (signed by the
    study's key holder, for this study, continuing the factory's record of the fit), compute the round's
    exact sums of the factory's table and encrypt them; the round is recorded in ``log`` once sealed."""
    request = glm_request(study, coefficients)
    family, link = request.family_link
    log.check(coefficients, study.digest, study.keyholder, study.target.name, study.model_features, family, link)
    table = Table(data, study.target.name, study.model_features, factory_id, study.cleaning_with(None),
                  study.holdout, None,
                  study.categories)
    del insecure_test_key  # the study's key was checked when the study was built
    result = _encrypt(table, GLM_ROUND, request, study.encoding, study.public_key, None, encryption, study.digest)
    log.record(coefficients)
    return result


def encrypt_glm_arrays(
    X: np.ndarray, y: np.ndarray, features: Sequence[str], target: str, coefficients: GLMCoefficients, *,
    study_digest: str | None, keyholder: str | None, encoding: Encoding, grid: GLMGrid,
    public_key: PaillierPublicKey, factory_id: str, log: GLMFactoryLog, offset: np.ndarray | None = None,
    rounding: Rounding | None = None,
) -> Bundle:
    """A factory's round from float64 arrays (the in-process estimator): the same checks, sums and sealing."""
    log.check(coefficients, study_digest, keyholder, target, features, coefficients.family, coefficients.link)
    sums = glm_round_sums(X, y, features, target, encoding, coefficients.family, coefficients.link, grid,
                          coefficients.params, coefficients.iteration, coefficients.digest(), offset=offset,
                          null_model=coefficients.null_model, factory_id=factory_id, source=f"factory {factory_id!r}",
                          rounding=rounding)
    parameters = round_parameters(coefficients.family, coefficients.link, grid, coefficients.iteration,
                                  coefficients.null_model, coefficients.digest())
    bundle = Bundle.seal(GLM_ROUND, Header(target, tuple(features), encoding, parameters), sums, public_key,
                         factory_id, study=study_digest)
    log.record(coefficients)
    return bundle


# --- key holder side ---------------------------------------------------------------------------------------
def solve_step(sums: GLMRoundSums) -> list[float]:
    """The next coefficients from a round's exact sums: ``(XᵀŴX)⁻¹ XᵀÛ`` solved exactly, rounded once to float64
    (design order)."""
    scales = sums.scales
    # Σ_b G_ab 2^-(g+F_a+F_b) β_b = U_a 2^-(g+F_a)  ⇔  Σ_b G_ab γ_b = U_a with γ_b = β_b 2^-F_b
    try:
        gamma = solve_exact(sums.xtwx, sums.xtwz)
    except SingularMatrixError as exc:
        names = [sums.columns[j] for j in exc.dependent]
        raise GLMConvergenceError(f"XᵀWX is singular at iteration {sums.iteration}: columns {names} are collinear, or "
                                  "their weights vanished (separation, or a level with zero counts)") from None
    out = []
    for value, bits in zip(gamma, scales, strict=True):
        exact = value * Fraction(1 << bits)
        if abs(exact) >= 2**1000:
            raise GLMConvergenceError(f"the coefficients diverge at iteration {sums.iteration}")
        out.append(float(exact))
    return out


def relative_change(new: Sequence[float], old: Sequence[float]) -> float:
    """max_j |new_j − old_j| / (|new_j| + 1e-8): the convergence measure."""
    return max(abs(a - b) / (abs(a) + CONVERGENCE_FLOOR) for a, b in zip(new, old, strict=True))


@dataclass
class GLMFit:
    """The key holder's state of one fit: the coefficients it signed last, the path, and the results so far."""

    coefficients: GLMCoefficients
    max_iter: int = 100
    tol: float = 1e-12
    needs_null: bool = False
    contributors: list[str] = field(default_factory=list)
    n_iter: int = 0
    changes: list[float] = field(default_factory=list)
    deviances: list[float] = field(default_factory=list)
    results: GLMResults | None = None
    main_final: GLMRoundSums | None = None
    main_params: tuple[float, ...] | None = None
    null_iter: int = 0
    feature_order: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.results is not None

    def to_dict(self) -> dict[str, Any]:
        """The key holder's state file (``hefed glm step --state``): private to the key holder (mode 0600)."""
        return {"format": STATE_FORMAT, "version": 1, "coefficients": self.coefficients.to_dict(),
                "max_iter": self.max_iter, "tol": self.tol, "needs_null": self.needs_null,
                "contributors": self.contributors, "n_iter": self.n_iter, "changes": self.changes,
                "deviances": self.deviances, "null_iter": self.null_iter, "feature_order": list(self.feature_order),
                "main_final": None if self.main_final is None else self.main_final.to_dict(),
                "main_params": None if self.main_params is None else list(self.main_params),
                "results": None if self.results is None else self.results.to_dict()}

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "GLM fit state") -> GLMFit:
        check_format(obj, source, STATE_FORMAT, 1, "GLM fit state")
        try:
            coefficients = GLMCoefficients.from_dict(obj["coefficients"], source)
            main_final = None if obj["main_final"] is None else GLMRoundSums.from_dict(obj["main_final"], source)
            if obj["results"] is not None:
                raise InvalidFileError(f"{source}: this fit is finished")
            return cls(coefficients, int(obj["max_iter"]), float(obj["tol"]), bool(obj["needs_null"]),
                       [str(c) for c in obj["contributors"]], int(obj["n_iter"]),
                       [float(v) for v in obj["changes"]], [float(v) for v in obj["deviances"]], None, main_final,
                       None if obj["main_params"] is None else tuple(float(v) for v in obj["main_params"]),
                       int(obj["null_iter"]), tuple(str(f) for f in obj["feature_order"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidFileError(f"{source}: malformed GLM fit state ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, self.to_dict(), force=True, mode=0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GLMFit:
        return cls.from_dict(read_json_object(path, "GLM fit state"), str(path))


def start_fit(signer: KeyHolderSigner, study_digest: str | None, family: str, link: str | None, target: str,
              features: Sequence[str], *, max_iter: int = 100, tol: float = 1e-12, offset: bool = False,
              fit_id: str | None = None) -> GLMFit:
    """The key holder starts a fit: a random fit id and the signed coefficients of iteration 0."""
    family, link = check_family(family, link)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or not 1 <= max_iter <= 1000:
        raise UsageError(f"max_iter must be an integer in [1, 1000], got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise UsageError(f"tol must be a number in (0, 1), got {tol!r}")
    first = GLMCoefficients(fit_id or secrets.token_hex(16), study_digest, family, link, target, tuple(features), 0,
                            False, None, None).sign(signer)
    return GLMFit(first, max_iter, float(tol), offset, feature_order=tuple(features))


def _check_round(fit: GLMFit, sums: GLMRoundSums) -> None:
    c = fit.coefficients
    if sums.coef_digest != c.digest() or sums.iteration != c.iteration or sums.null_model != c.null_model:
        raise RoundError(f"the aggregate is of iteration {sums.iteration} with other coefficients than the ones this "
                         f"key holder signed for iteration {c.iteration} of the fit")
    if (sums.family, sums.link, sums.target, sorted(sums.features)) != (c.family, c.link, c.target,
                                                                     sorted(c.features)):
        raise SchemaMismatchError("the aggregate is of another model than the fit's")


def glm_step(fit: GLMFit, sums: GLMRoundSums, signer: KeyHolderSigner) -> GLMFit:
    """One step of the key holder, from the decrypted (checked) sums of the current round: the next signed
    coefficients, or the results when the round was the final one (module docstring)."""
    if fit.done:
        raise UsageError("this fit is finished")
    _check_round(fit, sums)
    c = fit.coefficients
    contributors = sorted(sums.contributors)
    if fit.contributors and contributors != fit.contributors:
        raise RoundError("the round's contributors differ from the fit's: a drop-out ends the fit")
    fit.contributors = contributors
    deviance = float(sums.real(sums.deviance))
    if c.stage == "final":
        if not c.null_model:
            assert c.params is not None
            fit.main_final, fit.main_params = sums, c.params
            if not fit.needs_null:
                fit.results = GLMResults.from_sums(sums, c.params, fit.feature_order, fit.n_iter)
                return fit
            nxt = GLMCoefficients(c.fit_id, c.study, c.family, c.link, c.target, c.features, c.iteration + 1, True,
                                  None, c.digest())
        else:
            assert fit.main_final is not None and fit.main_params is not None
            fit.results = GLMResults.from_sums(fit.main_final, fit.main_params, fit.feature_order, fit.n_iter,
                                               null_deviance=deviance)
            return fit
    else:
        if not c.null_model:
            fit.deviances.append(deviance)
        new = solve_step(sums)
        if c.null_model:
            fit.null_iter += 1
        else:
            fit.n_iter += 1
        change = math.inf if c.params is None else relative_change(new, c.params)
        if not c.null_model and math.isfinite(change):
            fit.changes.append(change)
        if c.family == "binomial" and not c.null_model and deviance < 1e-9 * sums.n and c.params is not None:
            raise GLMConvergenceError("perfect separation: the model predicts every 0/1 response exactly, so the "
                                      "maximum-likelihood estimate does not exist (drop or merge the separating "
                                      "columns)")
        iterations = fit.null_iter if c.null_model else fit.n_iter
        converged = change <= fit.tol
        if not converged and iterations >= fit.max_iter:
            cause = {"binomial": "quasi-separation (a column that nearly splits 0s from 1s)",
                     "poisson": "a level or region with zero counts",
                     "gamma": "the slow, linear convergence of Gamma IRLS (raise max_iter)"}[c.family]
            raise GLMConvergenceError(
                f"IRLS did not converge in max_iter={fit.max_iter} iterations (last relative change {change:.3g} > "
                f"tol={fit.tol:g}); likely cause: {cause}, or a grid too coarse for tol (grid_bits)")
        nxt = GLMCoefficients(c.fit_id, c.study, c.family, c.link, c.target, c.features, c.iteration + 1,
                              c.null_model, tuple(new), c.digest(), "final" if converged else "irls")
    fit.coefficients = nxt.sign(signer, contributors)
    return fit


@dataclass
class GLMKeyHolder:
    """The key holder of GLM fits: its Paillier private key, release key, threshold, ledger and study."""

    private_key: PaillierPrivateKey
    signer: KeyHolderSigner
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
    ledger: DecryptionLedger | None = None
    study: Study | None = None
    roster: Roster | None = None
    allow_unsigned: bool = False

    def decrypt(self, aggregate: Bundle) -> GLMRoundSums:
        """Decrypt a round's aggregate: only the consortium sum, through every check and the ledger."""
        result: GLMRoundSums = decrypt_bundle(aggregate, self.private_key, self.min_contributors, self.roster,
                                              GLM_ROUND.name, self.study, allow_unsigned=self.allow_unsigned,
                                              ledger=self.ledger)
        return result

    def step(self, fit: GLMFit, aggregate: Bundle) -> GLMFit:
        """Check the aggregate is of the fit's current coefficients, decrypt it, and take the next step."""
        c = fit.coefficients
        if aggregate.parameters.get("coef_digest") != c.digest():
            raise RoundError("the aggregate is not of the coefficients this key holder signed for the fit's current "
                             "iteration; nothing was decrypted")
        if self.study is not None:  # the grid and bounds the study agreed (a runtime kind's are not checked there)
            request = _study_glm(self.study)
            expected = round_parameters(c.family, c.link, request.grid, c.iteration, c.null_model, c.digest())
            if dict(aggregate.parameters) != expected:
                raise SchemaMismatchError("the round's parameters (family, link, grid or bounds) are not the "
                                          "study's; nothing was decrypted")
        return glm_step(fit, self.decrypt(aggregate), self.signer)


# --- the same steps with files (the CLI) ------------------------------------------------------------------
PathLike = str | os.PathLike[str]


def _study_glm(study: Study) -> GLMRoundRequest:
    if not study.allows(GLM_ROUND.name):
        raise UsageError(f"study {study.digest} does not allow {GLM_ROUND.name} bundles (hefed study new --kinds)")
    request: GLMRoundRequest = GLM_ROUND.request_for(study.kinds[GLM_ROUND.name])
    return request


def start_fit_files(study: Study | PathLike, release_key: KeyHolderSigner | PathLike, out: PathLike,
                    state: PathLike, *, max_iter: int = 100, tol: float = 1e-12, force: bool = False,
                    allow_insecure_permissions: bool = False) -> GLMFit:
    """What ``hefed glm start`` does: the key holder signs iteration 0 of a new fit of the study's GLM, writes the
    coefficients (``out``, for every factory) and its own state (``state``, mode 0600)."""
    check_writable(out, force)
    check_writable(state, force)
    study = Study.load(study) if isinstance(study, (str, os.PathLike)) else study
    signer = (load_release_key(release_key, allow_insecure_permissions)
              if isinstance(release_key, (str, os.PathLike)) else release_key)
    if study.keyholder is None or signer.public != study.keyholder:
        raise ReleaseError("the release key is not the key holder's the study names (hefed study new --key-holder)")
    request = _study_glm(study)
    family, link = request.family_link
    fit = start_fit(signer, study.digest, family, link, study.target.name, study.model_features, max_iter=max_iter,
                    tol=tol, offset=request.offset is not None or request.exposure is not None)
    fit.coefficients.save(out, force=force)
    fit.save(state)
    return fit


def encrypt_glm_round_file(data: pd.DataFrame | PathLike, study: Study | PathLike, model: GLMCoefficients | PathLike,
                           out: PathLike, *, factory_id: str, log: GLMFactoryLog | PathLike,
                           force: bool = False) -> EncryptResult:
    """What ``hefed glm encrypt`` does: :func:`encrypt_glm_round` with files; the bundle is written atomically and
    the round recorded in the factory's log only then."""
    check_writable(out, force)
    study = Study.load(study) if isinstance(study, (str, os.PathLike)) else study
    model = GLMCoefficients.load(model) if isinstance(model, (str, os.PathLike)) else model
    log = GLMFactoryLog.open(log) if isinstance(log, (str, os.PathLike)) else log
    memory = GLMFactoryLog(dict(log.fits))  # recorded in the file only once the bundle is written
    result = encrypt_glm_round(data, study, model, factory_id=factory_id, log=memory)
    result.bundle.save(out, force=force)
    log.record(model)
    return result


def step_files(aggregate: Bundle | PathLike, private_key: PaillierPrivateKey | PathLike, study: Study | PathLike,
               state: PathLike, out: PathLike, *, release_key: KeyHolderSigner | PathLike | None = None,
               roster: Roster | PathLike | None = None, ledger: DecryptionLedger | PathLike | None = None,
               min_contributors: int = DEFAULT_MIN_CONTRIBUTORS, allow_unsigned: bool = False,
               allow_insecure_permissions: bool = False, force: bool = False) -> GLMFit:
    """What ``hefed glm step`` does: decrypt a round's aggregate (only the sum, every check, the ledger beside the
    private key by default), and write the next signed coefficients to ``out`` — or, when the fit is done, its
    results (format ``hefed.glm_results``, signed) — and the new state."""
    check_writable(out, force)
    key_path = None if isinstance(private_key, PaillierPrivateKey) else Path(private_key)
    if key_path is not None:
        private_key = load_private_key(key_path, allow_insecure_permissions)
    assert isinstance(private_key, PaillierPrivateKey)
    study = Study.load(study) if isinstance(study, (str, os.PathLike)) else study
    roster = Roster.load(roster) if isinstance(roster, (str, os.PathLike)) else roster
    aggregate = Bundle.load(aggregate) if isinstance(aggregate, (str, os.PathLike)) else aggregate
    if release_key is None and key_path is not None:
        release_key = key_path.resolve().parent / "keyholder.key.json"
    if release_key is None:
        raise UsageError("give the key holder's release key: it signs the next coefficients")
    signer = (load_release_key(release_key, allow_insecure_permissions)
              if isinstance(release_key, (str, os.PathLike)) else release_key)
    if study.keyholder is None or signer.public != study.keyholder:
        raise ReleaseError("the release key is not the key holder's the study names")
    if ledger is None and key_path is not None:
        ledger = default_ledger_path(key_path)
    if isinstance(ledger, (str, os.PathLike)):
        ledger = DecryptionLedger.open(ledger, key_fingerprint(private_key.public_key))
    fit = GLMFit.load(state)
    keyholder = GLMKeyHolder(private_key, signer, min_contributors, ledger, study, roster, allow_unsigned)
    keyholder.step(fit, aggregate)
    if fit.results is not None:  # both written only once both are made (nothing half-written)
        atomic_write_json(out, signer.sign(fit.results.to_dict(), "glm_results", study.digest, fit.contributors),
                          force=force)
        Path(state).unlink()
    else:
        next_state = fit.to_dict()
        fit.coefficients.save(out, force=force)
        atomic_write_json(state, next_state, force=True, mode=0o600)
    return fit


__all__ = [
    "GLMCoefficients",
    "GLMFactoryLog",
    "GLMFit",
    "GLMKeyHolder",
    "encrypt_glm_arrays",
    "encrypt_glm_round",
    "encrypt_glm_round_file",
    "start_fit_files",
    "step_files",
    "glm_step",
    "relative_change",
    "solve_step",
    "start_fit",
]
