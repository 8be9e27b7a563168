"""Robust and cluster-robust covariances by a second encrypted round (residual moments of the released model).

Each meat is checked against exact rational sums; each covariance type against statsmodels ``fit(cov_type=...)``
on the pooled rows (its defaults: normal distribution, statsmodels' small-sample corrections) at relative 1e-9;
the round runs encrypted in process and through the command line of a signed study.
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import hefed
from hefed.errors import FewClustersWarning, SchemaMismatchError, UsageError
from hefed.kinds import ResidualMomentsRequest
from hefed.models import robust_inference
from hefed.stats import Encoding, ResidualMoments, meat_of, residual_moments, statistics_from_arrays

FEATURES = ["a", "b"]
COV_TYPES = ["HC0", "HC1", "HC2", "HC3", "cluster", "HAC"]
MAXLAGS = 3


def _plants(seed: int = 3, plants: int = 4) -> dict[str, pd.DataFrame]:
    """Heteroskedastic plants (the error grows with |a|) with their own baselines."""
    rng = np.random.default_rng(seed)
    out = {}
    for g in range(plants):
        n = 120 + 40 * (g % 4)
        X = np.round(rng.normal(size=(n, 2)) * 10, 3)
        noise = rng.normal(size=n) * (1 + np.abs(X[:, 0]) / 5)
        y = np.round(1 + X @ [0.5, -0.2] + noise + g, 3)
        out[f"p{g}"] = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y})
    return out


def _model(plants: dict[str, pd.DataFrame]) -> hefed.LinearModel:
    stats = None
    for name, f in plants.items():
        part = statistics_from_arrays(f[FEATURES].to_numpy(), f["y"].to_numpy(), FEATURES, "y", Encoding(), name)
        stats = part if stats is None else stats + part
    return hefed.solve(stats)


def _moments(model: hefed.LinearModel, plants: dict[str, pd.DataFrame], cov_type: str) -> ResidualMoments:
    """The consortium's moments as the key holder decrypts them: the factories' own, summed."""
    parts = [residual_moments(list(model.coef_), model.intercept_, True, f[FEATURES].to_numpy(), f["y"].to_numpy(),
                              FEATURES, "y", Encoding(), meat=meat_of(cov_type), model_digest=model.digest(),
                              maxlags=MAXLAGS, xtx_inv=model.released_xtx_inv()) for f in plants.values()]
    for name, part in zip(plants, parts, strict=True):
        part.contributors = [name]
    return sum(parts[1:], parts[0])


def _statsmodels(plants: dict[str, pd.DataFrame], cov_type: str):
    pooled = pd.concat(plants.values(), ignore_index=True)
    groups = np.repeat(np.arange(len(plants)), [len(f) for f in plants.values()])
    kwargs: dict = {"cov_type": cov_type}
    if cov_type == "cluster":
        kwargs["cov_kwds"] = {"groups": groups}
    if cov_type == "HAC":
        kwargs = {"cov_type": "hac-panel", "cov_kwds": {"groups": groups, "maxlags": MAXLAGS}}
    return sm.OLS(pooled["y"], sm.add_constant(pooled[FEATURES])).fit(**kwargs)


def _agree(res, ref) -> None:
    np.testing.assert_allclose(res.params, ref.params.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.bse, ref.bse.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.cov_params(), np.asarray(ref.cov_params()), rtol=1e-9)
    np.testing.assert_allclose(res.tvalues, ref.tvalues.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.pvalues, ref.pvalues.to_numpy(), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(res.conf_int(0.1), np.asarray(ref.conf_int(0.1)), rtol=1e-9)
    assert res.fvalue == pytest.approx(float(ref.fvalue), rel=1e-9)
    assert res.f_pvalue == pytest.approx(float(ref.f_pvalue), rel=1e-9, abs=1e-300)
    assert res.use_t is False and ref.use_t is False


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_each_cov_type_equals_statsmodels(cov_type):
    plants = _plants()
    model = _model(plants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewClustersWarning)
        res = robust_inference(model.inference(), _moments(model, plants, cov_type), cov_type,
                               model_digest=model.digest())
    assert res.cov_type == cov_type
    _agree(res, _statsmodels(plants, cov_type))
    # the classical results are untouched
    assert model.inference().cov_type == "nonrobust" and model.inference().use_t


_small = st.integers(-50, 50)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(_small, _small, _small), min_size=20, max_size=30), st.sampled_from(["white", "cluster",
                                                                                               "hac", "hc3"]))
def test_a_factorys_meat_is_the_exact_rational_sum(rows, meat):
    """Integer data, a model with dyadic coefficients: the meat against Fractions row by row (HC3 within its
    declared rounding: half a unit of 2^-(2S+grid_bits) per row)."""
    X = np.array([[a / 4, b / 2] for a, b, _ in rows])
    y = np.array([c / 8 for *_, c in rows])
    coef, intercept = [0.75, -1.5], 0.25
    # a positive definite stand-in for (XᵀX)⁻¹ with leverages below 1/2 on this range of rows
    xtx_inv = [[Fraction(1, 10000), Fraction(0), Fraction(0)], [Fraction(0), Fraction(1, 30000), Fraction(1, 100000)],
               [Fraction(0), Fraction(1, 100000), Fraction(1, 20000)]]
    got = residual_moments(coef, intercept, True, X, y, FEATURES, "y", Encoding(), meat=meat, model_digest="0" * 32,
                           maxlags=1, xtx_inv=xtx_inv, grid_bits=40, leverage_bits=20)
    design = [[Fraction(1), Fraction(float(a)), Fraction(float(b))] for a, b in X]
    e = [Fraction(float(v)) - Fraction(intercept) - sum(Fraction(c) * x for c, x in zip(coef, d[1:], strict=True))
         for v, d in zip(y, design, strict=True)]
    k = 3
    expected = [[Fraction(0)] * k for _ in range(k)]
    if meat == "cluster":
        u = [sum(ei * d[a] for ei, d in zip(e, design, strict=True)) for a in range(k)]
        expected = [[u[a] * u[b] for b in range(k)] for a in range(k)]
    elif meat == "hac":
        s = [[ei * v for v in d] for ei, d in zip(e, design, strict=True)]
        for lag, weight in ((0, Fraction(1)), (1, Fraction(1, 2))):
            for t in range(lag, len(s)):
                for a in range(k):
                    for b in range(k):
                        term = s[t][a] * s[t - lag][b]
                        expected[a][b] += weight * (term if lag == 0 else term + s[t - lag][a] * s[t][b])
    else:
        for ei, d in zip(e, design, strict=True):
            h = sum(d[a] * xtx_inv[a][b] * d[b] for a in range(k) for b in range(k))
            w = ei * ei / ((1 - h) ** 2 if meat == "hc3" else 1)
            for a in range(k):
                for b in range(k):
                    expected[a][b] += w * d[a] * d[b]
    unit = Fraction(1, 2 ** (2 * 40 + 40)) if meat == "hc3" else Fraction(0)  # generous bound on 2^-(2S+g)
    for a in range(k):
        for b in range(k):
            bound = len(rows) * unit * max(abs(d[a] * d[b]) for d in design)
            assert abs(got.meat[a][b] - expected[a][b]) <= bound
    assert got.n == len(rows)


def test_encrypted_round_end_to_end_and_the_model_file(tmp_path, keypair):
    public_key, private_key = keypair
    plants = _plants(seed=5)
    bundles = [hefed.encrypt_table(f, "y", public_key, features=FEATURES, factory_id=k).bundle
               for k, f in plants.items()]
    stats = hefed.decrypt_bundle(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    model = hefed.solve(stats)
    model.save(tmp_path / "released.json")
    released = hefed.LinearModel.load(tmp_path / "released.json")  # what the factories read: its (XᵀX)⁻¹ included
    moments_bundles = [hefed.encrypt_table(f, "y", public_key, features=FEATURES, factory_id=k,
                                           request=ResidualMomentsRequest(released, "HC3")).bundle
                       for k, f in plants.items()]
    assert moments_bundles[0].kind == "residual_moments"
    text = json.dumps(moments_bundles[0].to_dict())
    assert str(plants["p0"]["y"].iloc[0]) not in text  # ciphertexts and public parameters only
    with pytest.raises(hefed.errors.TooFewContributorsError):  # one factory's moments are never decrypted alone
        hefed.decrypt_bundle(moments_bundles[0], private_key, allow_unsigned=True)
    with pytest.raises(hefed.errors.TooFewContributorsError):
        hefed.decrypt_bundle(hefed.aggregate(moments_bundles[:2]), private_key, allow_unsigned=True)
    moments = hefed.decrypt_bundle(hefed.aggregate(moments_bundles), private_key, allow_unsigned=True)
    assert isinstance(moments, ResidualMoments) and moments.n == stats.n
    moments.save(tmp_path / "robust.json")
    loaded = ResidualMoments.load(tmp_path / "robust.json")
    robust = hefed.solve(stats, robust=loaded, cov_type="HC3")
    ref = _statsmodels(plants, "HC3")
    _agree(robust.inference(), ref)
    robust.save(tmp_path / "model.json")
    again = hefed.LinearModel.load(tmp_path / "model.json")
    assert again.inference().cov_type == "HC3"
    _agree(again.inference(), ref)


def test_moments_that_do_not_belong_are_refused():
    plants = _plants()
    model = _model(plants)
    moments = _moments(model, plants, "HC1")
    with pytest.raises(SchemaMismatchError, match="do not add up"):  # moments of two meats never sum
        moments + _moments(model, plants, "cluster")
    with pytest.raises(SchemaMismatchError, match="needs the hc3"):
        robust_inference(model.inference(), moments, "HC3")
    with pytest.raises(SchemaMismatchError, match="another model"):
        robust_inference(model.inference(), moments, "HC1", model_digest="f" * 32)
    fewer = _moments(model, dict(list(plants.items())[:3]), "HC1")
    with pytest.raises(SchemaMismatchError, match="rows"):
        robust_inference(model.inference(), fewer, "HC1")
    with pytest.raises(SchemaMismatchError, match="other factories"):
        model.set_robust_covariance(fewer, "HC1")
    with pytest.warns(FewClustersWarning, match="4 plants"):
        robust_inference(model.inference(), _moments(model, plants, "cluster"), "cluster")
    with pytest.raises(UsageError, match="not one of"):
        robust_inference(model.inference(), moments, "HC9")


def test_hc3_needs_the_released_inverse_and_bounded_leverage(keypair):
    plants = _plants()
    model = _model(plants)
    model.release_covariance = False  # what a model of too few contributors carries: no (XᵀX)⁻¹
    frame = plants["p0"]
    with pytest.raises(UsageError, match="does not carry"):
        hefed.encrypt_table(frame, "y", keypair[0], features=FEATURES, factory_id="p0",
                            request=ResidualMomentsRequest(model, "HC3"))
    model.release_covariance = True
    lever = frame.copy()
    lever.loc[0, "a"] = 5000.0  # one row far out: 1/(1 − h) beyond 2^1
    with pytest.raises(UsageError, match="leverage"):
        hefed.encrypt_table(lever, "y", keypair[0], features=FEATURES, factory_id="p0",
                            request=ResidualMomentsRequest(model, "HC3", leverage_bits=1))


def test_an_aggregator_cannot_mix_moments_of_two_models(keypair):
    plants = _plants()
    model = _model(plants)
    other = _model({k: f.assign(y=f["y"] * 2) for k, f in plants.items()})
    first = hefed.encrypt_table(plants["p0"], "y", keypair[0], features=FEATURES, factory_id="p0",
                                request=ResidualMomentsRequest(model)).bundle
    second = hefed.encrypt_table(plants["p1"], "y", keypair[0], features=FEATURES, factory_id="p1",
                                 request=ResidualMomentsRequest(other)).bundle
    with pytest.raises(hefed.errors.HefedError):
        hefed.aggregate([first, second])


def test_cli_second_round_in_a_signed_study(tmp_path, cli):
    plants = _plants(seed=7)
    keys = tmp_path / "keys"
    assert cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key").returncode == 0
    study = tmp_path / "study.json"
    made = cli("study", "new", "--public-key", keys / "public_key.json", "--target", "y", "--features",
               ",".join(FEATURES), "--kinds", "statistics,residual_moments", "--cov-type", "HC3", "--key-holder",
               keys / "keyholder.pub.json", "--min-contributors", 3, "--out", study, "--insecure-test-key")
    assert made.returncode == 0, made.stderr

    def round_of(extra: list, name: str) -> None:
        for k, f in plants.items():
            f.to_csv(tmp_path / f"{k}.csv", index=False)
            done = cli("encrypt", tmp_path / f"{k}.csv", "--study", study, "--factory-id", k, *extra,
                       "--out", tmp_path / f"{k}.{name}.json", "--insecure-test-key")
            assert done.returncode == 0, done.stderr
        assert cli("aggregate", *(tmp_path / f"{k}.{name}.json" for k in plants), "--study", study,
                   "--out", tmp_path / f"{name}.agg.json").returncode == 0
        done = cli("decrypt", tmp_path / f"{name}.agg.json", "--private-key", keys / "private_key.json",
                   "--study", study, "--allow-unsigned", "--out", tmp_path / f"{name}.sums.json")
        assert done.returncode == 0, done.stderr

    round_of([], "stats")
    solved = cli("solve", tmp_path / "stats.sums.json", "--study", study, "--release-key", keys / "keyholder.key.json",
                 "--out", tmp_path / "model.json")
    assert solved.returncode == 0, solved.stderr
    # an unsigned model is refused by the factory before any row is read
    unsigned = cli("solve", tmp_path / "stats.sums.json", "--out", tmp_path / "unsigned.json")
    assert unsigned.returncode == 0
    refused = cli("encrypt", tmp_path / "p0.csv", "--study", study, "--factory-id", "p0", "--kind",
                  "residual-moments", "--model", tmp_path / "unsigned.json", "--out", tmp_path / "x.json",
                  "--insecure-test-key")
    assert refused.returncode != 0 and not (tmp_path / "x.json").exists()
    round_of(["--kind", "residual-moments", "--model", tmp_path / "model.json"], "robust")
    final = cli("solve", tmp_path / "stats.sums.json", "--study", study, "--robust", tmp_path / "robust.sums.json",
                "--cov-type", "HC3", "--out", tmp_path / "robust-model.json")
    assert final.returncode == 0, final.stderr
    result = hefed.LinearModel.load(tmp_path / "robust-model.json").inference()
    _agree(result, _statsmodels(plants, "HC3"))
    wrong = cli("solve", tmp_path / "stats.sums.json", "--study", study, "--robust", tmp_path / "robust.sums.json",
                "--cov-type", "cluster", "--out", tmp_path / "wrong.json")
    assert wrong.returncode != 0 and "hc3" in wrong.stderr and not (tmp_path / "wrong.json").exists()


@pytest.mark.slow
def test_gas_turbine_robust_errors_by_year_equal_statsmodels(gas_turbine_dir):
    frames = hefed.datasets.load_gas_turbine(gas_turbine_dir)
    features = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "CDP"]
    stats = None
    for year, f in frames.items():
        part = hefed.compute_statistics(f, "NOX", features, factory_id=year)
        stats = part if stats is None else stats + part
    model = hefed.solve(stats)
    pooled = pd.concat(frames.values(), ignore_index=True)
    groups = np.repeat(np.arange(len(frames)), [len(f) for f in frames.values()])
    for cov_type, kwargs in (("HC3", {"cov_type": "HC3"}), ("cluster", {"cov_type": "cluster",
                                                                       "cov_kwds": {"groups": groups}}),
                             ("HAC", {"cov_type": "hac-panel", "cov_kwds": {"groups": groups, "maxlags": 4}})):
        parts = [residual_moments(list(model.coef_), model.intercept_, True, f[features].to_numpy(),
                                  f["NOX"].to_numpy(), features, "NOX", Encoding(), meat=meat_of(cov_type),
                                  model_digest=model.digest(), maxlags=4, xtx_inv=model.released_xtx_inv())
                 for f in frames.values()]
        total = sum(parts[1:], parts[0])
        total.contributors = list(frames)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewClustersWarning)
            res = robust_inference(model.inference(), total, cov_type, model_digest=model.digest())
        ref = sm.OLS(pooled["NOX"], sm.add_constant(pooled[features])).fit(**kwargs)
        np.testing.assert_allclose(res.bse, ref.bse.to_numpy(), rtol=1e-9)
        # off-diagonal entries near cancellation: statsmodels' float sandwich loses digits there (ours is exact,
        # rounded once), so they are compared relative to √(V_ii·V_jj), the scale of the correlation
        scale = np.sqrt(np.outer(np.diag(res.cov_params()), np.diag(res.cov_params())))
        assert np.max(np.abs(res.cov_params() - np.asarray(ref.cov_params())) / scale) < 1e-9, cov_type


# --- the estimator ------------------------------------------------------------------------------------------
def _stacked(plants: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    frame = pd.concat([f.assign(plant=k) for k, f in plants.items()], ignore_index=True)
    return frame[FEATURES], frame["y"], frame["plant"]


@pytest.mark.parametrize("cov_type", ["HC1", "HC3", "cluster", "HAC"])
def test_estimator_cov_type_runs_the_second_round_and_equals_statsmodels(cov_type):
    plants = _plants(seed=11, plants=20 if cov_type == "cluster" else 4)  # cluster meats: at least 20 plants
    X, y, groups = _stacked(plants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewClustersWarning)
        est = hefed.FederatedLinearRegression(cov_type=cov_type, maxlags=MAXLAGS).fit(X, y, groups=groups)
    assert est.results_.param_names == ["(intercept)", *FEATURES] and est.results_.cov_type == cov_type
    _agree(est.results_, _statsmodels(plants, cov_type))


def test_estimator_fixed_effects_equal_plant_dummies_and_predict_per_plant():
    plants = _plants(seed=12)
    X, y, groups = _stacked(plants)
    est = hefed.FederatedLinearRegression(fixed_effects=True).fit(X, y, groups=groups)
    dummies = pd.get_dummies(groups, drop_first=True, dtype=float)
    ref = sm.OLS(y, sm.add_constant(pd.concat([X, dummies], axis=1))).fit()
    np.testing.assert_allclose(est.coef_, ref.params[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(est.results_.bse, ref.bse[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(est.predict(X, groups=groups), ref.fittedvalues.to_numpy(), rtol=1e-9)
    with pytest.raises(UsageError, match="groups"):
        est.predict(X)
    with pytest.raises(hefed.errors.DataError, match="not a plant"):
        est.predict(X.iloc[:2], groups=["p0", "elsewhere"])
    with pytest.raises(UsageError, match="groups"):
        hefed.FederatedLinearRegression(fixed_effects=True).fit(X, y)


def test_estimator_refuses_options_that_do_not_combine():
    X, y, groups = _stacked(_plants())
    for kwargs, word in (({"cov_type": "HC7"}, "cov_type"), ({"cov_type": "HAC"}, "maxlags"),
                         ({"cov_type": "HC1", "ridge": 1.0}, "ridge"),
                         ({"cov_type": "HC1", "fixed_effects": True}, "fixed effects")):
        with pytest.raises(UsageError, match=word):
            hefed.FederatedLinearRegression(**kwargs).fit(X, y, groups=groups)
    with pytest.raises(UsageError, match="sample_weight"):
        hefed.FederatedLinearRegression(cov_type="HC1").fit(X, y, groups=groups, sample_weight=np.ones(len(y)))
