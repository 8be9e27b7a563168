"""Simulations on one machine: ``demo``, ``compare``, ``simulate``. Every role runs in this process on data
it holds in full, so nothing here protects data: the simulations show and check the protocol's arithmetic.

Their key sizes (:mod:`hefed.sim`'s defaults) say why they differ from ``hefed keygen``'s: ``compare`` and
``simulate`` use a small throw-away key (the arithmetic does not depend on the key size, only the speed
does); ``demo`` times the real steps with the key generator's default size.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .options import LibraryDefault, consortium_options, force_option, split_names
from .output import output_options

SIMULATION_KEY_HELP = ("Key size of the simulation; default: a small, insecure throw-away key, generated once per "
                       "process (a simulation holds every factory's data anyway, and its results do not depend "
                       "on the key size, only its speed). Never for real data: use hefed keygen.")


@click.command()
@output_options
@click.option("--factories", default=5, show_default=True, type=click.IntRange(3, 1000),
              help="Number of synthetic plants.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the synthetic data.")
@click.option("--bits", cls=LibraryDefault, library_default="hefed.sim:DEMO_KEY_BITS", show_default=True, type=int,
              help="Key size; default: hefed keygen's, since the demo times each real step with a fresh key "
              "written to files (2048 or more, unless --insecure-test-key).")
@click.option("--insecure-test-key", is_flag=True, help="Allow keys below 2048 bits, for quick trials only.")
@click.option("--report", "report_path", default=None, type=click.Path(path_type=Path),
              help="Where to write the consortium's HTML report (default: a new file in the system's temporary "
              "folder); its path is printed.")
@force_option
def demo(factories: int, seed: int, bits: int, insecure_test_key: bool, report_path: Path | None,
         force: bool) -> None:
    """Simulation: the whole protocol on built-in plants, timed.

    Runs keygen → encrypt → aggregate → decrypt → solve on synthetic plants. Prints the recovered emission factors
    next to the true ones, checks the federated model against the exact pooled solution, compares local, federated,
    centralised and fine-tuned models on holdouts, and times every step; ends by writing the consortium's HTML
    report (hefed report) and printing its path. Exits with 1 if the federated and the exact pooled solution differ.
    """
    import tempfile

    from hefed._files import check_writable
    from hefed.sim import run_demo

    from .render import render_demo

    if report_path is None:
        handle, name = tempfile.mkstemp(prefix="hefed-demo-report-", suffix=".html")
        os.close(handle)
        report_path, force = Path(name), True
    check_writable(report_path, force)
    report = run_demo(n_factories=factories, seed=seed, bits=bits, insecure_test_key=insecure_test_key,
                      report_path=report_path, force=force)
    render_demo(report)
    if not report.equals_exact_pooled:
        click.get_current_context().exit(1)


@click.command()
@output_options
@consortium_options
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draws.")
@click.option("--ridge", default=0.0, show_default=True, type=float,
              help="Ridge penalty of the local, federated and centralised fits.")
@click.option("--bits", cls=LibraryDefault, library_default="hefed.sim:SIMULATION_KEY_BITS", show_default=True,
              type=int, help=SIMULATION_KEY_HELP)
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Also write the comparison as JSON here (what hefed report --comparison reads).")
@force_option
def compare(data_paths: tuple[Path, ...], more_data: tuple[Path, ...], target: str | None, features: str | None,
            test_fraction: float, seed: int, ridge: float, bits: int, out: Path | None, force: bool) -> None:
    """Simulation: local vs federated vs centralised vs fine-tuned.

    Fits the four models on each factory's training rows and evaluates them on every factory's holdout
    (centralised = scikit-learn on the pooled plaintext, possible only in a simulation).
    """
    from hefed._files import check_writable
    from hefed.datasets import load_consortium
    from hefed.monitoring import write_comparison
    from hefed.sim import compare_models

    from .output import say
    from .render import render_comparison

    if out is not None:
        check_writable(out, force)
    factories, target = load_consortium([*data_paths, *more_data], target)
    report = compare_models(factories, target, split_names(features), test_fraction, seed, ridge, key_bits=bits)
    if out is not None:
        write_comparison(out, {**report.to_dict(), "key_bits": bits}, force=force)
    render_comparison(report, bits)
    if out is not None:
        say(f"wrote {out}")


@click.command()
@output_options
@click.option("--mode", type=click.Choice(["fedavg"]), default="fedavg", show_default=True,
              help="Protocol to simulate: fedavg = iterative encrypted FedAvg with proximal-ridge local steps.")
@click.option("--rounds", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="FedAvg rounds to run.")
@click.option("--mu", cls=LibraryDefault, library_default="hefed.sim:DEFAULT_MU", show_default=True, type=float,
              help="Proximal strength per row: factory i's local step penalises mu·n_i·‖θ − θ_global‖².")
@consortium_options
@click.option("--bits", cls=LibraryDefault, library_default="hefed.sim:SIMULATION_KEY_BITS", show_default=True,
              type=int, help=SIMULATION_KEY_HELP)
@click.option("--plot", "plot_path", default=None, type=click.Path(path_type=Path),
              help="Write a PNG of the gap against rounds here (needs matplotlib).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draws.")
@force_option
def simulate(mode: str, rounds: int, mu: float, data_paths: tuple[Path, ...], more_data: tuple[Path, ...],
             target: str | None, features: str | None, test_fraction: float, bits: int, plot_path: Path | None,
             seed: int, force: bool) -> None:
    """Simulation: iterative encrypted FedAvg vs the exact model.

    Runs --rounds rounds of encrypted FedAvg and reports, per round, the gap to the exact model that one
    encrypted round of statistics gives.
    """
    from hefed._files import check_writable
    from hefed.datasets import load_consortium
    from hefed.sim import simulate_fedavg

    from .render import render_fedavg

    if plot_path is not None:
        check_writable(plot_path, force)
    factories, target = load_consortium([*data_paths, *more_data], target)
    report = simulate_fedavg(factories, target, split_names(features), rounds=rounds, mu=mu,
                             test_fraction=test_fraction, seed=seed, key_bits=bits, plot_path=plot_path, force=force)
    render_fedavg(report)
