"""``hefed encrypt`` on files: block-by-block reading, the progress bar only on a terminal,
and the --encryption option, through the real command line."""

from __future__ import annotations

import os
import pty
import select
import subprocess

import numpy as np
import pandas as pd
import pytest
from cli_helpers import _argv, _env, run_cli

import hefed


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("stream-cli")
    rng = np.random.default_rng(5)
    rows = 60_000
    frame = pd.DataFrame({"coal_t": np.round(rng.uniform(0, 500, rows), 3),
                          "gas_t": np.round(rng.normal(100, 30, rows), 4)})
    frame["co2_t"] = np.round(2.4 * frame["coal_t"] + 2.7 * frame["gas_t"] + rng.normal(0, 5, rows), 3)
    frame.loc[[7, 45_000], "gas_t"] = np.nan  # dropped (the CLI default), reported with file row numbers
    frame.to_csv(work / "plant.csv", index=False)
    frame.to_parquet(work / "plant.parquet")
    assert run_cli("keygen", "--out-dir", work / "keys", "--bits", "1024", "--insecure-test-key").returncode == 0
    return work, frame


def _encrypt_args(work, data, out, *extra):
    return ["encrypt", data, "--target", "co2_t", "--public-key", work / "keys" / "public_key.json",
            "--factory-id", "plant-a", "--out", out, *extra]


def _run_with_stderr_on_a_terminal(args) -> tuple[int, str]:
    parent, child = pty.openpty()
    proc = subprocess.Popen(_argv(args), env=_env(), stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([parent], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(parent, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.communicate(timeout=120)
    os.close(parent)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_encrypt_file_equals_in_memory_statistics_and_reports_file_rows(setup, suffix):
    work, frame = setup
    out = work / f"bundle{suffix}.json"
    result = run_cli(*_encrypt_args(work, work / f"plant{suffix}", out))
    assert result.returncode == 0, result.stderr
    assert "dropped 2 incomplete row(s): 8, 45001" in result.stdout
    assert "\x1b[" not in result.stderr and "reading" not in result.stderr  # no terminal, no bar
    keys = work / "keys"
    private = hefed.load_private_key(keys / "private_key.json")
    stats = hefed.decrypt_statistics(hefed.Bundle.load(out), private, min_contributors=1, allow_unsigned=True)
    expected = hefed.compute_statistics(frame.dropna().reset_index(drop=True), "co2_t", ["coal_t", "gas_t"])
    assert stats.gram == expected.gram


def test_progress_bar_is_drawn_on_a_terminal(setup):
    work, _ = setup
    code, stderr = _run_with_stderr_on_a_terminal(_encrypt_args(work, work / "plant.csv", work / "tty.json",
                                                                "--insecure-test-key"))  # a process of its own
    assert code == 0
    assert "reading plant.csv" in stderr


def test_classic_encryption_option(setup):
    work, frame = setup
    out = work / "classic.json"
    result = run_cli(*_encrypt_args(work, work / "plant.csv", out, "--encryption", "classic"))
    assert result.returncode == 0, result.stderr
    private = hefed.load_private_key(work / "keys" / "private_key.json")
    stats = hefed.decrypt_statistics(hefed.Bundle.load(out), private, min_contributors=1, allow_unsigned=True)
    assert stats.n == len(frame) - 2
    bad = run_cli(*_encrypt_args(work, work / "plant.csv", work / "x.json", "--encryption", "fast"))
    assert bad.returncode == 2 and "fast" in bad.stderr and "Traceback" not in bad.stderr
