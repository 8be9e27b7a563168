"""Local-only vs federated vs centralised models, evaluated on every factory's holdout.

What users ask first: is the shared model better for *my* plant than a model
of my own data alone, and how close is it to pooling everything? On a
consortium of tables, :func:`compare_models` holds out a reproducible
fraction of each factory's rows, then fits

1. each factory's **local** model on its own training rows (columns that are
   constant or collinear at that factory are dropped from its local model);
2. the **federated** model, through the real encrypted protocol;
3. the **centralised** model, scikit-learn on the pooled plaintext training
   rows — possible only in a simulation like this one, never in production;
4. each factory's **fine-tuned** model: the federated model adapted to the
   factory's own training rows (:func:`hefed.finetune.finetune_frame`, λ by
   local cross-validation);

and reports each model's MSE and R² on every factory's holdout and overall.
The federated model's overall metrics are also computed the production way,
from encrypted evaluation bundles, and must agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey
from sklearn.linear_model import LinearRegression, Ridge

from .._keys import generate_keypair
from ..analysis import finetune_frame
from ..data import compute_statistics, default_features, select_xy, split_holdout
from ..errors import SingularSystemError, UsageError
from ..models import LinearModel
from ..roles import (
    aggregate,
    decrypt_evaluation,
    decrypt_statistics,
    encrypt_evaluation,
    encrypt_statistics,
    solve,
)

MODELS = ("local", "federated", "centralised", "finetuned")


@dataclass
class Comparison:
    """Holdout MSE and R² of each model per factory and overall, and the coefficient gap."""

    target: str
    features: list[str]
    rows: list[dict[str, float | str | int]] = field(default_factory=list)
    overall: dict[str, float | str | int] = field(default_factory=dict)
    federated_model: LinearModel | None = None
    max_abs_coef_diff: float = float("nan")
    max_rel_coef_diff: float = float("nan")
    encrypted_overall: dict[str, float] = field(default_factory=dict)
    dropped_local: dict[str, list[str]] = field(default_factory=dict)


def _local_model(train: pd.DataFrame, target: str, features: list[str], ridge: float) -> tuple[LinearModel, list[str]]:
    """Fit on one factory's rows, dropping columns that are not identifiable there."""
    kept, dropped = list(features), []
    while True:
        try:
            return solve(compute_statistics(train, target, kept), ridge=ridge), dropped
        except SingularSystemError as exc:
            culprit = next((c for c in reversed(exc.columns) if c in kept), None)
            if culprit is None or len(kept) == 1:
                raise
            kept.remove(culprit)
            dropped.append(culprit)


def _metrics(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    resid = y - pred
    sse = float(resid @ resid)
    sst = float(((y - y.mean()) ** 2).sum())
    return sse / len(y), (1 - sse / sst) if sst else float("nan")


def compare_models(
    factories: Mapping[str, pd.DataFrame],
    target: str,
    features: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    ridge: float = 0.0,
    key_bits: int = 2048,
    public_key: PaillierPublicKey | None = None,
    private_key: PaillierPrivateKey | None = None,
    min_contributors: int = 3,
) -> Comparison:
    """Fit and evaluate local, federated and centralised models on each factory's holdout."""
    if len(factories) < 2:
        raise UsageError("a comparison needs at least two factories")
    first = next(iter(factories.values()))
    features = list(features) if features else default_features(first, target)
    splits = {name: split_holdout(frame, test_fraction, seed) for name, frame in factories.items()}
    if public_key is None or private_key is None:
        public_key, private_key = generate_keypair(key_bits, insecure_test_key=True)

    bundles = [encrypt_statistics(train, target, public_key, features, name) for name, (train, _) in splits.items()]
    federated = solve(decrypt_statistics(aggregate(bundles), private_key, min_contributors), ridge=ridge)

    pooled = pd.concat([train for train, _ in splits.values()], ignore_index=True)
    X_pool, y_pool, _ = select_xy(pooled, target, features, "pooled training data")
    central = (Ridge(alpha=ridge) if ridge else LinearRegression()).fit(X_pool, y_pool)
    diff = np.abs(federated.coef_ - central.coef_)
    report = Comparison(target, features, federated_model=federated,
                        max_abs_coef_diff=float(diff.max()),
                        max_rel_coef_diff=float((diff / np.maximum(np.abs(central.coef_), 1e-300)).max()))

    all_y, all_pred = [], {m: [] for m in MODELS}
    for name, (train, test) in splits.items():
        local, dropped = _local_model(train, target, features, ridge)
        if dropped:
            report.dropped_local[name] = dropped
        X_test, y_test, _ = select_xy(test, target, features, f"{name} holdout")
        tuned = finetune_frame(federated, train, target, seed=seed)
        preds = {
            "local": local.predict(test),
            "federated": federated.predict(X_test),
            "centralised": central.predict(X_test),
            "finetuned": tuned.predict(X_test),
        }
        row: dict[str, float | str | int] = {"factory": name, "n_test": len(y_test)}
        for model_name, pred in preds.items():
            row[f"{model_name}_mse"], row[f"{model_name}_r2"] = _metrics(y_test, pred)
            all_pred[model_name].append(pred)
        all_y.append(y_test)
        report.rows.append(row)
    y_all = np.concatenate(all_y)
    report.overall = {"factory": "all factories", "n_test": len(y_all)}
    for model_name in MODELS:
        mse, r2 = _metrics(y_all, np.concatenate(all_pred[model_name]))
        report.overall[f"{model_name}_mse"], report.overall[f"{model_name}_r2"] = mse, r2

    # The production path for the federated model's global metrics: encrypted evaluation sums.
    evaluations = [encrypt_evaluation(federated, test, target, public_key, name) for name, (_, test) in splits.items()]
    report.encrypted_overall = decrypt_evaluation(aggregate(evaluations), private_key, min_contributors).metrics()
    return report
