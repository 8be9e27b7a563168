"""hefed: exact federated linear regression of emissions under Paillier encryption.

The pipeline, one module a step::

    data → statistics → encoding/packing → encrypt → bundle → aggregate → decrypt → solve → model

Typical use::

    import hefed
    pub, priv = hefed.generate_keypair()
    bundles = [hefed.encrypt_statistics(df, "co2_t", pub, factory_id=name)
               for name, df in factories.items()]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), priv)
    model = hefed.solve(stats)
"""

from __future__ import annotations

from . import datasets, errors
from .aggregate import aggregate
from .bundle import Bundle
from .decrypt import decrypt_bundle, decrypt_evaluation, decrypt_statistics
from .encoding import Encoding
from .encrypt import EncryptResult, encrypt_bundle, encrypt_statistics, encrypt_table
from .evaluation import EvaluationSums, encrypt_evaluation, evaluate_local, split_holdout
from .inference import InferenceResults, inference
from .keys import (
    generate_keypair,
    key_fingerprint,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from .model import LinearModel
from .solve import solve
from .statistics import SufficientStatistics, compute_statistics

__version__ = "0.1.0"

__all__ = [
    "Bundle",
    "Comparison",
    "Encoding",
    "EvaluationSums",
    "FederatedLinearRegression",
    "InferenceResults",
    "LinearModel",
    "SufficientStatistics",
    "aggregate",
    "compare_models",
    "compute_statistics",
    "datasets",
    "decrypt_bundle",
    "decrypt_evaluation",
    "decrypt_statistics",
    "encrypt_bundle",
    "encrypt_evaluation",
    "encrypt_statistics",
    "encrypt_table",
    "EncryptResult",
    "evaluate_local",
    "inference",
    "split_holdout",
    "errors",
    "generate_keypair",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "save_private_key",
    "save_public_key",
    "solve",
]


_LAZY = {
    "Comparison": ("compare", "Comparison"),
    "compare_models": ("compare", "compare_models"),
    "FederatedLinearRegression": ("estimator", "FederatedLinearRegression"),
}


def __getattr__(name: str) -> object:
    """Import the scikit-learn-based parts on first use: factories and Flower processes need not pay for them."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
