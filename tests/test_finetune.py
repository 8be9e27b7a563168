"""Local fine-tuning (hefed.finetune and the `finetune` command), checked against an independent
exact computation: the proximal normal equations and the fold MSEs recomputed row by row in Fractions."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from exact_helpers import gauss_solve, normal_equations
from hefed_cli.factory import finetune as finetune_cmd

import hefed
from hefed.analysis import DEFAULT_LAMBDA_EXPONENTS, default_lambdas, finetune, finetune_frame
from hefed.data import compute_statistics, split_holdout
from hefed.errors import DataError, UsageError

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]
MASK = (1 << 64) - 1


# --- an independent exact reference ---------------------------------------------------------
def rows_of(frame: pd.DataFrame) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Design rows (1, x…) in FEATURES order and targets, as exact rationals of the float64 cells."""
    z = [[Fraction(1), *(Fraction(float(v)) for v in row)] for row in frame[FEATURES].to_numpy()]
    return z, [Fraction(float(v)) for v in frame[TARGET].to_numpy()]


def proximal(a: list[list[Fraction]], b: list[Fraction], lam: Fraction, prior: list[Fraction]) -> list[Fraction]:
    """θ = (A + λI)⁻¹ (b + λ θ_prior): the proximal fit with the intercept penalised."""
    m = len(b)
    return gauss_solve([[a[i][j] + (lam if i == j else 0) for j in range(m)] for i in range(m)],
                       [b[i] + lam * prior[i] for i in range(m)])


def prior_of(model: hefed.LinearModel) -> list[Fraction]:
    by_name = dict(zip(model.feature_names_in_, model.coef_, strict=True))
    return [Fraction(model.intercept_), *(Fraction(float(by_name[f])) for f in FEATURES)]


def splitmix_folds(n: int, folds: int, seed: int) -> list[int]:
    """The documented fold rule, in plain Python integers: SplitMix64(seed, i) mod K."""
    out = []
    for i in range(n):
        z = (i + seed * 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append((z ^ (z >> 31)) % folds)
    return out


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def builtin() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories()


@pytest.fixture(scope="module")
def global_model(builtin) -> hefed.LinearModel:
    """The exact pooled model of every factory's 75% training rows (what the protocol publishes)."""
    stats = [compute_statistics(split_holdout(frame, 0.25, 0)[0], TARGET, FEATURES) for frame in builtin.values()]
    total = stats[0]
    for s in stats[1:]:
        total = total + s
    return hefed.solve(total)


# --- exactness ------------------------------------------------------------------------------
def test_finetuned_model_is_the_exact_proximal_solution(builtin, global_model):
    frame = builtin["glass-05"]
    result = finetune(global_model, frame, lambdas=[1e3, 1e5], folds=3, seed=2)
    train, holdout = split_holdout(frame, 0.25, 2)
    assert (result.n_train, result.n_holdout) == (len(train), len(holdout))
    a, b = normal_equations(*rows_of(train))
    theta = proximal(a, b, Fraction(result.lam), prior_of(global_model))
    assert result.holdout_model.intercept_exact_ == theta[0]
    assert result.holdout_model.coef_exact_ == theta[1:]
    assert list(result.holdout_model.coef_) == [float(v) for v in theta[1:]]
    assert result.holdout_model.intercept_ == float(theta[0])
    assert result.holdout_model.n_samples_ == len(train)
    # Its training SSE is the exact residual sum of squares of those rows.
    z, y = rows_of(train)
    sse = sum(((t - sum((zi * ti for zi, ti in zip(row, theta, strict=True)), Fraction(0))) ** 2
               for row, t in zip(z, y, strict=True)), Fraction(0))
    assert result.holdout_model.sse_exact_ == sse


def test_saved_model_is_refitted_on_every_row_and_says_so(builtin, global_model):
    """The holdout measures the fit on the training rows; the model the factory keeps uses all its rows."""
    frame = builtin["glass-05"]
    result = finetune(global_model, frame, lambdas=[1e3, 1e5], folds=3, seed=2)
    a, b = normal_equations(*rows_of(frame))
    theta = proximal(a, b, Fraction(result.lam), prior_of(global_model))
    assert result.model.intercept_exact_ == theta[0] and result.model.coef_exact_ == theta[1:]
    assert result.model.n_samples_ == len(frame) != result.holdout_model.n_samples_
    assert any(f"refitted on all {len(frame)} rows" in note for note in result.notes)
    assert any("optimistic" in note for note in result.notes)  # the global model may have seen the holdout
    no_holdout = finetune(global_model, frame, lambdas=[1e3, 1e5], folds=3, seed=2, test_fraction=0)
    assert no_holdout.model is no_holdout.holdout_model and not any("refitted" in n for n in no_holdout.notes)


def test_holdout_metrics_side_by_side(builtin, global_model):
    frame = builtin["power-04"]
    result = finetune(global_model, frame, lambdas=[1.0, 1e4, 1e8], folds=4, seed=0, test_fraction=0.3)
    _, holdout = split_holdout(frame, 0.3, 0)
    y = holdout[TARGET].to_numpy()
    for model, metrics in ((global_model, result.global_metrics), (result.holdout_model, result.finetuned_metrics)):
        resid = y - model.predict(holdout)
        assert metrics["n"] == len(y)
        assert metrics["mse"] == pytest.approx(float(resid @ resid) / len(y), rel=1e-12)
        assert metrics["mae"] == pytest.approx(float(np.abs(resid).mean()), rel=1e-12)
    assert result.global_metrics != result.finetuned_metrics


def test_cv_choice_is_the_argmin_of_independently_computed_fold_mses(builtin, global_model):
    frame, folds, seed = builtin["glass-05"], 5, 0
    train, _ = split_holdout(frame, 0.25, seed)
    full_grid = default_lambdas(compute_statistics(train, TARGET, FEATURES))
    grid = full_grid[6:11]  # around this factory's optimum (an interior minimum, so the argmin is tested)
    result = finetune(global_model, frame, lambdas=grid, folds=folds, seed=seed)
    assert result.lambdas == sorted(grid)

    assignment = splitmix_folds(len(train), folds, seed)
    z, y = rows_of(train)
    prior = prior_of(global_model)
    expected = []
    for lam in grid:
        fold_mses = []
        for k in range(folds):
            rest = [i for i in range(len(z)) if assignment[i] != k]
            held = [i for i in range(len(z)) if assignment[i] == k]
            a, b = normal_equations([z[i] for i in rest], [y[i] for i in rest])
            theta = proximal(a, b, Fraction(lam), prior)
            sse = sum(((y[i] - sum((zi * ti for zi, ti in zip(z[i], theta, strict=True)), Fraction(0))) ** 2
                       for i in held), Fraction(0))
            fold_mses.append(sse / len(held))
        expected.append(sum(fold_mses, Fraction(0)) / folds)
    assert result.cv_mse_exact == expected
    best = min(range(len(grid)), key=lambda i: expected[i])
    assert 0 < best < len(grid) - 1, "the test needs an interior minimum"
    assert result.lam == grid[best]
    assert result.model.ridge == grid[best]


def test_folds_are_reproducible_from_the_seed(builtin, global_model):
    frame = builtin["cement-01"]
    first = finetune(global_model, frame, lambdas=[1e2, 1e6], folds=4, seed=7)
    again = finetune(global_model, frame, lambdas=[1e2, 1e6], folds=4, seed=7)
    other = finetune(global_model, frame, lambdas=[1e2, 1e6], folds=4, seed=8)
    assert first.cv_mse_exact == again.cv_mse_exact
    assert first.cv_mse_exact != other.cv_mse_exact


# --- limits ---------------------------------------------------------------------------------
def test_huge_lambda_gives_the_global_model(builtin, global_model):
    result = finetune(global_model, builtin["steel-02"], lambdas=[1e40])
    assert list(result.model.coef_) == list(global_model.coef_)
    assert result.model.intercept_ == global_model.intercept_


def test_tiny_lambda_gives_the_local_least_squares_model(builtin, global_model):
    frame = builtin["cement-01"]  # uses every input, so its own OLS is identifiable
    result = finetune(global_model, frame, lambdas=[1e-40])
    train, _ = split_holdout(frame, 0.25, 0)
    local = hefed.solve(compute_statistics(train, TARGET, FEATURES))
    np.testing.assert_allclose(result.holdout_model.coef_, local.coef_, rtol=1e-12)
    assert result.holdout_model.intercept_ == pytest.approx(local.intercept_, rel=1e-12)
    assert not np.allclose(local.coef_, global_model.coef_, rtol=1e-6)  # so the check above means something


def test_coefficients_the_factory_cannot_identify_keep_their_global_value(builtin, global_model):
    frame = builtin["chemicals-03"]  # burns no coal and makes no clinker
    assert (frame["coal_t"] == 0).all() and (frame["clinker_t"] == 0).all()
    result = finetune(global_model, frame, lambdas=[1e-6])
    by_name = dict(zip(global_model.feature_names_in_, global_model.coef_, strict=True))
    fitted = dict(zip(result.model.feature_names_in_, result.model.coef_exact_, strict=True))
    assert fitted["coal_t"] == Fraction(float(by_name["coal_t"]))
    assert fitted["clinker_t"] == Fraction(float(by_name["clinker_t"]))
    assert fitted["natural_gas_t"] != Fraction(float(by_name["natural_gas_t"]))


# --- grid, frame helper, refusals -----------------------------------------------------------
def test_default_grid_is_scaled_to_the_data(builtin, global_model):
    frame = builtin["power-04"]
    result = finetune(global_model, frame, folds=3)
    train, _ = split_holdout(frame, 0.25, 0)
    x = train[FEATURES].to_numpy()
    s = (len(train) + float((x * x).sum())) / (len(FEATURES) + 1)
    assert len(result.lambdas) == len(DEFAULT_LAMBDA_EXPONENTS) == 17
    np.testing.assert_allclose(result.lambdas, [s * 10.0**k for k in range(-12, 5)], rtol=1e-12)
    assert result.lam in result.lambdas
    assert len(result.cv_mse) == 17


def test_finetune_frame_is_the_model_fitted_on_all_rows(builtin, global_model):
    frame = builtin["glass-05"]
    direct = finetune_frame(global_model, frame, TARGET, lambdas=[1e2, 1e5], folds=3, seed=1)
    via = finetune(global_model, frame, lambdas=[1e2, 1e5], folds=3, seed=1, test_fraction=0)
    assert via.global_metrics is None and via.n_train == len(frame)
    assert direct.coef_exact_ == via.model.coef_exact_
    assert direct.intercept_exact_ == via.model.intercept_exact_
    assert direct.n_samples_ == len(frame)


def test_refusals(builtin, global_model, tmp_path):
    frame = builtin["glass-05"]
    with pytest.raises(UsageError, match="λ"):
        finetune(global_model, frame, lambdas=[1.0, -1.0])
    with pytest.raises(UsageError, match="λ"):
        finetune(global_model, frame, lambdas=[0.0])
    with pytest.raises(UsageError, match="folds"):
        finetune(global_model, frame, folds=1)
    path = tmp_path / "plant.csv"
    frame.drop(columns=["clinker_t"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"plant\.csv.*clinker_t"):
        finetune(global_model, path)


# --- the command ----------------------------------------------------------------------------
def _group() -> click.Group:
    from hefed_cli.main import HefedGroup  # the real error handling: one line, exit codes

    return HefedGroup(commands=[finetune_cmd])


def test_finetune_command(builtin, global_model, tmp_path):
    model_path, data_path, out = tmp_path / "global.json", tmp_path / "glass.csv", tmp_path / "tuned.json"
    global_model.save(model_path)
    builtin["glass-05"].to_csv(data_path, index=False)
    runner = CliRunner()
    args = ["finetune", "--model", str(model_path), str(data_path), "--target", TARGET, "--out", str(out),
            "--lambdas", "10,1000,1e5", "--folds", "3", "--seed", "1", "--exact"]
    result = runner.invoke(_group(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    expected = finetune(global_model, data_path, TARGET, [10, 1000, 1e5], folds=3, seed=1)
    saved = hefed.LinearModel.load(out)
    assert saved.coef_exact_ == expected.model.coef_exact_
    assert saved.intercept_exact_ == expected.model.intercept_exact_
    assert "← chosen" in result.output
    assert f"chosen λ = {expected.lam:.6g}" in result.output
    assert f"{expected.global_metrics['mse']:.6g}" in result.output
    assert f"{expected.finetuned_metrics['mse']:.6g}" in result.output
    for mse in expected.cv_mse:
        assert f"{mse:.6g}" in result.output
    assert json.loads(out.read_text())["format"] == "hefed.model"

    again = runner.invoke(_group(), args)
    assert again.exit_code == 2 and "file exists" in again.output
    bad = runner.invoke(_group(), [*args[:-4], "--lambdas", "1,x", "--force"])
    assert bad.exit_code == 2 and "--lambdas" in bad.output
    assert runner.invoke(_group(), [*args, "--force"]).exit_code == 0


def test_finetune_command_reports_bad_data_in_one_line(global_model, tmp_path):
    model_path, data_path = tmp_path / "global.json", tmp_path / "plant.csv"
    global_model.save(model_path)
    pd.DataFrame({"co2_t": [1.0, 2.0], "coal_t": [1.0, 2.0]}).to_csv(data_path, index=False)
    result = CliRunner().invoke(_group(), ["finetune", "--model", str(model_path), str(data_path),
                                           "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("hefed: error:") and "plant.csv" in result.output
    assert not Path(tmp_path / "out.json").exists()


def test_a_global_model_without_intercept_is_fine_tuned_without_one(builtin):
    frame = builtin["cement-01"]
    stats = compute_statistics(builtin["steel-02"], TARGET, FEATURES) + compute_statistics(frame, TARGET, FEATURES)
    through_origin = hefed.solve(stats, fit_intercept=False)
    result = finetune(through_origin, frame, lambdas=[1e5], folds=3)
    assert not result.model.fit_intercept and result.model.intercept_exact_ == 0
    train, _ = split_holdout(frame, 0.25, 0)
    z, y = rows_of(train)
    a, b = normal_equations([row[1:] for row in z], y)
    theta = proximal(a, b, Fraction(result.lam), prior_of(through_origin)[1:])
    assert result.holdout_model.coef_exact_ == theta
