"""Optional differential privacy for the released model (Gaussian mechanism on the statistics).

Off by default, clearly labelled when on. The consortium declares per-column
bounds ``[lo_j, hi_j]`` (a bounds file); every factory clips its values to
them before computing statistics (``hefed encrypt --bounds FILE``;
:class:`hefed.data.Bounds`), so one row
``z = (1, x, y)`` changes the released upper triangle of ``ZᵀZ`` by at most

    Δ₂ = ‖vec(z zᵀ)‖₂ ≤ ‖z‖₂² ≤ 1 + Σ_j max(|lo_j|, |hi_j|)²        (add/remove one row)

``hefed solve --dp-epsilon ε --dp-delta δ --bounds FILE`` adds independent
Gaussian noise ``N(0, σ²)`` with ``σ = Δ₂ · √(2 ln(1.25/δ)) / ε`` to each
statistic (the classic Gaussian mechanism, Dwork & Roth 2014, Thm. 3.22,
valid for 0 < ε ≤ 1) and solves the noisy normal equations. Everything after
the noise is post-processing, so the model is (ε, δ)-differentially private
with respect to adding or removing any one row of any factory's data.

What it does **not** cover: the key holder still sees the exact aggregate
(noise is added when solving, not before decryption); rows are the privacy
unit, not whole factories; the standard errors and tests of the noisy fit
are not reported, since OLS inference ignores the added noise. Noise is drawn
from the operating system's CSPRNG (:class:`random.SystemRandom`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction

from ..data import Bounds
from ..errors import UsageError
from ..models import LinearModel
from ..stats import SufficientStatistics
from ._analyst import solve_statistics


@dataclass(frozen=True)
class DifferentialPrivacy:
    """An (ε, δ)-differentially private release: the budget and the bounds every factory clipped to."""

    epsilon: float
    delta: float
    bounds: Bounds

    def __post_init__(self) -> None:
        gaussian_sigma(1.0, self.epsilon, self.delta)  # validates epsilon and delta


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """σ of the classic Gaussian mechanism: Δ₂·√(2 ln(1.25/δ))/ε, for 0 < ε ≤ 1 and 0 < δ < 1."""
    if not 0 < epsilon <= 1:
        raise UsageError("dp epsilon must be in (0, 1] for the classic Gaussian mechanism",
                         parameters=("dp_epsilon",))
    if not 0 < delta < 1:
        raise UsageError("dp delta must be in (0, 1)", parameters=("dp_delta",))
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def dp_solve(
    stats: SufficientStatistics,
    epsilon: float,
    delta: float,
    bounds: Bounds,
    ridge: float = 0.0,
    fit_intercept: bool = True,
) -> LinearModel:
    """An (ε, δ)-differentially private model from exact statistics of clipped data (see module docstring)."""
    sensitivity = 1.0 + sum(bounds.bound(c) ** 2 for c in [*stats.features, stats.target])
    sigma = gaussian_sigma(sensitivity, epsilon, delta)
    rng = random.SystemRandom()
    m = len(stats.gram)
    scale = stats.scale_bits
    gram = [row[:] for row in stats.gram]
    for a in range(m):
        for b in range(a, m):
            # Noise in data units, then re-encoded on the statistic's own exact grid (post-processing).
            noisy = Fraction(gram[a][b], 1 << (scale[a] + scale[b])) + Fraction(rng.gauss(0.0, sigma))
            value = round(noisy * (1 << (scale[a] + scale[b])))
            gram[a][b] = gram[b][a] = value
    gram[0][0] = max(gram[0][0], 2)  # a noisy count must stay a usable positive number of rows
    noisy_stats = SufficientStatistics(stats.target, list(stats.features), stats.encoding, gram,
                                       list(stats.contributors))
    model = solve_statistics(noisy_stats, ridge=ridge, fit_intercept=fit_intercept)
    model._inference = None  # OLS standard errors would ignore the added noise
    model.dp_ = {
        "mechanism": "Gaussian mechanism on the sufficient statistics (Dwork & Roth 2014, Thm 3.22)",
        "epsilon": epsilon, "delta": delta, "sigma": sigma, "l2_sensitivity": sensitivity,
        "unit": "adding or removing one row of any factory's data",
        "not_covered": "the key holder sees the exact aggregate; standard errors of the noisy fit are not reported",
        "noisy_n": int(gram[0][0]), "columns": {c: list(bounds.columns[c]) for c in [*stats.features, stats.target]},
    }
    return model


