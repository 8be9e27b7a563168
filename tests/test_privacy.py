"""Differential privacy: bounds from the study, exact discrete Gaussian noise, accounting, nothing exact released.

Each test names the way a DP label could lie that it would catch. Noise comes from secrets (no seed):
thresholds are many standard errors wide, and the data sets are sized so that the outcome a test
asserts has a failure probability far below 1e-6.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import hefed
from hefed.data import Bounds
from hefed.errors import InvalidFileError, PrivacyNoiseError, PrivacyNoiseWarning, SchemaMismatchError, UsageError
from hefed.primitives import discrete_gaussian as dg
from hefed.protocol import ColumnSpec, Study
from hefed.roles import (
    DifferentialPrivacy,
    dp_solve,
    privatize_statistics,
    rho_for,
    solve_statistics,
    zcdp_delta,
    zcdp_epsilon,
    zcdp_rho,
)
from hefed.roles import _privacy as privacy_module
from hefed.stats import ONES, SufficientStatistics


def _frame(n: int = 200, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0, 10, (n, 2)), 2)
    y = np.round(x @ [2.0, -1.0] + 3 + noise * rng.normal(size=n), 2)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y})


BOUNDS = Bounds({"a": (0.0, 10.0), "b": (0.0, 10.0), "y": (-20.0, 40.0)})
WIDE = Bounds({"a": (0.0, 10.0), "b": (0.0, 10.0), "y": (-30.0, 50.0)})
DP = DifferentialPrivacy(1.0, 1e-6, WIDE)


@pytest.fixture(scope="module")
def well_scaled() -> SufficientStatistics:
    """20 000 rows inside tight bounds: the noise is small against every statistic and coefficient."""
    return hefed.compute_statistics(WIDE.clip(_frame(20000, noise=5.0), ["a", "b", "y"])[0], "y")


def _quiet_dp_solve(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyNoiseWarning)
        return dp_solve(*args, **kwargs)


# --- options and accounting ----------------------------------------------------------------------
def test_budget_ranges_are_checked():
    for eps, delta in [(0.0, 1e-5), (-1.0, 1e-5), (math.inf, 1e-5), (0.5, 0.0), (0.5, 1.0), (True, 1e-5)]:
        with pytest.raises(UsageError):
            DifferentialPrivacy(eps, delta, BOUNDS)
    DifferentialPrivacy(1.5, 1e-5, BOUNDS)  # zCDP accounting holds for any epsilon, unlike the classic mechanism


#: ε(ρ, δ) of CKS20 Corollary 13, as OpenDP 0.16 (make_zCDP_to_approxDP) computes it: an independent reference
OPENDP_EPSILON = [
    (0.5, 1e-5, 4.728386984943315), (0.5, 1e-6, 5.22153444453017), (0.5, 1e-9, 6.474070020726487),
    (0.1, 1e-5, 1.914238832003598), (0.1, 1e-9, 2.7154818867305024),
    (0.0243559703595384, 1e-6, 1.0000000000000009), (2.0, 1e-6, 11.688596249354896),
]


@pytest.mark.parametrize(("rho", "delta", "epsilon"), OPENDP_EPSILON)
def test_zcdp_conversion_matches_an_independent_implementation(rho, delta, epsilon):
    assert zcdp_epsilon(rho, delta) == pytest.approx(epsilon, rel=1e-9)
    assert zcdp_delta(rho, epsilon) == pytest.approx(delta, rel=1e-6)
    # the tight conversion never loses to the simple bound ε = ρ + 2√(ρ ln 1/δ) (Bun & Steinke 2016)
    assert zcdp_epsilon(rho, delta) < rho + 2 * math.sqrt(rho * math.log(1 / delta))


def test_rho_formula_and_the_rho_for_a_budget():
    assert zcdp_rho(1.0, 1.0) == 0.5
    assert zcdp_rho(2.0, 4.0) == 0.125  # Δ²/(2σ²)
    rho = rho_for(1.0, 1e-6)
    assert rho == pytest.approx(0.0243559703595384, rel=1e-9)
    assert zcdp_delta(rho, 1.0) <= 1e-6 < zcdp_delta(rho * 1.001, 1.0)


@settings(max_examples=40, deadline=None)
@given(rho=st.floats(1e-4, 10.0), factor=st.floats(1.01, 4.0), eps=st.floats(0.05, 20.0))
def test_accounting_is_monotone(rho, factor, eps):
    """More noise (a smaller ρ = Δ²/2σ²) never costs more; a larger ε never needs a larger δ."""
    assert zcdp_delta(rho / factor, eps) <= zcdp_delta(rho, eps) * (1 + 1e-9)
    assert zcdp_delta(rho, eps * factor) <= zcdp_delta(rho, eps) * (1 + 1e-9)
    assert zcdp_rho(1.0, 2.0 * factor) < zcdp_rho(1.0, 2.0)


# --- the mechanism -------------------------------------------------------------------------------
def test_sensitivity_is_the_largest_change_one_row_makes(well_scaled):
    """The L2 sensitivity of the upper triangle is attained by a corner row, and no row moves the statistics
    further in the mechanism's own metric than ρ allows (an underestimated sensitivity would fail here)."""
    noised, accounting = privatize_statistics(well_scaled, DP)
    u = {ONES: 1.0, "a": 10.0, "b": 10.0, "y": 50.0}
    cols = well_scaled.columns
    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i:]]
    assert accounting.l2_sensitivity == pytest.approx(math.sqrt(sum((u[a] * u[b]) ** 2 for a, b in pairs)))
    assert accounting.l2_sensitivity == pytest.approx(
        math.sqrt(((sum(v**2 for v in u.values())) ** 2 + sum(v**4 for v in u.values())) / 2))
    corner = pd.DataFrame({"a": [10.0], "b": [10.0], "y": [50.0]})  # the largest |value| of each
    base = _frame(50)
    with_row = hefed.compute_statistics(pd.concat([base, corner]), "y")
    without = hefed.compute_statistics(base, "y")
    change = [float(with_row.exact(a, b) - without.exact(a, b)) for a, b in pairs]
    assert math.sqrt(sum(v * v for v in change)) == pytest.approx(math.sqrt(sum((u[a] * u[b]) ** 2 for a, b in pairs)))
    # in the mechanism's metric Σ (change/σ)² ≤ 2ρ for random rows in the box, with equality at a corner
    rng = np.random.default_rng(1)
    rows = [corner] + [pd.DataFrame({"a": [rng.uniform(0, 10)], "b": [rng.uniform(0, 10)],
                                     "y": [rng.uniform(-30, 50)]}) for _ in range(20)]
    for row in rows:
        one = hefed.compute_statistics(row, "y")
        metric = sum(float(one.exact(a, b)) ** 2 / accounting.sigma(a, b) ** 2 for a, b in pairs)
        assert metric <= 2 * accounting.rho * (1 + 1e-9)
    assert sum(float(hefed.compute_statistics(corner, "y").exact(a, b)) ** 2 / accounting.sigma(a, b) ** 2
               for a, b in pairs) == pytest.approx(2 * accounting.rho)
    assert accounting.rho <= rho_for(1.0, 1e-6) and accounting.delta_achieved <= 1e-6
    assert noised.features == well_scaled.features and noised.encoding == well_scaled.encoding


def test_dp_noise_has_the_declared_scale(well_scaled):
    """The noised Gram stays an integer symmetric matrix on the encoding's grid, and each statistic's noise has
    the σ the accounting declares (noise of another size would be a false label)."""
    scale = well_scaled.scale_bits
    draws: dict[tuple[int, int], list[float]] = {(0, 0): [], (1, 3): [], (3, 3): []}
    accounting = None
    for _ in range(300):
        noised, accounting = privatize_statistics(well_scaled, DP)
        gram = noised.gram
        assert all(type(v) is int for row in gram for v in row)
        assert all(gram[i][j] == gram[j][i] for i in range(4) for j in range(4))
        for a, b in draws:
            draws[a, b].append(float(Fraction(gram[a][b] - well_scaled.gram[a][b], 1 << (scale[a] + scale[b]))))
    assert accounting is not None
    cols = well_scaled.columns
    for (a, b), values in draws.items():
        sigma = accounting.sigma(cols[a], cols[b])
        assert 0.75 * sigma < np.std(values) < 1.3 * sigma
        assert abs(np.mean(values)) < 6 * sigma / math.sqrt(len(values))
    assert accounting.sigma(ONES, ONES) == pytest.approx(accounting.noise_multiplier)
    c2 = accounting.noise_multiplier_squared  # exact, and ρ = K/(2c²) with K = 10 statistics
    assert Fraction(accounting.to_dict()["noise_multiplier_squared"]) == c2
    assert accounting.rho == pytest.approx(float(Fraction(10) / (2 * c2)), rel=1e-15)
    assert accounting.sigma("y", "y") == pytest.approx(accounting.noise_multiplier * 50 * 50)


def test_noise_comes_only_from_secrets(monkeypatch, well_scaled):
    """No float noise, no random module, no numpy generator: every draw is secrets.randbelow."""
    calls = []
    real = dg.secrets.randbelow
    monkeypatch.setattr(dg.secrets, "randbelow", lambda n: calls.append(n) or real(n))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("noise from outside secrets")

    for name in ("gauss", "normalvariate", "random"):  # floats (SystemRandom's getrandbits is what secrets uses)
        monkeypatch.setattr(random.SystemRandom, name, forbidden)
        monkeypatch.setattr(random.Random, name, forbidden)
    monkeypatch.setattr(random.Random, "getrandbits", forbidden)  # a seedable Mersenne Twister
    monkeypatch.setattr(np.random, "normal", forbidden)
    monkeypatch.setattr(np.random, "default_rng", forbidden)
    noised, _ = privatize_statistics(well_scaled, DP)
    assert len(calls) >= 3 * 10  # ten statistics, several draws each
    assert noised.gram != well_scaled.gram


# --- bounds from the study ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study_stats(keypair):
    frames = {f"f{i}": _frame(300, seed=i).assign(a=lambda f: f["a"] * 1.5) for i in range(3)}  # some a > 10
    study = Study.new(keypair[0], ColumnSpec("y"), ["a", "b"], bounds=WIDE)
    bundles = [hefed.encrypt_for_study(frame, study, factory_id=name).bundle for name, frame in frames.items()]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles, study=study), keypair[1], study=study,
                                     allow_unsigned=True)
    return frames, study, stats


def test_study_factories_clip_to_the_study_bounds(study_stats):
    frames, _, stats = study_stats
    clipped = pd.concat([WIDE.clip(f, ["a", "b", "y"])[0] for f in frames.values()])
    assert stats.gram == hefed.compute_statistics(clipped, "y", ["a", "b"]).gram
    assert stats.gram != hefed.compute_statistics(pd.concat(frames.values()), "y", ["a", "b"]).gram


def test_a_flower_factory_with_a_study_clips_to_its_bounds(study_stats, keypair, tmp_path):
    """Through Flower too: a factory with a study computes what encrypt_for_study does, clipped to the study's
    bounds, whatever the run config says (it is not read)."""
    pytest.importorskip("flwr")
    from hefed.flower._config import FactoryConfig
    from hefed.flower._factory import make_bundle
    from hefed.flower._messages import make_request

    frames, study, stats = study_stats
    study_path = study.save(tmp_path / "study.json")
    bundles = []
    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        factory = FactoryConfig(data_path=str(tmp_path / f"{name}.csv"), factory_id=name, study=str(study_path),
                                insecure_test_key=True)
        request = make_request("statistics", study.public_key, study=study.digest)
        bundles.append(make_bundle(request, factory, {"bounds": "none", "missing": "error"}))
    via_flower = hefed.decrypt_statistics(hefed.aggregate(bundles, study=study), keypair[1], study=study,
                                          allow_unsigned=True)
    assert via_flower.gram == stats.gram


def test_the_bounds_are_the_studys(study_stats, keypair):
    """Noise calibrated to other bounds than the factories clipped to is no guarantee: refused."""
    _, study, stats = study_stats
    _, accounting = privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6), study)
    assert accounting.bounds_source.startswith(f"study {study.digest}")
    assert accounting.bounds["y"] == [-30.0, 50.0]
    privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6, WIDE), study)  # the same bounds: fine
    with pytest.raises(UsageError, match="not the study's") as refused:
        privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6, BOUNDS), study)
    assert refused.value.parameters == ("bounds",)
    with pytest.raises(UsageError, match="give the study"):  # a study's sums without the study: no bounds
        privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6, WIDE))
    with pytest.raises(SchemaMismatchError):  # another study's statistics
        privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6),
                             Study.new(keypair[0], ColumnSpec("y"), ["a", "b"], bounds=WIDE))
    plain = hefed.compute_statistics(_frame(), "y")
    with pytest.raises(UsageError, match="bounds"):
        privatize_statistics(plain, DifferentialPrivacy(1.0, 1e-6))
    _, trusted = privatize_statistics(plain, DifferentialPrivacy(1.0, 1e-6, WIDE))
    assert "NOT checked" in trusted.bounds_source


def test_a_study_whose_cleaning_couples_rows_is_refused(keypair):
    """Imputing from (or dropping outliers against) the consortium summary makes every row depend on all: the
    one-row sensitivity would be a false premise."""
    stats = hefed.compute_statistics(_frame(), "y")
    for cleaning in (hefed.Cleaning(missing="drop", impute="mean"), hefed.Cleaning(missing="drop", max_z=4.0)):
        study = Study.new(keypair[0], ColumnSpec("y"), ["a", "b"], bounds=WIDE, cleaning=cleaning)
        stats.study = study.digest
        with pytest.raises(UsageError, match="depends on that row alone") as refused:
            privatize_statistics(stats, DifferentialPrivacy(1.0, 1e-6), study)
        assert set(refused.value.parameters) == {"impute", "max_z"}


def test_solve_takes_the_bounds_from_the_study(study_stats, tmp_path):
    _, study, stats = study_stats
    stats.save(tmp_path / "stats.json")
    study_path = study.save(tmp_path / "study.json")
    ok = run_cli("solve", tmp_path / "stats.json", "--study", study_path, "--dp-epsilon", 1, "--dp-delta", 1e-6,
                 "--out", tmp_path / "m.json")
    assert ok.returncode in (0, 1), ok.stderr  # 1 only when the noise swamps 900 rows: said, nothing written
    if ok.returncode == 0:
        saved = json.loads((tmp_path / "m.json").read_text())["differential_privacy"]
        assert saved["bounds_source"].startswith(f"study {study.digest}")
        assert "rho=" in ok.stdout and "bounds every factory clipped to" in ok.stdout
    else:
        assert "not positive definite" in ok.stderr and not (tmp_path / "m.json").exists()
    other = BOUNDS.save(tmp_path / "other.json")
    refused = run_cli("solve", tmp_path / "stats.json", "--study", study_path, "--dp-epsilon", 1, "--dp-delta",
                      1e-6, "--bounds", other, "--out", tmp_path / "m2.json")
    assert refused.returncode == 2 and "not the study's" in refused.stderr
    assert not (tmp_path / "m2.json").exists()


# --- the release -----------------------------------------------------------------------------------
def test_dp_model_is_labelled_and_saved(tmp_path, well_scaled):
    model = dp_solve(well_scaled, DifferentialPrivacy(0.5, 1e-6, WIDE), ridge=1.0)
    assert not model.has_inference
    model.save(tmp_path / "m.json")
    saved = json.loads((tmp_path / "m.json").read_text())
    block = saved["differential_privacy"]
    assert block["epsilon"] == 0.5 and block["delta"] == 1e-6
    assert block["unit"].startswith("adding or removing one row")
    assert "Canonne, Kamath, Steinke" in block["mechanism"]
    assert block["rho"] > 0 and len(block["statistics"]) == 10 and block["noise_multiplier"] > 0
    assert block["bounds"] == {"a": [0.0, 10.0], "b": [0.0, 10.0], "y": [-30.0, 50.0]}
    assert hefed.LinearModel.load(tmp_path / "m.json").dp_["delta"] == 1e-6
    plain = hefed.solve(well_scaled, ridge=1.0)
    assert [Fraction(c) for c in model.coef_] != [Fraction(c) for c in plain.coef_]


def test_nothing_exact_is_released_under_the_dp_label(monkeypatch, well_scaled):
    """The issue's attack: --standardize published the exact pooled means and SDs. Every released number must be
    what the noised statistics give, and differ from what the exact ones give."""
    captured = []
    real = privacy_module.privatize_statistics

    def capture(*args, **kwargs):
        captured.append(real(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(privacy_module, "privatize_statistics", capture)
    release = hefed.release_model(well_scaled, standardize=True, privacy=DP)
    model = release.model
    (noised, _), = captured
    exact_model = hefed.solve(well_scaled)

    def moments(stats):
        n = stats.n
        out = {}
        for c in ("a", "b"):
            s, ss = stats.exact(ONES, c), stats.exact(c, c)
            out[c] = (float(s / n), math.sqrt(float((ss - s * s / n) / (n - 1))))
        return out

    from_noised, from_exact = moments(noised), moments(well_scaled)
    again = solve_statistics(noised)
    assert model.n_samples_ == noised.n and (noised.n == well_scaled.n or model.n_samples_ != well_scaled.n)
    assert list(model.coef_) == list(again.coef_) and model.r2_ == again.r2_
    assert model.r2_ != exact_model.r2_ and list(model.coef_) != list(exact_model.coef_)
    for c in ("a", "b"):
        row = model.standardized_[c]
        assert (row["mean"], row["sd"]) == pytest.approx(from_noised[c], rel=1e-12)
        assert row["mean"] != pytest.approx(from_exact[c][0], rel=1e-12)
        assert row["sd"] != pytest.approx(from_exact[c][1], rel=1e-12)
    # the sampling standard errors are those of the noised fit (s² (XᵀX)⁻¹ from the noised Gram)
    cols, scale = noised.columns, noised.scale_bits
    gram = np.array([[float(Fraction(noised.gram[i][j], 1 << (scale[i] + scale[j]))) for j in range(3)]
                     for i in range(3)])
    s2 = float(again.sse_exact_) / (noised.n - 3)
    expected = np.sqrt(np.diag(s2 * np.linalg.inv(gram)))
    errors = model.dp_["released"]["standard_errors"]
    got = [errors["(intercept)"]["sampling"], errors["a"]["sampling"], errors["b"]["sampling"]]
    assert got == pytest.approx(list(expected), rel=1e-6)
    assert model.dp_["released"]["n"] == noised.n
    assert cols[0] == ONES


def test_the_dp_noise_se_is_the_spread_of_the_coefficients(well_scaled):
    """The DP-noise standard error the release reports is the real spread of its coefficients over fresh noise."""
    coefs, reported = [], []
    for _ in range(120):
        model = _quiet_dp_solve(well_scaled, DP)
        coefs.append(model.coef_[0])
        reported.append(model.dp_["released"]["standard_errors"]["a"]["dp_noise"])
    ratio = np.std(coefs) / np.mean(reported)
    assert 0.7 < ratio < 1.4


def test_a_well_scaled_release_gives_no_warning(well_scaled):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyNoiseWarning)
        model = dp_solve(well_scaled, DP)
    assert model.dp_["warnings"] == []
    assert model.coef_ == pytest.approx([2.0, -1.0], abs=0.5)


def _kg_frame(n: int = 3000) -> pd.DataFrame:
    """Production in kg and electricity in kWh, declared bounds as a consortium would (its largest plant)."""
    rng = np.random.default_rng(7)
    produced = np.round(rng.uniform(5e4, 4.5e5, n), 1)
    used = np.round(0.3 * produced + 5e4 + rng.normal(0, 5e3, n), 1)
    return pd.DataFrame({"production_kg": produced, "electricity_kwh": used})


KG_BOUNDS = Bounds({"production_kg": (0.0, 5e5), "electricity_kwh": (0.0, 1e7)})


def test_the_swamp_warning_fires_in_real_units(tmp_path):
    """kWh bounded by the consortium's largest plant: the DP noise of the coefficient dwarfs it, and says so."""
    stats = hefed.compute_statistics(KG_BOUNDS.clip(_kg_frame(), ["production_kg", "electricity_kwh"])[0],
                                     "electricity_kwh")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = dp_solve(stats, DifferentialPrivacy(1.0, 1e-6, KG_BOUNDS))
    said = [str(w.message) for w in caught if issubclass(w.category, PrivacyNoiseWarning)]
    assert said == model.dp_["warnings"] and said
    # the reason: the DP noise SE of the coefficient is several times the true coefficient (about 0.3 kWh/kg)
    exact = hefed.solve(stats).coef_[0]
    assert model.dp_["released"]["standard_errors"]["production_kg"]["dp_noise"] > 3 * abs(exact)
    # the warning names what is swamped (which criterion fires first depends on the draw: the coefficient's
    # noised value lands beyond 3 SEs 0.3 % of the time, Σy² beyond 3 SDs as rarely, independently)
    assert any("production_kg" in w or "electricity_kwh" in w for w in said)
    stats.save(tmp_path / "stats.json")
    path = KG_BOUNDS.save(tmp_path / "bounds.json")
    result = run_cli("solve", tmp_path / "stats.json", "--dp-epsilon", 1, "--dp-delta", 1e-6, "--bounds", path,
                     "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    assert "hefed: warning: " in result.stderr
    assert "PrivacyNoiseWarning" not in result.stderr  # said once, as the CLI says things, not as a traceback
    assert json.loads((tmp_path / "m.json").read_text())["differential_privacy"]["warnings"]


def test_noise_that_makes_the_gram_indefinite_is_refused(tmp_path):
    """Sixty rows of eight features against bounds a hundred times wider than the data: the noised Gram is then
    close to a random symmetric 9×9 matrix, positive definite too rarely to matter (0 of 3000 tries), and a
    negative variance would follow. Refused, nothing clipped or written."""
    rng = np.random.default_rng(3)
    columns = [f"x{i}" for i in range(8)]
    frame = pd.DataFrame(np.round(rng.uniform(0, 10, (60, 8)), 2), columns=columns)
    frame["y"] = np.round(frame.sum(axis=1) + rng.normal(size=60), 2)
    stats = hefed.compute_statistics(frame, "y")
    loose = Bounds({**{c: (0.0, 1e3) for c in columns}, "y": (-1e4, 1e4)})
    with pytest.raises(PrivacyNoiseError, match="not positive definite|does not exceed") as refused:
        dp_solve(stats, DifferentialPrivacy(1.0, 1e-6, loose))
    assert set(refused.value.parameters) == {"dp_epsilon", "bounds"}
    stats.save(tmp_path / "stats.json")
    result = run_cli("solve", tmp_path / "stats.json", "--dp-epsilon", 1, "--dp-delta", 1e-6, "--bounds",
                     loose.save(tmp_path / "b.json"), "--out", tmp_path / "m.json")
    assert result.returncode == 1 and "the DP noise swamps the data" in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_cli_prints_the_accounting(tmp_path, well_scaled):
    well_scaled.save(tmp_path / "stats.json")
    path = WIDE.save(tmp_path / "bounds.json")
    result = run_cli("solve", tmp_path / "stats.json", "--dp-epsilon", 1, "--dp-delta", 1e-6, "--bounds", path,
                     "--standardize")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("rho=0.0243", "NOT checked", "sum y*y", "DP-noise SE", "from the noised statistics",
                   "not covered"):
        assert needle in out, needle
    as_json = run_cli("solve", tmp_path / "stats.json", "--dp-epsilon", 1, "--dp-delta", 1e-6, "--bounds", path,
                      "--json")
    assert json.loads(as_json.stdout)["differential_privacy"]["rho"] == pytest.approx(0.0243559703595384, rel=1e-6)


# --- clipping and the bounds file ----------------------------------------------------------------
def test_clip_counts_and_clips_exactly():
    frame = pd.DataFrame({"a": [-1.0, 5.0, 11.0], "b": [0.0, 10.0, 3.0], "y": [0.0, 50.0, -30.0]})
    clipped, changed = BOUNDS.clip(frame, ["a", "b", "y"])
    assert changed == 4
    assert clipped["a"].tolist() == [0.0, 5.0, 10.0]
    assert clipped["y"].tolist() == [0.0, 40.0, -20.0]
    with pytest.raises(UsageError, match="no bounds"):
        BOUNDS.clip(frame.assign(c=1.0), ["c"])


def test_encrypt_table_clips_before_statistics():
    keys = hefed.generate_keypair(1024, insecure_test_key=True)
    frame = _frame().assign(a=lambda f: f["a"] * 2)  # half the rows exceed a's bound
    result = hefed.encrypt_table(frame, "y", keys[0], features=["a", "b"], factory_id="f1",
                                 cleaning=hefed.Cleaning(bounds=BOUNDS))
    expected = hefed.compute_statistics(BOUNDS.clip(frame, ["a", "b", "y"])[0], "y", ["a", "b"])
    stats = hefed.decrypt_statistics(result.bundle, keys[1], min_contributors=1, allow_unsigned=True)
    assert stats.gram == expected.gram
    assert result.report.clipped_cells == int((frame["a"] > 10).sum())


def test_bounds_file_validation(tmp_path):
    BOUNDS.save(tmp_path / "b.json")
    assert Bounds.load(tmp_path / "b.json").columns == BOUNDS.columns
    for bad in ({"a": [1, 0]}, {"a": [0]}, {"a": ["x", 1]}, {}):
        (tmp_path / "bad.json").write_text(json.dumps({"format": "hefed.bounds", "version": 1, "columns": bad}))
        with pytest.raises(InvalidFileError):
            Bounds.load(tmp_path / "bad.json")
