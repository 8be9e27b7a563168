"""Issue 18: monitoring against the shared model, what-if scenarios, the PEMS audit (local and encrypted), the report.

Figures these tests measure (seeded, so reproducible; see README "Monitoring"):

* in-control run length with known parameters: CUSUM (k=0.5, h=5) ≈ 476 readings (two-sided theory ≈ 465),
  EWMA (λ=0.2, L=3, exact limits) ≈ 554 (theory with asymptotic limits ≈ 562), 2000 series of 3000;
* plant-years of 365 readings, reference period the first 91, plant bias and spread unknown: the share of
  plant-years with any false alarm in the 274 monitored readings, CUSUM ≈ 0.55, EWMA ≈ 0.50 (known parameters
  would give 1 − exp(−274/476) ≈ 0.44);
* counted from the first drifted reading, a step of 2 reference SDs: CUSUM median delay 2 readings (95th
  percentile 5); a ramp of 0.02 SD per reading: median 35 (95th percentile 54).

``benchmarks/bench_monitoring.py`` prints all of them.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hefed
from hefed.data import compute_statistics
from hefed.errors import DataError, UsageError
from hefed.kinds import AuditRequest, AuditSums
from hefed.models import LinearModel
from hefed.monitoring import (
    ALERT_COLUMNS,
    audit_table,
    consortium_audit,
    cusum,
    ewma,
    first_alarm,
    k_v,
    monitor_table,
    relative_accuracy,
    scenario_change,
    whatif_table,
)
from hefed.roles import aggregate, decrypt_bundle, encrypt_table, solve

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


@pytest.fixture(scope="module")
def plants() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=5, seed=3)


@pytest.fixture(scope="module")
def model(plants) -> LinearModel:
    """The pooled model of the five plants, with its full covariance (statistics computed in one place)."""
    return solve(compute_statistics(pd.concat(plants.values(), ignore_index=True), TARGET, FEATURES))


# --- the charts -----------------------------------------------------------------------------------------------
def test_cusum_and_ewma_follow_their_recursions():
    z = np.random.default_rng(0).standard_normal(300) * 1.3 + 0.2
    upper, lower, alarm = cusum(z, 0.5, 5)
    hi = lo = 0.0
    for i, v in enumerate(z):
        hi, lo = max(0.0, hi + v - 0.5), max(0.0, lo - v - 0.5)
        assert upper[i] == hi and lower[i] == lo
        assert alarm[i] == (hi > 5 or lo > 5)
    stat, limit, alarm = ewma(z, 0.2, 3)
    e = 0.0
    for i, v in enumerate(z):
        e = 0.2 * v + 0.8 * e
        assert stat[i] == pytest.approx(e, rel=1e-12, abs=1e-15)
        exact_sd = math.sqrt(0.2 / 1.8 * (1 - 0.8 ** (2 * (i + 1))))
        assert limit[i] == pytest.approx(3 * exact_sd, rel=1e-12)
        assert alarm[i] == (abs(stat[i]) > limit[i])
    # the exact variance: Var(E_i) of unit white noise, checked against the sum of the squared weights
    weights = 0.2 * 0.8 ** np.arange(10)
    assert limit[9] == pytest.approx(3 * math.sqrt(float(np.sum(weights**2))), rel=1e-12)


def test_in_control_run_lengths_match_the_known_values():
    """Known parameters (z standard normal): the average run length to a false alarm is the textbook one."""
    z = np.random.default_rng(1).standard_normal((2000, 3000))
    run_cusum = first_alarm(cusum(z)[2]) + 1
    run_ewma = first_alarm(ewma(z)[2]) + 1
    assert (run_cusum > 0).mean() > 0.99 and (run_ewma > 0).mean() > 0.99
    arl_cusum, arl_ewma = run_cusum[run_cusum > 0].mean(), run_ewma[run_ewma > 0].mean()
    assert 420 < arl_cusum < 520, arl_cusum  # two-sided k=0.5, h=5: ≈ 465
    assert 480 < arl_ewma < 640, arl_ewma  # λ=0.2, L=3: ≈ 562 with asymptotic limits, a little less with exact ones


def _plant_years(seed: int, series: int = 2000, n: int = 365, ref: int = 91) -> np.ndarray:
    """Residual series of in-control plants: each its own bias (±3 pooled SDs) and spread (0.5–2×)."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 3, (series, 1))
    spread = rng.uniform(0.5, 2, (series, 1))
    e = bias + spread * rng.standard_normal((series, n))
    reference = e[:, :ref]
    return (e - reference.mean(axis=1, keepdims=True)) / reference.std(axis=1, ddof=1, keepdims=True)


def test_in_control_plants_stay_quiet():
    """False alarms after a 91-reading reference period, over 2000 plant-years: what known parameters give
    (1 − exp(−274/470) ≈ 0.44), a little more for the estimated reference. A pooled standardisation (each plant's
    bias left in) would alarm on nearly every plant-year."""
    z = _plant_years(2)
    cusum_years = (first_alarm(cusum(z)[2], 91) >= 0).mean()
    ewma_years = (first_alarm(ewma(z)[2], 91) >= 0).mean()
    assert 0.35 < cusum_years < 0.65, cusum_years
    assert 0.30 < ewma_years < 0.62, ewma_years


@pytest.mark.parametrize(("drift", "median_bound", "p95_bound"), [
    ("step", 4, 8),  # 2 reference SDs from reading 200
    ("ramp", 45, 65),  # 0.02 SD more per reading from reading 200
])
def test_drift_is_detected_within_bounded_readings(drift, median_bound, p95_bound):
    z = _plant_years(4)
    after = np.arange(1, z.shape[1] - 200 + 1)
    z[:, 200:] += 2.0 if drift == "step" else 0.02 * after
    for alarm in (cusum(z)[2], ewma(z)[2]):
        delay = first_alarm(alarm, 200)
        assert (delay >= 0).all()  # every plant-year detects it within the 165 readings left
        assert np.median(delay) <= median_bound and np.percentile(delay, 95) <= p95_bound, (
            np.median(delay), np.percentile(delay, 95))


def test_monitor_table_on_a_plant(plants, model):
    plant = plants["steel-02"].reset_index(drop=True)
    quiet = monitor_table(model, plant)
    frame = quiet.frame
    assert list(frame.columns) == list(ALERT_COLUMNS)
    assert frame["row"].tolist() == list(range(1, len(plant) + 1))
    assert quiet.reference_rows == len(plant) // 4 and frame["reference"].sum() == len(plant) // 4
    # the interval is model.get_prediction's observation interval at 1 - alpha
    bounds = model.get_prediction(plant[FEATURES], alpha=0.01).conf_int(obs=True)
    np.testing.assert_array_equal(frame[["obs_ci_lower", "obs_ci_upper"]].to_numpy(), bounds)
    outside = (plant[TARGET] < bounds[:, 0]) | (plant[TARGET] > bounds[:, 1])
    assert frame["outside_interval"].tolist() == outside.astype(int).tolist()
    residual = plant[TARGET].to_numpy() - model.predict(plant[FEATURES])
    ref = residual[: quiet.reference_rows]
    np.testing.assert_allclose(frame["z"], (residual - ref.mean()) / ref.std(ddof=1), rtol=1e-12)
    # the in-control year: few readings flagged (a false alarm is expected in about half of plant-years)
    assert frame["cusum_alarm"].mean() < 0.02 and frame["ewma_alarm"].mean() < 0.02
    drifted = plant.copy()
    drifted.loc[200:, TARGET] *= 1.05  # a 5 % step from row 201
    alerts = monitor_table(model, drifted).frame
    after = alerts[alerts["row"] > 200]
    summary = monitor_table(model, drifted).summary()
    for column in ("cusum_alarm", "ewma_alarm"):
        first = int(after.loc[after[column] == 1, "row"].iloc[0])
        assert first <= 215 and summary[f"first_{column}_after_reference"] == first, (column, first, summary)
        assert after[column].mean() > 0.8  # and it stays on while the step lasts


def test_monitor_refuses_bad_input(plants, model):
    plant = plants["steel-02"]
    with pytest.raises(DataError, match="co2_t"):
        monitor_table(model, plant.drop(columns=[TARGET]))
    with pytest.raises(UsageError, match="reference period"):
        monitor_table(model, plant, reference_rows=len(plant) + 1)
    with pytest.raises(UsageError, match="CUSUM"):
        monitor_table(model, plant, cusum_h=0)


# --- what-if --------------------------------------------------------------------------------------------------
def test_whatif_equals_a_direct_computation(plants, model):
    plant = plants["cement-01"]
    X = plant[FEATURES].astype(float)
    result = whatif_table(model, plant, "natural_gas_t=+20%,coal_t=-20%,diesel_t=+5,clinker_t=x1.1")
    changed = X.copy()
    changed["natural_gas_t"] *= 1.2
    changed["coal_t"] *= 0.8
    changed["diesel_t"] += 5
    changed["clinker_t"] *= 1.1
    ones = np.ones((len(X), 1))
    delta = (np.hstack([ones, changed.to_numpy()]) - np.hstack([ones, X.to_numpy()])).sum(axis=0)
    results = model.inference()
    cov = results.cov_params()
    change = float(delta @ results.params)
    se = math.sqrt(float(delta @ cov @ delta))
    half = stats.t.ppf(0.975, results.df_resid) * se
    assert result.change == pytest.approx(change, rel=1e-9)
    assert result.se == pytest.approx(se, rel=1e-9)
    assert result.conf_int == pytest.approx((change - half, change + half), rel=1e-9)
    assert result.baseline_total == pytest.approx(model.predict(X).sum(), rel=1e-12)
    assert result.scenario_total == pytest.approx(model.predict(changed).sum(), rel=1e-9)
    assert result.relative_change == pytest.approx(100 * change / model.predict(X).sum(), rel=1e-9)


def test_whatif_refuses_what_it_cannot_answer(plants, model, tmp_path):
    plant = plants["cement-01"]
    with pytest.raises(UsageError, match="not a feature"):
        scenario_change(model, plant[FEATURES], {"sulphur_t": "+5%"})
    for text in ("coal_t=20", "coal_t=20%", "coal_t", "coal_t=x5%", "coal_t=+5%,coal_t=-1%", "coal_t=+-5"):
        with pytest.raises(UsageError):
            whatif_table(model, plant, text)
    three = compute_statistics(plant, TARGET, FEATURES)
    three.contributors = ["a", "b", "c"]  # min_contributors 3: the covariance is withheld from the file
    path = solve(three).save(tmp_path / "withheld.json")
    with pytest.raises(UsageError, match="no full covariance"):
        whatif_table(LinearModel.load(path), plant, "coal_t=-20%")


# --- the audit ------------------------------------------------------------------------------------------------
def _pooled_pairs(plants, model):
    pooled = pd.concat(plants.values(), ignore_index=True)
    return model.predict(pooled[FEATURES]), pooled[TARGET].to_numpy()


def test_audit_equals_ps16_on_the_pairs(plants, model):
    prediction, reference = _pooled_pairs(plants, model)
    pooled = pd.concat(plants.values(), ignore_index=True).assign(pems=prediction)
    result = audit_table(pooled, prediction_column="pems", reference_column=TARGET, elv=5000.0)
    d = [Fraction(p) - Fraction(r) for p, r in zip(prediction, reference, strict=True)]
    n = len(d)
    mean = sum(d, Fraction(0)) / n
    var = sum(((v - mean) ** 2 for v in d), Fraction(0)) / (n - 1)
    assert result.mean_difference == float(mean)
    assert result.sd_difference == pytest.approx(math.sqrt(float(var)), rel=1e-15)
    cc = stats.t.ppf(0.975, n - 1) * math.sqrt(float(var)) / math.sqrt(n)
    rm = float(sum(Fraction(r) for r in reference) / n)
    assert result.confidence_coefficient == pytest.approx(cc, rel=1e-14)
    assert result.relative_accuracy == pytest.approx((abs(float(mean)) + cc) / rm * 100, rel=1e-14)
    assert result.biased == (abs(float(mean)) > cc)
    v = result.variability
    assert v is not None and v.sigma0 == pytest.approx(0.2 * 5000 / 1.96)
    assert v.passed == (result.sd_difference <= v.sigma0 * v.k_v)


def test_k_v_is_en14181s_table():
    assert round(k_v(15), 4) == 0.9761  # EN 14181 table: N = 15
    assert k_v(30) > k_v(15) and k_v(1000) < 1


def test_audit_refusals_and_notes():
    with pytest.raises(DataError, match="at least 2"):
        relative_accuracy(AuditSums.from_pairs([1.0], [1.0]))
    with pytest.raises(UsageError, match="elv"):
        relative_accuracy(AuditSums.from_pairs([1.0, 2.0], [1.1, 2.1]), elv=-1)
    small = relative_accuracy(AuditSums.from_pairs([1.0, 2.0, 3.0], [1.1, 2.1, 2.9]), elv=10)
    assert any("PS-16" in note for note in small.notes) and any("EN 14181" in note for note in small.notes)


def test_consortium_audit_sums_are_the_pooled_exact_sums(plants, model, public_key, private_key):
    """Three factories' encrypted audit bundles add up to the exact sums of the pooled pairs (Fraction
    arithmetic on the encoded data and the float64 coefficients), and the RA to the pooled pairs' RA."""
    names = list(plants)[:3]
    bundles = [encrypt_table(plants[n], TARGET, public_key, factory_id=n, request=AuditRequest(model)).bundle
               for n in names]
    decrypted = decrypt_bundle(aggregate(bundles), private_key, 3, kind="audit", allow_unsigned=True)
    pooled = pd.concat([plants[n] for n in names], ignore_index=True)
    d = [Fraction(float(model.intercept_)) + sum((Fraction(float(c)) * Fraction(float(x))
                                                  for c, x in zip(model.coef_, row, strict=True)), Fraction(0))
         - Fraction(float(y)) for row, y in zip(pooled[FEATURES].to_numpy(), pooled[TARGET], strict=True)]
    assert decrypted.n == len(d)
    assert decrypted.sum_d == sum(d, Fraction(0))
    assert decrypted.sum_d2 == sum((v * v for v in d), Fraction(0))
    assert decrypted.sum_reference == sum((Fraction(float(y)) for y in pooled[TARGET]), Fraction(0))
    assert sorted(decrypted.contributors) == sorted(names)
    assert decrypted.model_digest == model.digest()
    result = consortium_audit(decrypted, model=model)
    direct = relative_accuracy(AuditSums.from_pairs(model.predict(pooled[FEATURES]), pooled[TARGET].to_numpy()))
    assert result.relative_accuracy == pytest.approx(direct.relative_accuracy, rel=1e-12)
    assert result.mean_difference == pytest.approx(direct.mean_difference, rel=1e-12)
    local = audit_table(plants[names[0]], model=model)
    assert local.n == len(plants[names[0]])


def test_audit_bundles_of_another_model_never_add_up(plants, model, public_key, private_key):
    """Attack: a factory (or an aggregator) slips in an audit of another model — its digest differs, so the
    aggregate is refused; sums decrypted for one model are refused when read as another's."""
    other = solve(compute_statistics(plants["cement-01"], TARGET, FEATURES))
    names = list(plants)[:3]
    bundles = [encrypt_table(plants[n], TARGET, public_key, factory_id=n, request=AuditRequest(model)).bundle
               for n in names[:2]]
    bundles.append(encrypt_table(plants[names[2]], TARGET, public_key, factory_id=names[2],
                                 request=AuditRequest(other)).bundle)
    with pytest.raises(hefed.errors.HefedError, match="model_digest"):
        aggregate(bundles)
    own = AuditSums("co2_t", FEATURES, 3, Fraction(1), Fraction(2), Fraction(30), model.digest(), ["a", "b", "c"])
    with pytest.raises(UsageError, match="another model"):
        consortium_audit(own, model=other)


def test_audit_sums_file_round_trip_and_refusal(tmp_path):
    sums = AuditSums("nox", ["load"], 4, Fraction(1, 3), Fraction(7, 2), Fraction(100), "0" * 32, ["a", "b", "c"])
    path = sums.save(tmp_path / "audit.json")
    assert AuditSums.load(path) == sums
    obj = json.loads(path.read_text())
    obj["exact"]["sum_d2"] = "0"  # Σd² < (Σd)²/n: no real pairs give it
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(hefed.errors.IntegrityError):
        AuditSums.load(tmp_path / "bad.json")


def test_audit_of_an_unsigned_model_is_refused_in_a_study(plants, model, public_key):
    """Attack: whoever asks for an audit chooses the model; with chosen coefficients (d = c·x_j − y) the audit
    sums would read one column's pooled sum. In a study naming its key holder a factory audits only a model that
    key signed for the study, before it reads a row; the signed model is audited."""
    from hefed.errors import ReleaseError
    from hefed.protocol import KeyHolderSigner, Study
    from hefed.roles import encrypt_for_study, sign_model

    signer = KeyHolderSigner.generate()
    study = Study.new(public_key, TARGET, FEATURES, kinds={"statistics": {}, "audit": {}}, keyholder=signer.public)
    forged = LinearModel(FEATURES, TARGET, [Fraction(0), Fraction(1), Fraction(0), Fraction(0), Fraction(0)],
                         Fraction(0), n_samples=1, sse=None, sst=None)
    forged.study_ = study.digest
    with pytest.raises(ReleaseError, match="no release signature"):
        encrypt_for_study(plants["cement-01"], study, factory_id="cement-01", kind="audit", model=forged,
                          insecure_test_key=True)
    with pytest.raises(ReleaseError, match="another key"):
        encrypt_for_study(plants["cement-01"], study, factory_id="cement-01", kind="audit",
                          model=sign_model(forged, KeyHolderSigner.generate()), insecure_test_key=True)
    released = sign_model(forged, signer)
    bundle = encrypt_for_study(plants["cement-01"], study, factory_id="cement-01", kind="audit", model=released,
                               insecure_test_key=True).bundle
    assert bundle.kind == "audit" and bundle.parameters["model_digest"] == released.digest()


def test_autocorrelated_residuals_are_reported():
    """The charts assume independent readings; the reference period's lag-1 autocorrelation says when they are not."""
    from hefed.monitoring import lag1_autocorrelation

    rng = np.random.default_rng(5)
    e = np.zeros(20_000)
    noise = rng.standard_normal(len(e))
    for t in range(1, len(e)):
        e[t] = 0.8 * e[t - 1] + noise[t]
    assert lag1_autocorrelation(e) == pytest.approx(0.8, abs=0.02)
    assert abs(lag1_autocorrelation(noise)) < 0.03
    assert math.isnan(lag1_autocorrelation(np.ones(10)))


def test_gas_turbine_hourly_residuals_over_alarm(gas_turbine_dir):
    """What the module docstring and README say of real hourly data: the 2011–14 NOx model monitoring 2014,
    residual autocorrelation ≈ 0.84, the CUSUM flags ≈ 29 % of the readings after the reference period."""
    years = hefed.datasets.load_gas_turbine(gas_turbine_dir)
    features = [c for c in years["gt_2011"].columns if c not in ("CO", "NOX")]
    train = pd.concat([years[f"gt_{y}"] for y in (2011, 2012, 2013, 2014)], ignore_index=True)
    nox = solve(compute_statistics(train, "NOX", features))
    result = monitor_table(nox, years["gt_2014"])
    after = result.frame[result.frame["reference"] == 0]
    assert 0.75 < result.reference_autocorrelation < 0.9, result.reference_autocorrelation
    assert 0.2 < after["cusum_alarm"].mean() < 0.4 and after["ewma_alarm"].mean() < 0.1
