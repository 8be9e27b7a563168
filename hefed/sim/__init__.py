"""In-process consortia: simulations that run every role of the real protocol on one machine.

Layer 9 of hefed (above :mod:`hefed.analysis`): for notebooks, demonstrations and comparisons.

* :class:`FederatedLinearRegression` — a scikit-learn estimator running the encrypted protocol;
* :func:`compare_models` — local-only vs federated vs centralised vs fine-tuned on holdouts;
* :func:`simulate_fedavg` — iterative encrypted FedAvg against the exact one-round model;
* :func:`run_demo` — what ``hefed demo`` runs.
"""

from __future__ import annotations

from .compare import MODELS, Comparison, compare_models
from .demo import DemoReport, run_demo
from .estimator import FederatedLinearRegression
from .fedavg import DEFAULT_MU, FedAvgReport, FedAvgRound, fedavg_fixed_point, plot_fedavg, simulate_fedavg

__all__ = [
    "DEFAULT_MU",
    "MODELS",
    "Comparison",
    "DemoReport",
    "FedAvgReport",
    "FedAvgRound",
    "FederatedLinearRegression",
    "compare_models",
    "fedavg_fixed_point",
    "plot_fedavg",
    "run_demo",
    "simulate_fedavg",
]
