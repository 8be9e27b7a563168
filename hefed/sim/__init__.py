"""In-process consortia: simulations that run every role of the real protocol on one machine.

Layer 9 of hefed (above :mod:`hefed.analysis`): for notebooks, demonstrations and comparisons.

* :class:`FederatedLinearRegression` — a scikit-learn estimator running the encrypted protocol;
* :func:`compare_models` — local-only vs federated vs centralised vs fine-tuned on holdouts;
* :func:`simulate_fedavg` — iterative encrypted FedAvg against the exact one-round model;
* :func:`run_demo` — what ``hefed demo`` runs.

All four run the roles through one simulated consortium (:mod:`hefed.sim._consortium`) with
one key pair per process and key size (:func:`simulation_keypair`), and report metrics with
:mod:`hefed.stats`' one convention. Their defaults — :data:`SIMULATION_KEY_BITS` (1024 bits,
an insecure test key: simulations check the protocol's arithmetic, never protect real data),
:data:`DEMO_KEY_BITS` (3072, the key generator's default: the demo times the real steps),
:data:`DEFAULT_MU`, :data:`MODELS` — are importable without loading scikit-learn or pandas;
everything else is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._defaults import DEFAULT_MU, DEMO_KEY_BITS, MODELS, SIMULATION_KEY_BITS

#: Public name → the private module that defines it (imported on first use: scikit-learn is heavy).
_EXPORTS: dict[str, str] = {
    "Comparison": "._compare",
    "compare_models": "._compare",
    "DemoReport": "._demo",
    "run_demo": "._demo",
    "FederatedLinearRegression": "._estimator",
    "FederatedGLM": "._glm",
    "FedAvgReport": "._fedavg",
    "FedAvgRound": "._fedavg",
    "fedavg_fixed_point": "._fedavg",
    "plot_fedavg": "._fedavg",
    "simulate_fedavg": "._fedavg",
    "simulation_keypair": "._consortium",
}

__all__ = [
    "DEFAULT_MU",
    "DEMO_KEY_BITS",
    "MODELS",
    "SIMULATION_KEY_BITS",
    "Comparison",
    "DemoReport",
    "FedAvgReport",
    "FedAvgRound",
    "FederatedGLM",
    "FederatedLinearRegression",
    "compare_models",
    "fedavg_fixed_point",
    "plot_fedavg",
    "run_demo",
    "simulate_fedavg",
    "simulation_keypair",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from ._compare import Comparison, compare_models
    from ._consortium import simulation_keypair
    from ._demo import DemoReport, run_demo
    from ._estimator import FederatedLinearRegression
    from ._fedavg import FedAvgReport, FedAvgRound, fedavg_fixed_point, plot_fedavg, simulate_fedavg
    from ._glm import FederatedGLM
