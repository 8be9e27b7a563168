"""hefed: exact federated regression of emissions under Paillier encryption.

The safe recipe layer: everything a consortium needs, one name each. The layers below it,
each a package importing only those beneath it::

    primitives → stats → data → kinds → protocol → models → roles → analysis → sim → flower
    (Paillier,   (exact   (tables,  (what a    (bundles,   (model,   (factory,  (fine-    (in-process  (across
     packing,     sums of  cleaning, bundle     identities, inference) aggregator, tuning)   consortia)   machines)
     exact        arrays)  streaming) carries)  rounds)                key holder,
     algebra)                                                          analyst)

Typical use::

    import hefed
    pub, priv = hefed.generate_keypair()
    bundles = [hefed.encrypt_statistics(df, "co2_t", pub, factory_id=name)
               for name, df in factories.items()]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), priv)
    model = hefed.solve(stats)

Names are imported on first use, so ``import hefed`` is cheap (a factory's encryption or a
command's ``--help`` never pays for scikit-learn or pandas it does not use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

#: Public name → the module that defines it (imported on first use).
_EXPORTS: dict[str, str] = {
    # keys
    "generate_keypair": "hefed._keys",
    "key_fingerprint": "hefed._keys",
    "load_private_key": "hefed._keys",
    "load_public_key": "hefed._keys",
    "save_private_key": "hefed._keys",
    "save_public_key": "hefed._keys",
    # exact statistics
    "Encoding": "hefed.stats",
    "SufficientStatistics": "hefed.stats",
    "FoldStatistics": "hefed.stats",
    "ColumnSummary": "hefed.stats",
    "EvaluationSums": "hefed.stats",
    "CoefficientAggregate": "hefed.stats",
    # data
    "Bounds": "hefed.data",
    "Cleaning": "hefed.data",
    "Holdout": "hefed.data",
    "compute_statistics": "hefed.data",
    "compute_fold_statistics": "hefed.data",
    "read_table": "hefed.data",
    "split_holdout": "hefed.data",
    # kinds
    "StatisticsRequest": "hefed.kinds",
    "FoldStatisticsRequest": "hefed.kinds",
    "CoefficientsRequest": "hefed.kinds",
    "SummaryRequest": "hefed.kinds",
    "EvaluationRequest": "hefed.kinds",
    "AuditRequest": "hefed.kinds",
    "AuditSums": "hefed.kinds",
    # protocol
    "Bundle": "hefed.protocol",
    "Masking": "hefed.protocol",
    "Roster": "hefed.protocol",
    "Study": "hefed.protocol",
    "ColumnSpec": "hefed.protocol",
    "Round": "hefed.protocol",
    "enroll": "hefed.protocol",
    "load_identity": "hefed.protocol",
    "new_round": "hefed.protocol",
    "propose_round": "hefed.protocol",
    "run_round": "hefed.protocol",
    "KeyHolderSigner": "hefed.protocol",
    "load_release_key": "hefed.protocol",
    # models
    "LinearModel": "hefed.models",
    "InferenceResults": "hefed.models",
    "inference": "hefed.models",
    # roles
    "EncryptResult": "hefed.roles",
    "encrypt_table": "hefed.roles",
    "encrypt_statistics": "hefed.roles",
    "encrypt_bundle": "hefed.roles",
    "encrypt_evaluation": "hefed.roles",
    "encrypt_for_study": "hefed.roles",
    "evaluate_local": "hefed.roles",
    "aggregate": "hefed.roles",
    "decrypt_bundle": "hefed.roles",
    "decrypt_statistics": "hefed.roles",
    "decrypt_evaluation": "hefed.roles",
    "decrypt_to_file": "hefed.roles",
    "DecryptionLedger": "hefed.roles",
    "sign_model": "hefed.roles",
    "solve": "hefed.roles",
    "release_model": "hefed.roles",
    "DifferentialPrivacy": "hefed.roles",
    "privatize_statistics": "hefed.roles",
    # analysis
    "finetune": "hefed.analysis",
    "check_table": "hefed.analysis",
    "CheckReport": "hefed.analysis",
    # simulations
    "FederatedLinearRegression": "hefed.sim",
    "FederatedGLM": "hefed.sim",
    "Comparison": "hefed.sim",
    "compare_models": "hefed.sim",
    "simulate_fedavg": "hefed.sim",
    # a plant's own use of the model, and the report
    "monitor_table": "hefed.monitoring",
    "whatif_table": "hefed.monitoring",
    "audit_table": "hefed.monitoring",
    "consortium_audit": "hefed.monitoring",
    "build_report": "hefed.monitoring",
}

#: Public submodules, also imported on first use.
_SUBMODULES = ("analysis", "data", "datasets", "errors", "kinds", "models", "primitives", "protocol", "roles",
               "sim", "stats", "monitoring")

__all__ = [
    "__version__",
    "aggregate",
    "analysis",
    "Bounds",
    "Bundle",
    "check_table",
    "CheckReport",
    "Cleaning",
    "CoefficientAggregate",
    "CoefficientsRequest",
    "ColumnSpec",
    "ColumnSummary",
    "compare_models",
    "Comparison",
    "compute_fold_statistics",
    "compute_statistics",
    "data",
    "datasets",
    "decrypt_bundle",
    "decrypt_evaluation",
    "decrypt_statistics",
    "DifferentialPrivacy",
    "Encoding",
    "encrypt_bundle",
    "encrypt_evaluation",
    "encrypt_for_study",
    "encrypt_statistics",
    "encrypt_table",
    "EncryptResult",
    "enroll",
    "errors",
    "evaluate_local",
    "EvaluationRequest",
    "EvaluationSums",
    "FederatedGLM",
    "FederatedLinearRegression",
    "finetune",
    "FoldStatistics",
    "FoldStatisticsRequest",
    "generate_keypair",
    "Holdout",
    "inference",
    "InferenceResults",
    "key_fingerprint",
    "kinds",
    "LinearModel",
    "load_identity",
    "load_private_key",
    "load_public_key",
    "Masking",
    "models",
    "new_round",
    "primitives",
    "privatize_statistics",
    "protocol",
    "read_table",
    "release_model",
    "roles",
    "Roster",
    "Round",
    "Study",
    "save_private_key",
    "save_public_key",
    "sim",
    "simulate_fedavg",
    "solve",
    "split_holdout",
    "StatisticsRequest",
    "stats",
    "SufficientStatistics",
    "SummaryRequest",
    "propose_round",
    "run_round",
    "KeyHolderSigner",
    "load_release_key",
    "decrypt_to_file",
    "DecryptionLedger",
    "sign_model",
    "monitoring",
    "AuditRequest",
    "AuditSums",
    "monitor_table",
    "whatif_table",
    "audit_table",
    "consortium_audit",
    "build_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, _SUBMODULES)

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from . import analysis, data, datasets, errors, kinds, models, monitoring, primitives, protocol, roles, sim, stats
    from ._keys import (
        generate_keypair,
        key_fingerprint,
        load_private_key,
        load_public_key,
        save_private_key,
        save_public_key,
    )
    from .analysis import CheckReport, check_table, finetune
    from .data import (
        Bounds,
        Cleaning,
        Holdout,
        compute_fold_statistics,
        compute_statistics,
        read_table,
        split_holdout,
    )
    from .kinds import (
        AuditRequest,
        AuditSums,
        CoefficientsRequest,
        EvaluationRequest,
        FoldStatisticsRequest,
        StatisticsRequest,
        SummaryRequest,
    )
    from .models import InferenceResults, LinearModel, inference
    from .monitoring import audit_table, build_report, consortium_audit, monitor_table, whatif_table
    from .protocol import Bundle, ColumnSpec, Masking, Roster, Round, Study, enroll, load_identity, new_round
    from .roles import (
        DifferentialPrivacy,
        EncryptResult,
        aggregate,
        decrypt_bundle,
        decrypt_evaluation,
        decrypt_statistics,
        encrypt_bundle,
        encrypt_evaluation,
        encrypt_for_study,
        encrypt_statistics,
        encrypt_table,
        evaluate_local,
        privatize_statistics,
        release_model,
        solve,
    )
    from .sim import Comparison, FederatedGLM, FederatedLinearRegression, compare_models, simulate_fedavg
    from .stats import (
        CoefficientAggregate,
        ColumnSummary,
        Encoding,
        EvaluationSums,
        FoldStatistics,
        SufficientStatistics,
    )
