"""The end-to-end demonstration behind ``hefed demo``.

Runs every role on the built-in consortium, through the same library calls
and files the CLI uses, in a temporary folder: keygen → encrypt (each
factory) → aggregate → decrypt → solve, each step timed, the roles those of the
simulated consortium the other simulations use (:mod:`hefed.sim._consortium`). Then
it fits the centralised model on the pooled plaintext (possible only in a
simulation) and reports how far the federated coefficients are from it, and
compares local, federated, centralised and fine-tuned models on holdouts
(:func:`~hefed.sim.compare_models`) with the same key.
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
from sklearn.linear_model import LinearRegression

from .._keys import generate_keypair, load_private_key, load_public_key, save_private_key, save_public_key
from ..data import compute_statistics
from ..datasets import TARGET, make_factories
from ..models import LinearModel
from ..monitoring import ReportInputs, residuals_of, write_report
from ..protocol import Bundle
from ..roles import solve
from ..stats import SufficientStatistics
from ._compare import Comparison, compare_models
from ._consortium import Consortium
from ._defaults import DEMO_KEY_BITS

__all__ = ["DemoReport", "run_demo"]

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
    #: The HTML report written (``report_path``), if any.
    report_path: Path | None = None


def run_demo(
    n_factories: int = 5,
    seed: int = 0,
    bits: int = DEMO_KEY_BITS,
    workdir: str | Path | None = None,
    insecure_test_key: bool = False,
    report_path: str | Path | None = None,
    force: bool = False,
) -> DemoReport:
    """Run the whole protocol on :func:`~hefed.datasets.make_factories` data (module docstring).

    ``bits`` defaults to :data:`~hefed.sim.DEMO_KEY_BITS`, the key generator's default (3072 bits),
    unlike the other simulations: the demonstration generates a fresh key pair, writes it to key
    files and times every step, and those timings should be what a consortium would see. Keys
    below 2048 bits need ``insecure_test_key`` (quick trials only). With ``report_path`` it ends by writing the
    consortium's HTML report there (:func:`hefed.monitoring.build_report`: the model, the comparison, the residuals
    on the pooled synthetic rows), replacing an existing file only with ``force``.
    """
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
        # Factories read the public key file, the key holder its private key file.
        consortium = Consortium(load_public_key(folder / "public_key.json"),
                                load_private_key(folder / "private_key.json"))
        paths = []
        for factory_id, frame in factories.items():
            path = folder / f"{factory_id}.bundle.json"

            def encrypt_one(frame: pd.DataFrame = frame, factory_id: str = factory_id, path: Path = path) -> None:
                consortium.encrypt(factory_id, frame, TARGET).save(path)

            timed(f"encrypt {factory_id} ({len(frame)} rows)", encrypt_one)
            paths.append(path)

        def decrypt() -> None:
            stats = consortium.decrypt_statistics(Bundle.load(folder / "aggregate.bundle.json"))
            stats.save(folder / "statistics.json")

        timed("aggregate", lambda: consortium.aggregate(paths).save(folder / "aggregate.bundle.json"))
        timed("decrypt", decrypt)
        model = timed("solve (exact)", lambda: solve(SufficientStatistics.load(folder / "statistics.json")))
        bundle_bytes = paths[0].stat().st_size
        comparison = timed(
            "compare on 25% holdouts (local / federated / centralised / fine-tuned)",
            lambda: compare_models(factories, TARGET, public_key=consortium.public_key,
                                   private_key=consortium.private_key),
        )

    pooled = pd.concat(factories.values(), ignore_index=True)
    features = list(model.feature_names_in_)
    exact_pooled = solve(compute_statistics(pooled, TARGET, features))
    central = LinearRegression().fit(pooled[features].to_numpy(), pooled[TARGET].to_numpy())
    rel = np.abs(model.coef_ - central.coef_) / np.maximum(np.abs(central.coef_), 1e-300)
    written = None
    if report_path is not None:
        inputs = ReportInputs(model, comparison.to_dict(), residuals=residuals_of(model, pooled),
                              residual_source="the pooled synthetic rows (a simulation holds them all)",
                              title="hefed demo: synthetic consortium")
        written = write_report(report_path, inputs, force=force)
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
        report_path=written,
    )
