"""Review of issue 15 (certified inference with FLINT; DJN table, helper process, threaded CRT).

Passing tests pin claims that hold (each can fail). The findings of the review (A1–A6, B1, B2) were
strict xfails stating the attack; they were fixed and now pass as the attacks refused.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed.models._certified import PooledLeastSquares
from hefed.models._inference import ExactParts, inference_from_exact
from hefed.primitives import djn, encryption
from hefed.primitives.paillier import decrypt_raw_many

sys.path.insert(0, str(Path(__file__).parent))
from test_encoding_defaults import load_nist, nist_frame  # noqa: E402

DATA = Path(__file__).parent / "data"
SCALARS = ("ssr", "ess", "rsquared", "rsquared_adj", "fvalue", "mse_model", "mse_resid", "resid_std_err",
           "llf", "aic", "bic", "centered_tss", "uncentered_tss")


# --- helpers ---------------------------------------------------------------------------------------------
def _stats(frame: pd.DataFrame, features: list[str]) -> hefed.SufficientStatistics:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hefed.compute_statistics(frame, "y", features)


def _reference(stats, ridge: Fraction, fit_intercept: bool):
    problem = PooledLeastSquares(stats, ridge, fit_intercept)
    return inference_from_exact(ExactParts(problem=problem), target=stats.target, param_names=problem.param_names,
                                nobs=stats.n, ridge=ridge, fit_intercept=fit_intercept, condition=math.nan)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _differences(stats, ridge: Fraction = Fraction(0), fit_intercept: bool = True) -> list[tuple]:
    """Every float64 of solve() + inference() that differs from exact rational arithmetic."""
    start = time.perf_counter()
    model = hefed.solve(stats, ridge=ridge, fit_intercept=fit_intercept)
    got = model.inference()
    cov = got.cov_params() if (ridge == 0 and got.df_resid > 0) else None
    elapsed = time.perf_counter() - start
    want = _reference(stats, ridge, fit_intercept)
    bad: list[tuple] = []
    for name in ("params", "bse", "tvalues"):
        bad += [(name, i, a, b) for i, (a, b) in enumerate(zip(getattr(got, name), getattr(want, name), strict=True))
                if not _same(a, b)]
    bad += [(name, getattr(got, name), getattr(want, name)) for name in SCALARS
            if not _same(getattr(got, name), getattr(want, name))]
    if cov is not None:
        ref = want.cov_params()
        if not np.array_equal(cov, ref, equal_nan=True):
            bad.append(("cov_params", cov, ref))
    if model.coef_.tolist() != [float(c) for c in model.coef_exact_]:
        bad.append(("coef_",))
    if model.intercept_ != float(model.intercept_exact_):
        bad.append(("intercept_",))
    if not _same(model.sse_, float(want.ssr_exact)):
        bad.append(("sse_", model.sse_, float(want.ssr_exact)))
    ctss = want.centered_tss_exact
    if not _same(model.r2_, float(1 - want.ssr_exact / ctss) if ctss else math.nan):
        bad.append(("r2_",))
    if got.uncertified:
        bad.append(("uncertified", got.uncertified))
    if elapsed > 10:
        bad.append(("slow", elapsed))
    return bad


def _frame(rng, n: int, d: int, denominator: int = 4) -> tuple[pd.DataFrame, list[str]]:
    features = [f"x{i}" for i in range(d)]
    frame = pd.DataFrame(rng.integers(-16, 16, (n, d)) / denominator, columns=features)
    frame["y"] = frame.sum(axis=1) / 3 + rng.integers(-8, 8, n) / 8
    return frame, features


# === A. certified inference: claims that hold ==========================================================
@pytest.mark.parametrize("name", ["Filip", "Longley", "Wampler1", "Wampler4", "Wampler5", "Pontius", "NoInt1"])
@pytest.mark.parametrize("ridge", [Fraction(0), Fraction(1e-300), Fraction(1e300)])
def test_nist_sets_equal_exact_rational_arithmetic(name, ridge) -> None:
    """The hardest StRD sets (Filip: degree-10 polynomial; Wampler1: a perfect fit), OLS, tiny and huge
    ridge, with and without the intercept: every float64 equals the exact rational reference."""
    data = load_nist(name)
    stats = _stats(nist_frame(data), data.features)
    for fit_intercept in (data.intercept, not data.intercept):
        assert _differences(stats, ridge, fit_intercept) == [], (name, fit_intercept)


def test_hard_designs_equal_exact_rational_arithmetic() -> None:
    rng = np.random.default_rng(0)
    n = 30
    cases = {}
    wild = pd.DataFrame({"a": np.round(rng.normal(size=n), 3) * 1e-9, "b": np.round(rng.normal(size=n)) * 1e12,
                         "c": rng.integers(-5, 5, n) / 4})
    wild["y"] = wild.c + np.round(rng.normal(size=n), 2)
    cases["wild scales 1e-9 / 1e12"] = (wild, ["a", "b", "c"])
    a = rng.integers(-100, 100, n) / 8
    near = pd.DataFrame({"a": a, "b": a + np.r_[2.0**-40, np.zeros(n - 1)], "c": rng.integers(-3, 3, n) / 2})
    near["y"] = a + rng.integers(-8, 8, n) / 16
    cases["near collinear (2^-40)"] = (near, ["a", "b", "c"])
    tight = pd.DataFrame({"a": [1.0, 2.0, 3.0, 5.0], "b": [0.5, -1, 2, 3], "y": [1.0, 0.25, 3.0, -2.0]})
    cases["n = k + 1"] = (tight, ["a", "b"])
    perfect = pd.DataFrame({"a": rng.integers(-8, 8, n) / 4, "b": rng.integers(-8, 8, n) / 4})
    perfect["y"] = perfect.a  # a perfect fit with an exact zero coefficient
    cases["perfect fit, zero coefficient"] = (perfect, ["a", "b"])
    constant = pd.DataFrame({"a": rng.integers(-8, 8, n) / 4, "y": 2.5})
    cases["constant y"] = (constant, ["a"])
    ortho = pd.DataFrame({"a": np.resize([1.0, -1.0], 32), "b": np.resize([1.0, 1.0, -1.0, -1.0], 32)})
    ortho["y"] = 1 + ortho.a + rng.integers(-8, 8, 32) / 4
    cases["orthogonal"] = (ortho, ["a", "b"])
    for label, (frame, features) in cases.items():
        stats = _stats(frame, features)
        for ridge in (Fraction(0), Fraction(1, 10**300), Fraction(7, 3)):
            for fit_intercept in (True, False):
                assert _differences(stats, ridge, fit_intercept) == [], (label, ridge, fit_intercept)


def test_k_greater_than_n_with_ridge_and_singular_ols() -> None:
    rng = np.random.default_rng(1)
    frame, features = _frame(rng, 5, 12)
    stats = _stats(frame, features)
    assert _differences(stats, Fraction(1, 1000)) == []
    assert _differences(stats, Fraction(1, 10**300)) == []
    start = time.perf_counter()
    with pytest.raises(hefed.errors.SingularSystemError, match="linearly dependent"):
        hefed.solve(stats)
    assert time.perf_counter() - start < 10


def test_exactly_collinear_ols_names_the_columns_quickly() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.integers(-8, 8, 30) / 4})
    frame["b"], frame["y"] = 2 * frame.a, frame.a + rng.integers(-8, 8, 30) / 8
    start = time.perf_counter()
    with pytest.raises(hefed.errors.SingularSystemError, match=r"'a', 'b'.*b = 2·a"):
        hefed.solve(_stats(frame, ["a", "b"]))
    assert time.perf_counter() - start < 10


# === A. findings ========================================================================================
def test_noised_statistics_with_an_indefinite_gram_stay_certified() -> None:
    rng = np.random.default_rng(1)
    frame, features = _frame(rng, 40, 3)
    stats = _stats(frame, features)
    noised = copy.deepcopy(stats)
    a = noised.columns.index("x0")
    noised.gram[a][a] //= 50  # what a large negative noise draw on Σx0² does
    assert _differences(noised) == []


def test_n_equals_k_mse_model_matches_the_reference() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, -1, 2], "y": [1.0, 0.25, 3.0]})
    assert _differences(_stats(frame, ["a", "b"])) == []


def test_a_tiny_ridge_on_a_collinear_design_is_solved_not_called_singular() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.integers(-8, 8, 30) / 4})
    frame["b"], frame["y"] = 2 * frame.a, frame.a + rng.integers(-8, 8, 30) / 8
    stats = _stats(frame, ["a", "b"])
    ridge = Fraction(1, 2**9001)
    assert not PooledLeastSquares(stats, ridge, True).is_singular(PooledLeastSquares(stats, ridge, True).M)
    assert _differences(stats, ridge) == []


def test_negative_ssr_has_no_likelihood() -> None:
    rng = np.random.default_rng(1)
    frame, features = _frame(rng, 40, 3)
    noised = copy.deepcopy(_stats(frame, features))
    noised.gram[-1][-1] //= 4  # a large negative noise draw on Σy²
    res = hefed.solve(noised).inference()
    assert res.ssr < 0
    assert math.isnan(res.llf) and math.isnan(res.aic) and math.isnan(res.bic)


# === A. model.json version 2 ============================================================================
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    frame, features = _frame(rng, 30, 3)
    model = hefed.solve(_stats(frame, features))
    path = tmp_path_factory.mktemp("m") / "model.json"
    model.save(path)
    return model, path, json.loads(path.read_text())


def _load_edited(tmp_path, obj, raw=None):
    path = tmp_path / "edited.json"
    path.write_text(raw if raw is not None else json.dumps(obj))
    return hefed.LinearModel.load(path)


@pytest.mark.parametrize("edit", [
    "params", "coef", "cov_rows", "cov_row", "cov_string", "bse_nan", "bse_inf", "ssr_string",
    "missing_params", "missing_conf_int", "missing_version", "inference_list"])
def test_edited_v2_files_are_refused(saved_model, tmp_path, edit) -> None:
    _, _, base = saved_model
    obj = copy.deepcopy(base)
    inf = obj["inference"]
    if edit == "params":
        inf["params"][1] *= 1 + 1e-12
    elif edit == "coef":
        obj["coef"][0] *= 1 + 1e-12
    elif edit == "cov_rows":
        inf["cov_params"] = inf["cov_params"][:-1]
    elif edit == "cov_row":
        inf["cov_params"][2] = inf["cov_params"][2][:-1]
    elif edit == "cov_string":
        inf["cov_params"][1][1] = "0.5"
    elif edit == "bse_nan":
        inf["bse"][0] = math.nan
    elif edit == "bse_inf":
        inf["bse"][0] = math.inf
    elif edit == "ssr_string":
        inf["ssr"] = "1"
    elif edit == "missing_params":
        del inf["params"]
    elif edit == "missing_conf_int":
        del inf["conf_int_95"]
    elif edit == "missing_version":
        del inf["version"]
    elif edit == "inference_list":
        obj["inference"] = []
    with pytest.raises(hefed.errors.InvalidFileError) as caught:
        _load_edited(tmp_path, obj)
    assert "\n" not in str(caught.value)


def test_huge_integer_in_a_v2_file_is_refused(saved_model, tmp_path) -> None:
    _, _, base = saved_model
    obj = copy.deepcopy(base)
    obj["inference"]["ssr"] = 1
    raw = json.dumps(obj).replace('"ssr": 1,', '"ssr": 1' + "0" * 400 + ",")
    with pytest.raises(hefed.errors.InvalidFileError):
        _load_edited(tmp_path, obj, raw)


@pytest.mark.parametrize("edit", ["cov_vs_bse", "cov_asymmetric", "param_names", "target", "nobs", "fit_intercept"])
def test_inconsistent_v2_records_are_refused(saved_model, tmp_path, edit) -> None:
    _, _, base = saved_model
    obj = copy.deepcopy(base)
    inf = obj["inference"]
    if edit == "cov_vs_bse":
        inf["cov_params"][1][1] *= 4
    elif edit == "cov_asymmetric":
        inf["cov_params"][0][1] += 1.0
    elif edit == "param_names":
        inf["param_names"][-1] = "not_a_feature"
    elif edit == "target":
        inf["target"] = "other"
    elif edit == "nobs":
        inf["nobs"] += 1
    elif edit == "fit_intercept":
        inf["fit_intercept"] = False
    with pytest.raises(hefed.errors.InvalidFileError):
        _load_edited(tmp_path, obj)


def test_v2_round_trip_v1_load_and_pickling(saved_model) -> None:
    model, path, _ = saved_model
    loaded = hefed.LinearModel.load(path)
    np.testing.assert_array_equal(loaded.inference().cov_params(), model.inference().cov_params())
    old = hefed.LinearModel.load(DATA / "model_v1.json")
    assert old.has_exact and len(old.coef_exact_) == 3
    again = pickle.loads(pickle.dumps(model))
    assert again.coef_.tolist() == model.coef_.tolist() and again.coef_exact_ == model.coef_exact_
    np.testing.assert_array_equal(again.inference().cov_params(), model.inference().cov_params())
    fresh = hefed.solve(model.inference()._exact._problem.stats)  # exact rationals not computed yet
    assert pickle.loads(pickle.dumps(fresh)).coef_exact_ == model.coef_exact_
    estimator = pickle.loads(pickle.dumps(hefed.FederatedLinearRegression()))
    assert isinstance(estimator, hefed.FederatedLinearRegression)


# === B. DJN encryption ==================================================================================
@pytest.fixture(scope="module")
def keypair():
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture
def helper(monkeypatch):
    monkeypatch.setenv("HEFED_WORKERS", "2")
    encryption.stop_helper()
    yield encryption._HELPER
    encryption.stop_helper()


def test_exponents_are_uniform_over_exactly_half_the_modulus_bits(keypair) -> None:
    """4096 exponents from random_digits: the bit length is ⌈|n|/2⌉ (the top bit set about half the time, never a
    bit above it) and every bit position is 1 with frequency 1/2 ± 5σ (a stuck or masked-off bit fails)."""
    pub, _ = keypair
    table = djn.FixedBaseTable(pub.n, max(djn.WINDOWS))
    assert table.bits == (pub.n.bit_length() + 1) // 2 >= pub.n.bit_length() // 2
    count = 4096
    exps = [sum(d << (table.window * i) for i, d in enumerate(digits)) for digits in table.random_digits(count)]
    assert max(exps) < 1 << table.bits
    ones = np.zeros(table.bits)
    for e in exps:
        ones += np.array([(e >> b) & 1 for b in range(table.bits)])
    sigma = math.sqrt(count) / 2
    assert np.all(np.abs(ones - count / 2) < 5 * sigma), np.argmax(np.abs(ones - count / 2))
    # and the table raises hs to exactly that exponent
    digits = table.random_digits(1)[0]
    exponent = sum(d << (table.window * i) for i, d in enumerate(digits))
    assert table.power(exponent) == pow(int(table.hs), exponent, pub.n * pub.n)


def test_decryption_equals_phe_on_edge_ciphertexts(keypair) -> None:
    pub, priv = keypair
    n, p, q = pub.n, priv.p, priv.q
    nsq = n * n
    edges = [0, 1, 2, n - 1, n, n + 1, p, q, p * p, n * p, nsq - 1, nsq, nsq + 1, 3 * nsq + 5, -1, -n - 1, 2**5000 + 7]
    want = [priv.raw_decrypt(c) for c in edges]
    assert decrypt_raw_many(priv, edges) == want
    assert decrypt_raw_many(priv, edges, threads=False) == want
    assert encryption.decrypt_ciphertexts(priv, edges) == want


def test_two_threads_under_two_keys_decrypt_to_their_own_plaintexts(keypair) -> None:
    import threading

    keys = [keypair, hefed.generate_keypair(1024, insecure_test_key=True)]
    errors: list[object] = []

    def run(pub, priv, base):
        try:
            for i in range(20):
                values = [base + i + j for j in range(33)]
                cts = encryption.encrypt_plaintexts(pub, values)
                if [priv.raw_decrypt(c) for c in cts] != values:
                    errors.append(("wrong", base))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(*key, 1000 * (k + 1))) for k, key in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _interrupt_first_local_part(monkeypatch):
    class Interrupted(BaseException):
        pass

    original = djn.FixedBaseTable.encrypt_many
    state = {"armed": True}

    def encrypt_many(self, plaintexts):
        if state["armed"]:
            state["armed"] = False
            raise Interrupted
        return original(self, plaintexts)

    monkeypatch.setattr(djn.FixedBaseTable, "encrypt_many", encrypt_many)
    return Interrupted


def test_an_interrupted_bundle_does_not_poison_the_next(keypair, helper, monkeypatch) -> None:
    pub, priv = keypair
    assert encryption.warm_up(pub)
    interrupted = _interrupt_first_local_part(monkeypatch)
    with pytest.raises(interrupted):
        helper.encrypt(pub.n, [7] * 3000)  # the helper is still encrypting its part when this returns
    fresh = list(range(100, 3100))
    cts = helper.encrypt(pub.n, fresh)
    assert [priv.raw_decrypt(c) for c in cts] == fresh


@pytest.mark.slow
def test_a_forked_child_does_not_share_the_helper(keypair, helper) -> None:
    pub, priv = keypair
    assert encryption.warm_up(pub)
    wrong = 0
    for _ in range(10):  # the replies cross as soon as both processes exchange at once: usually the first trial
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            code = 4
            try:
                bad = 0
                for _ in range(5):
                    bad += [priv.raw_decrypt(c) for c in helper.encrypt(pub.n, [1] * 400)] != [1] * 400
                code = 3 if bad else 0
            finally:
                os._exit(code)
        for _ in range(5):
            wrong += [priv.raw_decrypt(c) for c in helper.encrypt(pub.n, [2] * 400)] != [2] * 400
        _, status = os.waitpid(pid, 0)
        wrong += os.waitstatus_to_exitcode(status) != 0
        if wrong:
            break
    assert wrong == 0


@pytest.mark.slow
def test_helper_stops_when_its_parent_is_killed(tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, signal
        import hefed
        from hefed.primitives import encryption
        if __name__ == "__main__":
            os.environ["HEFED_WORKERS"] = "2"
            pub, _ = hefed.generate_keypair(1024, insecure_test_key=True)
            assert encryption.warm_up(pub)
            print(encryption._HELPER.worker.process.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    state = "?"
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return  # gone
        if state == "Z":  # exited; only this container's init does not reap orphans
            return
        time.sleep(0.1)
    pytest.fail(f"helper {pid} still running (state {state}) after its parent was killed")
