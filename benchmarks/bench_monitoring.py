"""Monitoring (issue 18): in-control run lengths, false alarms per plant-year and detection delays of the CUSUM and
EWMA of :mod:`hefed.monitoring`, on the seeded series ``tests/test_monitoring.py`` asserts bounds on.

* known parameters: z standard normal, 2000 series of 3000 readings (seed 1): the average run length to the first
  (false) alarm, against the textbook ≈ 465 (two-sided CUSUM, k = 0.5, h = 5) and ≈ 562 (EWMA, λ = 0.2, L = 3,
  asymptotic limits);
* plant-years: 365 readings, each plant its own bias (±3) and spread (0.5–2×), standardised against its first 91
  readings (seeds 2 and 4): the share of plant-years with a false alarm in the 274 readings after the reference,
  and the delay to the first alarm after a step or a ramp from reading 200.

    .venv/bin/python benchmarks/bench_monitoring.py
"""

from __future__ import annotations

import time

import numpy as np

from hefed.monitoring import cusum, ewma, first_alarm


def plant_years(seed: int, series: int = 2000, n: int = 365, ref: int = 91) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 3, (series, 1))
    spread = rng.uniform(0.5, 2, (series, 1))
    e = bias + spread * rng.standard_normal((series, n))
    reference = e[:, :ref]
    return (e - reference.mean(axis=1, keepdims=True)) / reference.std(axis=1, ddof=1, keepdims=True)


def main() -> None:
    start = time.perf_counter()
    z = np.random.default_rng(1).standard_normal((2000, 3000))
    for name, alarm in (("CUSUM", cusum(z)[2]), ("EWMA", ewma(z)[2])):
        runs = first_alarm(alarm) + 1
        print(f"known parameters, {name}: ARL0 {runs[runs > 0].mean():.0f} readings "
              f"({(runs == 0).mean():.2%} of series without an alarm in 3000)")
    z = plant_years(2)
    for name, alarm in (("CUSUM", cusum(z)[2]), ("EWMA", ewma(z)[2])):
        share = (first_alarm(alarm, 91) >= 0).mean()
        print(f"plant-years (reference 91 readings), {name}: {share:.1%} with a false alarm in 274 readings, "
              f"{alarm[:, 91:].mean():.2%} of readings flagged")
    base = plant_years(4)
    after = np.arange(1, base.shape[1] - 200 + 1)
    for drift, shift in (("step of 1 SD", 1.0), ("step of 2 SD", 2.0), ("ramp of 0.02 SD/reading", 0.02 * after)):
        z = base.copy()
        z[:, 200:] += shift
        for name, alarm in (("CUSUM", cusum(z)[2]), ("EWMA", ewma(z)[2])):
            delay = first_alarm(alarm, 200)
            found = delay[delay >= 0]
            print(f"{drift}, {name}: detected in {len(found) / len(delay):.1%}, delay median {np.median(found):.0f}, "
                  f"95th percentile {np.percentile(found, 95):.0f} readings")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
