"""Regression tests for defects a code review found (each was reproduced before its fix)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed._files import check_writable
from hefed.data import split_holdout
from hefed.errors import DataError, InvalidFileError, OutputExistsError, UsageError
from hefed.kinds import Header
from hefed.protocol import Bundle, Roster, enroll, roster_add
from hefed.stats import ONES, Encoding, fold_assignment, statistics_from_arrays


def test_integer_arrays_beyond_2_53_are_refused_not_rounded():
    encoding = Encoding(frac_bits=8, int_bits=64)
    X = np.array([[2**53 + 1], [3]], dtype=np.int64)
    y = np.array([1, 2], dtype=np.int64)
    with pytest.raises(DataError, match="beyond 2\\^53"):
        statistics_from_arrays(X, y, ["a"], "y", encoding)
    small = statistics_from_arrays(np.array([[2**53], [3]], dtype=np.int64), y, ["a"], "y", encoding)
    assert small.exact(ONES, "a") == 2**53 + 3


def test_estimator_refuses_integers_beyond_2_53():
    parties = {f"p{i}": (pd.DataFrame({"a": np.array([2**53 + 1, 1, 2], dtype=np.int64)}), pd.Series([1.0, 2, 3]))
               for i in range(3)}
    with pytest.raises(DataError):
        hefed.FederatedLinearRegression(key_bits=1024, encoding=Encoding(int_bits=60)).fit_parties(parties)


def test_output_in_a_missing_directory_is_refused_before_any_work(tmp_path):
    with pytest.raises(OutputExistsError, match="does not exist"):
        check_writable(tmp_path / "nodir" / "out.json")
    assert check_writable(tmp_path / "out.json") == tmp_path / "out.json"


def test_roster_with_a_low_order_agreement_key_is_refused(tmp_path):
    for name in ("a", "b"):
        enroll(name, tmp_path / name)
    roster_add(tmp_path / "roster.json", [tmp_path / n / "identity.pub.json" for n in ("a", "b")])
    obj = json.loads((tmp_path / "roster.json").read_text())
    obj["members"]["b"]["agreement_public"] = "A" * 43  # 32 zero bytes: a low-order point
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError, match="invalid public key"):
        Roster.load(tmp_path / "bad.json")


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "3"])
def test_bad_seeds_are_usage_errors(seed):
    frame = pd.DataFrame({"a": range(10)})
    with pytest.raises(UsageError, match="seed"):
        split_holdout(frame, 0.2, seed)
    with pytest.raises(UsageError, match="seed"):
        fold_assignment(10, 3, seed)


@pytest.mark.parametrize("features, target", [(["a", "a"], "y"), (["a", "y"], "y")])
def test_seal_refuses_a_schema_no_loader_would_accept(features, target):
    public_key, _ = hefed.generate_keypair(1024, insecure_test_key=True)
    with pytest.raises(UsageError, match="distinct"):
        Bundle.seal("summary", Header(target, tuple(features), Encoding()), None, public_key, "f1")
