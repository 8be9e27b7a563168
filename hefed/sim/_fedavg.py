"""Iterative FedAvg, simulated with real encryption, against the exact one-round statistics model.

Statistics mode (the rest of hefed) gets the pooled least-squares model in one
encrypted round. Classic federated learning instead averages *models* for many
rounds. :func:`simulate_fedavg` runs that protocol so the two can be compared
on the same consortium and the same holdout.

**Round r = 1 … R.** Every factory ``i`` (``n_i`` training rows, ``Z_i = [1, X_i]``)
starts from the current global model ``θ^{r−1}`` (round 0: ``θ⁰ = 0``) and takes
the proximal-ridge local step

    θ_i^r = argmin_θ ‖y_i − Z_i θ‖² + μ_i ‖θ − θ^{r−1}‖²,     μ_i = mu · n_i,
          = (Z_iᵀZ_i + μ_i I)⁻¹ (Z_iᵀy_i + μ_i θ^{r−1})          (intercept penalised too),

solved exactly from its integer statistics and rounded to float64, as any
published model is. It encrypts ``n_i`` and ``n_i θ_i^r``
(a ``coefficients`` bundle, :func:`hefed.kinds.coefficient_sums`); the aggregator multiplies the
ciphertexts (:func:`hefed.roles.aggregate`); the key holder decrypts only the sum
(:func:`hefed.roles.decrypt_bundle`), and the new global model is the
exact n-weighted average ``θ^r = Σ n_i θ_i^r / Σ n_i``, published as float64.
So round 1 is plain FedAvg of the factories' local ridge fits (toward 0).

**Why proximal ridge rather than gradient epochs.** The local step is the
FedProx objective ``(1/n_i)‖y_i − Z_i θ‖² + mu ‖θ − θ^{r−1}‖²`` solved to
optimality, exactly, instead of approximately by a few epochs of SGD: no
learning rate, batch size or epoch count to tune, no optimiser noise, and the
only approximation left is the one FedAvg itself makes. The prox term keeps the
step well-posed when a factory cannot identify a coefficient alone (a fuel it
never burns: the built-in chemicals, power and glass plants use no coal and
make no clinker), where local OLS is singular. Gradient epochs would show the
same phenomenon, only with an extra tuning knob and less reproducibly.

**Where it converges, and how fast.** One round is the affine map
``θ^r = M θ^{r−1} + c`` with ``M = Σ w_i μ_i (A_i + μ_i I)⁻¹``,
``c = Σ w_i (A_i + μ_i I)⁻¹ b_i``, ``w_i = n_i / Σ n``, ``A_i = Z_iᵀZ_i``,
``b_i = Z_iᵀy_i``. Its fixed point solves ``Σ w_i (A_i + μ_i I)⁻¹ (b_i − A_i θ*) = 0``,
while the exact pooled model solves ``Σ (b_i − A_i θ) = 0``: the factories'
residual directions are re-weighted by their own ``(A_i + μ_i I)⁻¹`` — client
drift on non-identical data — so θ* is biased unless all factories share
``A_i ∝ n_i A`` or μ → ∞. For large ``mu`` the bias vanishes
(``μ_i (A_i + μ_i I)⁻¹ → I``) but the contraction ``ρ(M) → 1``: the map becomes
gradient descent with step ``1/(mu·Σn)`` on badly conditioned raw-unit data,
and the rounds crawl. Small ``mu`` converges in a few rounds, to a biased
point. The report gives both numbers: the exact fixed point's relative error
(``fixed_point_error``, computed in exact arithmetic from the plaintext
statistics — possible only in a simulation) and ``contraction = ρ(M)``.

**Default ``mu = 1``**: in the per-row form above the penalty weighs one unit of
``‖θ − θ^{r−1}‖²`` like the mean squared residual, the largest value of the grid
FedProx tunes over ({0.001, 0.01, 0.1, 1}); larger is less biased and smaller
converges faster (on the built-in data mu = 0.001 is at its limit within ~10
rounds, but that limit is worse: coefficient error 0.19 and holdout MSE 4.0e4,
against 0.16 and 3.4e4 for mu = 1, and 2.2e3 for the exact model). Every μ_i
is proportional to n_i, so small and large plants are held to the global model
equally.

**Per round** the report records the relative coefficient error
``‖θ^r − θ_exact‖ / ‖θ_exact‖`` over the feature coefficients (``coef_``, the
emission factors; ``rel_param_error`` adds the intercept, whose size depends on
the units and which here starts far away, at 0) against the exact
statistics-mode model ``θ_exact`` (one encrypted round of sufficient
statistics, :func:`hefed.roles.solve`), and the pooled holdout MSE of ``θ^r`` next to
that of ``θ_exact`` (exact residual sums, :func:`hefed.roles.evaluate_local`
on each factory's holdout). Neither gap need fall monotonically: the rounds
approach the biased fixed point, not θ_exact, and may pass closer to θ_exact on
the way.

Every role runs in one simulated consortium (:mod:`hefed.sim._consortium`), the same as the
other simulations use.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey

from .._files import atomic_write_bytes, check_writable
from ..analysis import proximal_fit
from ..data import compute_statistics, default_features, split_holdout
from ..errors import UsageError
from ..kinds import COEFFICIENTS, CoefficientsRequest, Header, coefficient_sums
from ..models import LinearModel
from ..primitives.exactsolve import exact_inverse
from ..roles import DEFAULT_MIN_CONTRIBUTORS, evaluate_local
from ..stats import ONES, CoefficientAggregate, SufficientStatistics
from ._consortium import Consortium
from ._defaults import DEFAULT_MU, SIMULATION_KEY_BITS

__all__ = ["DEFAULT_MU", "FedAvgReport", "FedAvgRound", "fedavg_fixed_point", "plot_fedavg", "simulate_fedavg"]


@dataclass
class FedAvgRound:
    """One round: the decrypted average model, its gap to the exact model, and what each factory sent.

    ``coef`` is in ``features`` order; ``coef_exact``/``intercept_exact`` are the exact decrypted
    average ``Σ n_i θ_i / Σ n_i`` (``coef``/``intercept`` its float64 rounding, the published model).
    ``local_updates`` maps each factory to the float64 (coef in ``features`` order, intercept) it
    encrypted. Round 0 is the starting model θ⁰ = 0 (nothing sent).
    """

    round: int
    coef: list[float]
    intercept: float
    coef_exact: list[Fraction]
    intercept_exact: Fraction
    rel_coef_error: float
    rel_param_error: float
    holdout_mse: float
    local_updates: dict[str, tuple[list[float], float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "coef": self.coef, "intercept": self.intercept,
                "rel_coef_error": self.rel_coef_error, "rel_param_error": self.rel_param_error,
                "holdout_mse": self.holdout_mse, "seconds": self.seconds}


@dataclass
class FedAvgReport:
    """Per-round FedAvg gaps to the exact statistics-mode model (see the module docstring)."""

    target: str
    features: list[str]
    mu: float
    key_bits: int
    n_train: dict[str, int]
    n_holdout: dict[str, int]
    exact_model: LinearModel
    exact_holdout_mse: float
    exact_seconds: float
    rounds: list[FedAvgRound] = field(default_factory=list)
    fixed_point_coef: list[Fraction] = field(default_factory=list)
    fixed_point_intercept: Fraction = Fraction(0)
    fixed_point_error: float = float("nan")
    fixed_point_param_error: float = float("nan")
    fixed_point_holdout_mse: float = float("nan")
    contraction: float = float("nan")
    plot_path: Path | None = None

    @property
    def final(self) -> FedAvgRound:
        return self.rounds[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "features": self.features, "mu": self.mu, "key_bits": self.key_bits,
            "n_train": self.n_train, "n_holdout": self.n_holdout,
            "exact": {"coef": [float(c) for c in self.exact_model.coef_], "intercept": self.exact_model.intercept_,
                      "holdout_mse": self.exact_holdout_mse, "seconds": self.exact_seconds},
            "fixed_point": {"coef": [float(c) for c in self.fixed_point_coef],
                            "intercept": float(self.fixed_point_intercept), "rel_coef_error": self.fixed_point_error,
                            "rel_param_error": self.fixed_point_param_error,
                            "holdout_mse": self.fixed_point_holdout_mse, "contraction": self.contraction},
            "rounds": [r.to_dict() for r in self.rounds],
        }


# --- exact helpers ----------------------------------------------------------------------
def _relative_error(theta: Sequence[Fraction], exact: Sequence[Fraction]) -> float:
    """‖θ − θ_exact‖ / ‖θ_exact‖, from exact squared norms (one square root, at the end)."""
    num = sum(((Fraction(a) - b) ** 2 for a, b in zip(theta, exact, strict=True)), Fraction(0))
    den = sum((b * b for b in exact), Fraction(0))
    return math.sqrt(num / den) if den else (0.0 if num == 0 else math.inf)


def _pooled_mse(model: LinearModel, holdouts: Mapping[str, pd.DataFrame], target: str) -> float:
    """Σ SSE / Σ n over every factory's holdout, each SSE exact (:func:`evaluate_local`)."""
    sse, n = Fraction(0), 0
    for frame in holdouts.values():
        sums = evaluate_local(model, frame, target)
        sse, n = sse + sums.sse, n + sums.n
    return float(sse / n)


def _model(features: Sequence[str], target: str, coef: Sequence[Fraction], intercept: Fraction, n: int,
           contributors: Sequence[str] = ()) -> LinearModel:
    return LinearModel(features, target, list(coef), intercept, n_samples=n, sse=None, sst=None,
                       contributors=contributors)


def fedavg_fixed_point(
    stats: Mapping[str, SufficientStatistics], mu: float | Fraction,
) -> tuple[dict[str, Fraction], Fraction, float]:
    """Exact fixed point θ* of the FedAvg round map and its contraction ρ(M) (module docstring).

    Solves ``(I − M) θ* = c`` exactly. Returns (coef by name, intercept, spectral radius of M as float).
    """
    first = next(iter(stats.values()))
    cols = first.columns[:-1]  # (1, features sorted); target last
    m, total_n = len(cols), sum(s.n for s in stats.values())
    mat = [[Fraction(0)] * m for _ in range(m)]
    vec = [Fraction(0)] * m
    for s in stats.values():
        mu_i = Fraction(mu) * s.n
        w = Fraction(s.n, total_n)
        a = [[s.exact(p, q) + (mu_i if i == j else 0) for j, q in enumerate(cols)] for i, p in enumerate(cols)]
        inv = exact_inverse(a)
        if inv is None:  # cannot happen for μ > 0: A + μI is positive definite
            raise UsageError("proximal system is singular")
        b = [s.exact(p, s.target) for p in cols]
        for i in range(m):
            vec[i] += w * sum((inv[i][j] * b[j] for j in range(m)), Fraction(0))
            for j in range(m):
                mat[i][j] += w * mu_i * inv[i][j]
    contraction = float(max(abs(np.linalg.eigvals(np.array([[float(v) for v in row] for row in mat])))))
    lhs = [[(1 if i == j else 0) - mat[i][j] for j in range(m)] for i in range(m)]
    inv = exact_inverse(lhs)
    if inv is None:
        raise UsageError("the FedAvg map has no unique fixed point")
    theta = [sum((inv[i][j] * vec[j] for j in range(m)), Fraction(0)) for i in range(m)]
    return dict(zip(cols[1:], theta[1:], strict=True)), theta[0], contraction


def _check_mu(mu: float) -> Fraction:
    if isinstance(mu, bool) or not isinstance(mu, (int, float, Fraction)) or not math.isfinite(mu) or mu <= 0:
        raise UsageError(f"mu must be a finite positive number, got {mu!r}")
    return Fraction(mu)


# --- the simulation ---------------------------------------------------------------------
def simulate_fedavg(
    factories: Mapping[str, pd.DataFrame],
    target: str,
    features: Sequence[str] | None = None,
    rounds: int = 20,
    mu: float = DEFAULT_MU,
    test_fraction: float = 0.25,
    seed: int = 0,
    key_bits: int = SIMULATION_KEY_BITS,
    public_key: PaillierPublicKey | None = None,
    private_key: PaillierPrivateKey | None = None,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    plot_path: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> FedAvgReport:
    """Run ``rounds`` rounds of encrypted FedAvg with proximal-ridge local steps (module docstring).

    Each factory holds out ``test_fraction`` of its rows (:func:`hefed.data.split_holdout`, ``seed``).
    Keys: ``public_key``/``private_key`` if given, else this process's simulation key of ``key_bits``
    bits (default :data:`~hefed.sim.SIMULATION_KEY_BITS`, 1024: an insecure test key, generated once
    and reused — the rounds' arithmetic does not depend on the key size, and a simulation holds every
    factory's plaintext anyway; never use it for real data). With ``plot_path`` a PNG of the gap
    against rounds is written atomically (refused if the file exists, unless ``force``). Needs at
    least ``min_contributors`` factories: the key holder decrypts nothing smaller.
    """
    mu_exact = _check_mu(mu)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise UsageError(f"rounds must be a positive integer, got {rounds!r}")
    if len(factories) < max(min_contributors, 2):
        raise UsageError(f"FedAvg needs at least {max(min_contributors, 2)} factories (the key holder decrypts "
                         f"only aggregates of {min_contributors} or more), got {len(factories)}")
    if plot_path is not None:
        check_writable(plot_path, force)
        _require_matplotlib()
    first = next(iter(factories.values()))
    features = list(features) if features else default_features(first, target)
    splits = {name: split_holdout(frame, test_fraction, seed) for name, frame in factories.items()}
    holdouts = {name: test for name, (_, test) in splits.items()}
    consortium = Consortium.simulated(key_bits, public_key, private_key, min_contributors)

    # The exact model: one encrypted round of sufficient statistics.
    start = time.perf_counter()
    exact = consortium.fit({name: train for name, (train, _) in splits.items()}, target, features)
    exact_seconds = time.perf_counter() - start
    exact_theta = [exact.intercept_exact_, *exact.coef_exact_]
    local = {name: compute_statistics(train, target, features, factory_id=name)
             for name, (train, _) in splits.items()}
    total_n = sum(s.n for s in local.values())

    report = FedAvgReport(target, features, float(mu), consortium.key_bits,
                          {k: s.n for k, s in local.items()}, {k: len(v) for k, v in holdouts.items()},
                          exact, _pooled_mse(exact, holdouts, target), exact_seconds)

    def record(r: int, coef: list[Fraction], intercept: Fraction, updates: dict[str, tuple[list[float], float]],
               seconds: float) -> LinearModel:
        model = _model(features, target, coef, intercept, total_n, list(local))
        published = [Fraction(model.intercept_), *(Fraction(float(c)) for c in model.coef_)]
        report.rounds.append(FedAvgRound(
            r, [float(c) for c in model.coef_], model.intercept_, list(coef), intercept,
            _relative_error(published[1:], exact_theta[1:]), _relative_error(published, exact_theta),
            _pooled_mse(model, holdouts, target), updates, seconds))
        return model

    global_model = record(0, [Fraction(0)] * len(features), Fraction(0), {}, 0.0)
    parameters = CoefficientsRequest().parameters()
    for r in range(1, rounds + 1):
        start = time.perf_counter()
        prior = {f: Fraction(float(c)) for f, c in zip(features, global_model.coef_, strict=True)}
        prior[ONES] = Fraction(global_model.intercept_)
        coefficient_bundles, updates = [], {}
        for name, stats in local.items():  # each factory, on its own site
            coef, intercept = proximal_fit(stats, mu_exact * stats.n, prior)
            update = _model(features, target, [coef[f] for f in features], intercept, stats.n, [name])
            updates[name] = ([float(c) for c in update.coef_], update.intercept_)
            sums = coefficient_sums(target, features, list(update.coef_), update.intercept_, stats.n, parameters, name)
            header = Header(target, tuple(features), stats.encoding, parameters)
            coefficient_bundles.append(consortium.encrypt_sums(name, COEFFICIENTS, header, sums))
        average: CoefficientAggregate = consortium.decrypt_aggregate(coefficient_bundles, COEFFICIENTS)
        coef_avg, intercept_avg = average.average()
        global_model = record(r, coef_avg, intercept_avg, updates, time.perf_counter() - start)

    fixed_coef, fixed_intercept, report.contraction = fedavg_fixed_point(local, mu_exact)
    report.fixed_point_coef = [fixed_coef[f] for f in features]
    report.fixed_point_intercept = fixed_intercept
    fixed_model = _model(features, target, report.fixed_point_coef, fixed_intercept, total_n)
    fixed_theta = [Fraction(fixed_model.intercept_), *(Fraction(float(c)) for c in fixed_model.coef_)]
    report.fixed_point_error = _relative_error(fixed_theta[1:], exact_theta[1:])
    report.fixed_point_param_error = _relative_error(fixed_theta, exact_theta)
    report.fixed_point_holdout_mse = _pooled_mse(fixed_model, holdouts, target)
    if plot_path is not None:
        report.plot_path = plot_fedavg(report, plot_path, force=force)
    return report


# --- the plot ---------------------------------------------------------------------------
def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("the plot needs matplotlib: pip install matplotlib") from None


def plot_fedavg(report: FedAvgReport, path: str | os.PathLike[str], force: bool = False) -> Path:
    """Write a PNG of the gap to the exact model against rounds (log-scale y), atomically.

    Top: relative coefficient error (feature coefficients; all parameters) with the fixed point's
    errors dashed. Bottom: pooled holdout MSE of each round's model and of the exact model.
    """
    check_writable(path, force)
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rounds = [r.round for r in report.rounds]
    fig = Figure(figsize=(7.5, 7.0), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    top, bottom = fig.subplots(2, 1, sharex=True)

    def positive(values: list[float]) -> list[float]:
        return [v if v > 0 else float("nan") for v in values]  # exact zeros cannot be drawn on a log axis

    top.plot(rounds, positive([r.rel_coef_error for r in report.rounds]), "o-", color="C0",
             label="feature coefficients")
    top.plot(rounds, positive([r.rel_param_error for r in report.rounds]), "s-", ms=4, color="C1",
             label="all parameters (intercept included)")
    if report.fixed_point_error > 0:
        top.axhline(report.fixed_point_error, ls="--", color="C0", alpha=0.6,
                    label=f"limit of FedAvg, feature coefficients ({report.fixed_point_error:.3g})")
    if report.fixed_point_param_error > 0:
        top.axhline(report.fixed_point_param_error, ls="--", color="C1", alpha=0.6,
                    label=f"limit of FedAvg, all parameters ({report.fixed_point_param_error:.3g})")
    top.set_yscale("log")
    top.set_ylabel("‖θ_r − θ_exact‖ / ‖θ_exact‖")
    top.set_title(f"FedAvg (proximal ridge, mu={report.mu:g}) vs one exact round of statistics\n"
                  f"{len(report.n_train)} factories, target {report.target}, contraction ρ={report.contraction:.4g}")
    top.legend(loc="best", fontsize="small")
    top.grid(True, which="both", alpha=0.3)
    bottom.plot(rounds, positive([r.holdout_mse for r in report.rounds]), "o-", label="FedAvg round model")
    if report.fixed_point_holdout_mse > 0:
        bottom.axhline(report.fixed_point_holdout_mse, ls="--", color="C0", alpha=0.6,
                       label=f"limit of FedAvg ({report.fixed_point_holdout_mse:.4g})")
    bottom.axhline(report.exact_holdout_mse, color="C2",
                   label=f"exact statistics-mode model, 1 round ({report.exact_holdout_mse:.4g})")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_yscale("log")
    bottom.set_xlabel("round")
    bottom.set_ylabel("pooled holdout MSE")
    bottom.legend(loc="best", fontsize="small")
    bottom.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue(), force=force)
