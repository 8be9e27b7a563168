"""Shared fixtures for the hefed test suite.

Keys are small (1024 bits, ``insecure_test_key=True``) so the whole suite runs
in well under a few minutes; the arithmetic under test does not depend on the
key size beyond the packing layout, which the tests derive from the key.
"""

from __future__ import annotations

import os

# scikit-learn's check_estimator runs its array-API check only when scipy reads this at import
# (nothing has imported scipy yet): the estimator then passes all 52 checks, none skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import subprocess  # noqa: E402
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import run_cli

import hefed

TARGET = "co2_t"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data/gas-turbine beside the repository root (never copied into the repo).
GAS_TURBINE_DIR = Path(__file__).parents[2] / "shared" / "data" / "gas-turbine"

CliRun = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def keypair():
    """A small, insecure Paillier key pair (public, private) shared by the session."""
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture(scope="session")
def public_key(keypair):
    return keypair[0]


@pytest.fixture(scope="session")
def private_key(keypair):
    return keypair[1]


@pytest.fixture(scope="session")
def other_keypair():
    """A second, unrelated key pair (for wrong-key tests)."""
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture(scope="session")
def _consortium_master() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=1)


@pytest.fixture
def consortium(_consortium_master) -> dict[str, pd.DataFrame]:
    """The synthetic consortium ``{factory_id: frame}`` (4 factories, seed 1, target ``co2_t``).

    Each test gets its own copies, so tests may modify the frames freely.
    """
    return {name: frame.copy() for name, frame in _consortium_master.items()}


@pytest.fixture(scope="session")
def consortium_features(_consortium_master) -> list[str]:
    """The default features of the synthetic consortium (every numeric column but the target)."""
    frame = next(iter(_consortium_master.values()))
    return [c for c in frame.columns if c not in ("date", "plant_kind", TARGET)]


@pytest.fixture(scope="session")
def consortium_bundles(_consortium_master, public_key):
    """One encrypted bundle per factory of the consortium (do not mutate)."""
    return [
        hefed.encrypt_statistics(frame, TARGET, public_key, factory_id=name)
        for name, frame in _consortium_master.items()
    ]


@pytest.fixture(scope="session")
def gas_turbine_dir() -> Path:
    """The UCI gas-turbine folder (../shared/data/gas-turbine); skips the test where absent."""
    if not all((GAS_TURBINE_DIR / f"gt_{year}.csv").is_file() for year in range(2011, 2016)):
        pytest.skip(f"gas-turbine data not found in {GAS_TURBINE_DIR}")
    return GAS_TURBINE_DIR


@pytest.fixture(scope="session")
def cli() -> CliRun:
    """The :func:`run_cli` helper (in-process), as a fixture."""
    return run_cli
