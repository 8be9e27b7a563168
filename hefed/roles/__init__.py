"""The four roles of the protocol, each a few functions over kinds and bundles.

Layer 7 of hefed (above :mod:`hefed.models`):

* **factory** — :func:`encrypt_table` (any kind, cleaned, held out, masked and signed),
  :func:`encrypt_statistics`, :func:`encrypt_evaluation`, :func:`evaluate_local`;
* **aggregator** — :func:`aggregate` (no private key; masked rounds verified), :func:`collect_round` and
  :func:`unmask_round` (version 2 rounds that survive drop-outs);
* **key holder** — :func:`decrypt_bundle` (only aggregates over the threshold, all checks);
* **analyst** — :func:`solve`, :func:`release_model` (ridge by exact CV, DP, standardised
  coefficients), registered per kind with :func:`register_model`.
"""

from __future__ import annotations

from ._aggregator import aggregate, collect_round, unmask_round
from ._analyst import (
    average_model,
    load_sums,
    register_model,
    solvable_kinds,
    solve,
    solve_statistics,
    standardized_coefficients,
)
from ._factory import (
    EncryptResult,
    encrypt_bundle,
    encrypt_evaluation,
    encrypt_for_study,
    encrypt_statistics,
    encrypt_sums,
    encrypt_table,
    evaluate_local,
    study_holdout,
)
from ._keyholder import (
    DEFAULT_MIN_CONTRIBUTORS,
    Decrypted,
    decrypt_bundle,
    decrypt_evaluation,
    decrypt_statistics,
    decrypt_to_file,
    release_sums,
)
from ._ledger import DecryptionLedger, default_ledger_path
from ._privacy import (
    DifferentialPrivacy,
    PrivacyAccounting,
    dp_solve,
    privatize_statistics,
    rho_for,
    zcdp_delta,
    zcdp_epsilon,
    zcdp_rho,
)
from ._release import Release, parse_ridge, release_model, sign_model
from ._ridgecv import DEFAULT_ALPHAS, RidgeCVResult, cross_validate_ridge, solve_auto_ridge, solve_ridge_cv

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_MIN_CONTRIBUTORS",
    "Decrypted",
    "DecryptionLedger",
    "DifferentialPrivacy",
    "PrivacyAccounting",
    "EncryptResult",
    "Release",
    "RidgeCVResult",
    "aggregate",
    "collect_round",
    "unmask_round",
    "decrypt_to_file",
    "default_ledger_path",
    "release_sums",
    "sign_model",
    "average_model",
    "cross_validate_ridge",
    "decrypt_bundle",
    "decrypt_evaluation",
    "decrypt_statistics",
    "dp_solve",
    "encrypt_bundle",
    "encrypt_evaluation",
    "encrypt_for_study",
    "study_holdout",
    "encrypt_statistics",
    "encrypt_sums",
    "encrypt_table",
    "evaluate_local",
    "privatize_statistics",
    "rho_for",
    "zcdp_delta",
    "zcdp_epsilon",
    "zcdp_rho",
    "parse_ridge",
    "load_sums",
    "register_model",
    "solvable_kinds",
    "release_model",
    "solve",
    "solve_auto_ridge",
    "solve_ridge_cv",
    "solve_statistics",
    "standardized_coefficients",
]
