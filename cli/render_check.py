"""What ``hefed check`` prints: the per-column table, the rows, the suggestions and the verdict, or the
report as JSON. Nothing here computes: every number comes from :class:`hefed.analysis.CheckReport`."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
        say(line)
    if report.fits:
        emit(**report.to_dict())
    else:
        emit(ok=False, error=_refusal(report), exit_code=1, **report.to_dict())
        click.echo(f"hefed: error: {_refusal(report)}", err=True)


def _refusal(report: CheckReport) -> str:
    more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
    return f"{report.source}: the data do not fit study {report.study_id}: {report.problems[0]}{more}"
