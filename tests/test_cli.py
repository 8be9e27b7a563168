"""The ``hefed`` console commands, run as real subprocesses (``python -m hefed_cli.main``)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import hefed
from hefed.data import read_table

TARGET = "co2_t"


def assert_one_line_error(result, code: int) -> str:
    """Exit code ``code``, and stderr is exactly one line starting 'hefed: error:' with no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hefed: error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, _consortium_master, cli):
    """keygen → encrypt ×4 → aggregate → decrypt → solve, each a subprocess, in one folder."""
    root = tmp_path_factory.mktemp("cli-pipeline")
    steps = {}
    steps["keygen"] = cli("keygen", "--out-dir", root / "keys", "--bits", 1024, "--insecure-test-key")
    csvs, bundles = {}, []
    for name, frame in _consortium_master.items():
        csvs[name] = root / f"{name}.csv"
        frame.to_csv(csvs[name], index=False)
        bundles.append(root / f"{name}.bundle.json")
        steps[f"encrypt {name}"] = cli(
            "encrypt", csvs[name], "--target", TARGET, "--public-key", root / "keys" / "public_key.json",
            "--factory-id", name, "--out", bundles[-1],
        )
    steps["aggregate"] = cli("aggregate", *bundles, "--out", root / "aggregate.json")
    steps["decrypt"] = cli(
        "decrypt", root / "aggregate.json", "--private-key", root / "keys" / "private_key.json",
        "--out", root / "statistics.json",
    )
    steps["solve"] = cli("solve", root / "statistics.json", "--out", root / "model.json")
    return SimpleNamespace(root=root, steps=steps, csvs=csvs, bundles=bundles,
                           public=root / "keys" / "public_key.json", private=root / "keys" / "private_key.json")


def test_pipeline_steps_all_succeed(pipeline):
    for step, result in pipeline.steps.items():
        assert result.returncode == 0, (step, result.stderr)
        assert "Traceback" not in result.stderr, step
    assert "wrote" in pipeline.steps["solve"].stdout


def test_keygen_writes_pheutil_style_keys_with_safe_modes(pipeline):
    assert stat.S_IMODE(pipeline.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(pipeline.public.stat().st_mode) == 0o644
    public = json.loads(pipeline.public.read_text())
    private = json.loads(pipeline.private.read_text())
    assert public["kty"] == "DAJ" and public["alg"] == "PAI-GN1" and "p" not in public
    assert {"p", "q", "pub"} <= set(private)
    key = hefed.load_private_key(pipeline.private)
    assert key.public_key.n == hefed.load_public_key(pipeline.public).n
    assert key.public_key.n.bit_length() == 1024
    assert hefed.key_fingerprint(key.public_key) in pipeline.steps["keygen"].stdout
    # the private key is never printed
    assert private["p"] not in pipeline.steps["keygen"].stdout + pipeline.steps["keygen"].stderr


def test_cli_model_equals_library_model(pipeline):
    obj = json.loads((pipeline.root / "model.json").read_text())
    assert {"features", "coef", "intercept", "n", "r2"} <= set(obj)
    # the library, on the same CSV files, pooled in plaintext
    frames = [read_table(p) for p in pipeline.csvs.values()]
    pooled = pd.concat(frames, ignore_index=True)
    library = hefed.solve(hefed.compute_statistics(pooled, TARGET))
    assert obj["features"] == list(library.feature_names_in_)
    assert obj["coef"] == library.coef_.tolist()
    assert obj["intercept"] == library.intercept_
    assert obj["n"] == library.n_samples_ == len(pooled)
    assert obj["r2"] == library.r2_
    loaded = hefed.LinearModel.load(pipeline.root / "model.json")
    assert loaded.coef_exact_ == library.coef_exact_ and loaded.intercept_exact_ == library.intercept_exact_
    assert loaded.contributors_ == list(pipeline.csvs)
    # and the library's own decryption of the CLI's aggregate gives the same statistics
    stats = hefed.decrypt_statistics(hefed.Bundle.load(pipeline.root / "aggregate.json"),
                                     hefed.load_private_key(pipeline.private))
    assert stats.gram == hefed.SufficientStatistics.load(pipeline.root / "statistics.json").gram
    assert stats.gram == hefed.compute_statistics(pooled, TARGET).gram


def test_cli_ridge_and_no_intercept(pipeline, tmp_path, cli):
    stats = hefed.SufficientStatistics.load(pipeline.root / "statistics.json")
    result = cli("solve", pipeline.root / "statistics.json", "--ridge", 2.5, "--no-intercept",
                     "--out", tmp_path / "ridge.json")
    assert result.returncode == 0, result.stderr
    obj = json.loads((tmp_path / "ridge.json").read_text())
    library = hefed.solve(stats, ridge=2.5, fit_intercept=False)
    assert obj["coef"] == library.coef_.tolist() and obj["intercept"] == 0.0


# --------------------------------------------------------------------------------------
# Overwrite refusal: exit 2, file unchanged; --force replaces it
# --------------------------------------------------------------------------------------


def _command(pipeline, step: str, out: Path) -> list[object]:
    name = next(iter(pipeline.csvs))
    return {
        "encrypt": ["encrypt", pipeline.csvs[name], "--target", TARGET, "--public-key", pipeline.public,
                    "--factory-id", name, "--out", out],
        "aggregate": ["aggregate", *pipeline.bundles, "--out", out],
        "decrypt": ["decrypt", pipeline.root / "aggregate.json", "--private-key", pipeline.private, "--out", out],
        "solve": ["solve", pipeline.root / "statistics.json", "--out", out],
    }[step]


@pytest.mark.parametrize("step", ["encrypt", "aggregate", "decrypt", "solve"])
def test_commands_refuse_to_overwrite_without_force(pipeline, tmp_path, step, cli):
    out = tmp_path / "existing.json"
    out.write_text("precious\n")
    refused = cli(*_command(pipeline, step, out))
    message = assert_one_line_error(refused, 2)
    assert str(out) in message and "--force" in message
    assert out.read_text() == "precious\n"
    forced = cli(*_command(pipeline, step, out), "--force")
    assert forced.returncode == 0, forced.stderr
    json.loads(out.read_text())


def test_keygen_refuses_to_overwrite_without_force(tmp_path, cli):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "private_key.json").write_text("precious\n")
    refused = cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key")
    assert_one_line_error(refused, 2)
    assert (keys / "private_key.json").read_text() == "precious\n"
    assert not (keys / "public_key.json").exists()  # nothing half-written
    forced = cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key", "--force")
    assert forced.returncode == 0, forced.stderr
    assert stat.S_IMODE((keys / "private_key.json").stat().st_mode) == 0o600
    assert hefed.load_private_key(keys / "private_key.json").public_key.n == hefed.load_public_key(
        keys / "public_key.json"
    ).n


def test_keygen_1024_without_flag_is_refused(tmp_path, cli):
    result = cli("keygen", "--out-dir", tmp_path / "keys", "--bits", 1024)
    message = assert_one_line_error(result, 2)
    assert "1024" in message and "2048" in message
    assert not (tmp_path / "keys" / "private_key.json").exists()


# --------------------------------------------------------------------------------------
# Bad input: exit 1, one line, no traceback
# --------------------------------------------------------------------------------------


def test_missing_target_column(pipeline, tmp_path, cli):
    name = next(iter(pipeline.csvs))
    result = cli("encrypt", pipeline.csvs[name], "--target", "co2_kg", "--public-key", pipeline.public,
                     "--factory-id", name, "--out", tmp_path / "b.json")
    message = assert_one_line_error(result, 1)
    assert "'co2_kg'" in message
    assert not (tmp_path / "b.json").exists()


def test_missing_data_file(pipeline, tmp_path, cli):
    result = cli("encrypt", tmp_path / "nowhere.csv", "--target", TARGET, "--public-key", pipeline.public,
                     "--factory-id", "x", "--out", tmp_path / "b.json")
    assert "nowhere.csv" in assert_one_line_error(result, 1)


def test_wrong_key_for_decrypt(pipeline, tmp_path, other_keypair, cli):
    hefed.save_private_key(other_keypair[1], tmp_path / "other.json")
    result = cli("decrypt", pipeline.root / "aggregate.json", "--private-key", tmp_path / "other.json",
                     "--out", tmp_path / "s.json")
    message = assert_one_line_error(result, 1)
    assert hefed.key_fingerprint(other_keypair[0]) in message
    assert not (tmp_path / "s.json").exists()


def test_too_few_contributors(pipeline, tmp_path, cli):
    agg = cli("aggregate", *pipeline.bundles[:2], "--out", tmp_path / "two.json")
    assert agg.returncode == 0, agg.stderr
    result = cli("decrypt", tmp_path / "two.json", "--private-key", pipeline.private, "--out", tmp_path / "s.json")
    assert "at least 3" in assert_one_line_error(result, 1)
    assert not (tmp_path / "s.json").exists()
    lowered = cli("decrypt", tmp_path / "two.json", "--private-key", pipeline.private,
                      "--min-contributors", 2, "--out", tmp_path / "s.json")
    assert lowered.returncode == 0, lowered.stderr


def test_duplicate_contributor(pipeline, tmp_path, cli):
    result = cli("aggregate", pipeline.bundles[0], *pipeline.bundles, "--out", tmp_path / "a.json")
    assert_one_line_error(result, 1)
    assert not (tmp_path / "a.json").exists()


def test_private_key_readable_by_others_is_refused(pipeline, tmp_path, cli):
    key = tmp_path / "private_key.json"
    shutil.copy(pipeline.private, key)
    key.chmod(0o644)
    result = cli("decrypt", pipeline.root / "aggregate.json", "--private-key", key, "--out", tmp_path / "s.json")
    assert "chmod" in assert_one_line_error(result, 2)
    allowed = cli("decrypt", pipeline.root / "aggregate.json", "--private-key", key,
                      "--allow-insecure-permissions", "--out", tmp_path / "s.json")
    assert allowed.returncode == 0, allowed.stderr


def test_tampered_bundle(pipeline, tmp_path, cli):
    obj = json.loads((pipeline.root / "aggregate.json").read_text())
    obj["contributors"].append("ghost")
    (tmp_path / "forged.json").write_text(json.dumps(obj))
    result = cli("decrypt", tmp_path / "forged.json", "--private-key", pipeline.private,
                     "--out", tmp_path / "s.json")
    assert_one_line_error(result, 1)
    assert not (tmp_path / "s.json").exists()


def test_singular_system_names_the_column(tmp_path, pipeline, cli):
    stats = hefed.SufficientStatistics.load(pipeline.root / "statistics.json")
    # a copy of one column under a new name: exactly collinear
    frame = pd.concat([read_table(p) for p in pipeline.csvs.values()], ignore_index=True)
    frame["coal_copy"] = frame["coal_t"]
    hefed.compute_statistics(frame, TARGET).save(tmp_path / "s.json")
    result = cli("solve", tmp_path / "s.json", "--out", tmp_path / "m.json")
    message = assert_one_line_error(result, 1)
    assert "'coal_t'" in message and "'coal_copy'" in message
    assert stats.n == len(frame)


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def test_demo_refuses_1024_bit_keys(cli):
    result = cli("demo", "--bits", 1024)
    assert "1024" in assert_one_line_error(result, 2)


def test_demo_2048_prints_identical(cli):
    result = cli("demo", "--bits", 2048)
    assert result.returncode == 0, result.stderr
    assert "identical" in result.stdout
    assert "DIFFERENT" not in result.stdout
    assert "Traceback" not in result.stderr


def test_demo_accepts_the_flag_its_error_message_suggests(cli):
    """Regression: the refusal suggested --insecure-test-key, which demo used not to accept."""
    refused = cli("demo", "--bits", 1024)
    assert "--insecure-test-key" in refused.stderr
    result = cli("demo", "--bits", 1024, "--insecure-test-key")
    assert result.returncode == 0, result.stderr
    assert "identical" in result.stdout


# --------------------------------------------------------------------------------------
# Malformed input files never end in a traceback
# --------------------------------------------------------------------------------------


def test_solve_on_malformed_statistics_is_a_one_line_error(pipeline, tmp_path, cli):
    """Regression: a gram entry '--5' used to crash 'hefed solve' with a ValueError traceback."""
    obj = json.loads((pipeline.root / "statistics.json").read_text())
    obj["gram_upper"][1] = "--5"
    (tmp_path / "s.json").write_text(json.dumps(obj))
    result = cli("solve", tmp_path / "s.json", "--out", tmp_path / "m.json")
    assert_one_line_error(result, 1)


@pytest.mark.parametrize("step", ["aggregate", "decrypt", "solve"])
def test_garbage_input_file_is_a_one_line_error(tmp_path, pipeline, cli, step):
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not json")
    args = {
        "aggregate": ["aggregate", garbage, *pipeline.bundles[:2], "--out", tmp_path / "o.json"],
        "decrypt": ["decrypt", garbage, "--private-key", pipeline.private, "--out", tmp_path / "o.json"],
        "solve": ["solve", garbage, "--out", tmp_path / "o.json"],
    }[step]
    assert "garbage.json" in assert_one_line_error(cli(*args), 1)
    assert not (tmp_path / "o.json").exists()
