"""Local-only vs federated vs centralised models, evaluated on every factory's holdout.

What users ask first: is the shared model better for *my* plant than a model
of my own data alone, and how close is it to pooling everything? On a
consortium of tables, :func:`compare_models` holds out a reproducible
fraction of each factory's rows, then fits

1. each factory's **local** model on its own training rows (columns that are
   constant or collinear at that factory are dropped from its local model);
2. the **federated** model, through the real encrypted protocol (one simulated consortium,
   :mod:`hefed.sim._consortium`);
3. the **centralised** model, scikit-learn on the pooled plaintext training
   rows — possible only in a simulation like this one, never in production;
4. each factory's **fine-tuned** model: the federated model adapted to the
   factory's own training rows (:func:`hefed.analysis.finetune_frame`, λ by
   local cross-validation);

and reports each model's MSE and R² on every factory's holdout and overall
(:func:`hefed.stats.regression_metrics`: scikit-learn's convention, R² = 0 for an imperfect
prediction of a constant target). The federated model's overall metrics are also computed the
production way, from encrypted evaluation bundles, and must agree.
:meth:`Comparison.to_frame` gives the table as a DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey
from sklearn.linear_model import LinearRegression, Ridge

from ..analysis import finetune_frame
from ..data import compute_statistics, default_features, select_xy, split_holdout
from ..errors import SingularSystemError, UsageError
from ..models import LinearModel
from ..roles import DEFAULT_MIN_CONTRIBUTORS, solve
from ..stats import regression_metrics
from ._consortium import Consortium
from ._defaults import MODELS, SIMULATION_KEY_BITS

__all__ = ["MODELS", "Comparison", "compare_models"]


@dataclass
class Comparison:
    """Holdout MSE and R² of each model per factory and overall, and the coefficient gap.

    ``rows`` has one dict per factory (``factory``, ``n_test``, then ``{model}_mse`` and
    ``{model}_r2`` for each of :data:`MODELS`); ``overall`` the same over every holdout row;
    ``encrypted_overall`` the federated model's pooled holdout metrics as the key holder decrypts
    them from evaluation bundles; ``dropped_local`` the columns each factory's local model had to
    drop (constant or collinear there).
    """

    target: str
    features: list[str]
    rows: list[dict[str, float | str | int]] = field(default_factory=list)
    overall: dict[str, float | str | int] = field(default_factory=dict)
    federated_model: LinearModel | None = None
    max_abs_coef_diff: float = float("nan")
    max_rel_coef_diff: float = float("nan")
    encrypted_overall: dict[str, float] = field(default_factory=dict)
    dropped_local: dict[str, list[str]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame: one row per factory and a last row ``"all factories"``, indexed by
        ``factory``; columns ``n_test``, then ``{model}_mse`` and ``{model}_r2`` for each of :data:`MODELS`."""
        columns = ["factory", "n_test", *(f"{m}_{metric}" for m in MODELS for metric in ("mse", "r2"))]
        frame = pd.DataFrame([*self.rows, self.overall], columns=columns)
        return frame.set_index("factory")

    def to_dict(self) -> dict[str, object]:
        """Everything reported as plain JSON-ready values (the model itself: ``federated_model.to_dict()``)."""
        return {"target": self.target, "features": list(self.features), "rows": list(self.rows),
                "overall": dict(self.overall), "max_abs_coef_diff": self.max_abs_coef_diff,
                "max_rel_coef_diff": self.max_rel_coef_diff, "encrypted_overall": dict(self.encrypted_overall),
                "dropped_local": dict(self.dropped_local)}


def _local_model(train: pd.DataFrame, target: str, features: list[str], ridge: float) -> tuple[LinearModel, list[str]]:
    """Fit on one factory's rows, dropping columns that are not identifiable there."""
    kept, dropped = list(features), list[str]()
    while True:
        try:
            return solve(compute_statistics(train, target, kept), ridge=ridge), dropped
        except SingularSystemError as exc:
            culprit = next((c for c in reversed(exc.columns) if c in kept), None)
            if culprit is None or len(kept) == 1:
                raise
            kept.remove(culprit)
            dropped.append(culprit)


def _mse_r2(y: np.ndarray, prediction: np.ndarray) -> tuple[float, float]:
    metrics = regression_metrics(y, prediction)
    return metrics["mse"], metrics["r2"]


def compare_models(
    factories: Mapping[str, pd.DataFrame],
    target: str,
    features: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    ridge: float = 0.0,
    key_bits: int = SIMULATION_KEY_BITS,
    public_key: PaillierPublicKey | None = None,
    private_key: PaillierPrivateKey | None = None,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
) -> Comparison:
    """Fit and evaluate local, federated and centralised models on each factory's holdout (module docstring).

    Each factory holds out ``test_fraction`` of its rows (:func:`hefed.data.split_holdout`, ``seed``);
    ``features`` default to every numeric column of the first table but ``target``. The federated
    model and its encrypted evaluation run in one simulated consortium: the given key pair, or else
    this process's simulation key of ``key_bits`` bits (default :data:`~hefed.sim.SIMULATION_KEY_BITS`,
    1024: an insecure test key, generated once and reused — the comparison checks the protocol's
    arithmetic, which does not depend on the key size, and never needs real security because every
    table is in this process anyway). ``min_contributors`` is the key holder's threshold.
    """
    if len(factories) < 2:
        raise UsageError("a comparison needs at least two factories")
    first = next(iter(factories.values()))
    features = list(features) if features else default_features(first, target)
    splits = {name: split_holdout(frame, test_fraction, seed) for name, frame in factories.items()}
    consortium = Consortium.simulated(key_bits, public_key, private_key, min_contributors)
    federated = consortium.fit({name: train for name, (train, _) in splits.items()}, target, features, ridge=ridge)

    pooled = pd.concat([train for train, _ in splits.values()], ignore_index=True)
    X_pool, y_pool, _ = select_xy(pooled, target, features, "pooled training data")
    central = (Ridge(alpha=ridge) if ridge else LinearRegression()).fit(X_pool, y_pool)
    diff = np.abs(federated.coef_ - central.coef_)
    report = Comparison(target, features, federated_model=federated,
                        max_abs_coef_diff=float(diff.max()),
                        max_rel_coef_diff=float((diff / np.maximum(np.abs(central.coef_), 1e-300)).max()))

    all_y: list[np.ndarray] = []
    all_pred: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
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
            row[f"{model_name}_mse"], row[f"{model_name}_r2"] = _mse_r2(y_test, pred)
            all_pred[model_name].append(pred)
        all_y.append(y_test)
        report.rows.append(row)
    y_all = np.concatenate(all_y)
    report.overall = {"factory": "all factories", "n_test": len(y_all)}
    for model_name in MODELS:
        report.overall[f"{model_name}_mse"], report.overall[f"{model_name}_r2"] = _mse_r2(
            y_all, np.concatenate(all_pred[model_name]))

    # The production path for the federated model's global metrics: encrypted evaluation sums.
    report.encrypted_overall = consortium.evaluate(federated, {name: test for name, (_, test) in splits.items()},
                                                   target).metrics()
    return report
