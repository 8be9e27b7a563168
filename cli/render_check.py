"""What ``hefed check`` prints: the per-column table, the rows, the suggestions and the verdict, or the
report as JSON. Nothing here computes: every number comes from :class:`hefed.analysis.CheckReport`."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from .output import emit, say, show

if TYPE_CHECKING:
    from hefed.analysis import CheckReport


def render_check(report: CheckReport) -> None:
    """check: the file as read and the study, one table row per column of the study, then what happens to
    the rows, what would be rounded, the columns the study does not use, problems, suggestions, the verdict.
    With ``--json`` the report's ``to_dict`` (``"ok"`` is whether the data fit). When the data do not fit,
    one line on stderr says so (the exit code is 1)."""
    for line in report.heading():
        say(line)
    header, rows = report.table()
    table = Table()
    for name in header:
        table.add_column(name, justify="right" if name in ("missing", "min", "max") else "left")
    for row in rows:
        table.add_row(*map(escape, row))
    show(table)
    for line in report.detail_lines():
        say(line + _options(_suggestions(report).get(line, {})))
    if report.fits:
        emit(**report.to_dict())
    else:
        emit(ok=False, error=_refusal(report), exit_code=1, **report.to_dict())
        click.echo(f"hefed: error: {_refusal(report)}", err=True)


def _suggestions(report: CheckReport) -> dict[str, Mapping[str, Any]]:
    """Each suggestion's line, to its change."""
    return {f"suggestion: {s.text}": s.change for s in report.suggestions}


def _options(change: Mapping[str, Any]) -> str:
    """The command-line options that make a suggested change: this command's file-format options, or
    ``hefed study new``'s for a change to the study."""
    hints = []
    for name, value in change.get("file_format", {}).items():
        flag = {"delimiter": "--delimiter", "decimal": "--decimal", "encoding": "--file-encoding",
                "sheet": "--sheet"}[name]
        hints.append(f"{flag} {'tab' if value == chr(9) else shlex.quote(str(value))}")
    for column, encoding in change.get("column_encoding", {}).items():
        spec = f"{column}={encoding['frac_bits']}:{encoding['int_bits']}"
        hints.append(f"hefed study new --column-encoding {shlex.quote(spec)}")
    for column, levels in change.get("categories", {}).items():
        hints.append(f"hefed study new --categories {shlex.quote(column + '=' + '|'.join(levels))}")
    for name, value in change.get("cleaning", {}).items():
        hints.append(f"hefed study new --{name.replace('_', '-')} {value}")
    return f" [{'; '.join(hints)}]" if hints else ""


def _refusal(report: CheckReport) -> str:
    more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
    return f"{report.source}: the data do not fit study {report.study_digest}: {report.problems[0]}{more}"
