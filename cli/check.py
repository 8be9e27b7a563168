"""``hefed check``: a factory's dry run of the study on its own table. Nothing is encrypted or written."""

from __future__ import annotations

from pathlib import Path

import click

from .options import file_format, file_format_options
from .output import output_options


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--study", "study_path", required=True, type=click.Path(path_type=Path),
              help="The consortium's study (hefed study new), the copy this factory pinned.")
@click.option("--factory-id", default=None, help="This factory's id (letters, digits, . _ -), shown in the report.")
@click.option("--summary-file", type=click.Path(path_type=Path), default=None,
              help="Decrypted consortium summary, to check the study's outlier rule (max_z) and mean imputation.")
@file_format_options
@click.pass_context
def check(ctx: click.Context, data: Path, study_path: Path, factory_id: str | None, summary_file: Path | None,
          delimiter: str | None, decimal: str | None, file_encoding: str | None, sheet: str | None) -> None:
    """Factory: check its table against the study before encrypting; nothing is encrypted or written.

    Reads DATA as encrypt would and reports, per column of the study: found or not, type, missing values, min and
    max, the bits its values need against the study's encoding (values out of range are refused, values finer than
    the grid are rounded and counted), categorical levels the study does not have; then the rows the study's
    cleaning drops, its holdout, the columns the study does not use, and what to change. Exit code 0 when the data
    fit (rounding allowed), 1 when encrypt would refuse them.
    """
    from hefed.analysis import check_table
    from hefed.protocol import Study
    from hefed.stats import ColumnSummary

    from .render_check import render_check

    report = check_table(data, Study.load(study_path), factory_id=factory_id,
                         file_format=file_format(delimiter, decimal, file_encoding, sheet),
                         summary=ColumnSummary.load(summary_file) if summary_file is not None else None)
    render_check(report)
    if not report.fits:
        ctx.exit(1)
