"""One self-contained HTML report of a consortium's model, for members and regulators.

:func:`build_report` turns a model file (and optionally the comparison ``hefed compare --out`` wrote, the
decrypted evaluation metrics and a table to plot residuals on) into one HTML page that needs no network to be
read: CSS inline, every plot a PNG inlined as a ``data:`` URI, no external reference at all, and a
Content-Security-Policy that forbids the browser to fetch anything but ``data:`` images. Every text taken from
a file (column names, factory ids, digests) is escaped (``html.escape``).

The page holds the emission factors with their 95 % intervals and relative uncertainty (MRR/IPCC), the fit
statistics, the local / federated / centralised / fine-tuned comparison, plots (coefficients with intervals,
residuals, the comparison, FedAvg against the exact model when the comparison carries a FedAvg run), the
contributors, the study digest and the key holder's signature, and what each party saw (the privacy statement).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._files import atomic_write_bytes, atomic_write_json, read_json_object
from ..data import FileFormat, missing_columns_error, numeric_column, read_table
from ..errors import InvalidFileError
from ..models import LinearModel
from ..stats import EvaluationSums

COMPARISON_FORMAT = "hefed.comparison"
COMPARISON_VERSION = 1
#: The models of a comparison, in the order they are shown.
COMPARED = ("local", "federated", "centralised", "finetuned")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:64em;color:#222;
line-height:1.45;padding:0 1em;background:#fff}
h1{font-size:1.6em;border-bottom:3px solid #08519c;padding-bottom:.3em}h2{font-size:1.25em;margin-top:1.8em;
color:#08519c}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#eef3fa}td.l,th.l{text-align:left}
.note{color:#555;font-size:.9em}.box{background:#f6f8fa;border-left:4px solid #08519c;padding:.5em 1em}
img{max-width:100%;height:auto;display:block;margin:.5em 0}code{font-size:.9em}
"""

#: Nothing but inline styles and data: images may load; no script, no font, no connection.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, fmt: str = ".6g") -> str:
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return format(value, fmt)


def _label(text: object) -> str:
    """Text from a file as a matplotlib label: ``$`` would start mathtext (and a stray one fail to draw)."""
    return str(text).replace("$", r"\$")


def _png(fig: Any) -> str:
    """A matplotlib figure as an ``<img>`` with a data: URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table; cells are escaped here, the first ``left`` columns left-aligned."""
    def cell(tag: str, i: int, text: str) -> str:
        return f'<{tag}{" class=l" if i < left else ""}>{_e(text)}</{tag}>'

    out = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


@dataclass(frozen=True)
class ReportInputs:
    """What a report is made of (each optional part ``None`` when not given)."""

    model: LinearModel
    comparison: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    residuals: tuple[np.ndarray, np.ndarray] | None = None
    """(fitted, residual) on a table the model was given, for the residual plot."""
    residual_source: str | None = None
    title: str = "Consortium emission model"


def load_comparison(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A comparison file (``hefed compare --out``), checked enough to be shown."""
    obj = read_json_object(path, "comparison")
    if obj.get("format") != COMPARISON_FORMAT or obj.get("version") != COMPARISON_VERSION:
        raise InvalidFileError(f"{path}: not a hefed comparison file (hefed compare --out)")
    rows = obj.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows) or not isinstance(obj.get("overall"),
                                                                                                    dict):
        raise InvalidFileError(f"{path}: 'rows' and 'overall' of the comparison are missing or malformed")
    return obj


def write_comparison(path: str | os.PathLike[str], comparison: Mapping[str, Any], *, force: bool = False) -> Path:
    """Write a comparison (``Comparison.to_dict()``, optionally with a ``fedavg`` run's ``to_dict()``) as the file
    :func:`load_comparison` and ``hefed report --comparison`` read (atomically)."""
    return atomic_write_json(path, {"format": COMPARISON_FORMAT, "version": COMPARISON_VERSION, **comparison},
                             force=force)


#: The metrics an evaluation shows, in order.
METRICS = ("n", "mse", "rmse", "mae", "r2")


def load_evaluation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The consortium's holdout metrics: decrypted evaluation sums (``hefed decrypt`` of evaluation bundles, the
    metrics recomputed from the exact sums), or the ``--json`` output of ``hefed evaluate`` / ``hefed decrypt``
    (an object whose ``metrics`` holds n, mse, rmse, mae and r2)."""
    obj = read_json_object(path, "evaluation")
    if obj.get("format") == EvaluationSums.FORMAT:
        sums = EvaluationSums.from_dict(obj, str(path))
        return {"metrics": sums.metrics(), "contributors": list(sums.contributors)}
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict) or not all(
            isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool) for k in METRICS):
        raise InvalidFileError(f"{path}: neither decrypted evaluation sums nor metrics (n, mse, rmse, mae, r2)")
    return {"metrics": {k: float(metrics[k]) if k != "n" else int(metrics[k]) for k in METRICS},
            "contributors": [str(c) for c in obj.get("contributors", []) if isinstance(c, str)]}


def residuals_of(model: LinearModel, data: pd.DataFrame | str | os.PathLike[str],
                 file_format: FileFormat | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, residual) of ``model`` on a table with its features and target (for the residual plot)."""
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data), file_format)
    names = [str(f) for f in model.feature_names_in_] + [model.target_]
    columns = [str(c) for c in frame.columns]
    absent = [c for c in names if c not in columns]
    if absent:
        raise missing_columns_error(source, absent, columns, "the model's column(s)")
    labels = {str(c): c for c in frame.columns}
    values = {c: numeric_column(frame, c, source, labels[c]) for c in names}
    fitted = model.predict(pd.DataFrame({f: values[f] for f in names[:-1]}))
    return fitted, np.asarray(values[model.target_], dtype=np.float64) - fitted


# --- sections ---------------------------------------------------------------------------------------------------
def _coefficient_rows(model: LinearModel) -> tuple[list[list[str]], list[tuple[str, float, float, float]]]:
    """Table rows (term, unit, estimate, se, interval, U %) and the plotted (term, estimate, low, high)."""
    results = model.inference() if model.has_inference else None
    units = dict(results.units) if results is not None else {}
    target_unit = results.target_unit if results is not None else None
    rows: list[list[str]] = []
    plotted: list[tuple[str, float, float, float]] = []
    if results is None:
        for name, value in model.coefficients():
            rows.append([name, "", _num(value), "n/a", "n/a", "n/a"])
        return rows, plotted
    from scipy import stats

    ci = results.conf_int(0.05)
    crit = float(stats.t.ppf(0.975, results.df_resid)) if results.df_resid > 0 else math.nan
    factors = {f.feature: f for f in results.emission_factors()} if units else {}
    for j, name in enumerate(results.param_names):
        estimate, se = float(results.params[j]), float(results.bse[j])
        low, high = float(ci[j, 0]), float(ci[j, 1])
        if name in factors:
            relative = factors[name].relative_uncertainty
            unit = factors[name].unit
        else:
            relative = crit * se / abs(estimate) * 100 if estimate and math.isfinite(se) else math.nan
            unit = f"{target_unit or results.target}/{units[name]}" if name in units else ""
        label = "(intercept)" if j == 0 and model.fit_intercept else str(name)
        rows.append([label, unit, _num(estimate), _num(se), f"[{_num(low, '.5g')}, {_num(high, '.5g')}]",
                     _num(relative, ".3g")])
        if label != "(intercept)" and math.isfinite(low) and math.isfinite(high):
            plotted.append((label, estimate, low, high))
    return rows, plotted


def _coefficient_plot(plotted: Sequence[tuple[str, float, float, float]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(plotted) + 1.3), constrained_layout=True)
    names = [_label(p[0]) for p in plotted]
    est = np.array([p[1] for p in plotted])
    err = np.array([[p[1] - p[2] for p in plotted], [p[3] - p[1] for p in plotted]])
    y = np.arange(len(plotted))[::-1]
    ax.errorbar(est, y, xerr=err, fmt="o", color="#08519c", ecolor="#6baed6", capsize=4)
    ax.set_yticks(y, names)
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("coefficient with its 95% confidence interval")
    return _png(fig)


def _residual_plot(fitted: np.ndarray, residual: np.ndarray) -> str:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    left.scatter(fitted, residual, s=4, alpha=0.5, color="#08519c")
    left.axhline(0, color="#cb181d", lw=0.8)
    left.set_xlabel("fitted")
    left.set_ylabel("residual")
    right.hist(residual, bins=40, color="#6baed6", edgecolor="#08519c")
    right.set_xlabel("residual")
    right.set_ylabel("readings")
    return _png(fig)


def _comparison_plot(comparison: Mapping[str, Any]) -> str:
    plt = _pyplot()
    rows = [*comparison["rows"], comparison["overall"]]
    names = [_label(r.get("factory", "")) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 3.6), constrained_layout=True)
    width = 0.8 / len(COMPARED)
    x = np.arange(len(rows))
    for i, model in enumerate(COMPARED):
        values = [float(r.get(f"{model}_mse", math.nan)) for r in rows]
        ax.bar(x + (i - (len(COMPARED) - 1) / 2) * width, values, width, label=model)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("holdout MSE")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _png(fig)


def _fedavg_plot(fedavg: Mapping[str, Any]) -> str:
    plt = _pyplot()
    rounds = [r for r in fedavg.get("rounds", []) if isinstance(r, dict) and r.get("round")]
    fig, ax = plt.subplots(figsize=(7.5, 3.4), constrained_layout=True)
    ax.semilogy([r["round"] for r in rounds], [max(float(r["rel_coef_error"]), 1e-300) for r in rounds], "o-",
                color="#d94801", label="FedAvg: relative coefficient error")
    fixed = fedavg.get("fixed_point", {})
    if isinstance(fixed, dict) and isinstance(fixed.get("rel_coef_error"), (int, float)) \
            and fixed["rel_coef_error"] > 0:
        ax.axhline(float(fixed["rel_coef_error"]), color="#6a51a3", ls="--", label="FedAvg's limit")
    ax.set_xlabel("round")
    ax.set_ylabel("relative error vs the exact model")
    ax.set_title("exact model (one encrypted round): error 0")
    ax.legend(fontsize=8)
    return _png(fig)


def _fit_statistics(model: LinearModel) -> str:
    rows = [["rows pooled", str(model.n_samples_)], ["features", str(model.n_features_in_)],
            ["target", model.target_]]
    if model.has_inference:
        r = model.inference()
        rows += [["residual degrees of freedom", str(r.df_resid)], ["R²", _num(r.rsquared, ".6f")],
                 ["adjusted R²", _num(r.rsquared_adj, ".6f")], ["residual standard error", _num(math.sqrt(r.scale)
                                                                                              if r.scale >= 0 else
                                                                                              math.nan)],
                 ["F-statistic", _num(r.fvalue)], ["Prob (F)", _num(r.f_pvalue, ".4g")], ["AIC", _num(r.aic, ".8g")],
                 ["BIC", _num(r.bic, ".8g")], ["condition number", _num(r.condition_number, ".4g")],
                 ["method", "ridge" if r.is_ridge else "OLS"]]
    else:
        rows += [["R² (training)", _num(model.r2_, ".6f")]]
    return _table(["statistic", "value"], rows, left=1)


def _privacy(model: LinearModel) -> str:
    covariance = "carries" if model.release_covariance else "withholds"
    dp = ("It was released with differential privacy: noise was added to the statistics before solving."
          if model.dp_ else "No differential-privacy noise was added (the model is the exact pooled solution).")
    items = [
        ("Each factory", "its own rows only. It computed exact sums of its table, encrypted them under the "
         "consortium's Paillier key and sent only ciphertexts and public metadata (column names, encoding, key "
         "fingerprint). Monitoring, what-if scenarios and audits of the model run on its own machine."),
        ("The aggregator", "ciphertexts and public metadata only. It added the bundles homomorphically and holds "
         "no private key."),
        ("The key holder", "the decrypted consortium sums only (refused below the disclosure threshold of "
         "contributors), never one factory's statistics."),
        ("Readers of this report and of the model file", "the model solved from those sums: coefficients, their "
         f"inference and fit statistics. This model file {covariance} the full covariance matrix (released only with "
         "at least min_contributors + 1 contributors, since with the coefficients it gives back the pooled Gram "
         "matrix). " + dp),
    ]
    return "<ul>" + "".join(f"<li><b>{_e(who)}</b> saw {_e(what)}</li>" for who, what in items) + "</ul>"


def _comparison_section(comparison: Mapping[str, Any]) -> str:
    head = ["factory", "n test", *(f"{m} {metric}" for m in COMPARED for metric in ("MSE", "R²"))]
    rows = []
    for row in [*comparison["rows"], comparison["overall"]]:
        cells = [str(row.get("factory", "")), str(row.get("n_test", ""))]
        for m in COMPARED:
            cells += [_num(row.get(f"{m}_mse")), _num(row.get(f"{m}_r2"), ".4f")]
        rows.append(cells)
    parts = [_table(head, rows), _comparison_plot(comparison)]
    gap = _num(comparison.get("max_abs_coef_diff"), ".3g")
    notes = [f"Largest coefficient difference federated vs centralised: {gap}"
             f" (relative {_num(comparison.get('max_rel_coef_diff'), '.2e')}); centralised = scikit-learn on the "
             "pooled plaintext, possible only in a simulation."]
    enc = comparison.get("encrypted_overall")
    if isinstance(enc, dict) and enc:
        notes.append("Federated model's overall holdout metrics from encrypted evaluation bundles: "
                     f"MSE {_num(enc.get('mse'))}, RMSE {_num(enc.get('rmse'))}, MAE {_num(enc.get('mae'))}, "
                     f"R² {_num(enc.get('r2'), '.4f')}.")
    dropped = comparison.get("dropped_local")
    if isinstance(dropped, dict):
        for name, columns in dropped.items():
            notes.append(f"{name}: the local model drops {', '.join(map(str, columns))} (constant or collinear "
                         "there).")
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    fedavg = comparison.get("fedavg")
    if isinstance(fedavg, dict) and fedavg.get("rounds"):
        parts += ["<h2>FedAvg against the exact model</h2>", _fedavg_plot(fedavg)]
    return "\n".join(parts)


def build_report(inputs: ReportInputs) -> str:
    """The report's HTML text (see the module)."""
    model = inputs.model
    rows, plotted = _coefficient_rows(model)
    release = model.release_
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{_e(inputs.title)}: {_e(model.target_)}</h1>",
            f'<p class="note">Generated by hefed on {_e(when)}. Model digest <code>{_e(model.digest())}</code>.</p>',
            "<h2>Emission factors</h2>",
            '<p class="note">Coefficients with their 95% confidence intervals; U = half-width of the interval '
            "relative to the estimate, in % (as the EU MRR and the IPCC guidelines report uncertainty).</p>",
            _table(["term", "unit", "estimate", "std err", "95% interval", "U (%)"], rows, left=2)]
    if plotted:
        body.append(_coefficient_plot(plotted))
    elif model.has_inference:
        body.append('<p class="note">No intervals: this model file withholds its covariance and standard errors.</p>')
    body += ["<h2>Fit statistics</h2>", _fit_statistics(model)]
    if inputs.residuals is not None:
        fitted, residual = inputs.residuals
        body += ["<h2>Residuals</h2>",
                 f'<p class="note">On {_e(inputs.residual_source or "the given table")} '
                 f"({len(residual)} rows).</p>", _residual_plot(fitted, residual)]
    if inputs.evaluation is not None:
        metrics = inputs.evaluation.get("metrics", {})
        contributors = inputs.evaluation.get("contributors") or []
        body += ["<h2>Consortium holdout evaluation (from encrypted evaluation bundles)</h2>",
                 _table(["metric", "value"], [[str(k), _num(v)] for k, v in metrics.items()])]
        if contributors:
            body.append(f'<p class="note">Pooled over the holdouts of {len(contributors)} factories: '
                        f"{_e(', '.join(map(str, contributors)))}; no factory's own metrics were decrypted.</p>")
    if inputs.comparison is not None:
        body += ["<h2>Local / federated / centralised / fine-tuned</h2>", _comparison_section(inputs.comparison)]
    contributors = model.contributors_
    body += ["<h2>Contributors and provenance</h2>",
             _table(["", "value"], [
                 ["contributors", f"{len(contributors)}: {', '.join(contributors)}" if contributors else
                  "none recorded (statistics computed locally)"],
                 ["study digest", model.study_ or "none (no study pinned)"],
                 ["signed by the key holder", f"yes, release key {release.signer}" if release is not None else "no"],
                 ["exact coefficients in the file", "yes" if model.keep_exact else "no"],
             ], left=2),
             "<h2>Privacy: what each party saw</h2>", _privacy(model)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>{_e(inputs.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(path: str | os.PathLike[str], inputs: ReportInputs, *, force: bool = False) -> Path:
    """Write the report atomically (temporary file, then rename)."""
    return atomic_write_bytes(path, build_report(inputs).encode("utf-8"), force=force)


def report_from_files(out: str | os.PathLike[str], model: str | os.PathLike[str], *,
                      comparison: str | os.PathLike[str] | None = None,
                      evaluation: str | os.PathLike[str] | None = None,
                      residuals: str | os.PathLike[str] | None = None, file_format: FileFormat | None = None,
                      force: bool = False) -> Path:
    """What ``hefed report`` does: read the files (each refused in one line when malformed), write the page."""
    loaded = LinearModel.load(model)
    inputs = ReportInputs(loaded, load_comparison(comparison) if comparison is not None else None,
                          load_evaluation(evaluation) if evaluation is not None else None,
                          residuals_of(loaded, residuals, file_format) if residuals is not None else None,
                          str(residuals) if residuals is not None else None)
    return write_report(out, inputs, force=force)
