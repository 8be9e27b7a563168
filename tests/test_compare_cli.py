"""Local-only vs federated vs centralised (compare_models), and the holdout/evaluation flow
of the command line (commands run in-process, see cli_helpers)."""

from __future__ import annotations

import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli, run_cli_parallel
from sklearn.linear_model import LinearRegression

import hefed
from hefed.datasets import load_factory_files, make_factories
from hefed.errors import UsageError

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


def hefed_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, timeout=300)


def hefed_cli_parallel(commands: list[list[object]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run independent commands (one per factory) at the same time, as the factories would."""
    return run_cli_parallel(commands, cwd=cwd, timeout=300)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def assert_one_line_error(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hefed: error:")
    assert "Traceback" not in result.stderr + result.stdout


def mse_r2(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    resid = y - pred
    return float(np.mean(resid**2)), float(1 - resid @ resid / ((y - y.mean()) ** 2).sum())


def close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


# --------------------------------------------------------------------------------------
# compare_models
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared():
    factories = make_factories(4, seed=3)
    return factories, hefed.compare_models(factories, TARGET, key_bits=1024)


def test_compare_has_a_row_per_factory_and_an_overall_row(compared):
    factories, report = compared
    assert [row["factory"] for row in report.rows] == list(factories)
    for row, frame in zip(report.rows, factories.values(), strict=True):
        assert row["n_test"] == round(0.25 * len(frame))
    assert report.overall["factory"] == "all factories"
    assert report.overall["n_test"] == sum(row["n_test"] for row in report.rows)
    assert report.features == FEATURES
    assert report.target == TARGET
    # Overall MSE is the row-count-weighted mean of the factories' MSEs.
    for model in ("local", "federated", "centralised"):
        weighted = sum(row["n_test"] * row[f"{model}_mse"] for row in report.rows) / report.overall["n_test"]
        assert close(report.overall[f"{model}_mse"], weighted, 1e-12)


def test_compare_metrics_agree_with_an_independent_computation(compared):
    factories, report = compared
    splits = {name: hefed.split_holdout(frame, 0.25, 0) for name, frame in factories.items()}
    pooled = pd.concat([train for train, _ in splits.values()], ignore_index=True)
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES))
    assert np.array_equal(report.federated_model.coef_, exact.coef_)
    assert report.federated_model.intercept_ == exact.intercept_
    central = LinearRegression().fit(pooled[FEATURES].to_numpy(), pooled[TARGET].to_numpy())
    assert report.max_rel_coef_diff < 1e-9
    for row, (name, (train, test)) in zip(report.rows, splits.items(), strict=True):
        y = test[TARGET].to_numpy()
        X = test[FEATURES].to_numpy()
        fed = mse_r2(y, X @ exact.coef_ + exact.intercept_)
        cen = mse_r2(y, central.predict(X))
        kept = [f for f in FEATURES if f not in report.dropped_local.get(name, [])]
        local = LinearRegression().fit(train[kept].to_numpy(), train[TARGET].to_numpy())
        loc = mse_r2(y, local.predict(test[kept].to_numpy()))
        for model, (mse, r2) in (("federated", fed), ("centralised", cen), ("local", loc)):
            assert close(row[f"{model}_mse"], mse, 1e-9), (name, model)
            assert close(row[f"{model}_r2"], r2, 1e-9), (name, model)
        # Federated and centralised are the same model.
        assert close(row["federated_mse"], row["centralised_mse"], 1e-9)
        assert close(row["federated_r2"], row["centralised_r2"], 1e-9)
    assert close(report.overall["federated_mse"], report.overall["centralised_mse"], 1e-9)
    assert close(report.overall["federated_r2"], report.overall["centralised_r2"], 1e-9)


def test_encrypted_overall_equals_the_plaintext_overall(compared):
    _, report = compared
    enc = report.encrypted_overall
    assert enc["n"] == report.overall["n_test"]
    assert close(enc["mse"], report.overall["federated_mse"], 1e-9)
    assert close(enc["r2"], report.overall["federated_r2"], 1e-9)
    assert close(enc["rmse"], math.sqrt(report.overall["federated_mse"]), 1e-9)


def test_local_models_drop_all_zero_columns(compared):
    factories, report = compared
    for name, frame in factories.items():
        zero = {f for f in FEATURES if (frame[f] == 0).all()}
        assert set(report.dropped_local.get(name, [])) == zero, name
    assert "cement-01" not in report.dropped_local
    assert report.dropped_local["steel-02"] == ["clinker_t"]
    assert set(report.dropped_local["chemicals-03"]) == {"coal_t", "clinker_t"}


def test_compare_needs_two_factories():
    with pytest.raises(UsageError):
        hefed.compare_models(make_factories(1, seed=0), TARGET, key_bits=1024)


# --------------------------------------------------------------------------------------
# The CLI flow: holdouts, training, encrypted evaluation
# --------------------------------------------------------------------------------------

NAMES = ["plant-a", "plant-b", "plant-c"]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """keygen → encrypt with holdouts → aggregate → decrypt → solve → evaluate → aggregate → decrypt."""
    d = tmp_path_factory.mktemp("flow")
    frames = dict(zip(NAMES, make_factories(3, seed=4).values(), strict=True))
    for name, frame in frames.items():
        frame.to_csv(d / f"{name}.csv", index=False)
    ok(hefed_cli("keygen", "--out-dir", "keys", "--bits", 1024, "--insecure-test-key", cwd=d))
    encrypts = hefed_cli_parallel([
        ["encrypt", f"{name}.csv", "--target", TARGET, "--public-key", "keys/public_key.json",
         "--factory-id", name, "--out", f"{name}.bundle.json", "--test-fraction", 0.2, "--seed", 7,
         "--holdout-out", f"{name}.holdout.csv"] for name in NAMES], cwd=d)
    logs = {name: ok(result) for name, result in zip(NAMES, encrypts, strict=True)}
    ok(hefed_cli("aggregate", *(f"{n}.bundle.json" for n in NAMES), "--out", "aggregate.json", cwd=d))
    ok(hefed_cli("decrypt", "--allow-unsigned",
            "aggregate.json", "--private-key", "keys/private_key.json", "--out", "stats.json",
                 cwd=d))
    ok(hefed_cli("solve", "stats.json", "--out", "model.json", cwd=d))
    evaluations = hefed_cli_parallel([
        ["evaluate", f"{name}.holdout.csv", "--model", "model.json", "--target", TARGET,
         "--public-key", "keys/public_key.json", "--factory-id", name, "--out", f"{name}.eval.json"]
        for name in NAMES], cwd=d)
    logs.update({f"evaluate {name}": ok(result) for name, result in zip(NAMES, evaluations, strict=True)})
    ok(hefed_cli("aggregate", *(f"{n}.eval.json" for n in NAMES), "--out", "eval.aggregate.json", cwd=d))
    logs["decrypt evaluation"] = ok(hefed_cli("decrypt", "--allow-unsigned", "eval.aggregate.json", "--private-key",
                                              "keys/private_key.json", "--out", "ev.json", cwd=d))
    return d, frames, logs


def test_cli_holdouts_have_round_f_n_rows_and_match_split_holdout(flow):
    d, frames, logs = flow
    for name, frame in frames.items():
        holdout = pd.read_csv(d / f"{name}.holdout.csv")
        assert len(holdout) == round(0.2 * len(frame))
        _, expected = hefed.split_holdout(pd.read_csv(d / f"{name}.csv"), 0.2, 7)
        pd.testing.assert_frame_equal(holdout, expected, check_dtype=False)
        assert f"kept {len(holdout)} holdout rows" in logs[name].stdout


def test_cli_holdout_is_identical_when_rerun_with_the_same_seed(flow):
    d, _, _ = flow
    name = NAMES[1]
    before = (d / f"{name}.holdout.csv").read_bytes()
    args = ["encrypt", f"{name}.csv", "--target", TARGET, "--public-key", "keys/public_key.json",
            "--factory-id", name, "--out", f"{name}.rerun.bundle.json", "--test-fraction", 0.2, "--seed", 7,
            "--holdout-out", f"{name}.holdout.csv"]
    refused = hefed_cli(*args, cwd=d)
    assert_one_line_error(refused, 2)  # the holdout file exists
    ok(hefed_cli(*args, "--force", cwd=d))
    assert (d / f"{name}.holdout.csv").read_bytes() == before


def test_cli_model_is_the_exact_solution_of_the_training_rows(flow):
    d, frames, _ = flow
    train = pd.concat([hefed.split_holdout(pd.read_csv(d / f"{n}.csv"), 0.2, 7)[0] for n in NAMES],
                      ignore_index=True)
    exact = hefed.solve(hefed.compute_statistics(train, TARGET))
    model = json.loads((d / "model.json").read_text())
    assert model["coef"] == list(exact.coef_)
    assert model["intercept"] == exact.intercept_
    assert model["n"] == len(train) == sum(len(f) - round(0.2 * len(f)) for f in frames.values())


def test_cli_encrypted_evaluation_gives_the_pooled_holdout_metrics(flow):
    d, _, logs = flow
    model = json.loads((d / "model.json").read_text())
    features, coef, intercept = model["features"], np.array(model["coef"]), model["intercept"]
    holdout = pd.concat([pd.read_csv(d / f"{n}.holdout.csv") for n in NAMES], ignore_index=True)
    y = holdout[TARGET].to_numpy()
    resid = y - (holdout[features].to_numpy() @ coef + intercept)
    expected = {
        "mse": float(np.mean(resid**2)),
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "mae": float(np.mean(np.abs(resid))),
        "r2": float(1 - resid @ resid / ((y - y.mean()) ** 2).sum()),
    }
    evaluation = json.loads((d / "ev.json").read_text())
    assert evaluation["format"] == "hefed.evaluation"
    assert evaluation["contributors"] == NAMES
    assert evaluation["metrics"]["n"] == len(holdout)
    for key, value in expected.items():
        assert close(evaluation["metrics"][key], value, 1e-9), key
    # The exact sums, recomputed here in rationals from the model file's float coefficients.
    fcoef = [Fraction(c) for c in model["coef"]]
    sse = Fraction(0)
    for row in holdout[[*features, TARGET]].itertuples(index=False):
        r = Fraction(row[-1]) - Fraction(intercept) - sum(c * Fraction(x) for c, x in zip(fcoef, row[:-1],
                                                                                         strict=True))
        sse += r * r
    assert Fraction(evaluation["exact"]["sse"]) == sse
    assert Fraction(evaluation["exact"]["sum_y"]) == sum(Fraction(v) for v in y)
    assert "holdout evaluation" in logs["decrypt evaluation"].stdout
    for name in NAMES:
        assert "local metrics" in logs[f"evaluate {name}"].stdout
        assert json.loads((d / f"{name}.eval.json").read_text())["kind"] == "evaluation"


def test_cli_refuses_to_mix_evaluation_and_statistics_bundles(flow):
    d, _, _ = flow
    result = hefed_cli("aggregate", "plant-a.eval.json", "plant-b.bundle.json", "plant-c.bundle.json",
                       "--out", "mixed.json", cwd=d)
    assert_one_line_error(result, 1)
    assert not (d / "mixed.json").exists()


@pytest.mark.parametrize("given", [
    ("--public-key", "keys/public_key.json"),
    ("--factory-id", "plant-a", "--out", "partial.eval.json"),
])
def test_cli_evaluate_needs_all_or_none_of_the_encryption_options(flow, given):
    d, _, _ = flow
    result = hefed_cli("evaluate", "plant-a.holdout.csv", "--model", "model.json", "--target", TARGET, *given,
                       cwd=d)
    assert_one_line_error(result, 2)
    assert "--public-key" in result.stderr
    assert not (d / "partial.eval.json").exists()


# --------------------------------------------------------------------------------------
# hefed compare
# --------------------------------------------------------------------------------------


def _table_line(stdout: str, first_cell: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        if len(cells) > 2 and cells[1] == first_cell:
            return cells[1:-1]
    raise AssertionError(f"no table row {first_cell!r} in\n{stdout}")


def test_cli_compare_on_built_in_data(tmp_path):
    result = ok(hefed_cli("compare", "--bits", 1024, cwd=tmp_path))
    assert "local-only, federated, centralised, fine-tuned" in result.stdout
    for name in make_factories():
        _table_line(result.stdout, name)
    overall = _table_line(result.stdout, "all factories")
    assert int(overall[1]) == sum(round(0.25 * len(f)) for f in make_factories().values())
    assert "encrypted evaluation bundles" in result.stdout
    assert result.stderr == ""


def test_cli_compare_on_files(tmp_path):
    frames = make_factories(3, seed=5)
    paths = []
    for name, frame in zip(("a", "b", "c"), frames.values(), strict=True):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        paths.append(tmp_path / f"{name}.csv")
    result = ok(hefed_cli("compare", "--data", "a.csv", "b.csv", "c.csv", "--target", TARGET, "--bits", 1024,
                          cwd=tmp_path))
    report = hefed.compare_models(load_factory_files(paths), TARGET, key_bits=1024)
    for row in [*report.rows, report.overall]:
        cells = _table_line(result.stdout, str(row["factory"]))
        assert cells[1] == str(row["n_test"])
        assert cells[2:] == [f"{row[f'{m}_{k}']:{'.6g' if k == 'mse' else '.4f'}}"
                             for m in hefed.sim.MODELS for k in ("mse", "r2")]


def test_cli_compare_json_is_the_reports_dict(tmp_path):
    result = ok(hefed_cli("compare", "--json", cwd=tmp_path))
    obj = json.loads(result.stdout)
    expected = json.loads(json.dumps(hefed.compare_models(make_factories(), TARGET).to_dict()))
    assert obj["ok"] is True and obj["key_bits"] == hefed.sim.SIMULATION_KEY_BITS
    for key in ("target", "features", "rows", "overall", "dropped_local"):
        assert obj[key] == expected[key], key
    assert result.stderr == ""
