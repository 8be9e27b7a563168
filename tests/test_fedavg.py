"""Iterative encrypted FedAvg (hefed.fedavg and the `simulate` command): every round recomputed
independently in Fractions, the fixed point checked exactly, the plot and the command tested."""

from __future__ import annotations

import os
from fractions import Fraction
from itertools import pairwise

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from exact_helpers import gauss_solve
from exact_helpers import normal_equations as rows_normal_equations
from hefed_cli.simulations import simulate as simulate_cmd

import hefed
from hefed.data import compute_statistics, split_holdout
from hefed.errors import OutputExistsError, UsageError
from hefed.sim import DEFAULT_MU, fedavg_fixed_point, plot_fedavg, simulate_fedavg

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUNDS = 4


# --- independent exact reference (rows → normal equations → Gaussian elimination) ------------
def normal_equations(frame: pd.DataFrame) -> tuple[list[list[Fraction]], list[Fraction]]:
    z = [[Fraction(1), *(Fraction(float(v)) for v in row)] for row in frame[FEATURES].to_numpy()]
    y = [Fraction(float(v)) for v in frame[TARGET].to_numpy()]
    return rows_normal_equations(z, y)


def prox_step(a: list[list[Fraction]], b: list[Fraction], mu: Fraction, prior: list[Fraction]) -> list[Fraction]:
    m = len(b)
    return gauss_solve([[a[i][j] + (mu if i == j else 0) for j in range(m)] for i in range(m)],
                       [b[i] + mu * prior[i] for i in range(m)])


# --- one simulation shared by the tests -------------------------------------------------------
@pytest.fixture(scope="module")
def factories() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=1)


@pytest.fixture(scope="module")
def equations(factories):
    """Each factory's exact normal equations of its 75% training rows, and n."""
    out = {}
    for name, frame in factories.items():
        train, _ = split_holdout(frame, 0.25, 0)
        out[name] = (*normal_equations(train), len(train))
    return out


@pytest.fixture(scope="module")
def run(factories, keypair, tmp_path_factory):
    plot = tmp_path_factory.mktemp("fedavg") / "gap.png"
    report = simulate_fedavg(factories, TARGET, rounds=ROUNDS, public_key=keypair[0], private_key=keypair[1],
                             plot_path=plot)
    return report, plot


def test_default_features_and_shape(run, factories):
    report, _ = run
    assert report.features == FEATURES  # default: every numeric column but the target
    assert report.mu == DEFAULT_MU
    assert [r.round for r in report.rounds] == list(range(ROUNDS + 1))
    assert report.n_train == {name: len(split_holdout(f, 0.25, 0)[0]) for name, f in factories.items()}
    start = report.rounds[0]
    assert start.coef == [0.0] * len(FEATURES) and start.intercept == 0.0 and start.rel_coef_error == 1.0
    assert all(set(r.local_updates) == set(factories) for r in report.rounds[1:])


def test_each_round_is_the_exact_weighted_average_of_the_float64_local_updates(run):
    report, _ = run
    total = sum(report.n_train.values())
    for r in report.rounds[1:]:
        coef = [sum((report.n_train[name] * Fraction(update[0][j]) for name, update in r.local_updates.items()),
                    Fraction(0)) / total for j in range(len(FEATURES))]
        intercept = sum((report.n_train[name] * Fraction(update[1]) for name, update in r.local_updates.items()),
                        Fraction(0)) / total
        assert r.coef_exact == coef
        assert r.intercept_exact == intercept
        assert r.coef == [float(c) for c in coef] and r.intercept == float(intercept)


def test_local_updates_are_exact_proximal_steps_from_the_published_global_model(run, equations):
    report, _ = run
    for previous, current in pairwise(report.rounds):
        prior = [Fraction(previous.intercept), *map(Fraction, previous.coef)]  # as published: float64
        for name, (a, b, n) in equations.items():
            theta = prox_step(a, b, Fraction(DEFAULT_MU) * n, prior)
            coef, intercept = current.local_updates[name]
            assert intercept == float(theta[0]), (current.round, name)
            assert coef == [float(v) for v in theta[1:]], (current.round, name)


def test_gap_is_measured_against_the_exact_statistics_model(run, factories, equations):
    report, _ = run
    a = [[sum(eq[0][i][j] for eq in equations.values()) for j in range(6)] for i in range(6)]
    b = [sum(eq[1][i] for eq in equations.values()) for i in range(6)]
    exact = gauss_solve(a, b)
    assert report.exact_model.intercept_exact_ == exact[0]
    assert report.exact_model.coef_exact_ == exact[1:]
    exact_f = np.array([float(v) for v in exact])
    holdouts = [split_holdout(f, 0.25, 0)[1] for f in factories.values()]
    x = np.vstack([np.column_stack([np.ones(len(h)), h[FEATURES].to_numpy()]) for h in holdouts])
    y = np.concatenate([h[TARGET].to_numpy() for h in holdouts])
    assert report.exact_holdout_mse == pytest.approx(float(np.mean((y - x @ exact_f) ** 2)), rel=1e-9)
    for r in report.rounds:
        theta = np.array([r.intercept, *r.coef])
        assert r.rel_param_error == pytest.approx(np.linalg.norm(theta - exact_f) / np.linalg.norm(exact_f), rel=1e-9)
        assert r.rel_coef_error == pytest.approx(
            np.linalg.norm(theta[1:] - exact_f[1:]) / np.linalg.norm(exact_f[1:]), rel=1e-9)
        assert r.holdout_mse == pytest.approx(float(np.mean((y - x @ theta) ** 2)), rel=1e-9)


def test_gap_shrinks_but_fedavg_stays_short_of_the_exact_model(run):
    report, _ = run
    errors = [r.rel_coef_error for r in report.rounds]
    mses = [r.holdout_mse for r in report.rounds]
    # On this consortium both gaps fall over the first rounds ...
    assert all(later < earlier for earlier, later in pairwise(errors))
    assert all(later < earlier for earlier, later in pairwise(mses))
    # ... but client drift keeps even the limit of the rounds far from the pooled model, and worse on the holdout.
    assert report.final.rel_coef_error > report.fixed_point_error > 0.05
    assert report.final.holdout_mse > report.fixed_point_holdout_mse > 5 * report.exact_holdout_mse
    assert 0 < report.contraction < 1


def test_fixed_point_solves_the_documented_equation_exactly(run, equations):
    report, _ = run
    theta = [report.fixed_point_intercept, *report.fixed_point_coef]
    total = sum(n for _, _, n in equations.values())
    residual = [Fraction(0)] * 6
    for a, b, n in equations.values():
        mu = Fraction(DEFAULT_MU) * n
        step = gauss_solve([[a[i][j] + (mu if i == j else 0) for j in range(6)] for i in range(6)],
                           [b[i] - sum((a[i][j] * theta[j] for j in range(6)), Fraction(0)) for i in range(6)])
        residual = [r + Fraction(n, total) * s for r, s in zip(residual, step, strict=True)]
    assert residual == [0] * 6  # Σ w_i (A_i + μ_i I)⁻¹ (b_i − A_i θ*) = 0


def test_small_mu_converges_quickly_to_the_biased_fixed_point(factories, keypair):
    report = simulate_fedavg(factories, TARGET, rounds=10, mu=1e-3, public_key=keypair[0], private_key=keypair[1])
    limit = np.array([float(report.fixed_point_intercept), *map(float, report.fixed_point_coef)])
    distance = [np.linalg.norm(np.array([r.intercept, *r.coef]) - limit) for r in report.rounds]
    assert all(later < earlier for earlier, later in pairwise(distance))
    assert distance[-1] < 0.05 * distance[1]  # geometric, at about the reported contraction per round
    assert report.contraction < 0.9
    assert report.final.rel_coef_error == pytest.approx(report.fixed_point_error, rel=1e-3)
    assert report.fixed_point_error > 0.05
    assert report.fixed_point_holdout_mse > 5 * report.exact_holdout_mse


def test_large_mu_removes_the_bias_but_slows_the_rounds(factories):
    stats = {name: compute_statistics(split_holdout(f, 0.25, 0)[0], TARGET, FEATURES)
             for name, f in factories.items()}
    total = sum(list(stats.values())[1:], next(iter(stats.values())))
    exact = hefed.solve(total)
    errors, rhos = [], []
    for mu in (1.0, 1e12):
        coef, intercept, rho = fedavg_fixed_point(stats, mu)
        theta = np.array([float(intercept), *(float(coef[f]) for f in FEATURES)])
        ref = np.array([exact.intercept_, *exact.coef_])
        errors.append(np.linalg.norm(theta - ref) / np.linalg.norm(ref))
        rhos.append(rho)
    assert errors[1] < 1e-6 < 0.05 < errors[0]
    assert rhos[0] < rhos[1] < 1


# --- plot -------------------------------------------------------------------------------------
def test_plot_is_a_png_written_atomically(run):
    report, plot = run
    assert report.plot_path == plot
    data = plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    with pytest.raises(OutputExistsError):
        plot_fedavg(report, plot)
    assert plot.read_bytes() == data
    other = plot.with_name("again.png")
    plot_fedavg(report, other)
    plot_fedavg(report, other, force=True)
    assert other.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in plot.parent.iterdir()) == ["again.png", "gap.png"]  # no temporary files left


def test_interrupted_plot_write_leaves_the_old_file(run, tmp_path, monkeypatch):
    report, _ = run
    plot = tmp_path / "gap.png"
    plot.write_bytes(b"old")

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        plot_fedavg(report, plot, force=True)
    assert plot.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["gap.png"]


def test_existing_plot_is_refused_before_any_work(factories, tmp_path):
    plot = tmp_path / "gap.png"
    plot.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        simulate_fedavg(factories, TARGET, rounds=1, key_bits=10**6, plot_path=plot)  # no key is ever made
    assert plot.read_bytes() == b"keep"


def test_refusals(factories, keypair):
    keys = {"public_key": keypair[0], "private_key": keypair[1]}
    with pytest.raises(UsageError, match="mu"):
        simulate_fedavg(factories, TARGET, mu=0.0, **keys)
    with pytest.raises(UsageError, match="rounds"):
        simulate_fedavg(factories, TARGET, rounds=0, **keys)
    two = dict(list(factories.items())[:2])
    with pytest.raises(UsageError, match="at least 3"):
        simulate_fedavg(two, TARGET, **keys)


# --- the command ------------------------------------------------------------------------------
def _group() -> click.Group:
    from hefed_cli.main import HefedGroup  # the real error handling: one line, exit codes

    return HefedGroup(commands=[simulate_cmd])


def test_simulate_command_on_builtin_data(tmp_path):
    plot = tmp_path / "fedavg.png"
    result = CliRunner().invoke(_group(), ["simulate", "--mode", "fedavg", "--rounds", "2", "--plot", str(plot)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "5 factories, target co2_t" in result.output and "1024-bit key" in result.output
    assert "limit of FedAvg" in result.output and "exact model, one encrypted round" in result.output
    assert plot.read_bytes().startswith(PNG_MAGIC)
    again = CliRunner().invoke(_group(), ["simulate", "--rounds", "1", "--plot", str(plot)])
    assert again.exit_code == 2 and "file exists" in again.output


def test_simulate_command_on_files(factories, tmp_path):
    paths = []
    for name, frame in factories.items():
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    args = ["simulate", "--rounds", "2", "--mu", "0.5", "--features", "coal_t,natural_gas_t,diesel_t",
            "--data", *map(str, paths)]
    missing = CliRunner().invoke(_group(), args)
    assert missing.exit_code == 2 and "--target" in missing.output
    result = CliRunner().invoke(_group(), [*args, "--target", TARGET], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mu=0.5" in result.output and "4 factories" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["0", "1", "2"]
    bad = CliRunner().invoke(_group(), [*args, "--target", "nox"])
    assert bad.exit_code == 1 and bad.output.startswith("hefed: error:") and "nox" in bad.output
