"""hefed.sim as a whole: one simulated consortium, one key per process and size, one metrics convention,
documented key-size defaults, comparisons as DataFrames, and a package that imports cheaply."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score as sklearn_r2_score

import hefed
from hefed import _keys
from hefed.errors import KeyMismatchError, TooFewContributorsError, UsageError
from hefed.sim import (
    DEMO_KEY_BITS,
    MODELS,
    SIMULATION_KEY_BITS,
    FederatedLinearRegression,
    _consortium,
    compare_models,
    run_demo,
    simulate_fedavg,
    simulation_keypair,
)
from hefed.sim._consortium import Consortium
from hefed.stats import r2_score, regression_metrics

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


@pytest.fixture(scope="module")
def factories() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=2)


@pytest.fixture(scope="module")
def comparison(factories):
    return compare_models(factories, TARGET)


# --- keys ---------------------------------------------------------------------------------------
def test_key_size_constants_and_every_default_uses_them():
    assert SIMULATION_KEY_BITS == 1024
    assert DEMO_KEY_BITS == _keys.DEFAULT_BITS == 3072
    simulations: list[Callable[..., object]] = [compare_models, simulate_fedavg, FederatedLinearRegression,
                                                 Consortium.simulated]
    for function in simulations:
        assert inspect.signature(function).parameters["key_bits"].default == SIMULATION_KEY_BITS, function
    assert inspect.signature(run_demo).parameters["bits"].default == DEMO_KEY_BITS
    for function in [*simulations[:3], run_demo]:
        doc = inspect.getdoc(function) or ""
        assert "SIMULATION_KEY_BITS" in doc or "DEMO_KEY_BITS" in doc, function


def test_one_simulation_key_per_process_and_size(monkeypatch):
    made: list[int] = []

    def generate(bits: int, insecure_test_key: bool = False):
        made.append(bits)
        assert insecure_test_key  # simulation keys are test keys
        return _keys.generate_keypair(bits, insecure_test_key=True)

    monkeypatch.setattr(_consortium, "_KEYS", {})
    monkeypatch.setattr(_consortium, "generate_keypair", generate)
    first = simulation_keypair(512)
    assert simulation_keypair(512) is first
    other = simulation_keypair(768)
    assert other[0].n != first[0].n and other[0].n.bit_length() == 768
    assert made == [512, 768]
    with pytest.raises(UsageError, match="key_bits"):
        simulation_keypair("1024")  # type: ignore[arg-type]


def test_every_simulation_reuses_the_process_key(factories, monkeypatch):
    public_key, _ = simulation_keypair(SIMULATION_KEY_BITS)

    def refuse(*args: object, **kwargs: object):
        raise AssertionError("a simulation generated a new key")

    monkeypatch.setattr(_consortium, "generate_keypair", refuse)
    pooled = pd.concat(factories.values(), ignore_index=True)
    FederatedLinearRegression().fit(pooled[FEATURES], pooled[TARGET])
    FederatedLinearRegression().fit(pooled[FEATURES], pooled[TARGET])
    assert compare_models(factories, TARGET).federated_model is not None
    report = simulate_fedavg(factories, TARGET, rounds=1)
    assert report.key_bits == public_key.n.bit_length() == SIMULATION_KEY_BITS


# --- the consortium -------------------------------------------------------------------------------
def test_consortium_runs_the_roles_and_solves_the_exact_pooled_model(factories):
    consortium = Consortium.simulated()
    model = consortium.fit(factories, TARGET, FEATURES)
    pooled = pd.concat(factories.values(), ignore_index=True)
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES))
    assert model.coef_exact_ == exact.coef_exact_ and model.intercept_exact_ == exact.intercept_exact_
    assert model.contributors_ == list(factories)
    bundles = [consortium.encrypt(name, frame, TARGET, FEATURES) for name, frame in factories.items()]
    assert all(b.key_fingerprint == hefed.key_fingerprint(consortium.public_key) for b in bundles)
    assert consortium.decrypt_aggregate(bundles).gram == consortium.statistics(factories, TARGET, FEATURES).gram
    evaluation = consortium.evaluate(model, factories, TARGET)
    assert evaluation.metrics()["r2"] == pytest.approx(model.r2_, rel=1e-12)  # the training rows themselves


def test_consortium_key_holder_refuses_small_aggregates_and_wrong_keys(factories, keypair, other_keypair):
    two = dict(list(factories.items())[:2])
    with pytest.raises(TooFewContributorsError):
        Consortium.simulated().fit(two, TARGET, FEATURES)
    assert Consortium.simulated(min_contributors=2).fit(two, TARGET, FEATURES).contributors_ == list(two)
    with pytest.raises(UsageError, match="both"):
        Consortium.simulated(public_key=keypair[0])
    with pytest.raises(KeyMismatchError):
        Consortium.simulated(public_key=keypair[0], private_key=other_keypair[1])
    assert Consortium.simulated(public_key=keypair[0], private_key=keypair[1]).key_bits == 1024


# --- one metrics convention -------------------------------------------------------------------------
def test_compare_uses_scikit_learns_r2_convention_for_a_constant_target(factories):
    """A factory whose emissions are constant: R² is 1.0 for its exact local model, 0.0 for an imperfect
    prediction — never NaN (the convention of hefed.stats.r2_score and sklearn.metrics.r2_score)."""
    frames = {name: frame.copy() for name, frame in factories.items()}
    constant = list(frames)[-1]
    frames[constant][TARGET] = 125.0
    report = compare_models(frames, TARGET)
    row = next(r for r in report.rows if r["factory"] == constant)
    assert row["local_r2"] == 1.0 and row["local_mse"] == 0.0
    assert row["federated_r2"] == 0.0 < float(row["federated_mse"])
    y = np.full(4, 125.0)
    assert r2_score(y, y + 1) == sklearn_r2_score(y, y + 1) == 0.0
    assert not any(math.isnan(float(v)) for r in [*report.rows, report.overall] for v in r.values()
                   if isinstance(v, float))


def test_compare_metrics_are_hefed_stats_regression_metrics(factories, comparison):
    splits = {name: hefed.split_holdout(frame, 0.25, 0) for name, frame in factories.items()}
    model = comparison.federated_model
    for row, (_, test) in zip(comparison.rows, splits.values(), strict=True):
        metrics = regression_metrics(test[TARGET], model.predict(test[FEATURES]))
        assert row["federated_mse"] == metrics["mse"] and row["federated_r2"] == metrics["r2"]


def test_estimator_score_is_the_same_r2(factories):
    pooled = pd.concat(factories.values(), ignore_index=True)
    est = FederatedLinearRegression().fit(pooled[FEATURES], pooled[TARGET])
    assert est.score(pooled[FEATURES], pooled[TARGET]) == pytest.approx(
        r2_score(pooled[TARGET], est.predict(pooled[FEATURES])), rel=1e-15)
    constant = pd.Series(np.full(len(pooled), 3.0))
    assert est.score(pooled[FEATURES], constant) == r2_score(constant, est.predict(pooled[FEATURES])) == 0.0


# --- results --------------------------------------------------------------------------------------
def test_comparison_to_frame(comparison, factories):
    frame = comparison.to_frame()
    assert list(frame.index) == [*factories, "all factories"]
    assert frame.index.name == "factory"
    assert list(frame.columns) == ["n_test", *(f"{m}_{k}" for m in MODELS for k in ("mse", "r2"))]
    for row in [*comparison.rows, comparison.overall]:
        for key, value in row.items():
            if key != "factory":
                assert frame.loc[row["factory"], key] == value
    assert frame.loc["all factories", "n_test"] == sum(r["n_test"] for r in comparison.rows)
    assert frame["federated_mse"].dtype == np.float64


def test_comparison_to_dict_is_json(comparison):
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["rows"] == comparison.rows
    assert data["overall"]["factory"] == "all factories"
    assert set(data) == {"target", "features", "rows", "overall", "max_abs_coef_diff", "max_rel_coef_diff",
                         "encrypted_overall", "dropped_local"}


def test_demo_on_a_small_key(tmp_path):
    report = run_demo(n_factories=3, bits=1024, insecure_test_key=True, workdir=tmp_path)
    assert report.equals_exact_pooled and report.key_bits == 1024
    assert [step.split()[0] for step, _ in report.timings] == ["keygen", "encrypt", "encrypt", "encrypt", "aggregate",
                                                               "decrypt", "solve", "compare"]
    assert report.comparison is not None and report.comparison.federated_model is not None
    assert list(tmp_path.iterdir()) == []  # the demo's files lived in a temporary folder
    with pytest.raises(UsageError):
        run_demo(n_factories=3, bits=1024)  # a small key only when asked for


def test_demo_with_its_default_key():
    report = run_demo(n_factories=3)
    assert report.key_bits == DEMO_KEY_BITS and report.equals_exact_pooled


# --- the package ------------------------------------------------------------------------------------
def test_the_constants_import_without_scikit_learn_or_pandas():
    code = ("import sys, hefed.sim as s; print(s.SIMULATION_KEY_BITS, s.DEMO_KEY_BITS, s.DEFAULT_MU, len(s.MODELS)); "
            "print(sorted(m for m in ('sklearn', 'pandas', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "1024 3072 1.0 4"
    assert out[1] == "[]"


def test_every_public_name_resolves():
    for name in hefed.sim.__all__:
        assert getattr(hefed.sim, name) is not None
    assert hefed.FederatedLinearRegression is FederatedLinearRegression
    with pytest.raises(AttributeError):
        hefed.sim.no_such_name  # noqa: B018
