"""What a factory does with the shared model on its own data: fine-tuning (and, later, monitoring).

Layer 8 of hefed (above :mod:`hefed.roles`). Everything here runs at the factory; nothing leaves it.

* :func:`finetune` — adapt the global model to the factory's rows,
  ``argmin ‖y − Xθ‖² + λ‖θ − θ_global‖²`` with λ chosen by exact local cross-validation;
* :func:`check_table` — a dry run of a study on the factory's table: per column whether the data
  fit (range, grid, type), the rows dropped or rounded, and what to change (:class:`CheckReport`).
"""

from __future__ import annotations

from ._check import CheckReport, ColumnCheck, Suggestion, UnusedColumn, check_table
from ._finetune import (
    DEFAULT_LAMBDA_EXPONENTS,
    FinetuneResult,
    cv_curve,
    default_lambdas,
    finetune,
    finetune_frame,
    proximal_fit,
)

__all__ = [
    "DEFAULT_LAMBDA_EXPONENTS",
    "CheckReport",
    "ColumnCheck",
    "FinetuneResult",
    "Suggestion",
    "UnusedColumn",
    "check_table",
    "cv_curve",
    "default_lambdas",
    "finetune",
    "finetune_frame",
    "proximal_fit",
]
