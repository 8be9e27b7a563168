"""``predict``: a model's predictions for a factory's table with intervals, and the table's total (MRR/IPCC)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import file_format, file_format_options, force_option
from .output import emit, output_options, say


def parse_activity_uncertainty(text: str | None) -> dict[str, float] | None:
    """``coal_t=2.5%,gas_t=1.5%`` → ``{"coal_t": 0.025, "gas_t": 0.015}`` (each a relative 95 % half-width)."""
    if text is None or not text.strip():
        return None
    from hefed.errors import UsageError

    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value.endswith("%"):
            raise UsageError(f"--activity-uncertainty: {item.strip()!r} is not COLUMN=PERCENT% (e.g. coal_t=2.5%)")
        try:
            percent = float(value[:-1])
        except ValueError:
            raise UsageError(f"--activity-uncertainty: {value!r} for {name!r} is not a percentage") from None
        if not 0 <= percent < float("inf"):
            raise UsageError(f"--activity-uncertainty: {value!r} for {name!r} must be a non-negative percentage")
        if name in out:
            raise UsageError(f"--activity-uncertainty: {name!r} is given twice")
        out[name] = percent / 100
    return out


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON (hefed solve --out), with its full covariance.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Predictions to write (CSV, or Parquet for .parquet): row, prediction, mean_se, mean and "
              "observation interval bounds.")
@click.option("--alpha", default=0.05, show_default=True, type=float,
              help="Intervals at 1 - alpha (MRR and IPCC report 95 %: 0.05).")
@click.option("--total", is_flag=True,
              help="Also the total over DATA's rows (a plant's year): the interval of the expected total, the "
              "prediction interval of the realised total and the relative uncertainty in %.")
@click.option("--activity-uncertainty", default=None,
              help="Declared activity-data uncertainties (relative, at 95 %) combined into the total by GUM "
              "propagation, e.g. coal_t=2.5%,gas_t=1.5% (implies --total).")
@file_format_options
@force_option
def predict(data: Path, model_path: Path, out: Path, alpha: float, total: bool, activity_uncertainty: str | None,
            delimiter: str | None, decimal: str | None, file_encoding: str | None, sheet: str | None,
            force: bool) -> None:
    """Anyone with the model: predictions for DATA's rows with confidence and prediction intervals.

    Needs a model file carrying the full covariance (an OLS model pooling at least min_contributors + 1
    factories). Intervals use the t distribution with the model's residual degrees of freedom, as statsmodels'
    get_prediction. With --total also the total over all rows with both intervals and the relative
    uncertainty in % (half-width over the estimate, as the EU MRR and IPCC report it).
    """
    from hefed._files import check_writable
    from hefed.data import write_table
    from hefed.models import LinearModel, predict_table

    check_writable(out, force)
    declared = parse_activity_uncertainty(activity_uncertainty)
    result = predict_table(LinearModel.load(model_path), data, alpha=alpha, total=total,
                           activity_uncertainty=declared,
                           file_format=file_format(delimiter, decimal, file_encoding, sheet))
    rows = result.frame()
    write_table(rows, out, force=force)
    level = f"{100 * (1 - alpha):g}%"
    say(f"wrote {len(rows)} predictions with {level} intervals to {out}")
    totals = result.total
    if totals is not None:
        say(f"total over {totals.n} rows: {totals.total:.6g}")
        say(f"  expected total, {level} interval: [{totals.conf_int[0]:.6g}, {totals.conf_int[1]:.6g}]  "
            f"(±{totals.relative_uncertainty:.3g} %)")
        say(f"  realised total, {level} prediction interval: [{totals.pred_int[0]:.6g}, {totals.pred_int[1]:.6g}]  "
            f"(±{totals.relative_uncertainty_obs:.3g} %)")
        if totals.activity is not None:
            a = totals.activity
            say(f"  with activity-data uncertainty (GUM), {level} interval: [{a.interval[0]:.6g}, "
                f"{a.interval[1]:.6g}]  (±{a.relative_uncertainty:.3g} %)")
    emit(out=out, rows=len(rows), alpha=alpha, total=None if totals is None else totals.to_dict())
