"""The end-to-end demonstration behind ``hefed demo``.

Runs every role on the built-in consortium, through the same library calls
and files the CLI uses, in a temporary folder: keygen → encrypt (each
factory) → aggregate → decrypt → solve. Then it fits the centralised model
on the pooled plaintext (possible only in a simulation) and reports how far
the federated coefficients are from it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from .._keys import generate_keypair, load_private_key, load_public_key, save_private_key, save_public_key
from ..data import compute_statistics
from ..datasets import TARGET, make_factories
from ..models import LinearModel
from ..protocol import Bundle
from ..roles import aggregate, decrypt_statistics, encrypt_statistics, solve
from ..stats import SufficientStatistics
from .compare import Comparison, compare_models

T = TypeVar("T")


@dataclass
class DemoReport:
    """What ``hefed demo`` measured."""

    model: LinearModel
    factory_rows: dict[str, int]
    timings: list[tuple[str, float]] = field(default_factory=list)
    bundle_bytes: int = 0
    key_bits: int = 0
    max_rel_diff_centralised: float = float("nan")
    equals_exact_pooled: bool = False
    comparison: Comparison | None = None


def run_demo(
    n_factories: int = 5,
    seed: int = 0,
    bits: int = 3072,
    workdir: str | Path | None = None,
    insecure_test_key: bool = False,
) -> DemoReport:
    """Run the whole protocol on :func:`~hefed.datasets.make_factories` data."""
    factories = make_factories(n_factories, seed)
    timings: list[tuple[str, float]] = []

    def timed(step: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = fn()
        timings.append((step, time.perf_counter() - start))
        return result

    with tempfile.TemporaryDirectory(prefix="hefed-demo-", dir=workdir) as tmp:
        folder = Path(tmp)

        def keygen() -> None:
            public_key, private_key = generate_keypair(bits, insecure_test_key=insecure_test_key)
            save_public_key(public_key, folder / "public_key.json")
            save_private_key(private_key, folder / "private_key.json")

        timed(f"keygen ({bits}-bit key holder)", keygen)
        public_key = load_public_key(folder / "public_key.json")
        paths = []
        for factory_id, frame in factories.items():
            path = folder / f"{factory_id}.bundle.json"

            def encrypt_one(frame: pd.DataFrame = frame, factory_id: str = factory_id, path: Path = path) -> None:
                encrypt_statistics(frame, TARGET, public_key, factory_id=factory_id).save(path)

            timed(f"encrypt {factory_id} ({len(frame)} rows)", encrypt_one)
            paths.append(path)
        timed("aggregate", lambda: aggregate(paths).save(folder / "aggregate.bundle.json"))

        def decrypt() -> None:
            private_key = load_private_key(folder / "private_key.json")
            bundle = Bundle.load(folder / "aggregate.bundle.json")
            decrypt_statistics(bundle, private_key).save(folder / "statistics.json")

        timed("decrypt", decrypt)
        model = timed("solve (exact)", lambda: solve(SufficientStatistics.load(folder / "statistics.json")))
        bundle_bytes = paths[0].stat().st_size
        comparison = timed(
            "compare on 25% holdouts (local / federated / centralised / fine-tuned)",
            lambda: compare_models(factories, TARGET, public_key=public_key,
                                   private_key=load_private_key(folder / "private_key.json")),
        )

    pooled = pd.concat(factories.values(), ignore_index=True)
    features = list(model.feature_names_in_)
    exact_pooled = solve(compute_statistics(pooled, TARGET, features))
    from sklearn.linear_model import LinearRegression

    central = LinearRegression().fit(pooled[features].to_numpy(), pooled[TARGET].to_numpy())
    rel = np.abs(model.coef_ - central.coef_) / np.maximum(np.abs(central.coef_), 1e-300)
    return DemoReport(
        model=model,
        factory_rows={k: len(v) for k, v in factories.items()},
        timings=timings,
        bundle_bytes=bundle_bytes,
        key_bits=bits,
        max_rel_diff_centralised=float(rel.max()),
        equals_exact_pooled=(
            model.coef_exact_ == exact_pooled.coef_exact_
            and model.intercept_exact_ == exact_pooled.intercept_exact_
        ),
        comparison=comparison,
    )
