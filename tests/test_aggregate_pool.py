"""Aggregating many bundle files on a process pool gives the same aggregate, with the same checks."""

from __future__ import annotations

import importlib
import shutil

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed import _pool as parallel
from hefed.errors import DuplicateContributorError, OverflowRiskError, SchemaMismatchError

aggregate_module = importlib.import_module("hefed.roles._aggregator")


@pytest.fixture(scope="module")
def keypair():
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture
def pooled(monkeypatch):
    """Force the pool: two workers, from two files on."""
    monkeypatch.setenv("HEFED_WORKERS", "2")
    monkeypatch.setattr(aggregate_module, "_MIN_FILES_PER_WORKER", 1)
    monkeypatch.setattr(parallel, "COLD_START_FACTOR", 1)
    yield
    parallel.shutdown()


def _bundles(tmp_path, keypair, count, features=("a", "b"), encoding=None):
    pub, _ = keypair
    rng = np.random.default_rng(count)
    paths = []
    for i in range(count):
        frame = pd.DataFrame(np.round(rng.normal(size=(20, len(features) + 1)), 3), columns=[*features, "y"])
        path = tmp_path / f"f{i:02d}.json"
        hefed.encrypt_statistics(frame, "y", pub, list(features), factory_id=f"f{i:02d}",
                                 encoding=encoding).save(path)
        paths.append(path)
    return paths


def test_pool_gives_the_sequential_aggregate(tmp_path, keypair, pooled, monkeypatch):
    _, priv = keypair
    paths = _bundles(tmp_path, keypair, 7)
    calls = []
    real = parallel.map_pieces
    monkeypatch.setattr(parallel, "map_pieces", lambda f, pieces, *a: calls.append(len(pieces)) or real(f, pieces, *a))
    parallel_sum = hefed.aggregate(paths)
    assert calls == [2], "the pool must really have been used"
    sequential_sum = aggregate_module._fold(((str(p), p, None) for p in paths), None, None)[0]
    assert parallel_sum.contributors == [f"f{i:02d}" for i in range(7)]
    a = hefed.decrypt_statistics(parallel_sum, priv, allow_unsigned=True)
    b = hefed.decrypt_statistics(sequential_sum, priv, allow_unsigned=True)
    assert a.gram == b.gram and a.n == 140


def test_pool_names_a_duplicate_across_workers(tmp_path, keypair, pooled):
    paths = _bundles(tmp_path, keypair, 4)
    copy = tmp_path / "copy-of-f00.json"
    shutil.copy(paths[0], copy)
    with pytest.raises(DuplicateContributorError, match=r"'f00'.*f00\.json.*copy-of-f00\.json"):
        hefed.aggregate([*paths, copy])


def test_pool_names_a_schema_mismatch_across_workers(tmp_path, keypair, pooled):
    paths = _bundles(tmp_path, keypair, 3)
    (tmp_path / "other").mkdir()
    other = _bundles(tmp_path / "other", keypair, 1, features=("a", "c"))
    with pytest.raises(SchemaMismatchError, match="does not match"):
        hefed.aggregate([*paths, *other])


def test_pool_keeps_the_contributor_limit(tmp_path, keypair, pooled):
    paths = _bundles(tmp_path, keypair, 4, encoding=hefed.Encoding(max_contributors=3))
    with pytest.raises(OverflowRiskError, match="more than 3 contributions"):
        hefed.aggregate(paths)
