"""``report``: one self-contained HTML page of the model for consortium members and regulators."""

from __future__ import annotations

from pathlib import Path

import click

from .options import file_format, file_format_options, force_option
from .output import emit, output_options, say


@click.command()
@output_options
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON (hefed solve --out).")
@click.option("--comparison", "comparison_path", default=None, type=click.Path(path_type=Path),
              help="The comparison hefed compare --out wrote (local / federated / centralised / fine-tuned).")
@click.option("--evaluation", "evaluation_path", default=None, type=click.Path(path_type=Path),
              help="Decrypted evaluation sums (hefed decrypt of evaluation bundles): the consortium's holdout "
              "metrics.")
@click.option("--residuals", "residuals_path", default=None, type=click.Path(path_type=Path),
              help="A table with the model's columns to plot residuals on (e.g. a factory's own rows: the page "
              "then shows them, so keep it at that factory).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The HTML page to write.")
@file_format_options
@force_option
def report(model_path: Path, comparison_path: Path | None, evaluation_path: Path | None,
           residuals_path: Path | None, out: Path, delimiter: str | None, decimal: str | None,
           file_encoding: str | None, sheet: str | None, force: bool) -> None:
    """Anyone with the model: one self-contained HTML report (no network needed to read it).

    Emission factors with 95% intervals and relative uncertainty, fit statistics, the comparison and the
    evaluation when given, plots, contributors, the study digest and what each party saw.
    """
    from hefed._files import check_writable
    from hefed.monitoring import report_from_files

    check_writable(out, force)
    path = report_from_files(out, model_path, comparison=comparison_path, evaluation=evaluation_path,
                             residuals=residuals_path,
                             file_format=file_format(delimiter, decimal, file_encoding, sheet), force=force)
    say(f"wrote {path}")
    emit(out=path)
