"""Differential privacy: clipping to declared bounds, the Gaussian mechanism's scale, labelling."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed.data import Bounds
from hefed.errors import InvalidFileError, UsageError
from hefed.roles import dp_solve, gaussian_sigma


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0, 10, (n, 2)), 2)
    y = np.round(x @ [2.0, -1.0] + 3 + rng.normal(size=n), 2)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y})


BOUNDS = Bounds({"a": (0.0, 10.0), "b": (0.0, 10.0), "y": (-20.0, 40.0)})


def test_gaussian_sigma_formula_and_ranges():
    assert gaussian_sigma(2.0, 0.5, 1e-5) == pytest.approx(2.0 * math.sqrt(2 * math.log(1.25e5)) / 0.5, rel=1e-15)
    for eps, delta in [(0.0, 1e-5), (1.5, 1e-5), (0.5, 0.0), (0.5, 1.0)]:
        with pytest.raises(UsageError):
            gaussian_sigma(1.0, eps, delta)


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


def test_dp_noise_has_the_declared_scale():
    stats = hefed.compute_statistics(_frame(), "y")
    sensitivity = 1 + 10**2 + 10**2 + 40**2
    sigma = gaussian_sigma(sensitivity, 1.0, 1e-5)
    noisy_sums = []
    for _ in range(200):
        model = dp_solve(stats, 1.0, 1e-5, BOUNDS, ridge=1.0)
        assert model.dp_["sigma"] == pytest.approx(sigma)
        assert model.dp_["l2_sensitivity"] == sensitivity
        noisy_sums.append(model.dp_["noisy_n"])
    # the noisy count is clamped at 2 from below; compare the spread of the unclamped draws only
    draws = np.array([v for v in noisy_sums if v > 2], dtype=float)
    assert len(draws) > 50
    # std of a normal truncated at (2 - n)/sigma ≈ -0.5 is about 0.68·sigma; check the order of magnitude
    assert 0.4 * sigma < draws.std() < 1.2 * sigma


def test_dp_model_is_labelled_and_saved(tmp_path):
    stats = hefed.compute_statistics(_frame(), "y")
    model = dp_solve(stats, 0.5, 1e-6, BOUNDS, ridge=1.0)
    assert not model.has_inference
    model.save(tmp_path / "m.json")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["differential_privacy"]["epsilon"] == 0.5
    assert saved["differential_privacy"]["unit"].startswith("adding or removing one row")
    assert hefed.LinearModel.load(tmp_path / "m.json").dp_["delta"] == 1e-6
    plain = hefed.solve(stats, ridge=1.0)
    assert [Fraction(c) for c in model.coef_] != [Fraction(c) for c in plain.coef_]


def test_bounds_file_validation(tmp_path):
    BOUNDS.save(tmp_path / "b.json")
    assert Bounds.load(tmp_path / "b.json").columns == BOUNDS.columns
    for bad in ({"a": [1, 0]}, {"a": [0]}, {"a": ["x", 1]}, {}):
        (tmp_path / "bad.json").write_text(json.dumps({"format": "hefed.bounds", "version": 1, "columns": bad}))
        with pytest.raises(InvalidFileError):
            Bounds.load(tmp_path / "bad.json")
