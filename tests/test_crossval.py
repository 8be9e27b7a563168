"""Ridge by exact K-fold cross-validation from (encrypted) per-fold statistics.

The validation curve must be scikit-learn's ``cross_val_score(Ridge(α), cv=PredefinedSplit)``
on the pooled rows, the chosen α ``RidgeCV``'s, and each mean MSE the exact rational.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli, run_cli_parallel
from kind_helpers import decrypt_fold_statistics, encrypt_fold_statistics, load_decrypted
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import PredefinedSplit, cross_val_score

import hefed
from hefed.data import compute_fold_statistics, compute_statistics
from hefed.errors import SchemaMismatchError, SingularSystemError, UsageError
from hefed.roles import cross_validate_ridge, decrypt_bundle, solve_auto_ridge, solve_ridge_cv
from hefed.stats import FoldStatistics, fold_assignment

TARGET = "y"
FEATURES = ["x1", "x2", "x3"]
GAS_TURBINE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"


# --------------------------------------------------------------------------------------
# Fixtures and helpers (local to this file)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cv_keys():
    return hefed.generate_keypair(1024, insecure_test_key=True)


def _factories(seed: int = 7, sizes: tuple[int, ...] = (37, 52, 29)) -> dict[str, pd.DataFrame]:
    """Small, noisy, collinear data (so that the penalty matters); every value dyadic."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i, n in enumerate(sizes):
        x1 = rng.integers(-512, 512, n) / 64
        x2 = x1 + rng.integers(-32, 32, n) / 64  # nearly collinear with x1
        x3 = rng.integers(-256, 256, n) / 32 + i
        y = 2 + 0.5 * x1 + 0.25 * x2 - 0.125 * x3 + rng.integers(-1024, 1024, n) / 128
        frames[f"plant-{i}"] = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, TARGET: y})
    return frames


@pytest.fixture
def factories() -> dict[str, pd.DataFrame]:
    return _factories()


def _pooled_fold_statistics(frames: dict[str, pd.DataFrame], k: int, seed: int, target: str = TARGET,
                            features: list[str] | None = None) -> FoldStatistics:
    """Per-fold sums of each factory's plaintext fold statistics."""
    per_factory = [compute_fold_statistics(f, target, features or FEATURES, factory_id=name, folds=k, seed=seed)
                   for name, f in frames.items()]
    folds = []
    for j in range(k):
        total = per_factory[0].folds[j]
        for other in per_factory[1:]:
            total = total + other.folds[j]
        folds.append(total)
    return FoldStatistics(folds, seed)


def _pooled_xy_folds(frames, k, seed, target=TARGET, features=None):
    features = features or FEATURES
    pooled = pd.concat(frames.values(), ignore_index=True)
    fold_ids = np.concatenate([fold_assignment(len(f), k, seed) for f in frames.values()])
    return pooled[features].to_numpy(np.float64), pooled[target].to_numpy(np.float64), fold_ids


def _sklearn_curve(X, y, fold_ids, alphas):
    cv = PredefinedSplit(fold_ids)
    means = [-cross_val_score(Ridge(alpha=a), X, y, cv=cv, scoring="neg_mean_squared_error").mean() for a in alphas]
    chosen = RidgeCV(alphas=alphas, cv=cv, scoring="neg_mean_squared_error").fit(X, y).alpha_
    return np.array(means), float(chosen)


def _fraction_solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Gauss–Jordan elimination over the rationals (independent of hefed's Bareiss solver)."""
    m = len(rhs)
    aug = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(m):
        pivot = next(r for r in range(col, m) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        for r in range(m):
            if r != col and aug[r][col] != 0:
                factor = aug[r][col] / aug[col][col]
                aug[r] = [a - factor * b for a, b in zip(aug[r], aug[col], strict=True)]
    return [aug[i][m] / aug[i][i] for i in range(m)]


def _fraction_cv_mse(X: np.ndarray, y: np.ndarray, fold_ids: np.ndarray, alpha: float | Fraction) -> Fraction:
    """Mean over folds of the exact held-out MSE of the exact ridge fit (unpenalised intercept)."""
    a = Fraction(alpha)
    rows = [[Fraction(1), *(Fraction(float(v)) for v in row)] for row in X]
    ys = [Fraction(float(v)) for v in y]
    p = len(rows[0])
    per_fold = []
    for k in sorted(set(fold_ids.tolist())):
        train = [i for i in range(len(ys)) if fold_ids[i] != k]
        test = [i for i in range(len(ys)) if fold_ids[i] == k]
        matrix = [[sum((rows[r][i] * rows[r][j] for r in train), Fraction(0)) + (a if i == j and i > 0 else 0)
                   for j in range(p)] for i in range(p)]
        rhs = [sum((rows[r][i] * ys[r] for r in train), Fraction(0)) for i in range(p)]
        theta = _fraction_solve(matrix, rhs)
        sse = sum(((ys[r] - sum((t * v for t, v in zip(theta, rows[r], strict=True)), Fraction(0))) ** 2
                   for r in test), Fraction(0))
        per_fold.append(sse / len(test))
    return sum(per_fold, Fraction(0)) / len(per_fold)


# --------------------------------------------------------------------------------------
# Fold assignment
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (5, 0), (5, 1), (10, 12345), (7, 2**63 - 1)])
def test_fold_assignment_is_deterministic_and_prefix_stable(k, seed):
    big = fold_assignment(1000, k, seed)
    assert np.array_equal(big, fold_assignment(1000, k, seed))
    assert np.array_equal(fold_assignment(10, k, seed), big[:10])
    assert np.array_equal(fold_assignment(999, k, seed), big[:999])
    assert big.dtype.kind == "i" and big.min() >= 0 and big.max() == k - 1
    assert set(big.tolist()) == set(range(k))


def test_fold_assignment_depends_on_seed():
    a, b, c = (fold_assignment(1000, 5, s) for s in (0, 1, 2))
    assert not np.array_equal(a, b) and not np.array_equal(b, c) and not np.array_equal(a, c)
    # and not merely a rotation of the same folds: agreement near chance (1/5)
    assert 0.1 < np.mean(a == b) < 0.3


def test_fold_assignment_is_roughly_balanced():
    n, k = 20000, 7
    counts = np.bincount(fold_assignment(n, k, 4), minlength=k)
    assert np.all(np.abs(counts - n / k) < 0.05 * n / k), counts
    # and not a round-robin: consecutive rows are not in consecutive folds
    folds = fold_assignment(200, k, 4)
    assert not np.array_equal(folds, np.arange(200) % k)


@pytest.mark.parametrize("k", [0, 1, -3, 2.0, "5"])
def test_fold_assignment_refuses_bad_k(k):
    with pytest.raises(UsageError):
        fold_assignment(10, k)


# --------------------------------------------------------------------------------------
# Fold statistics, plaintext and encrypted
# --------------------------------------------------------------------------------------


def test_fold_statistics_total_equals_statistics_exactly(factories):
    frame = factories["plant-1"]
    folds = compute_fold_statistics(frame, TARGET, FEATURES, factory_id="plant-1", folds=4, seed=9)
    whole = compute_statistics(frame, TARGET, FEATURES, factory_id="plant-1")
    assert folds.k == 4 and folds.seed == 9 and folds.n == len(frame)
    assert folds.total().gram == whole.gram
    assert folds.total().columns == whole.columns
    assert folds.total().contributors == ["plant-1"]
    assignment = fold_assignment(len(frame), 4, 9)
    for k, fold in enumerate(folds.folds):
        assert fold.gram == compute_statistics(frame[assignment == k], TARGET, FEATURES).gram
    # total() leaves the folds themselves untouched
    assert folds.folds[0].gram == compute_statistics(frame[assignment == 0], TARGET, FEATURES).gram


def test_encrypted_fold_bundles_decrypt_to_per_fold_sums(cv_keys, factories):
    public_key, private_key = cv_keys
    bundles = [encrypt_fold_statistics(f, TARGET, public_key, FEATURES, factory_id=name, folds=4, seed=5)
               for name, f in factories.items()]
    assert {b.kind for b in bundles} == {"fold_statistics"}
    assert bundles[0].parameters == {"folds": 4, "fold_seed": 5}
    agg = hefed.aggregate(bundles)
    decrypted = decrypt_fold_statistics(agg, private_key)
    expected = _pooled_fold_statistics(factories, 4, 5)
    assert decrypted.k == 4 and decrypted.seed == 5
    assert [f.gram for f in decrypted.folds] == [f.gram for f in expected.folds]
    assert decrypted.contributors == list(factories)
    assert decrypted.n == sum(len(f) for f in factories.values())
    pooled = compute_statistics(pd.concat(factories.values(), ignore_index=True), TARGET, FEATURES)
    assert decrypted.total().gram == pooled.gram
    assert isinstance(decrypt_bundle(agg, private_key, allow_unsigned=True), FoldStatistics)


def test_encrypt_table_with_folds_and_file_round_trip(cv_keys, factories, tmp_path):
    public_key, private_key = cv_keys
    bundles = [hefed.encrypt_table(f, TARGET, public_key, features=FEATURES, factory_id=name,
                                   request=hefed.FoldStatisticsRequest(folds=3, seed=2)).bundle
               for name, f in factories.items()]
    decrypted = decrypt_bundle(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    assert isinstance(decrypted, FoldStatistics)
    assert [f.gram for f in decrypted.folds] == [f.gram for f in _pooled_fold_statistics(factories, 3, 2).folds]
    decrypted.save(tmp_path / "folds.json")
    loaded = load_decrypted(tmp_path / "folds.json")
    assert isinstance(loaded, FoldStatistics)
    assert [f.gram for f in loaded.folds] == [f.gram for f in decrypted.folds] and loaded.seed == 2
    # plain solve of fold statistics is the solve of their total
    assert hefed.solve(loaded, ridge=1.5).coef_exact_ == hefed.solve(decrypted.total(), ridge=1.5).coef_exact_


def test_factory_with_empty_folds_still_contributes(cv_keys, factories):
    public_key, private_key = cv_keys
    frames = {**factories, "tiny": factories["plant-0"].iloc[:2].copy()}  # 2 rows, 5 folds: 3 empty
    assert len(set(fold_assignment(2, 5, 0).tolist())) == 2
    bundles = [encrypt_fold_statistics(f, TARGET, public_key, FEATURES, factory_id=n, folds=5)
               for n, f in frames.items()]
    decrypted = decrypt_fold_statistics(hefed.aggregate(bundles), private_key)
    assert [f.gram for f in decrypted.folds] == [f.gram for f in _pooled_fold_statistics(frames, 5, 0).folds]
    assert decrypted.n == sum(len(f) for f in frames.values())


def test_empty_pooled_fold_is_a_usage_error(factories):
    fold_stats = _pooled_fold_statistics({"a": factories["plant-0"].iloc[:3]}, 5, 0)
    assert min(f.n for f in fold_stats.folds) == 0
    with pytest.raises(UsageError, match="empty"):
        cross_validate_ridge(fold_stats, [1.0])


def test_fold_bundles_with_different_folds_or_seeds_or_kinds_never_mix(cv_keys, factories):
    public_key = cv_keys[0]
    a, b, c = (factories[n] for n in factories)
    base = encrypt_fold_statistics(a, TARGET, public_key, FEATURES, factory_id="a", folds=4, seed=1)
    for other in (
        encrypt_fold_statistics(b, TARGET, public_key, FEATURES, factory_id="b", folds=4, seed=2),
        encrypt_fold_statistics(b, TARGET, public_key, FEATURES, factory_id="b", folds=5, seed=1),
        hefed.encrypt_statistics(c, TARGET, public_key, FEATURES, factory_id="c"),
    ):
        with pytest.raises(SchemaMismatchError):
            hefed.aggregate([base, other])


def test_folds_refused_outside_statistics_mode(tmp_path, cv_keys, factories):
    path = tmp_path / "p.csv"
    factories["plant-0"].to_csv(path, index=False)
    hefed.save_public_key(cv_keys[0], tmp_path / "pub.json")
    result = run_cli("encrypt", path, "--target", TARGET, "--public-key", tmp_path / "pub.json", "--factory-id", "p",
                     "--mode", "coefficients", "--folds", "3", "--out", tmp_path / "b.json")
    assert result.returncode == 2 and "--folds" in result.stderr


# --------------------------------------------------------------------------------------
# The validation curve against scikit-learn, and exactness
# --------------------------------------------------------------------------------------

SYNTHETIC_ALPHAS = [0.0, 0.01, 1.0, 10.0, 30.0, 100.0, 1000.0, 1e5]


@pytest.mark.parametrize(("k", "seed"), [(5, 0), (3, 17)])
def test_validation_curve_matches_sklearn_on_synthetic_data(factories, k, seed):
    fold_stats = _pooled_fold_statistics(factories, k, seed)
    result = cross_validate_ridge(fold_stats, SYNTHETIC_ALPHAS)
    X, y, fold_ids = _pooled_xy_folds(factories, k, seed)
    means, chosen = _sklearn_curve(X, y, fold_ids, SYNTHETIC_ALPHAS)
    np.testing.assert_allclose(result.mean_mse, means, rtol=1e-10)
    assert result.alpha_ == chosen
    assert result.alphas[result.best_index] == result.alpha_
    assert result.mean_mse[result.best_index] == min(result.mean_mse)
    for alpha, row in zip(SYNTHETIC_ALPHAS, result.fold_mse, strict=True):
        per_fold = -cross_val_score(Ridge(alpha=alpha), X, y, cv=PredefinedSplit(fold_ids),
                                    scoring="neg_mean_squared_error")
        np.testing.assert_allclose(row, per_fold, rtol=1e-10)
    # the final model is the ridge fit on all rows with the chosen alpha
    model, curve = solve_ridge_cv(fold_stats, SYNTHETIC_ALPHAS)
    assert curve.alpha_ == result.alpha_ and model.ridge == result.alpha_
    np.testing.assert_allclose(model.coef_, Ridge(alpha=result.alpha_).fit(X, y).coef_, rtol=1e-9)
    assert model.coef_exact_ == hefed.solve(fold_stats.total(), ridge=result.alpha_).coef_exact_


def test_validation_curve_without_intercept_matches_sklearn(factories):
    alphas = [0.0, 1.0, 100.0, 1e4]
    result = cross_validate_ridge(_pooled_fold_statistics(factories, 4, 0), alphas, fit_intercept=False)
    X, y, fold_ids = _pooled_xy_folds(factories, 4, 0)
    cv = PredefinedSplit(fold_ids)
    means = [-cross_val_score(Ridge(alpha=a, fit_intercept=False), X, y, cv=cv,
                              scoring="neg_mean_squared_error").mean() for a in alphas]
    np.testing.assert_allclose(result.mean_mse, means, rtol=1e-10)
    chosen = RidgeCV(alphas=alphas, fit_intercept=False, cv=cv, scoring="neg_mean_squared_error").fit(X, y).alpha_
    assert result.alpha_ == chosen


def test_synthetic_curve_has_an_interior_minimum(factories):
    """The data is such that the choice is not trivially the smallest or largest α (keeps the test sharp)."""
    result = cross_validate_ridge(_pooled_fold_statistics(factories, 5, 0), SYNTHETIC_ALPHAS)
    assert 0 < result.best_index < len(SYNTHETIC_ALPHAS) - 1, result.mean_mse


def test_mean_mse_is_the_exact_rational(factories):
    k, seed, alpha = 4, 8, 2.5
    result = cross_validate_ridge(_pooled_fold_statistics(factories, k, seed), [0.1, alpha])
    X, y, fold_ids = _pooled_xy_folds(factories, k, seed)
    exact = _fraction_cv_mse(X, y, fold_ids, alpha)
    assert result.mean_mse_exact[1] == exact
    assert result.mean_mse[1] == float(exact)
    # 0.1 is the dyadic rational the float denotes, not 1/10
    assert result.mean_mse_exact[0] == _fraction_cv_mse(X, y, fold_ids, 0.1)
    assert result.mean_mse_exact[0] != _fraction_cv_mse(X, y, fold_ids, Fraction(1, 10))


def test_singular_alpha_zero_is_skipped_not_chosen():
    k, seed = 4, 1
    frames = _factories(seed=21)
    # x3 is non-zero only in rows of fold 0 at every factory: the split that holds fold 0 out
    # has x3 identically zero, so α = 0 is singular there (α > 0 is not)
    for frame in frames.values():
        frame["x3"] = np.where(fold_assignment(len(frame), k, seed) == 0, frame["x3"], 0.0)
    fold_stats = _pooled_fold_statistics(frames, k, seed)
    result = cross_validate_ridge(fold_stats, [0.0, 1.0, 100.0])
    assert result.mean_mse_exact[0] is None
    assert np.isnan(result.mean_mse[0]) and all(np.isnan(result.fold_mse[0]))
    assert result.alpha_ in (1.0, 100.0) and result.best_index in (1, 2)
    assert result.to_dict()["mean_mse"][0] is None
    # but α = 0 on all rows is fine: the full system is not singular
    hefed.solve(fold_stats.total(), ridge=0.0)
    with pytest.raises(SingularSystemError):
        cross_validate_ridge(fold_stats, [0.0])


@pytest.mark.parametrize("alphas", [[], [-1.0], [1.0, float("nan")]])
def test_bad_alphas_are_refused(factories, alphas):
    with pytest.raises(UsageError):
        cross_validate_ridge(_pooled_fold_statistics(factories, 3, 0), alphas)


def test_auto_ridge_needs_fold_statistics(factories):
    stats = compute_statistics(factories["plant-0"], TARGET, FEATURES)
    with pytest.raises(UsageError, match="fold statistics") as refused:
        solve_auto_ridge(stats, [1.0])
    assert refused.value.parameters == ("folds",)  # the CLI points at --folds


def _gas_turbine_frames() -> dict[str, pd.DataFrame]:
    files = [GAS_TURBINE_DIR / f"gt_{year}.csv" for year in range(2011, 2016)]
    if not all(f.is_file() for f in files):
        pytest.skip(f"gas-turbine data not found in {GAS_TURBINE_DIR}")
    return {f.stem.replace("_", "-"): pd.read_csv(f) for f in files}


def test_validation_curve_matches_sklearn_on_gas_turbine():
    frames = _gas_turbine_frames()
    target = "NOX"
    features = [c for c in next(iter(frames.values())).columns if c != target]
    k, seed = 5, 3
    alphas = [0.01, 10.0, 1000.0, 1e5, 1e7]
    fold_stats = _pooled_fold_statistics(frames, k, seed, target, features)
    result = cross_validate_ridge(fold_stats, alphas)
    X, y, fold_ids = _pooled_xy_folds(frames, k, seed, target, features)
    means, chosen = _sklearn_curve(X, y, fold_ids, alphas)
    np.testing.assert_allclose(result.mean_mse, means, rtol=1e-10)
    assert result.alpha_ == chosen
    assert fold_stats.n == len(y)


# --------------------------------------------------------------------------------------
# CLI, as real subprocesses
# --------------------------------------------------------------------------------------


def test_cli_folds_and_ridge_auto(tmp_path):
    frames = _factories(seed=5, sizes=(44, 31, 58))
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    hefed.save_public_key(public_key, tmp_path / "public_key.json")
    hefed.save_private_key(private_key, tmp_path / "private_key.json")
    commands, bundles = [], []
    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        bundles.append(tmp_path / f"{name}.bundle.json")
        commands.append(["encrypt", tmp_path / f"{name}.csv", "--target", TARGET, "--public-key",
                         tmp_path / "public_key.json", "--factory-id", name, "--out", bundles[-1], "--folds", 4])
    for res in run_cli_parallel(commands):
        assert res.returncode == 0, res.stderr
        assert "fold_statistics bundle" in res.stdout
    for step in (("aggregate", *bundles, "--out", tmp_path / "agg.json"),
                 ("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", tmp_path / "private_key.json",
                  "--out", tmp_path / "folds.json")):
        res = run_cli(*step)
        assert res.returncode == 0, (step[0], res.stderr)
    assert "per-fold statistics" in res.stdout
    res = run_cli("solve", tmp_path / "folds.json", "--ridge", "auto", "--alphas", "0.1,10,1000",
                  "--out", tmp_path / "model.json", "--exact")
    assert res.returncode == 0, res.stderr

    expected_stats = _pooled_fold_statistics(frames, 4, 0)
    expected = cross_validate_ridge(expected_stats, [0.1, 10.0, 1000.0])
    assert "ridge validation curve (4-fold CV, exact)" in " ".join(res.stdout.split())
    lines = res.stdout.splitlines()
    for alpha, mse in zip(expected.alphas, expected.mean_mse, strict=True):
        row = next(line for line in lines if line.strip(" │|").startswith(f"{alpha:g} "))
        assert f"{mse:.8g}" in row
        assert ("← chosen" in row) == (alpha == expected.alpha_)
    obj = json.loads((tmp_path / "model.json").read_text())
    assert obj["ridge"] == expected.alpha_
    model = hefed.solve(expected_stats.total(), ridge=expected.alpha_)
    assert obj["coef"] == [float(c) for c in model.coef_]
    assert [Fraction(c) for c in obj["exact"]["coef"]] == model.coef_exact_

    # --ridge auto on plain statistics: a one-line usage error
    expected_stats.total().save(tmp_path / "statistics.json")
    res = run_cli("solve", tmp_path / "statistics.json", "--ridge", "auto", "--out", tmp_path / "model2.json")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hefed: error:") and "--folds" in err[0]
    assert not (tmp_path / "model2.json").exists()
