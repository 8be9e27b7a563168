"""Optional differential privacy for the released model (Gaussian mechanism on the statistics).

Off by default, clearly labelled when on. The consortium declares per-column
bounds ``[lo_j, hi_j]`` (a bounds file); every factory clips its values to
them before computing statistics (``hefed encrypt --bounds FILE``), so one row
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
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidFileError, UsageError
from .fileio import atomic_write_json, is_version, read_json_object
from .model import LinearModel
from .statistics import SufficientStatistics

FORMAT = "hefed.bounds"
VERSION = 1


@dataclass
class Bounds:
    """Declared per-column value bounds, public and identical at every factory."""

    columns: dict[str, tuple[float, float]]

    def bound(self, column: str) -> float:
        try:
            lo, hi = self.columns[column]
        except KeyError:
            raise UsageError(f"the bounds file declares no bounds for column {column!r}") from None
        return max(abs(lo), abs(hi))

    def clip(self, frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
        """Clip the given columns to their bounds; returns the frame and the number of cells changed."""
        frame = frame.copy()
        changed = 0
        for column in columns:
            lo, hi = self.columns.get(column, (None, None))
            if lo is None:
                raise UsageError(f"the bounds file declares no bounds for column {column!r}")
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
            clipped = np.clip(values, lo, hi)
            changed += int(np.sum((clipped != values) & ~np.isnan(values)))
            frame[column] = clipped
        return frame, changed

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "columns": {k: list(v) for k, v in self.columns.items()}}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bounds:
        obj = read_json_object(path, "bounds")
        source = str(path)
        if obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed bounds file (version {VERSION})")
        columns = obj.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidFileError(f"{source}: 'columns' must map column names to [lo, hi]")
        parsed = {}
        for name, pair in columns.items():
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in pair) or pair[0] > pair[1]):
                raise InvalidFileError(f"{source}: bounds of {name!r} must be [lo, hi] with finite lo <= hi")
            parsed[str(name)] = (float(pair[0]), float(pair[1]))
        return cls(parsed)


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """σ of the classic Gaussian mechanism: Δ₂·√(2 ln(1.25/δ))/ε, for 0 < ε ≤ 1 and 0 < δ < 1."""
    if not 0 < epsilon <= 1:
        raise UsageError("dp epsilon must be in (0, 1] for the classic Gaussian mechanism")
    if not 0 < delta < 1:
        raise UsageError("dp delta must be in (0, 1)")
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
    from .solve import solve  # solve builds models; privacy only perturbs its input

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
    model = solve(noisy_stats, ridge=ridge, fit_intercept=fit_intercept)
    model._inference = None  # OLS standard errors would ignore the added noise
    model.dp_ = {
        "mechanism": "Gaussian mechanism on the sufficient statistics (Dwork & Roth 2014, Thm 3.22)",
        "epsilon": epsilon, "delta": delta, "sigma": sigma, "l2_sensitivity": sensitivity,
        "unit": "adding or removing one row of any factory's data",
        "not_covered": "the key holder sees the exact aggregate; standard errors of the noisy fit are not reported",
        "noisy_n": int(gram[0][0]), "columns": {c: list(bounds.columns[c]) for c in [*stats.features, stats.target]},
    }
    return model


