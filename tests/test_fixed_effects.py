"""Plant fixed effects (issue 16): each factory sends its own rows demeaned (rounded once to a public grid);
the pooled within statistics give the slopes, standard errors and tests of OLS with one dummy per plant."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import hefed
from hefed.kinds import WithinStatisticsRequest, get_kind
from hefed.stats import WithinStatistics

FEATURES = ["coal_t", "gas_t", "kiln_hours"]


def _plants(seed: int = 0, plants: int = 5, rows: int = 60) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for g in range(plants):
        n = rows + 7 * g  # unequal plant sizes
        frame = pd.DataFrame({"coal_t": np.round(rng.uniform(0, 50, n), 3),
                              "gas_t": np.round(rng.uniform(0, 30, n) + 3 * g, 2),
                              "kiln_hours": rng.integers(100, 700, n).astype(float)})
        baseline = 40.0 * g - 30  # each plant its own level (kiln type, age, fuel quality)
        frame["co2_t"] = np.round(baseline + 2.4 * frame.coal_t + 2.75 * frame.gas_t + 0.01 * frame.kiln_hours
                                  + rng.normal(0, 2 + g, n), 2)
        out[f"plant-{g}"] = frame
    return out


def _pooled_within(plants: dict[str, pd.DataFrame], grid_bits: int = 0) -> WithinStatistics:
    parts = [WithinStatistics.of_plant(hefed.compute_statistics(f, "co2_t", FEATURES, factory_id=name), grid_bits)
             for name, f in plants.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _dummies_fit(plants: dict[str, pd.DataFrame]) -> sm.regression.linear_model.RegressionResultsWrapper:
    pooled = pd.concat([f.assign(plant=name) for name, f in plants.items()], ignore_index=True)
    design = pd.concat([pooled[FEATURES], pd.get_dummies(pooled["plant"], drop_first=True, dtype=float)], axis=1)
    return sm.OLS(pooled["co2_t"], sm.add_constant(design)).fit()


def test_slopes_and_inference_equal_ols_with_plant_dummies() -> None:
    plants = _plants()
    model = hefed.solve(_pooled_within(plants))
    ref = _dummies_fit(plants)
    res = model.inference()
    assert res.param_names == FEATURES and model.fixed_effects_ == 5 and model.intercept_ == 0.0
    np.testing.assert_allclose(res.params, ref.params[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.bse, ref.bse[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.tvalues, ref.tvalues[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.pvalues, ref.pvalues[FEATURES].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(res.conf_int(), ref.conf_int().loc[FEATURES].to_numpy(), rtol=1e-9)
    assert (res.df_resid, res.df_model, res.nobs) == (ref.df_resid, ref.df_model, ref.nobs)
    for name in ("ssr", "rsquared", "rsquared_adj", "fvalue", "llf", "aic", "bic", "scale"):
        assert getattr(res, name) == pytest.approx(getattr(ref, name), rel=1e-9), name
    np.testing.assert_allclose(res.cov_params(), ref.cov_params().loc[FEATURES, FEATURES].to_numpy(), rtol=1e-9)


def test_each_plant_gets_its_own_intercept_locally() -> None:
    plants = _plants(seed=1)
    model = hefed.solve(_pooled_within(plants))
    ref = _dummies_fit(plants)
    first = next(iter(plants))
    for name, frame in plants.items():
        intercept = model.plant_intercept(frame[FEATURES], frame["co2_t"])
        expected = ref.params["const"] + (ref.params[name] if name != first else 0.0)
        assert intercept == pytest.approx(expected, rel=1e-9, abs=1e-9)
    with pytest.raises(hefed.errors.UsageError, match="fixed-effects"):  # no plant intercept: no intervals
        model.get_prediction(plants[first][FEATURES])


def test_the_sum_reveals_no_plant_count_or_mean() -> None:
    """What travels: the demeaned Gram (its row of ones is [n_g, 0, …, 0]), Σy and Σy²; the sums of x per plant
    are 0 in every contribution, so the pooled statistics hold no plant's means."""
    plants = _plants(seed=2)
    one = WithinStatistics.of_plant(hefed.compute_statistics(plants["plant-0"], "co2_t", FEATURES))
    assert all(v == 0 for v in one.within.gram[0][1:])
    demeaned = plants["plant-0"][FEATURES] - plants["plant-0"][FEATURES].mean()
    expected = Fraction(float((demeaned["coal_t"] ** 2).sum()))
    got = one.within.exact("coal_t", "coal_t")
    assert abs(float(got - expected)) <= 1e-9 * float(expected)


def test_rounding_is_once_and_bounded() -> None:
    plants = _plants(seed=3, plants=3)
    frame = plants["plant-0"]
    stats = hefed.compute_statistics(frame, "co2_t", FEATURES)
    within = WithinStatistics.of_plant(stats, grid_bits=0)  # rounded to the integer unit
    n = stats.n
    for a in FEATURES:
        exact = stats.exact(a, a) - stats.exact(hefed.stats.ONES, a) ** 2 / n
        assert abs(within.within.exact(a, a) - exact) <= within.rounding_bound(a, a)
    with pytest.raises(hefed.errors.UsageError):
        WithinStatistics.of_plant(stats, grid_bits=8)  # finer grids reveal row counts


def test_encrypted_round_end_to_end_and_files(tmp_path) -> None:
    plants = _plants(seed=4, plants=4)
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    bundles = [hefed.encrypt_table(frame, "co2_t", public_key, features=FEATURES, factory_id=name,
                                   request=WithinStatisticsRequest()).bundle for name, frame in plants.items()]
    assert bundles[0].kind == "within_statistics"
    decrypted = hefed.decrypt_bundle(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    assert isinstance(decrypted, WithinStatistics)
    decrypted.save(tmp_path / "within.json")
    loaded = hefed.roles.load_sums(tmp_path / "within.json")
    model = hefed.solve(loaded)
    ref = _dummies_fit(plants)
    np.testing.assert_allclose(model.coef_, ref.params[FEATURES].to_numpy(), rtol=1e-9)
    model.save(tmp_path / "model.json")
    obj = json.loads((tmp_path / "model.json").read_text())
    assert obj["fixed_effects"] == 4 and obj["inference"]["absorbed"] == 4
    again = hefed.LinearModel.load(tmp_path / "model.json")
    assert again.fixed_effects_ == 4 and again.inference().df_resid == ref.df_resid
    np.testing.assert_allclose(again.inference().bse, ref.bse[FEATURES].to_numpy(), rtol=1e-9)
    kind = get_kind("within_statistics")
    values = kind.packed_size(FEATURES, "co2_t", bundles[0].encoding, {"grid_bits": 0})[0]
    assert values == 15 + 2 + hefed.stats.support_size(FEATURES, "co2_t")  # the Gram, Σy and Σy², the support


def test_cli_fixed_effects_flow(tmp_path) -> None:
    from click.testing import CliRunner
    from hefed_cli.main import main

    plants = _plants(seed=5, plants=4)
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    hefed.save_private_key(private_key, tmp_path / "priv.json")
    runner = CliRunner()

    def ok(*args: object) -> str:
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    for name, frame in plants.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        ok("encrypt", tmp_path / f"{name}.csv", "--target", "co2_t", "--features", ",".join(FEATURES),
           "--public-key", tmp_path / "pub.json", "--factory-id", name, "--out", tmp_path / f"{name}.bundle.json",
           "--fixed-effects", "--insecure-test-key")
    ok("aggregate", *(tmp_path / f"{name}.bundle.json" for name in plants), "--out", tmp_path / "agg.json")
    ok("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", tmp_path / "priv.json",
       "--out", tmp_path / "within.json")
    ok("solve", tmp_path / "within.json", "--out", tmp_path / "model.json")
    model = hefed.LinearModel.load(tmp_path / "model.json")
    ref = _dummies_fit(plants)
    np.testing.assert_allclose(model.coef_, ref.params[FEATURES].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(model.inference().bse, ref.bse[FEATURES].to_numpy(), rtol=1e-9)


GAS_TURBINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"


@pytest.mark.skipif(not GAS_TURBINE.is_dir(), reason=f"gas-turbine data not found at {GAS_TURBINE}")
def test_gas_turbine_with_fixed_effects_by_year_equals_statsmodels() -> None:
    frames = hefed.datasets.load_gas_turbine(GAS_TURBINE)
    features = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "CDP"]
    parts = [WithinStatistics.of_plant(hefed.compute_statistics(f, "NOX", features, factory_id=year))
             for year, f in frames.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    res = hefed.solve(total).inference()
    pooled = pd.concat([f.assign(year=year) for year, f in frames.items()], ignore_index=True)
    design = pd.concat([pooled[features], pd.get_dummies(pooled["year"], drop_first=True, dtype=float)], axis=1)
    ref = sm.OLS(pooled["NOX"], sm.add_constant(design)).fit()
    np.testing.assert_allclose(res.params, ref.params[features].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.bse, ref.bse[features].to_numpy(), rtol=1e-9)
    assert res.rsquared == pytest.approx(ref.rsquared, rel=1e-9) and res.df_resid == ref.df_resid
