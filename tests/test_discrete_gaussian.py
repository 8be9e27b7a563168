"""The exact discrete Gaussian sampler (CKS20): its distribution, its only randomness (secrets), no floats.

Draws come from :mod:`secrets`, so no seed makes them repeatable: each distribution test uses enough
samples that a wrong sampler fails by many standard errors, and a threshold a correct one exceeds with
probability about 1e-6 (tests/test_discrete_gaussian.py::test_the_chi_square_check_can_fail shows the
check rejects the nearest wrong answer, a rounded continuous Gaussian).
"""

from __future__ import annotations

import math
import random
import secrets
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from hefed.primitives import discrete_gaussian as dg

#: chi-square p-value below which a sample is rejected: a correct sampler fails one check in 10^6 runs
P_REJECT = 1e-6


def gaussian_pmf(sigma2: Fraction, support: range) -> dict[int, float]:
    """The exact pmf of N_Z(0, σ²) on ``support`` (the normaliser summed far into the tails)."""
    s2 = float(sigma2)
    reach = int(40 * math.sqrt(s2)) + 40
    norm = sum(math.exp(-z * z / (2 * s2)) for z in range(-reach, reach + 1))
    return {z: math.exp(-z * z / (2 * s2)) / norm for z in support}


def laplace_pmf(t: int, support: range) -> dict[int, float]:
    """P[Y = y] = (1 − e^(−1/t)) / (1 + e^(−1/t)) · e^(−|y|/t)."""
    q = math.exp(-1 / t)
    return {z: (1 - q) / (1 + q) * q ** abs(z) for z in support}


def chi_square_pvalue(samples: list[int], pmf: dict[int, float]) -> float:
    """Pearson's test of ``samples`` against ``pmf`` (cells with expected count ≥ 5; the rest in one tail cell)."""
    n = len(samples)
    counts = Counter(samples)
    cells = [z for z in pmf if n * pmf[z] >= 5]
    observed = [counts.get(z, 0) for z in cells]
    expected = [n * pmf[z] for z in cells]
    observed.append(n - sum(observed))
    expected.append(n - sum(expected))
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    return float(scipy_stats.chi2.sf(statistic, len(cells)))


@pytest.mark.parametrize("sigma2", [Fraction(49, 100), Fraction(9, 4), Fraction(10)])
def test_discrete_gaussian_matches_its_pmf(sigma2):
    samples = [dg.discrete_gaussian(sigma2) for _ in range(8000)]
    assert all(type(v) is int for v in samples)
    reach = int(8 * math.sqrt(float(sigma2))) + 3
    assert chi_square_pvalue(samples, gaussian_pmf(sigma2, range(-reach, reach + 1))) > P_REJECT
    # symmetric about 0 and the right spread (the discrete Gaussian's variance is < σ² only for σ < 1)
    mean, var = np.mean(samples), np.var(samples)
    assert abs(mean) < 6 * math.sqrt(float(sigma2) / len(samples))
    exact_var = sum(z * z * p for z, p in gaussian_pmf(sigma2, range(-reach * 3, reach * 3 + 1)).items())
    assert abs(var / exact_var - 1) < 6 * math.sqrt(2 / len(samples))


def test_the_chi_square_check_can_fail():
    """A continuous Gaussian rounded to integers (the usual shortcut) is not the discrete Gaussian, and the
    check above rejects it at σ = 0.7."""
    rng = np.random.default_rng(0)
    sigma2 = Fraction(49, 100)
    rounded = [int(v) for v in np.round(rng.normal(0, 0.7, 8000))]
    assert chi_square_pvalue(rounded, gaussian_pmf(sigma2, range(-9, 10))) < P_REJECT


def test_a_huge_sigma_keeps_its_scale():
    """On a 2^-84 grid the statistics' σ is about 2^170: the integers grow, the sampler stays exact."""
    sigma2 = Fraction(7, 3) * 4**170
    samples = [dg.discrete_gaussian(sigma2) for _ in range(1500)]
    assert all(type(v) is int for v in samples)
    sigma = math.sqrt(float(sigma2))
    scaled = np.array([v / sigma for v in samples])
    assert abs(scaled.mean()) < 6 / math.sqrt(len(samples))
    assert abs(scaled.std() - 1) < 6 / math.sqrt(2 * len(samples))
    # and close to normal: a Kolmogorov-Smirnov test against N(0, 1)
    assert scipy_stats.kstest(scaled, "norm").pvalue > P_REJECT


@pytest.mark.parametrize("t", [1, 3])
def test_discrete_laplace_matches_its_pmf(t):
    samples = [dg.discrete_laplace(t) for _ in range(8000)]
    reach = 12 * t + 3
    assert chi_square_pvalue(samples, laplace_pmf(t, range(-reach, reach + 1))) > P_REJECT


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_has_mean_exp_minus_gamma(gamma):
    n = 20000
    p = math.exp(-float(gamma))
    mean = sum(dg.bernoulli_exp(gamma) for _ in range(n)) / n
    assert abs(mean - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_bernoulli_is_exact_at_its_edges():
    assert all(dg.bernoulli(Fraction(1)) == 1 for _ in range(200))
    assert all(dg.bernoulli(Fraction(0)) == 0 for _ in range(200))
    assert all(dg.bernoulli_exp(0) == 1 for _ in range(200))
    with pytest.raises(ValueError):
        dg.bernoulli(Fraction(3, 2))
    with pytest.raises(ValueError):
        dg.bernoulli_exp(Fraction(-1))


def test_only_secrets_and_no_floats(monkeypatch):
    """Every random draw is secrets.randbelow; the random module is never touched, floats are refused."""
    calls = []
    real = secrets.randbelow

    def counting(n: int) -> int:
        calls.append(n)
        return real(n)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sampler used a non-secrets source of randomness or floating point")

    monkeypatch.setattr(dg.secrets, "randbelow", counting)
    for name in ("random", "gauss", "getrandbits", "randrange", "randint", "normalvariate"):
        monkeypatch.setattr(random, name, forbidden)
        monkeypatch.setattr(random.Random, name, forbidden)
    monkeypatch.setattr(dg.math, "exp", forbidden)
    monkeypatch.setattr(dg.math, "sqrt", forbidden)
    draws = [dg.discrete_gaussian(Fraction(81, 7)) for _ in range(200)]
    assert len(set(draws)) > 3
    assert len(calls) >= 200 * 3  # a uniform, an acceptance and a sign per draw at least
    for bad in (2.25, 0.5):
        with pytest.raises(TypeError, match="exact"):
            dg.discrete_gaussian(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dg.bernoulli_exp(0.5)  # type: ignore[arg-type]


def test_zero_variance_is_no_noise():
    assert dg.discrete_gaussian(0) == 0
    with pytest.raises(ValueError):
        dg.discrete_gaussian(Fraction(-1))
    with pytest.raises(ValueError):
        dg.discrete_laplace(0)


@settings(max_examples=60, deadline=None)
@given(num=st.integers(1, 10**40), den=st.integers(1, 10**6))
def test_draws_are_integers_for_any_rational_variance(num, den):
    value = dg.discrete_gaussian(Fraction(num, den))
    assert type(value) is int
    # far beyond 40 σ has probability below e^-800: a draw there is a broken sampler
    assert value * value <= 1600 * Fraction(num, den) + 1600


@settings(max_examples=60, deadline=None)
@given(gamma=st.fractions(min_value=0, max_value=50, max_denominator=10**9))
def test_bernoulli_exp_returns_a_bit(gamma):
    assert dg.bernoulli_exp(gamma) in (0, 1)
