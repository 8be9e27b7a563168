"""A plant's own use of the shared model: ``monitor`` (drift alarms), ``whatif`` (scenarios), ``audit`` (PEMS
relative accuracy, locally), and the analyst's ``consortium-audit`` of decrypted audit sums.

``monitor``, ``whatif`` and ``audit`` run at the factory on its own rows: nothing leaves it. The consortium's
audit travels as an encrypted ``audit`` bundle (``hefed encrypt PAIRS --mode audit --model model.json``), is
aggregated and decrypted like any bundle, and ``consortium-audit`` renders the decrypted sums.
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import LibraryDefault, file_format, file_format_options, force_option
from .output import output_options

_ELV_HELP = ("Emission limit value, in the target's unit: adds EN 14181's variability test (s_d <= sigma0 * k_v, "
             "sigma0 = P * ELV / 1.96).")
_P_HELP = ("P, the permitted 95% uncertainty in % of the ELV for the variability test (the IED's: 10 CO, 20 SO2 "
           "and NOx, 30 dust and TOC, 40 HCl and HF).")
_RA_HELP = "PS-16's limit on the relative accuracy, in % (20 for low emitters)."


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON (hefed solve --out), with its full covariance.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="alerts.csv to write (or .parquet): one row per reading with its row number, prediction, "
              "interval, standardised residual, CUSUM and EWMA and the alert flags (0/1).")
@click.option("--reference-rows", type=click.IntRange(min=2), default=None,
              help="Readings of the plant's own in-control reference period, from the first (default: a quarter "
              "of the rows).")
@click.option("--alpha", cls=LibraryDefault, library_default="hefed.monitoring._charts:DEFAULT_ALPHA",
              show_default=True, type=float, help="Flag readings outside the 1 - alpha prediction interval.")
@click.option("--cusum-k", cls=LibraryDefault, library_default="hefed.monitoring._charts:DEFAULT_CUSUM_K",
              show_default=True, type=float, help="CUSUM reference value k, in reference standard deviations.")
@click.option("--cusum-h", cls=LibraryDefault, library_default="hefed.monitoring._charts:DEFAULT_CUSUM_H",
              show_default=True, type=float, help="CUSUM decision interval h.")
@click.option("--ewma-lambda", cls=LibraryDefault, library_default="hefed.monitoring._charts:DEFAULT_EWMA_LAMBDA",
              show_default=True, type=float, help="EWMA weight lambda.")
@click.option("--ewma-l", "ewma_L", cls=LibraryDefault,
              library_default="hefed.monitoring._charts:DEFAULT_EWMA_L", show_default=True, type=float,
              help="EWMA limit width L (exact time-varying limits).")
@click.option("--plot", "plot_path", default=None, type=click.Path(path_type=Path),
              help="Also write the control chart here (PNG).")
@file_format_options
@force_option
def monitor(data: Path, model_path: Path, out: Path, reference_rows: int | None, alpha: float, cusum_k: float,
            cusum_h: float, ewma_lambda: float, ewma_L: float, plot_path: Path | None, delimiter: str | None,
            decimal: str | None, file_encoding: str | None, sheet: str | None, force: bool) -> None:
    """Factory: monitor its readings against the shared model; nothing leaves the factory.

    DATA holds the plant's readings in time order: the model's features and its target (the measured emissions).
    Each reading gets its prediction and 1 - alpha prediction interval, its residual standardised against the
    plant's own reference period (its mean and spread, not the pooled model's), and the CUSUM and EWMA drift
    alarms on those standardised residuals.
    """
    from hefed._files import check_writable
    from hefed.data import write_table
    from hefed.models import LinearModel
    from hefed.monitoring import monitor_table, write_control_chart

    from .render_monitoring import render_monitor

    check_writable(out, force)
    if plot_path is not None:
        check_writable(plot_path, force)
    result = monitor_table(LinearModel.load(model_path), data, reference_rows=reference_rows, alpha=alpha,
                           cusum_k=cusum_k, cusum_h=cusum_h, ewma_lambda=ewma_lambda, ewma_L=ewma_L,
                           file_format=file_format(delimiter, decimal, file_encoding, sheet))
    write_table(result.frame, out, force=force)
    if plot_path is not None:
        write_control_chart(result, plot_path, force=force)
    render_monitor(result, out, plot_path)


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON (hefed solve --out), with its full covariance.")
@click.option("--set", "changes", required=True,
              help="The scenario, comma-separated: COLUMN=+20% or -20% (relative), COLUMN=x1.2 (a factor), "
              "COLUMN=+5 or -5 (added to every row), e.g. natural_gas_t=+20%,coal_t=-20%.")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="The interval of the change at 1 - alpha.")
@file_format_options
def whatif(data: Path, model_path: Path, changes: str, alpha: float, delimiter: str | None, decimal: str | None,
           file_encoding: str | None, sheet: str | None) -> None:
    """Factory: the change in predicted emissions over DATA's rows under a scenario, with its interval.

    The change is the sum over the rows of the changed activity times the model's coefficients; its interval
    comes from the model's full covariance (the same rows are predicted twice, so their own noise cancels).
    """
    from hefed.models import LinearModel
    from hefed.monitoring import whatif_table

    from .render_monitoring import render_whatif

    render_whatif(whatif_table(LinearModel.load(model_path), data, changes, alpha=alpha,
                               file_format=file_format(delimiter, decimal, file_encoding, sheet)))


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", default=None, type=click.Path(path_type=Path),
              help="The global model JSON: the PEMS values are its predictions from DATA's feature columns.")
@click.option("--prediction-column", default=None,
              help="Instead of --model: the column of DATA holding the PEMS values.")
@click.option("--reference-column", default=None,
              help="The reference method's measurements (default with --model: the model's target).")
@click.option("--elv", type=float, default=None, help=_ELV_HELP)
@click.option("--permitted-uncertainty", cls=LibraryDefault,
              library_default="hefed.monitoring._audit:DEFAULT_PERMITTED_UNCERTAINTY", show_default=True,
              type=float, help=_P_HELP)
@click.option("--ra-limit", cls=LibraryDefault, library_default="hefed.monitoring._audit:DEFAULT_RA_LIMIT",
              show_default=True, type=float, help=_RA_HELP)
@file_format_options
def audit(data: Path, model_path: Path | None, prediction_column: str | None, reference_column: str | None,
          elv: float | None, permitted_uncertainty: float, ra_limit: float, delimiter: str | None,
          decimal: str | None, file_encoding: str | None, sheet: str | None) -> None:
    """Factory: relative accuracy audit of the PEMS on its paired runs (EPA PS-16; EN 14181 with --elv).

    DATA holds paired runs: the process data (or a column of PEMS values) and the reference method's
    measurement of the same period. Prints the mean difference, the confidence coefficient, the relative
    accuracy in % of the mean reference value, the bias test and, with --elv, the variability test. Exit code 0
    whether or not the audit passes (the verdict is printed). For the consortium's audit: hefed encrypt DATA
    --mode audit --model model.json, aggregate, decrypt, then hefed consortium-audit.
    """
    from hefed.models import LinearModel
    from hefed.monitoring import audit_table

    from .render_monitoring import render_audit

    model = LinearModel.load(model_path) if model_path is not None else None
    result = audit_table(data, model=model, prediction_column=prediction_column, reference_column=reference_column,
                         elv=elv, permitted_uncertainty=permitted_uncertainty, ra_limit=ra_limit,
                         file_format=file_format(delimiter, decimal, file_encoding, sheet))
    render_audit(f"audit of {data} (stays here)", result)


@click.command("consortium-audit")
@output_options
@click.argument("sums", type=click.Path(path_type=Path))
@click.option("--model", "model_path", default=None, type=click.Path(path_type=Path),
              help="The model audited: refuse sums of another model's predictions (by its digest).")
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The study the sums were made for: its threshold, and its key holder's signature, are checked.")
@click.option("--elv", type=float, default=None, help=_ELV_HELP)
@click.option("--permitted-uncertainty", cls=LibraryDefault,
              library_default="hefed.monitoring._audit:DEFAULT_PERMITTED_UNCERTAINTY", show_default=True,
              type=float, help=_P_HELP)
@click.option("--ra-limit", cls=LibraryDefault, library_default="hefed.monitoring._audit:DEFAULT_RA_LIMIT",
              show_default=True, type=float, help=_RA_HELP)
def consortium_audit(sums: Path, model_path: Path | None, study_path: Path | None, elv: float | None,
                     permitted_uncertainty: float, ra_limit: float) -> None:
    """Analyst: the consortium's relative accuracy audit from decrypted audit sums (n, Σd, Σd², Σ reference).

    Reads what hefed decrypt wrote for an aggregate of audit bundles: the same figures as hefed audit, over every
    contributing factory's paired runs, and nothing of any one factory.
    """
    from hefed.models import LinearModel
    from hefed.monitoring import consortium_audit as audit_sums
    from hefed.protocol import Study

    from .render_monitoring import render_audit

    model = LinearModel.load(model_path) if model_path is not None else None
    result = audit_sums(sums, model=model, study=Study.load(study_path) if study_path is not None else None, elv=elv,
                        permitted_uncertainty=permitted_uncertainty, ra_limit=ra_limit)
    render_audit(f"consortium audit from {sums}", result)
