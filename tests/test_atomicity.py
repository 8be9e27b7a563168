"""Nothing half-written, nothing overwritten by accident, no key material on screen.

Real ``hefed`` subprocesses are killed with SIGKILL at random moments while encrypting a large table
(300 000 rows, 10 columns) and while aggregating hundreds of bundles — also at the moment the temporary
output file appears, i.e. mid-write. After every kill the output path holds either nothing (or, when an
old file was being replaced with ``--force``, exactly the old bytes) or a complete new file that loads
and decrypts to the right statistics; never a partial file. A temporary file (``.NAME.*.tmp``) that a
SIGKILL leaves behind is never under the output's name.

Also: ``hefed keygen`` writes the private key with mode 0600; a private key readable by group or others
is refused (exit 2) unless ``--allow-insecure-permissions``; and no command's stdout or stderr (keygen,
encrypt, aggregate, decrypt, ``--json``, ``--debug`` tracebacks) ever contains the private key's p or q,
in decimal, hexadecimal or base64url.

The killed commands (and the full runs that time them) are real subprocesses; the other commands run
in-process (:func:`cli_helpers.run_cli`), and their outputs are checked for key material the same way.

``HEFED_FUZZ_EXAMPLES`` (the long fuzz mode) raises the number of kill points per command from 5 to 20;
the kill moments are random on every run (``HEFED_FUZZ_SEED=N`` replays one).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import _argv, _env, run_cli, run_cli_subprocess
from phe.util import int_to_base64

import hefed
from hefed.errors import InsecureKeyError
from hefed.roles import decrypt_statistics

TARGET = "co2_t"
ROWS = 300_000
COLUMNS = [f"x{i}" for i in range(9)] + [TARGET]
_ENV_EXAMPLES = int(os.environ.get("HEFED_FUZZ_EXAMPLES", "0") or 0)
KILL_POINTS = 20 if _ENV_EXAMPLES else 5
N_BUNDLES = 400

#: Every stdout/stderr text a subprocess of this module produced (checked for key material at the end).
OUTPUTS: list[tuple[str, str]] = []
CASES: collections.Counter[str] = collections.Counter()


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command run in this process (:func:`cli_helpers.run_cli`); its output is kept for the key-material check."""
    result = run_cli(*args, cwd=cwd)
    OUTPUTS.append((" ".join(map(str, args[:1])), result.stdout + result.stderr))
    return result


def cli_process(*args: object, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """A command run as a real subprocess (what the kill tests time and kill)."""
    result = run_cli_subprocess(*args, cwd=cwd, timeout=timeout)
    OUTPUTS.append((" ".join(map(str, args[:1])), result.stdout + result.stderr))
    return result


def assert_one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    context = f"exit {result.returncode}\nstdout: {result.stdout[-1500:]}\nstderr: {result.stderr[-3000:]}"
    assert result.returncode == code, context
    assert "Traceback" not in result.stderr + result.stdout, context
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("hefed: error:"), context
    return lines[0]


@dataclass
class Kill:
    """One run killed at a chosen moment."""

    delay: float | None  # seconds after start; None: the moment a temporary output file appears
    killed: bool = False
    elapsed: float = 0.0
    returncode: int | None = None
    outcome: str = ""  # absent | old | new
    leftovers: list[str] = field(default_factory=list)


def run_and_kill(args: list[object], folder: Path, out: Path, delay: float | None, limit: float) -> Kill:
    """Start ``hefed ARGS``, SIGKILL it after ``delay`` seconds (or as soon as ``.OUT.*.tmp`` exists)."""
    record = Kill(delay)
    start = time.monotonic()
    proc = subprocess.Popen(_argv(args), cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        if delay is None:
            pattern = f".{out.name}.*.tmp"
            while proc.poll() is None and time.monotonic() - start < limit:
                if any(out.parent.glob(pattern)):
                    break
                time.sleep(0.0005)
        else:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # only the process this test started, by its pid
            record.killed = True
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    OUTPUTS.append((str(args[0]), stdout + stderr))
    record.elapsed = time.monotonic() - start
    record.returncode = proc.returncode
    if not record.killed:
        assert proc.returncode == 0, stderr[-2000:]
    return record


def check_after_kill(record: Kill, out: Path, old: bytes | None, check_new) -> None:
    """The output is absent (or the old bytes) or a complete new file; leftovers are temporary files only."""
    names = sorted(p.name for p in out.parent.iterdir())
    record.leftovers = [n for n in names if n.startswith(f".{out.name}.") and n.endswith(".tmp")]
    assert all(n == out.name or n in record.leftovers or not n.startswith((out.name, f".{out.name}"))
               for n in names), names
    if not out.exists():
        assert old is None, f"the old file was removed by a run killed after {record.elapsed:.2f} s"
        record.outcome = "absent"
    elif old is not None and out.read_bytes() == old:
        record.outcome = "old"
    else:
        check_new(hefed.Bundle.load(out))  # a partial file fails here
        record.outcome = "new"
    CASES[f"kill:{record.outcome}"] += 1


def kill_points(rng: random.Random, duration: float) -> list[float | None]:
    """Stratified random delays over the whole run (start-up, reading, computing, writing), and one
    kill triggered by the temporary output file appearing (mid-write)."""
    lo, hi = 0.15 * duration, 1.3 * duration  # runs in parallel pairs are slower: some finish, most do not
    width = (hi - lo) / KILL_POINTS
    return [lo + width * (i + rng.random()) for i in range(KILL_POINTS)] + [None]


# --------------------------------------------------------------------------------------------------
# Fixtures: keys from the real keygen, a large table, many bundles
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic-keys")
    result = cli("keygen", "--out-dir", root / "keys", "--bits", 1024, "--insecure-test-key", "--json")
    assert result.returncode == 0, result.stderr
    public, private = root / "keys" / "public_key.json", root / "keys" / "private_key.json"
    return root, public, private, result


def _report() -> None:
    line = f"hefed atomicity: {sum(v for k, v in CASES.items() if k.startswith('kill:'))} SIGKILLed runs — " + \
        ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()))
    sys.stderr.write("\n" + line + "\n")
    report = os.environ.get("HEFED_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"module": "test_atomicity", "cases": dict(CASES)}) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _case_report(request):
    """Print (and record) the case counts when pytest finishes, after output capture has ended."""
    request.config.add_cleanup(_report)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """300 000 rows × 10 columns of exact values (multiples of 1/8), written in a fraction of a second."""
    rng = np.random.default_rng(5)
    block = rng.integers(-8_000_000, 8_000_000, size=(1000, len(COLUMNS))) / 8
    block[:, -1] = block[:, :-1] @ np.linspace(0.5, 2.5, len(COLUMNS) - 1) / 4
    lines = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in block)
    path = tmp_path_factory.mktemp("atomic-data") / "big.csv"
    path.write_text(",".join(COLUMNS) + "\n" + lines * (ROWS // 1000), encoding="utf-8")
    return path


def _private_key(keys):
    return hefed.load_private_key(keys[2])


# --------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------
def test_keygen_writes_the_private_key_with_mode_0600(keys):
    root, public, private, _result = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not public.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert not list((root / "keys").glob(".*.tmp"))


def test_private_key_readable_by_others_is_refused(keys, tmp_path):
    _root, _public, private, _result = keys
    copy = tmp_path / "private_key.json"
    shutil.copy(private, copy)
    for mode in (0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o040, 0o610):
        copy.chmod(mode)
        with pytest.raises(InsecureKeyError, match="chmod 600"):
            hefed.load_private_key(copy)
        assert hefed.load_private_key(copy, allow_insecure_permissions=True).p == _private_key(keys).p
        CASES["permissions:refused"] += 1
    for mode in (0o600, 0o400):
        copy.chmod(mode)
        hefed.load_private_key(copy)
        CASES["permissions:accepted"] += 1


def test_cli_refuses_an_insecure_private_key_unless_allowed(keys, tmp_path):
    _root, public, private, _result = keys
    frame_paths = []
    rng = np.random.default_rng(1)
    for i in range(3):
        X = rng.integers(-80, 80, size=(20, 2)) / 8
        path = tmp_path / f"f{i}.csv"
        path.write_text("a,b,y\n" + "".join(f"{a},{b},{a + 2 * b + 1}\n" for a, b in X))
        frame_paths.append(path)
    bundles = [hefed.encrypt_statistics(p, "y", hefed.load_public_key(public), factory_id=f"f{i}")
               for i, p in enumerate(frame_paths)]
    hefed.aggregate(bundles).save(tmp_path / "agg.json")
    insecure = tmp_path / "private_key.json"
    shutil.copy(private, insecure)
    insecure.chmod(0o644)
    jobs = {
        "refused": ["decrypt", "--allow-unsigned",
                tmp_path / "agg.json", "--private-key", insecure, "--out", tmp_path / "s1.json"],
        "allowed": ["decrypt", "--allow-unsigned",
                tmp_path / "agg.json", "--private-key", insecure, "--allow-insecure-permissions",
                    "--json", "--out", tmp_path / "s2.json"],
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(lambda args: cli(*args), jobs.values()), strict=True))
    line = assert_one_line_error(results["refused"], 2)
    assert "chmod" in line and "--allow-insecure-permissions" in line
    assert not (tmp_path / "s1.json").exists()
    assert results["allowed"].returncode == 0, results["allowed"].stderr
    assert json.loads(results["allowed"].stdout)["ok"] is True
    assert hefed.SufficientStatistics.load(tmp_path / "s2.json").n == 60


# --------------------------------------------------------------------------------------------------
# SIGKILL while encrypting and aggregating
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_encrypt_killed_at_random_moments_leaves_the_old_or_a_complete_file(keys, big_csv, tmp_path):
    _root, public, private, _result = keys
    private_key = _private_key(keys)
    args = ["encrypt", big_csv, "--target", TARGET, "--public-key", public, "--factory-id", "plant-new",
            "--out", "out.json", "--insecure-test-key"]
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    start = time.monotonic()
    full = cli_process(*args, cwd=reference_dir)
    duration = time.monotonic() - start
    assert full.returncode == 0, full.stderr
    reference = decrypt_statistics(hefed.Bundle.load(reference_dir / "out.json"), private_key, 1, allow_unsigned=True)
    assert reference.n == ROWS
    # An old output that --force replaces: a different factory's bundle.
    old_bundle = hefed.encrypt_statistics(_small_frame(), TARGET, hefed.load_public_key(public),
                                          factory_id="plant-old")
    old_path = tmp_path / "old.json"
    old_bundle.save(old_path)
    old = old_path.read_bytes()

    def check_new(bundle: hefed.Bundle) -> None:
        assert bundle.contributors == ["plant-new"]
        assert decrypt_statistics(bundle, private_key, 1, allow_unsigned=True).gram == reference.gram

    rng = random.Random(int(os.environ.get("HEFED_FUZZ_SEED", "0")) or time.time_ns())
    records = _kill_runs(args, tmp_path / "encrypt", kill_points(rng, duration), old, duration, check_new)
    assert any(r.killed for r in records)


@pytest.mark.slow
def test_aggregate_killed_at_random_moments_leaves_the_old_or_a_complete_file(keys, tmp_path):
    _root, public, private, _result = keys
    private_key = _private_key(keys)
    bundle = hefed.encrypt_statistics(_small_frame(), TARGET, hefed.load_public_key(public), factory_id="p")
    obj = bundle.to_dict()
    inputs = tmp_path / "bundles"
    inputs.mkdir()
    names = []
    for i in range(N_BUNDLES):
        obj["contributors"] = [f"plant-{i:04d}"]
        names.append(inputs / f"plant-{i:04d}.json")
        names[-1].write_text(json.dumps(obj))
    args = ["aggregate", *names, "--out", "out.json"]
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    start = time.monotonic()
    full = cli_process(*args, cwd=reference_dir)
    duration = time.monotonic() - start
    assert full.returncode == 0, full.stderr
    reference = decrypt_statistics(hefed.Bundle.load(reference_dir / "out.json"), private_key, N_BUNDLES,
            allow_unsigned=True)
    assert reference.n == N_BUNDLES * len(_small_frame())
    old_path = tmp_path / "old.json"
    hefed.aggregate([hefed.Bundle.load(n) for n in names[:3]]).save(old_path)
    old = old_path.read_bytes()

    def check_new(result: hefed.Bundle) -> None:
        assert len(result.contributors) == N_BUNDLES
        assert decrypt_statistics(result, private_key, N_BUNDLES, allow_unsigned=True).gram == reference.gram

    rng = random.Random(int(os.environ.get("HEFED_FUZZ_SEED", "0")) or time.time_ns())
    records = _kill_runs(args, tmp_path / "aggregate", kill_points(rng, duration), old, duration, check_new)
    assert any(r.killed for r in records)


def _small_frame():
    import pandas as pd

    rng = np.random.default_rng(11)
    X = rng.integers(-800, 800, size=(40, len(COLUMNS) - 1)) / 8
    frame = pd.DataFrame(X, columns=COLUMNS[:-1])
    frame[TARGET] = X @ np.linspace(0.5, 2.5, len(COLUMNS) - 1) + rng.integers(-8, 8, size=40) / 8
    return frame


def _kill_runs(args, base: Path, delays, old: bytes, duration: float, check_new) -> list[Kill]:
    """Each delay twice over: into an empty folder, and over an old output with --force (in parallel)."""
    jobs = []
    for i, delay in enumerate(delays):
        with_old = i % 2 == 1 or delay is None
        folder = base / f"kill-{i:02d}"
        folder.mkdir(parents=True)
        if with_old:
            (folder / "out.json").write_bytes(old)
        jobs.append((delay, folder, [*args, "--force"] if with_old else args, old if with_old else None))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        records = list(pool.map(
            lambda job: run_and_kill(job[2], job[1], job[1] / "out.json", job[0], 3 * duration + 30), jobs))
    failures = []
    for (delay, folder, _args, old_bytes), record in zip(jobs, records, strict=True):
        try:
            check_after_kill(record, folder / "out.json", old_bytes, check_new)
        except AssertionError as exc:
            failures.append(f"killed at {delay}: {exc}")
        CASES["leftover-temp-files-after-kill"] += len(record.leftovers)
    summary = [(r.delay and round(r.delay, 2), r.killed, round(r.elapsed, 2), r.outcome) for r in records]
    print(f"\n{args[0]}: full run {duration:.2f} s; (delay, killed, elapsed, outcome): {summary}")
    assert not failures, f"{failures}\n{summary}"
    return records


def test_refuses_to_overwrite_without_force(keys, tmp_path):
    _root, public, _private, _result = keys
    frame = _small_frame()
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out.json"
    out.write_text("precious")
    other = tmp_path / "other.json"
    hefed.encrypt_statistics(frame, TARGET, hefed.load_public_key(public), factory_id="a").save(other)
    jobs = [
        ["encrypt", data, "--target", TARGET, "--public-key", public, "--factory-id", "a", "--out", out],
        ["aggregate", other, "--out", out],
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda args: cli(*args), jobs))
    for result in results:
        assert "exists" in assert_one_line_error(result, 2)
    assert out.read_text() == "precious"
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(hefed.errors.OutputExistsError):
        hefed.Bundle.load(other).save(out)
    assert out.read_text() == "precious"


# --------------------------------------------------------------------------------------------------
# No key material in any output
# --------------------------------------------------------------------------------------------------
def _secret_forms(private_key) -> list[str]:
    forms = []
    for value in (private_key.p, private_key.q):
        forms += [str(value), format(value, "x"), format(value, "X"), int_to_base64(value)]
    return forms


def test_no_command_ever_prints_p_or_q(keys, tmp_path, other_keypair):
    root, public, private, keygen = keys
    private_key = _private_key(keys)
    frame = _small_frame()
    bundles = []
    for i in range(3):
        bundles.append(tmp_path / f"b{i}.json")
        hefed.encrypt_statistics(frame, TARGET, hefed.load_public_key(public), factory_id=f"f{i}").save(bundles[-1])
    agg = tmp_path / "agg.json"
    hefed.aggregate(bundles).save(agg)
    wrong = tmp_path / "wrong_private.json"
    hefed.save_private_key(other_keypair[1], wrong)
    tampered = tmp_path / "tampered_private.json"
    obj = json.loads(private.read_text())
    obj["p"] = int_to_base64(private_key.p + 2)
    tampered.write_text(json.dumps(obj))
    tampered.chmod(0o600)
    relabelled = tmp_path / "relabelled.json"
    obj = json.loads(bundles[0].read_text())
    obj["contributors"] = ["f0", "ghost-1", "ghost-2"]
    relabelled.write_text(json.dumps(obj))
    insecure = tmp_path / "insecure_private.json"
    shutil.copy(private, insecure)
    insecure.chmod(0o644)
    jobs = [
        (0, ["decrypt", "--allow-unsigned", agg, "--private-key", private, "--json", "--out", tmp_path / "s.json"]),
        (1, ["--debug", "decrypt", "--allow-unsigned", agg, "--private-key", wrong, "--out", tmp_path / "x1.json"]),
        (1, ["--debug", "decrypt", "--allow-unsigned", agg, "--private-key", tampered, "--out", tmp_path / "x2.json"]),
        (1, ["--debug", "decrypt", "--allow-unsigned", agg, "--private-key", insecure, "--out", tmp_path / "x3.json"]),
        (1, ["--debug", "decrypt", "--allow-unsigned",
                relabelled, "--private-key", private, "--out", tmp_path / "x4.json"]),
        (1, ["decrypt", "--allow-unsigned", relabelled, "--private-key", private, "--out", tmp_path / "x6.json"]),
        # a private key given as the public key is refused (usage error), without printing it
        (2, ["encrypt", tmp_path / "x.csv", "--target", TARGET, "--public-key", private, "--factory-id", "k",
             "--out", tmp_path / "x5.json"]),
    ]
    frame.to_csv(tmp_path / "x.csv", index=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: cli(*job[1]), jobs))
    for (code, args), result in zip(jobs, results, strict=True):
        assert result.returncode == code, (args, result.stderr[-1500:])
        if "--debug" in args:
            assert "Traceback" in result.stderr, result.stderr  # the traceback is there, the key is not
    secrets = _secret_forms(private_key) + _secret_forms(other_keypair[1])
    assert OUTPUTS, "no command output was collected"
    for command, text in OUTPUTS:
        for secret in secrets:
            assert secret not in text, f"'{command}' printed key material"
    CASES["outputs-checked-for-key-material"] = len(OUTPUTS)
    assert keygen.returncode == 0 and json.loads(keygen.stdout)["ok"] is True
