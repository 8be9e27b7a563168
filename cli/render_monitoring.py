"""Renderers of ``monitor``, ``whatif``, ``audit`` and ``consortium-audit``: text for people, ``--json`` for tools.

Nothing here computes: every number comes from the result (:mod:`hefed.monitoring`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from .output import emit, say, show

if TYPE_CHECKING:
    from hefed.monitoring import AuditResults, MonitorResult, ScenarioResult


def _num(value: float | None, fmt: str = ".6g") -> str:
    return "n/a" if value is None or value != value else format(value, fmt)


def _row(value: int | None) -> str:
    return "none" if value is None else f"row {value}"


def render_monitor(result: MonitorResult, out: Path, plot: Path | None) -> None:
    """monitor: where the alerts went and the first alarm of each kind."""
    s = result.summary()
    say(f"wrote {out}: {s['rows']} readings of {result.source} against the model "
        f"(reference period: the first {s['reference_rows']}, residual mean {_num(s['reference_mean'])}, "
        f"SD {_num(s['reference_sd'])})")
    level = f"{100 * (1 - result.alpha):g}%"
    say(f"  outside the {level} prediction interval: {s['outside_interval']} readings (first: "
        f"{_row(s['first_outside_interval'])})")
    say(f"  CUSUM (k={result.cusum_k:g}, h={result.cusum_h:g}) alarms: {s['cusum_alarms']} readings (first: "
        f"{_row(s['first_cusum_alarm'])}; after the reference period: {_row(s['first_cusum_alarm_after_reference'])})")
    say(f"  EWMA (lambda={result.ewma_lambda:g}, L={result.ewma_L:g}, exact time-varying limits) alarms: "
        f"{s['ewma_alarms']} readings (first: {_row(s['first_ewma_alarm'])}; after the reference period: "
        f"{_row(s['first_ewma_alarm_after_reference'])})")
    firsts = [s[key] for key in ("first_cusum_alarm", "first_ewma_alarm") if s[key] is not None]
    if firsts and min(firsts) <= s["reference_rows"]:
        say("  note: an alarm inside the reference period: it may not have been in control (choose --reference-rows)")
    r1 = s["reference_autocorrelation"]
    if r1 == r1 and r1 > 0.3:
        say(f"  note: the reference residuals are autocorrelated (lag 1: {r1:.2f}); the charts assume independent "
            "readings and alarm more often than their nominal rates: monitor aggregated readings (daily means)")
    if plot is not None:
        say(f"wrote {plot}: control chart")
    emit(out=out, plot=plot, **s)


def render_whatif(result: ScenarioResult) -> None:
    """whatif: baseline, scenario, the change with its interval, and each column's part."""
    level = f"{100 * (1 - result.alpha):g}%"
    changes = ", ".join(f"{c.column} {c.text}" for c in result.changes)
    say(f"scenario {changes} over {result.n} rows of {result.source}:")
    say(f"  predicted total: {_num(result.baseline_total)} -> {_num(result.scenario_total)}")
    say(f"  change: {_num(result.change)} ({_num(result.relative_change, '+.3g')} %), {level} interval "
        f"[{_num(result.conf_int[0])}, {_num(result.conf_int[1])}] (standard error {_num(result.se)}, "
        f"{result.df} df)")
    table = Table(title="each column's part of the change")
    for column in ("column", "change", "column total change", "emissions change"):
        table.add_column(column, justify="left" if column in ("column", "change") else "right")
    for c in result.changes:
        table.add_row(c.column, c.text, _num(result.column_changes[c.column]), _num(result.contributions[c.column]))
    show(table)
    emit(**result.to_dict())


def render_audit(title: str, result: AuditResults) -> None:
    """audit, consortium-audit: PS-16's figures, the bias test, the variability test, the verdict."""
    say(f"{title}: {result.n} paired runs" + (f" from {len(result.contributors)} factories "
                                               f"({', '.join(result.contributors)})" if result.contributors else ""))
    table = Table(title="relative accuracy (EPA PS-16), d = PEMS - reference")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [("mean difference d̄", _num(result.mean_difference)), ("SD of differences s_d", _num(result.sd_difference)),
            ("t(0.975, n-1)", _num(result.t_value, ".5g")),
            ("confidence coefficient cc", _num(result.confidence_coefficient)),
            ("mean reference value RM", _num(result.reference_mean)),
            ("relative accuracy RA (%)", _num(result.relative_accuracy, ".4g")),
            ("RA limit (%)", _num(result.ra_limit, "g")),
            ("bias test (|d̄| > |cc|)", "biased" if result.biased else "not biased"),
            ("bias adjustment factor", _num(result.bias_adjustment_factor, ".6g"))]
    v = result.variability
    if v is not None:
        rows += [("ELV", _num(v.elv)), ("sigma0 = P·ELV/1.96", _num(v.sigma0)), ("k_v", _num(v.k_v, ".4f")),
                 ("variability test (s_d <= sigma0·k_v)", "passed" if v.passed else "FAILED")]
    for name, value in rows:
        table.add_row(name, value)
    show(table)
    for note in result.notes:
        say(f"note: {note}")
    say("verdict: " + ("passed" if result.passed else "FAILED") + f" (RA {_num(result.relative_accuracy, '.4g')} % "
        f"against {_num(result.ra_limit, 'g')} %" + ("" if v is None else ", variability test "
                                                       + ("passed" if v.passed else "failed")) + ")")
    emit(**result.to_dict())
