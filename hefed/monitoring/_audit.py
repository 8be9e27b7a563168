"""Relative accuracy audit of a predictive emission monitoring system (PEMS), locally or consortium-wide.

On ``n`` paired runs — the PEMS value (here the shared model's prediction, or a column of predictions) and the
reference method's measurement (RM) of the same period — with differences ``d_i = PEMS_i − RM_i``, US EPA
Performance Specification 16 (40 CFR 60 App. B; its equations are those of PS-2) computes::

    d̄   = Σd / n                                  mean difference
    s_d = √((Σd² − (Σd)²/n) / (n − 1))            standard deviation of the differences
    cc  = t(0.975, n − 1) · s_d / √n               confidence coefficient (2.5 % error, one-tailed)
    RA  = (|d̄| + |cc|) / RM̄ · 100                 relative accuracy, % of the mean reference value

and asks for at least 9 runs; RA must not exceed 10 % (20 % for low emitters: ``ra_limit``). The bias test
of the relative accuracy test audits (40 CFR Part 75, Appendix A §7.6, the same d̄ and cc) finds the monitor
**biased** when ``|d̄| > |cc|``, with the bias adjustment factor ``BAF = 1 + |d̄| / PEMS̄``; reported beside the
RA, not part of the verdict.

The **variability test** of EN 14181 (QAL2, §6.7): with ``D_i = RM_i − PEMS_i`` (so ``s_D = s_d``), the
calibration passes when ``s_D ≤ σ₀ · k_v``, where ``σ₀ = P · ELV / 1.96`` is the standard uncertainty the
legislation allows (``P``: the permitted 95 % uncertainty as a fraction of the emission limit value; the
Industrial Emissions Directive, Annex VI part 6, sets 10 % for CO, 20 % for SO₂ and NOₓ, 30 % for dust and
TOC, 40 % for HCl and HF) and ``k_v = √(χ²_{N−1; 0.50} / (N − 1))`` (the median of the χ² distribution:
k_v = 0.9761 for N = 15). EN 14181 asks for at least 15 pairs.

Every value comes from four exact sums (:class:`~hefed.kinds.AuditSums`: n, Σd, Σd², Σ RM): d̄, s_d² and RM̄
are exact rationals, each rounded once to float64; only √ and the t and χ² quantiles are floating point. The
same function serves one factory's own pairs and the decrypted sums of a consortium (``hefed encrypt --mode
audit``), which reveal nothing but those four sums over all factories.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import FileFormat, Table, missing_columns_error, numeric_column, read_table
from ..errors import DataError, TooFewContributorsError, UsageError
from ..kinds import AuditSums, audit_sums
from ..models import LinearModel
from ..protocol import Study
from ..roles import DEFAULT_MIN_CONTRIBUTORS, load_sums
from ..stats import Encoding

#: Fewest runs PS-16 accepts for a relative accuracy test, and fewest pairs EN 14181's QAL2 asks for.
PS16_MIN_RUNS = 9
EN14181_MIN_PAIRS = 15
#: PS-16's limit on the relative accuracy, in % (20 % applies to low emitters).
DEFAULT_RA_LIMIT = 10.0
#: The IED's permitted 95 % uncertainty for NOx and SO2, in % of the emission limit value.
DEFAULT_PERMITTED_UNCERTAINTY = 20.0


@dataclass(frozen=True)
class VariabilityTest:
    """EN 14181's variability test: passes when ``s_d ≤ sigma0 · k_v``."""

    elv: float
    permitted_uncertainty: float
    """P in % of the ELV (95 % level)."""
    sigma0: float
    k_v: float
    s_d: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"elv": self.elv, "permitted_uncertainty_pct": self.permitted_uncertainty, "sigma0": self.sigma0,
                "k_v": self.k_v, "s_d": self.s_d, "limit": self.sigma0 * self.k_v, "passed": self.passed}


@dataclass(frozen=True)
class AuditResults:
    """A relative accuracy audit (see the module): statsmodels-style plain attributes, ``to_dict`` for files."""

    n: int
    mean_difference: float
    """d̄ = mean(PEMS − RM)."""
    sd_difference: float
    """s_d, the sample standard deviation (n − 1) of the differences."""
    t_value: float
    """t(0.975, n − 1)."""
    confidence_coefficient: float
    """cc = t · s_d / √n."""
    reference_mean: float
    """RM̄, the mean reference value."""
    relative_accuracy: float
    """RA in % of RM̄ (NaN when RM̄ is 0)."""
    ra_limit: float
    biased: bool
    """The bias test of RATAs (40 CFR 75 App. A §7.6): |d̄| > |cc|."""
    bias_adjustment_factor: float
    """1 + |d̄| / PEMS̄ (reported whether or not the PEMS is biased)."""
    variability: VariabilityTest | None = None
    contributors: list[str] = field(default_factory=list)
    model_digest: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """RA within ``ra_limit`` (and the variability test passed, when one was asked for)."""
        ok = self.relative_accuracy <= self.ra_limit
        return ok and (self.variability is None or self.variability.passed)

    def to_dict(self) -> dict[str, Any]:
        def js(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"n": self.n, "mean_difference": js(self.mean_difference), "sd_difference": js(self.sd_difference),
                "t_value": js(self.t_value), "confidence_coefficient": js(self.confidence_coefficient),
                "reference_mean": js(self.reference_mean), "relative_accuracy_pct": js(self.relative_accuracy),
                "ra_limit_pct": self.ra_limit, "ra_passed": self.relative_accuracy <= self.ra_limit,
                "biased": self.biased, "bias_adjustment_factor": js(self.bias_adjustment_factor),
                "variability": None if self.variability is None else self.variability.to_dict(),
                "passed": self.passed, "contributors": self.contributors, "model_digest": self.model_digest,
                "notes": self.notes}


def _check_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise UsageError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def k_v(n: int) -> float:
    """EN 14181's k_v for ``n`` pairs: √(χ²_{n−1; 0.50} / (n − 1))."""
    from scipy import stats

    return math.sqrt(float(stats.chi2.ppf(0.5, n - 1)) / (n - 1))


def relative_accuracy(sums: AuditSums, *, elv: float | None = None,
                      permitted_uncertainty: float = DEFAULT_PERMITTED_UNCERTAINTY,
                      ra_limit: float = DEFAULT_RA_LIMIT) -> AuditResults:
    """The audit of the pairs whose exact sums are ``sums`` (see the module); with ``elv`` also EN 14181's
    variability test (``permitted_uncertainty`` in % of the ELV)."""
    from scipy import stats

    elv = _check_positive(elv, "the emission limit value (elv)")
    checked = _check_positive(permitted_uncertainty, "the permitted uncertainty")
    limit = _check_positive(ra_limit, "the relative accuracy limit")
    assert checked is not None and limit is not None
    n = sums.n
    if n < 2:
        raise DataError(f"a relative accuracy audit needs at least 2 paired runs, not {n}")
    mean_d = sums.sum_d / n
    var_d = (sums.sum_d2 - sums.sum_d * sums.sum_d / n) / (n - 1)  # exact
    if var_d < 0:
        raise DataError("the audit sums are inconsistent (Σd² < (Σd)²/n)")
    rm = sums.sum_reference / n
    s_d = math.sqrt(float(var_d))
    t = float(stats.t.ppf(0.975, n - 1))
    cc = t * s_d / math.sqrt(n)
    md = float(mean_d)
    ra = (abs(md) + abs(cc)) / abs(float(rm)) * 100 if rm != 0 else math.nan
    pems_mean = rm + mean_d
    baf = 1 + abs(md) / abs(float(pems_mean)) if pems_mean != 0 else math.nan
    notes = []
    if n < PS16_MIN_RUNS:
        notes.append(f"{n} paired runs: PS-16 asks for at least {PS16_MIN_RUNS}")
    variability = None
    if elv is not None:
        if n < EN14181_MIN_PAIRS:
            notes.append(f"{n} pairs: EN 14181's variability test asks for at least {EN14181_MIN_PAIRS}")
        sigma0 = checked / 100 * elv / 1.96
        kv = k_v(n)
        variability = VariabilityTest(elv, checked, sigma0, kv, s_d, s_d <= sigma0 * kv)
    return AuditResults(n=n, mean_difference=md, sd_difference=s_d, t_value=t, confidence_coefficient=cc,
                        reference_mean=float(rm), relative_accuracy=ra, ra_limit=limit,
                        biased=abs(md) > abs(cc), bias_adjustment_factor=baf, variability=variability,
                        contributors=list(sums.contributors), model_digest=sums.model_digest, notes=notes)


def audit_table(data: pd.DataFrame | str | os.PathLike[str], *, model: LinearModel | None = None,
                prediction_column: str | None = None, reference_column: str | None = None,
                encoding: Encoding | None = None, elv: float | None = None,
                permitted_uncertainty: float = DEFAULT_PERMITTED_UNCERTAINTY, ra_limit: float = DEFAULT_RA_LIMIT,
                file_format: FileFormat | None = None) -> AuditResults:
    """A factory's own audit of its paired runs (nothing leaves it).

    With ``model``, the PEMS values are the model's predictions from the table's feature columns, computed
    exactly as the consortium's ``audit`` bundle computes them (the reference is ``reference_column``, default
    the model's target); with ``prediction_column`` they are read from that column (any PEMS). Bad tables are
    refused in one line naming the file, column and row."""
    if (model is None) == (prediction_column is None):
        raise UsageError("an audit needs either a model (its predictions) or a prediction column, not both")
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    if model is not None:
        table = Table(data, reference_column or model.target_, [str(f) for f in model.feature_names_in_],
                      factory_id=source, cleaning=None, file_format=file_format)
        sums, _ = audit_sums(model, table, encoding or Encoding())
        if sums.n == 0:
            raise DataError(f"{source}: no data rows")
        return relative_accuracy(sums, elv=elv, permitted_uncertainty=permitted_uncertainty, ra_limit=ra_limit)
    frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data), file_format)
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows")
    if reference_column is None:
        raise UsageError("give the reference column (the reference method's measurements)")
    assert prediction_column is not None
    columns = [str(c) for c in frame.columns]
    absent = [c for c in (prediction_column, reference_column) if c not in columns]
    if absent:
        raise missing_columns_error(source, absent, columns, "the prediction and reference column(s)")
    labels = {str(c): c for c in frame.columns}
    prediction = numeric_column(frame, prediction_column, source, labels[prediction_column])
    measured = numeric_column(frame, reference_column, source, labels[reference_column])
    sums = AuditSums.from_pairs(np.asarray(prediction, dtype=np.float64).tolist(),
                                np.asarray(measured, dtype=np.float64).tolist(), target=reference_column)
    return relative_accuracy(sums, elv=elv, permitted_uncertainty=permitted_uncertainty, ra_limit=ra_limit)


def consortium_audit(sums: AuditSums | str | os.PathLike[str], *, model: LinearModel | None = None,
                     study: Study | None = None, elv: float | None = None,
                     permitted_uncertainty: float = DEFAULT_PERMITTED_UNCERTAINTY,
                     ra_limit: float = DEFAULT_RA_LIMIT) -> AuditResults:
    """The consortium's audit from decrypted ``audit`` sums (a file ``hefed decrypt`` wrote — the key holder's
    signature, when there is one, verified — or the sums); with ``model`` the sums must be of that model's
    predictions (its digest), else they are refused.

    Sums are a consortium's only when enough factories are behind them: at least the study's ``min_contributors``
    (the default threshold without a study); with a ``study`` they must be made for it and, when it names its key
    holder, signed by that key holder for it — a "decrypted" file is otherwise anyone's to forge (a model's digest
    is public). Sums that name a study are refused without it."""
    loaded: AuditSums = sums if isinstance(sums, AuditSums) else load_sums(sums, ("audit",))  # a signature verified
    if study is not None:
        study.check_digest(loaded.study, "the audit sums")
        study.check_release(getattr(loaded, "release", None), "the audit sums", "audit")
    elif loaded.study is not None:
        raise UsageError(f"these audit sums were made for study {loaded.study}: give the study, whose key holder's "
                         "signature and threshold they are checked against", parameters=("study",))
    threshold = study.min_contributors if study is not None else DEFAULT_MIN_CONTRIBUTORS
    if len(set(loaded.contributors)) < threshold:
        raise TooFewContributorsError(f"audit sums of {len(set(loaded.contributors))} contributor(s) are not a "
                                      f"consortium's: at least {threshold} are required")
    if model is not None and loaded.model_digest != model.digest():
        raise UsageError("these audit sums are of another model's predictions (model digest "
                         f"{loaded.model_digest}, not {model.digest()})")
    return relative_accuracy(loaded, elv=elv, permitted_uncertainty=permitted_uncertainty, ra_limit=ra_limit)
