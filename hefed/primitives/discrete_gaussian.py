"""Exact samplers for the discrete Gaussian and the discrete Laplace, from :mod:`secrets` only.

Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020;
arXiv:2004.00010), Section 5: every sampler here uses integer and rational arithmetic
(:class:`fractions.Fraction`) and uniform integers from :func:`secrets.randbelow` — no floating
point anywhere, so the output distribution is exactly the stated one (no floating-point
attacks in the manner of Mironov, CCS 2012) and unpredictable (the operating system's CSPRNG).

* :func:`bernoulli` — Bernoulli(p) for a rational p ∈ [0, 1];
* :func:`bernoulli_exp` — Bernoulli(exp(−γ)) for a rational γ ≥ 0 (CKS20 Algorithm 1);
* :func:`discrete_laplace` — P[Y = y] ∝ exp(−|y|/t) on the integers (CKS20 Algorithm 2);
* :func:`discrete_gaussian` — P[Y = y] ∝ exp(−y²/(2σ²)) on the integers, for a rational σ²
  (CKS20 Algorithm 3: discrete Laplace proposals with t = ⌊σ⌋ + 1, accepted with probability
  exp(−(|Y| − σ²/t)²/(2σ²))).

The expected number of uniform draws per sample is a small constant (CKS20, Section 5.3), whatever
the size of σ: the integers grow, the loops do not. The samplers are not constant-time: how long a
draw takes depends on the draw (rejections, the geometric loop), so whoever can time the process
that adds the noise learns a little about it — run it where the exact statistics already are (the
key holder's or the analyst's own machine), not as a service an adversary can time.

This is a "hazmat" module: it knows nothing of statistics or privacy budgets;
:func:`hefed.roles.privatize_statistics` uses it.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

__all__ = ["bernoulli", "bernoulli_exp", "discrete_gaussian", "discrete_laplace"]


def _rational(value: Fraction | int, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, Fraction)):
        raise TypeError(f"{name} must be an int or a Fraction (exact), not {type(value).__name__}")
    return Fraction(value)


def bernoulli(p: Fraction | int) -> int:
    """1 with probability ``p`` (a rational in [0, 1]), else 0: ``randbelow(q) < n`` for ``p = n/q``."""
    p = _rational(p, "p")
    if not 0 <= p <= 1:
        raise ValueError("a Bernoulli probability must be in [0, 1]")
    return int(secrets.randbelow(p.denominator) < p.numerator)


def bernoulli_exp(gamma: Fraction | int) -> int:
    """1 with probability ``exp(−gamma)`` for a rational ``gamma ≥ 0`` (CKS20 Algorithm 1).

    For γ ∈ [0, 1]: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, … until the first A_k = 0; return 1 iff
    that k is odd (P = Σ_k odd γ^(k−1)/(k−1)! − γ^k/k! = exp(−γ)). For γ > 1: ⌊γ⌋ independent
    Bernoulli(exp(−1)) and one Bernoulli(exp(−(γ − ⌊γ⌋))), all 1.
    """
    gamma = _rational(gamma, "gamma")
    if gamma < 0:
        raise ValueError("bernoulli_exp needs gamma >= 0")
    whole = math.floor(gamma)
    for _ in range(whole):
        if not _bernoulli_exp_unit(Fraction(1)):
            return 0
    return _bernoulli_exp_unit(gamma - whole)


def _bernoulli_exp_unit(gamma: Fraction) -> int:
    """Bernoulli(exp(−γ)) for γ ∈ [0, 1]."""
    k = 1
    num, den = gamma.numerator, gamma.denominator
    while secrets.randbelow(den * k) < num:  # A_k ~ Bernoulli(γ/k)
        k += 1
    return k % 2


def discrete_laplace(t: int) -> int:
    """A draw of the discrete Laplace with scale ``t`` (a positive integer): P[Y = y] ∝ exp(−|y|/t)
    (CKS20 Algorithm 2 with s = 1).

    U uniform on {0, …, t−1} kept with probability exp(−U/t); V ~ Geometric(1 − e⁻¹) from
    Bernoulli(exp(−1)) trials; X = U + t·V; a fair sign, rejecting "−0" so that 0 is not counted twice.
    """
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError("discrete_laplace needs a positive integer scale t")
    while True:
        u = secrets.randbelow(t)
        if not bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(1):
            v += 1
        x = u + t * v
        negative = secrets.randbelow(2)
        if negative and x == 0:
            continue
        return -x if negative else x


def discrete_gaussian(sigma2: Fraction | int) -> int:
    """A draw of the discrete Gaussian N_Z(0, σ²) for a rational ``sigma2 = σ² > 0``:
    P[Y = y] = exp(−y²/(2σ²)) / Σ_z exp(−z²/(2σ²)) over the integers (CKS20 Algorithm 3).

    ``sigma2 = 0`` returns 0 (no noise): the limit of the distribution, for a statistic whose
    sensitivity is zero.
    """
    sigma2 = _rational(sigma2, "sigma2")
    if sigma2 < 0:
        raise ValueError("discrete_gaussian needs sigma2 >= 0")
    if sigma2 == 0:
        return 0
    t = math.isqrt(math.floor(sigma2)) + 1  # ⌊σ⌋ + 1, exactly: ⌊√x⌋ = isqrt(⌊x⌋)
    centre = sigma2 / t
    while True:
        y = discrete_laplace(t)
        excess = abs(y) - centre
        if bernoulli_exp(excess * excess / (2 * sigma2)):
            return y
