"""``hefed finetune`` and ``hefed simulate``: local fine-tuning, and iterative FedAvg against the exact model.

Thin commands: parse, call one library function (:func:`hefed.finetune.finetune`,
:func:`hefed.fedavg.simulate_fedavg`), print. Library errors
(:class:`hefed.errors.HefedError`) propagate to the main group, which prints
them as one line.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from hefed._files import check_writable
from hefed.analysis import FinetuneResult
from hefed.analysis import finetune as finetune_model
from hefed.datasets import load_consortium
from hefed.models import LinearModel
from hefed.sim import DEFAULT_MU, FedAvgReport, simulate_fedavg

from .options import consortium_options, parse_floats, split_names
from .output import emit, output_options, say, show


def print_finetune(result: FinetuneResult, data: object) -> None:
    """Holdout metrics of the global and the fine-tuned model side by side, then the CV curve."""
    if result.global_metrics is not None and result.finetuned_metrics is not None:
        show(f"holdout metrics on {result.n_holdout} held-out rows of {data} (they stay here):")
        table = Table()
        for column in ("metric", "global", "fine-tuned"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, label in (("mse", "MSE"), ("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²")):
            table.add_row(label, f"{result.global_metrics[key]:.6g}", f"{result.finetuned_metrics[key]:.6g}")
        show(table)
    else:
        show("no holdout (--test-fraction 0): no holdout metrics")
    show(f"local {result.folds}-fold cross-validation on {result.n_train} training rows (seed {result.seed}):")
    curve = Table()
    curve.add_column("λ", justify="right")
    curve.add_column("CV MSE", justify="right")
    curve.add_column("")
    for lam, mse in zip(result.lambdas, result.cv_mse, strict=True):
        curve.add_row(f"{lam:.4g}", f"{mse:.6g}", "← chosen" if lam == result.lam else "")
    show(curve)
    show(f"chosen λ = {result.lam:.6g} (penalty toward the global model, intercept included)")
    for note in result.notes:
        show(f"note: {note}")


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON to start from.")
@click.option("--target", default=None, help="Response column (default: the model's target).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Fine-tuned model JSON to write.")
@click.option("--lambdas", default=None,
              help="Comma-separated λ grid (default: s·10^k, k = -12…4, s = mean diagonal of the local Gram "
              "of [1, X]).")
@click.option("--folds", default=5, show_default=True, type=int, help="Folds of the local cross-validation.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draw and of the folds.")
@click.option("--test-fraction", default=0.25, show_default=True, type=float,
              help="Fraction of rows held out for the side-by-side metrics (0: none, fit on all rows).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
def finetune(data: Path, model_path: Path, target: str | None, out: Path, lambdas: str | None, folds: int,
             seed: int, test_fraction: float, force: bool) -> None:
    """Factory: adapt the global model to DATA, argmin ‖y − Xθ‖² + λ‖θ − θ_global‖², λ by local CV."""
    check_writable(out, force)
    global_model = LinearModel.load(model_path)
    result = finetune_model(global_model, data, target, parse_floats(lambdas, "--lambdas"), folds, seed, test_fraction)
    print_finetune(result, data)
    emit(**result.to_dict())
    result.model.save(out, force=force)
    say(f"wrote {out}")


def print_fedavg(report: FedAvgReport) -> None:
    """Per-round gap of FedAvg to the exact statistics-mode model, then the exact model and FedAvg's limit."""
    show(f"FedAvg (proximal ridge, mu={report.mu:g}, {report.key_bits}-bit key) vs the exact statistics-mode "
                  f"model: {len(report.n_train)} factories, target {report.target}")
    table = Table()
    for column in ("round", "rel. coef error", "with intercept", "holdout MSE", "MSE / exact MSE", "seconds"):
        table.add_column(column, justify="right")
    for r in report.rounds:
        table.add_row(str(r.round), f"{r.rel_coef_error:.4g}", f"{r.rel_param_error:.4g}",
                      f"{r.holdout_mse:.6g}", f"{r.holdout_mse / report.exact_holdout_mse:.4g}",
                      f"{r.seconds:.3f}" if r.round else "start θ⁰ = 0")
    show(table)
    show(f"exact model, one encrypted round of statistics: holdout MSE {report.exact_holdout_mse:.6g}, "
                  f"relative coefficient error 0 by definition ({report.exact_seconds:.3f} s)")
    show(f"limit of FedAvg at mu={report.mu:g} (exact fixed point): relative coefficient error "
                  f"{report.fixed_point_error:.4g} (with intercept {report.fixed_point_param_error:.4g}), holdout MSE "
                  f"{report.fixed_point_holdout_mse:.6g}; contraction per round {report.contraction:.4g}")
    if report.plot_path is not None:
        show(f"wrote {report.plot_path}")


@click.command()
@output_options
@click.option("--mode", type=click.Choice(["fedavg"]), default="fedavg", show_default=True,
              help="Protocol to simulate: fedavg = iterative encrypted FedAvg with proximal-ridge local steps.")
@click.option("--rounds", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--mu", default=DEFAULT_MU, show_default=True, type=float,
              help="Proximal strength per row: factory i's local step penalises mu·n_i·‖θ − θ_global‖².")
@consortium_options
@click.option("--bits", default=1024, show_default=True, type=int,
              help="Key size of the simulation (small keys allowed here only).")
@click.option("--plot", "plot_path", default=None, type=click.Path(path_type=Path),
              help="Write a PNG of the gap against rounds here (needs matplotlib).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draws.")
@click.option("--force", is_flag=True, help="Replace an existing plot file.")
def simulate(mode: str, rounds: int, mu: float, data_paths: tuple[Path, ...], more_data: tuple[Path, ...],
             target: str | None, features: str | None, test_fraction: float, bits: int, plot_path: Path | None,
             seed: int, force: bool) -> None:
    """Simulation: iterative encrypted FedAvg vs one exact round of statistics, gap per round."""
    if plot_path is not None:
        check_writable(plot_path, force)
    factories, target = load_consortium([*data_paths, *more_data], target)
    report = simulate_fedavg(factories, target, split_names(features), rounds=rounds, mu=mu,
                             test_fraction=test_fraction, seed=seed, key_bits=bits, plot_path=plot_path, force=force)
    print_fedavg(report)
    emit(**report.to_dict())
