"""Certified inference (issue 15): ball arithmetic gives the exact values correctly rounded, exact zeros are
detected exactly, the exact rationals are computed only on request, and model files of version 2 are small
while version 1 still loads."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import flint
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hefed
from hefed.models import InferenceResults, inference
from hefed.models._certified import PooledLeastSquares
from hefed.models._inference import ExactParts, inference_from_exact
from hefed.primitives import certified
from hefed.primitives.certified import certified_floats, rounded

DATA = Path(__file__).parent / "data"
FLOAT_FIELDS = ("ssr", "ess", "rsquared", "rsquared_adj", "fvalue", "mse_model", "mse_resid", "resid_std_err",
                "llf", "aic", "bic", "centered_tss", "uncentered_tss")


def _reference(stats: hefed.SufficientStatistics, ridge: Fraction, fit_intercept: bool) -> InferenceResults:
    """The same results from exact rational arithmetic (what hefed computed before FLINT)."""
    problem = PooledLeastSquares(stats, ridge, fit_intercept)
    fresh = inference(stats, ridge, fit_intercept)
    exact = ExactParts(problem=problem)
    return inference_from_exact(exact, target=stats.target, param_names=problem.param_names, nobs=stats.n,
                                ridge=ridge, fit_intercept=fit_intercept, condition=fresh.condition_number)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _assert_equal_results(got: InferenceResults, want: InferenceResults) -> None:
    for name in ("params", "bse", "tvalues"):
        g, w = getattr(got, name), getattr(want, name)
        assert all(_same(a, b) for a, b in zip(g, w, strict=True)), (name, g, w)
    for name in FLOAT_FIELDS:
        assert _same(getattr(got, name), getattr(want, name)), (name, getattr(got, name), getattr(want, name))
    assert got.uncertified == []
    if not got.is_ridge and got.df_resid > 0:
        ref_cov = want.cov_params()
        np.testing.assert_array_equal(got.cov_params(), ref_cov)


# --- the ball → float64 step ---------------------------------------------------------------------------
@given(st.fractions(min_value=-10**6, max_value=10**6, max_denominator=10**12))
@settings(max_examples=200, deadline=None)
def test_rounded_gives_the_correctly_rounded_float_or_nothing(value: Fraction) -> None:
    with flint.ctx.workprec(200):
        ball = certified.exact_ball(value)
        assert rounded(ball) == float(value)  # a tight ball certifies the correctly rounded value
    with flint.ctx.workprec(20):  # a wide ball straddles a rounding boundary: nothing is claimed
        wide = certified.exact_ball(value) + flint.arb(0, 2.0**-30)
        got = rounded(wide)
        assert got is None or got == float(value)


def test_an_exact_tie_takes_the_exact_fallback() -> None:
    tie = Fraction(2**53 + 1, 1)  # halfway between two float64s: rounds to even
    calls = []

    def evaluate(bits: int) -> dict[str, list[object]]:
        return {"x": [certified.exact_ball(tie) + flint.arb(0, 2.0**-(bits // 2))]}

    def exact(i: int) -> Fraction:
        calls.append(i)
        return tie

    out = certified_floats(evaluate, {"x": exact})
    assert out.values["x"] == [float(tie)] and calls == [0]


# --- certified inference equals exact rational arithmetic ---------------------------------------------
@st.composite
def _designs(draw: st.DrawFn) -> tuple[pd.DataFrame, list[str], str]:
    """Small designs with dyadic values, some with exact zeros: a zero coefficient, orthogonal columns, a
    perfect fit, a constant response."""
    n = draw(st.integers(6, 30))
    d = draw(st.integers(1, 4))
    cells = draw(st.lists(st.integers(-64, 64), min_size=n * d, max_size=n * d))
    frame = pd.DataFrame(np.array(cells, dtype=float).reshape(n, d) / 8.0, columns=[f"x{i}" for i in range(d)])
    shape = draw(st.sampled_from(["noisy", "perfect", "zero_coef", "orthogonal", "constant_y"]))
    noise = np.array(draw(st.lists(st.integers(-16, 16), min_size=n, max_size=n)), dtype=float) / 4.0
    if shape == "orthogonal" and n >= 4:
        frame["x0"] = np.resize([1.0, -1.0, 1.0, -1.0], n)
        if d > 1:
            frame["x1"] = np.resize([1.0, 1.0, -1.0, -1.0], n)
    coefs = [0.5 * (i + 1) for i in range(d)]
    if shape == "zero_coef":
        coefs[0] = 0.0
    y = 0.25 + frame.to_numpy() @ np.array(coefs)
    if shape in ("noisy", "zero_coef", "orthogonal"):
        y = y + noise
    if shape == "constant_y":
        y = np.full(n, 3.5)
    frame["y"] = y
    return frame, [f"x{i}" for i in range(d)], shape


@given(_designs(), st.sampled_from([Fraction(0), Fraction(0), Fraction(5, 2)]), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_certified_inference_equals_exact_rational_arithmetic(design, ridge, fit_intercept) -> None:
    frame, features, _ = design
    stats = hefed.compute_statistics(frame, "y", features)
    problem = PooledLeastSquares(stats, ridge, fit_intercept)
    if problem.is_singular(problem.M):
        with pytest.raises(hefed.errors.SingularSystemError):
            inference(stats, ridge, fit_intercept)
        return
    got = inference(stats, ridge, fit_intercept)
    _assert_equal_results(got, _reference(stats, ridge, fit_intercept))


def test_orthogonal_design_has_exact_zero_covariances() -> None:
    n = 64
    frame = pd.DataFrame({"a": np.resize([1.0, -1.0], n), "b": np.resize([1.0, 1.0, -1.0, -1.0], n),
                          "c": np.resize([1.0] * 4 + [-1.0] * 4, n)})
    rng = np.random.default_rng(3)
    frame["y"] = 2 + frame.a - 0.5 * frame.c + rng.integers(-8, 8, n) / 4
    res = inference(hefed.compute_statistics(frame, "y", ["a", "b", "c"]))
    cov = res.cov_params()
    off = cov[~np.eye(4, dtype=bool)]
    assert (off == 0.0).all()  # exactly, not 1e-300: the zero was found exactly
    assert np.all(np.diag(cov) > 0)
    ref = sm.OLS(frame.y, sm.add_constant(frame[["a", "b", "c"]])).fit()
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-12)


def test_a_zero_coefficient_is_exactly_zero_and_its_t_is_zero() -> None:
    """b is exactly orthogonal to 1, a and y (each (a, y) row appears with b = +1 and b = −1), so its exact
    coefficient is 0: the ball around it never shrinks away from 0, and the exact solve must settle it."""
    rng = np.random.default_rng(5)
    half = pd.DataFrame({"a": rng.integers(-8, 8, 20) / 2.0})
    half["y"] = 1.0 + half.a + rng.integers(-4, 4, 20) / 4.0
    frame = pd.concat([half.assign(b=1.0), half.assign(b=-1.0)], ignore_index=True)
    stats = hefed.compute_statistics(frame, "y", ["a", "b"])
    res = inference(stats)
    assert res.params_exact[2] == 0  # the premise
    assert res.params[2] == 0.0 and res.tvalues[2] == 0.0 and res.pvalues[2] == 1.0
    assert res.bse[2] > 0 and res.uncertified == []


# --- cost: the exact rationals only on request ------------------------------------------------------------
def _wide_frame(d: int, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.01, 1000, d)
    x = np.round(rng.normal(size=(n, d)) * scales, 3)
    features = [f"s{i:03d}" for i in range(d)]
    frame = pd.DataFrame(x, columns=features)
    frame["nox"] = np.round(x @ (1 / scales) + rng.normal(size=n), 4)
    return frame, features


def test_solve_does_not_compute_exact_rationals_unless_asked(monkeypatch) -> None:
    frame, features = _wide_frame(12)
    stats = hefed.compute_statistics(frame, "nox", features)
    expected = hefed.solve(stats).coef_exact_

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an exact solve ran")

    monkeypatch.setattr("hefed.models._certified.solve_rational", refuse)
    monkeypatch.setattr("hefed.models._certified.solve_exact_coefficients", refuse)
    model = hefed.solve(stats)
    res = model.inference()
    res.summary(), res.conf_int(), res.cov_params()
    assert model.coef_.tolist() == [float(c) for c in expected]
    with pytest.raises(AssertionError, match="an exact solve ran"):
        model.coef_exact_  # noqa: B018  (on request: now it is computed)


def test_100_features_equal_statsmodels_and_the_exact_rounding() -> None:
    frame, features = _wide_frame(100, n=1500, seed=1)
    stats = hefed.compute_statistics(frame, "nox", features)
    model = hefed.solve(stats)
    res = model.inference()
    ref = sm.OLS(frame["nox"].to_numpy(), sm.add_constant(frame[features].to_numpy())).fit()
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-9)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-9)
    assert res.rsquared == pytest.approx(ref.rsquared, rel=1e-12)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    assert res.fvalue == pytest.approx(ref.fvalue, rel=1e-9)
    np.testing.assert_allclose(res.cov_params(), ref.cov_params(), rtol=1e-8, atol=1e-300)
    exact = [model.intercept_exact_, *model.coef_exact_]
    assert res.params.tolist() == [float(v) for v in exact]  # correctly rounded, not merely close
    assert res.ssr == float(res.ssr_exact) and res.uncertified == []


# --- files ----------------------------------------------------------------------------------------------
def test_model_file_v2_is_small_and_holds_the_full_covariance(tmp_path) -> None:
    frame, features = _wide_frame(60, n=800)
    model = hefed.solve(hefed.compute_statistics(frame, "nox", features))
    model.save(tmp_path / "model.json")
    obj = json.loads((tmp_path / "model.json").read_text())
    assert obj["version"] == 2 and "exact" not in obj and "exact" not in obj["inference"]
    cov = np.array(obj["inference"]["cov_params"], dtype=float)
    assert cov.shape == (61, 61)
    np.testing.assert_array_equal(cov, model.inference().cov_params())
    size = (tmp_path / "model.json").stat().st_size
    assert size < 150_000, size  # version 1 wrote 772 KB here
    loaded = hefed.LinearModel.load(tmp_path / "model.json")
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    np.testing.assert_array_equal(loaded.inference().cov_params(), model.inference().cov_params())
    np.testing.assert_array_equal(loaded.inference().conf_int(), model.inference().conf_int())
    assert not loaded.has_exact
    with pytest.raises(hefed.errors.UsageError, match="exact"):
        loaded.coef_exact_  # noqa: B018
    frame5, features5 = _wide_frame(5)  # the exact (XᵀX)⁻¹ diagonal takes k exact solves: a small model
    small = hefed.solve(hefed.compute_statistics(frame5, "nox", features5))
    small.save(tmp_path / "exact.json", exact=True)
    with_exact = hefed.LinearModel.load(tmp_path / "exact.json")
    assert with_exact.coef_exact_ == small.coef_exact_ and with_exact.has_exact
    assert json.loads((tmp_path / "exact.json").read_text())["inference"]["exact"]["xtx_inv_diag"]


def test_version_1_model_files_still_load() -> None:
    """tests/data/model_v1.json was written by hefed before FLINT (commit 8e983f0) from model_v1_rows.csv."""
    old = hefed.LinearModel.load(DATA / "model_v1.json")
    frame = pd.read_csv(DATA / "model_v1_rows.csv")
    new = hefed.solve(hefed.compute_statistics(frame, "co2_t", ["coal_t", "gas_t", "kiln_hours"]))
    assert old.coef_exact_ == new.coef_exact_ and old.intercept_exact_ == new.intercept_exact_
    np.testing.assert_array_equal(old.coef_, new.coef_)
    a, b = old.inference(), new.inference()
    for name in ("params", "bse", "tvalues", "pvalues"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in FLOAT_FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.conf_int(), b.conf_int())
    with pytest.raises(hefed.errors.UsageError, match="version 1 kept only its diagonal"):
        a.cov_params()


def test_an_edited_v2_inference_record_is_refused(tmp_path) -> None:
    frame, features = _wide_frame(4)
    hefed.solve(hefed.compute_statistics(frame, "nox", features)).save(tmp_path / "m.json")
    obj = json.loads((tmp_path / "m.json").read_text())
    obj["inference"]["params"][1] *= 1 + 1e-9
    with pytest.raises(hefed.errors.InvalidFileError, match="params"):
        hefed.LinearModel.from_dict(obj, "m.json")
    obj = json.loads((tmp_path / "m.json").read_text())
    obj["inference"]["cov_params"][0] = obj["inference"]["cov_params"][0][:-1]
    with pytest.raises(hefed.errors.InvalidFileError, match="cov_params"):
        hefed.LinearModel.from_dict(obj, "m.json")


def test_solve_json_is_small(tmp_path) -> None:
    from click.testing import CliRunner
    from hefed_cli.main import main as group

    frame, features = _wide_frame(60, n=800)
    hefed.compute_statistics(frame, "nox", features).save(tmp_path / "s.json")
    result = CliRunner().invoke(group, ["solve", str(tmp_path / "s.json"), "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.output) < 200_000  # version 1 printed over 500 KB of fractions
    printed = json.loads(result.output)
    assert len(printed["coef"]) == 60 and "exact" not in printed and "exact" not in printed["inference"]


def test_exact_rationals_of_any_length_are_written_and_read() -> None:
    """The exact coefficients of a 100-feature model have over 4300 digits, Python's int(str) limit."""
    from hefed._files import format_rational, parse_rational

    value = Fraction(3**10000 + 1, 2**20000 - 1)
    text = format_rational(value)
    assert len(text) > 9000 and parse_rational(text, "m.json", "coef", finite=False) == value
    with pytest.raises(hefed.errors.InvalidFileError):
        parse_rational("1" * 60001, "m.json", "coef", finite=False)


def test_the_full_covariance_is_released_only_beyond_the_threshold(tmp_path) -> None:
    """σ̂²(XᵀX)⁻¹ with the SSE gives back the pooled Gram matrix: with c contributors each learns the sum of
    the other c − 1, so a model file carries it only with at least min_contributors + 1 of them."""
    frame, features = _wide_frame(3, n=120)
    parts = np.array_split(np.arange(len(frame)), 4)

    def stats_of(count: int) -> hefed.SufficientStatistics:
        pieces = [hefed.compute_statistics(frame.iloc[idx], "nox", features, factory_id=f"plant-{i}")
                  for i, idx in enumerate(parts[:count])]
        total = pieces[0]
        for piece in pieces[1:]:
            total = total + piece
        return total

    three, four = stats_of(3), stats_of(4)
    withheld = hefed.solve(three).to_dict()["inference"]
    assert withheld["cov_params"] is None and "min_contributors + 1" in withheld["cov_params_withheld"]
    released = hefed.solve(four).to_dict()["inference"]
    assert np.array(released["cov_params"]).shape == (4, 4)
    # The attack the rule stops: from a released file, the pooled Gram, minus one's own, is the others' sum.
    model = hefed.solve(four)
    res = model.inference()
    gram = np.linalg.inv(res.cov_params() / res.scale)
    np.testing.assert_allclose(gram[0, 0], four.n, rtol=1e-9)
    # a study with a higher threshold withholds it from the same four
    from hefed.roles import release_model

    study = hefed.Study.new(hefed.generate_keypair(1024, insecure_test_key=True)[0], "nox", features,
                            min_contributors=4)
    four.study = study.digest
    kept = release_model(four, study=study).model.to_dict()["inference"]
    assert kept["cov_params"] is None
    loaded = hefed.LinearModel.from_dict(release_model(four, study=study).model.to_dict(), "m.json")
    with pytest.raises(hefed.errors.UsageError, match="min_contributors"):
        loaded.inference().cov_params()
