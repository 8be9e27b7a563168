"""What plants do with the shared model: monitor, audit, plan, report.

Layer 8 of hefed (beside :mod:`hefed.analysis`, above :mod:`hefed.roles`); everything but the consortium audit
runs at one factory on its own rows, and nothing leaves it.

* :func:`monitor_table` — every reading's prediction interval, its residual standardised against the plant's own
  reference period, CUSUM and EWMA drift alarms (:func:`cusum`, :func:`ewma`), and :func:`write_control_chart`;
* :func:`audit_table`, :func:`consortium_audit`, :func:`relative_accuracy` — the PEMS relative accuracy audit
  (EPA PS-16) and EN 14181's variability test, locally or from decrypted ``audit`` sums;
* :func:`whatif_table`, :func:`scenario_change` — the change of predicted emissions under a scenario, with its
  interval from the full covariance;
* :func:`build_report`, :func:`report_from_files` — one self-contained HTML page of the model.
"""

from __future__ import annotations

from ._audit import AuditResults, VariabilityTest, audit_table, consortium_audit, k_v, relative_accuracy
from ._charts import (
    ALERT_COLUMNS,
    MonitorResult,
    cusum,
    ewma,
    first_alarm,
    lag1_autocorrelation,
    monitor_residuals,
    monitor_table,
    standardize,
    write_control_chart,
)
from ._report import (
    COMPARISON_FORMAT,
    COMPARISON_VERSION,
    ReportInputs,
    build_report,
    load_comparison,
    report_from_files,
    residuals_of,
    write_comparison,
    write_report,
)
from ._whatif import Change, ScenarioResult, parse_scenario, scenario_change, whatif_table

__all__ = [
    "ALERT_COLUMNS",
    "COMPARISON_FORMAT",
    "COMPARISON_VERSION",
    "AuditResults",
    "Change",
    "MonitorResult",
    "ReportInputs",
    "ScenarioResult",
    "VariabilityTest",
    "audit_table",
    "build_report",
    "consortium_audit",
    "cusum",
    "ewma",
    "first_alarm",
    "k_v",
    "lag1_autocorrelation",
    "load_comparison",
    "monitor_residuals",
    "monitor_table",
    "parse_scenario",
    "relative_accuracy",
    "report_from_files",
    "residuals_of",
    "scenario_change",
    "standardize",
    "whatif_table",
    "write_comparison",
    "write_control_chart",
    "write_report",
]
