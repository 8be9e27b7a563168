"""Built-in data: a synthetic emissions consortium, and a loader for the UCI gas-turbine files.

:func:`make_factories` simulates plants of different kinds and sizes with
daily records of fuel use, purchased electricity, clinker production and
reported CO2. CO2 follows published emission factors (IPCC 2006 defaults for
stationary combustion, the cement clinker process factor, a grid electricity
factor) plus measurement noise, so a pooled regression recovers the factors:

=================  ==========  ===================================================
feature            factor      source
=================  ==========  ===================================================
coal_t             2.4407      94.6 t CO2/TJ × 25.8 TJ/Gg (other bituminous coal)
natural_gas_t      2.6928      56.1 t CO2/TJ × 48.0 TJ/Gg
diesel_t           3.1863      74.1 t CO2/TJ × 43.0 TJ/Gg (gas oil)
electricity_mwh    0.45        grid factor (scope 2; typical range 0.4–0.9 t/MWh)
clinker_t          0.52        calcination of clinker (process emissions)
=================  ==========  ===================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .data import read_table
from .errors import DataError, UsageError

#: True emission factors used by :func:`make_factories` (t CO2 per unit of the feature).
EMISSION_FACTORS: dict[str, float] = {
    "coal_t": 94.6 * 25.8 / 1000,
    "natural_gas_t": 56.1 * 48.0 / 1000,
    "diesel_t": 74.1 * 43.0 / 1000,
    "electricity_mwh": 0.45,
    "clinker_t": 0.52,
}

#: Units of each coefficient of a CO2 model on the built-in data.
FACTOR_UNITS: dict[str, str] = {
    "coal_t": "t CO2 / t coal",
    "natural_gas_t": "t CO2 / t gas",
    "diesel_t": "t CO2 / t diesel",
    "electricity_mwh": "t CO2 / MWh",
    "clinker_t": "t CO2 / t clinker",
}

TARGET = "co2_t"

# Typical daily activity of a mid-sized plant of each kind at scale 1:
# (coal t, natural gas t, diesel t (on-site vehicles, kilns, back-up generators),
# electricity MWh, clinker t).
_PLANT_KINDS: dict[str, tuple[float, float, float, float, float]] = {
    "cement": (350.0, 20.0, 45.0, 450.0, 3200.0),
    "steel": (900.0, 150.0, 60.0, 1800.0, 0.0),
    "chemicals": (0.0, 420.0, 25.0, 700.0, 0.0),
    "power": (0.0, 1500.0, 15.0, 60.0, 0.0),
    "glass": (0.0, 180.0, 20.0, 250.0, 0.0),
    "paper": (260.0, 90.0, 30.0, 380.0, 0.0),
    "lime": (220.0, 35.0, 35.0, 90.0, 0.0),
}

_DECIMALS = {"coal_t": 2, "natural_gas_t": 2, "diesel_t": 2, "electricity_mwh": 1, "clinker_t": 1, TARGET: 1}


def make_factories(
    n_factories: int = 5, seed: int = 0, days: int = 365, noise: float = 0.02
) -> dict[str, pd.DataFrame]:
    """A synthetic consortium: ``{factory_id: daily records}``, deliberately non-identical.

    Plants cycle through the kinds cement, steel, chemicals, power, glass, paper
    and lime; each gets its own size (log-normal), number of reporting days,
    seasonal pattern and fuel mix. Columns: ``date``, ``plant_kind``, the five
    activity columns of :data:`EMISSION_FACTORS` and ``co2_t`` (reported CO2,
    true emissions with ``noise`` relative measurement error). Values are
    rounded to the precision plants report.
    """
    if not isinstance(n_factories, int) or n_factories < 1:
        raise UsageError("n_factories must be a positive integer")
    rng = np.random.default_rng(seed)
    kinds = list(_PLANT_KINDS)
    factories: dict[str, pd.DataFrame] = {}
    for i in range(n_factories):
        kind = kinds[i % len(kinds)]
        size = float(rng.lognormal(0.0, 0.5))
        n_days = int(rng.integers(max(30, days * 2 // 3), days + 1))
        start = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        t = np.arange(n_days)
        # Production level: season, weekly rhythm, maintenance stops, day-to-day variation.
        season = 1 + 0.15 * np.sin(2 * np.pi * (t / 365 + rng.uniform()))
        weekly = np.where((t + int(rng.integers(0, 7))) % 7 >= 5, 0.75, 1.0)
        level = size * season * weekly * rng.lognormal(0, 0.08, n_days)
        level[rng.uniform(size=n_days) < 0.02] *= 0.1
        base = np.array(_PLANT_KINDS[kind]) * rng.uniform(0.8, 1.25, 5)
        # Each input varies on its own too (fuel switching, efficiency), so columns are not collinear.
        activity = level[:, None] * base[None, :] * rng.lognormal(0, 0.12, (n_days, 5))
        frame = pd.DataFrame(activity, columns=list(EMISSION_FACTORS))
        co2 = frame.to_numpy() @ np.array(list(EMISSION_FACTORS.values()))
        frame[TARGET] = co2 * (1 + noise * rng.standard_normal(n_days))
        for column, decimals in _DECIMALS.items():
            frame[column] = frame[column].round(decimals)
        frame.insert(0, "plant_kind", kind)
        frame.insert(0, "date", (start + pd.to_timedelta(t, unit="D")).strftime("%Y-%m-%d"))
        factories[f"{kind}-{i + 1:02d}"] = frame
    return factories


GAS_TURBINE_YEARS = (2011, 2012, 2013, 2014, 2015)


def load_gas_turbine(directory: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Load the UCI gas-turbine CO/NOx files ``gt_2011.csv`` … ``gt_2015.csv``, one site a year.

    Returns ``{"gt_2011": frame, ...}``. Raises :class:`~hefed.errors.DataError`
    if the directory or a file is missing.
    """
    directory = Path(directory)
    frames = {}
    for year in GAS_TURBINE_YEARS:
        path = directory / f"gt_{year}.csv"
        if not path.is_file():
            raise DataError(f"{path}: gas-turbine file not found")
        frames[f"gt_{year}"] = read_table(path)
    return frames


def load_consortium(
    paths: list[str | os.PathLike[str]] | list[Path], target: str | None = None
) -> tuple[dict[str, pd.DataFrame], str]:
    """The factories' tables and the target: the given files, or the built-in consortium (target co2_t)."""
    if not paths:
        return make_factories(), target or TARGET
    if target is None:
        raise UsageError("a target column is required with data files", parameters=("target",))
    return load_factory_files(paths), target


def load_factory_files(paths: list[str | os.PathLike[str]] | list[Path]) -> dict[str, pd.DataFrame]:
    """Read one table per factory; ids are the file names without suffix (made unique if needed)."""
    factories: dict[str, pd.DataFrame] = {}
    for path in map(Path, paths):
        name = path.stem or "factory"
        unique, i = name, 2
        while unique in factories:
            unique, i = f"{name}-{i}", i + 1
        factories[unique] = read_table(path)
    return factories
