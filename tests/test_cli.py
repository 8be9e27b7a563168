"""The ``hefed`` console commands.

Most tests run the commands in-process (the ``cli`` fixture: :func:`cli_helpers.run_cli`, click's
CliRunner, same exit codes and output as a real process). A few run real processes end to end: the
README's pipeline through the installed ``hefed`` script, ``--debug`` tracebacks, and the start-up
imports of ``hefed --help``.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import pandas as pd
import pytest
from cli_helpers import _env, run_cli_subprocess

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
    """keygen → encrypt ×4 → aggregate → decrypt → solve, each a command of its own, in one folder."""
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
        "decrypt", "--allow-unsigned", root / "aggregate.json", "--private-key", root / "keys" / "private_key.json",
        "--out", root / "statistics.json",
    )
    steps["solve"] = cli("solve", root / "statistics.json", "--out", root / "model.json", "--exact")
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
                                     hefed.load_private_key(pipeline.private), allow_unsigned=True)
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
        "decrypt": ["decrypt", "--allow-unsigned",
                pipeline.root / "aggregate.json", "--private-key", pipeline.private, "--out", out],
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
    result = cli("decrypt", "--allow-unsigned",
            pipeline.root / "aggregate.json", "--private-key", tmp_path / "other.json",
                     "--out", tmp_path / "s.json")
    message = assert_one_line_error(result, 1)
    assert hefed.key_fingerprint(other_keypair[0]) in message
    assert not (tmp_path / "s.json").exists()


def test_too_few_contributors(pipeline, tmp_path, cli):
    agg = cli("aggregate", *pipeline.bundles[:2], "--out", tmp_path / "two.json")
    assert agg.returncode == 0, agg.stderr
    result = cli("decrypt", "--allow-unsigned",
            tmp_path / "two.json", "--private-key", pipeline.private, "--out", tmp_path / "s.json")
    assert "at least 3" in assert_one_line_error(result, 1)
    assert not (tmp_path / "s.json").exists()
    lowered = cli("decrypt", "--allow-unsigned", tmp_path / "two.json", "--private-key", pipeline.private,
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
    result = cli("decrypt", "--allow-unsigned",
            pipeline.root / "aggregate.json", "--private-key", key, "--out", tmp_path / "s.json")
    assert "chmod" in assert_one_line_error(result, 2)
    allowed = cli("decrypt", "--allow-unsigned", pipeline.root / "aggregate.json", "--private-key", key,
                      "--allow-insecure-permissions", "--out", tmp_path / "s.json")
    assert allowed.returncode == 0, allowed.stderr


def test_tampered_bundle(pipeline, tmp_path, cli):
    obj = json.loads((pipeline.root / "aggregate.json").read_text())
    obj["contributors"].append("ghost")
    (tmp_path / "forged.json").write_text(json.dumps(obj))
    result = cli("decrypt", "--allow-unsigned", tmp_path / "forged.json", "--private-key", pipeline.private,
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
        "decrypt": ["decrypt", "--allow-unsigned",
                garbage, "--private-key", pipeline.private, "--out", tmp_path / "o.json"],
        "solve": ["solve", garbage, "--out", tmp_path / "o.json"],
    }[step]
    assert "garbage.json" in assert_one_line_error(cli(*args), 1)
    assert not (tmp_path / "o.json").exists()


# --------------------------------------------------------------------------------------
# End to end, as real processes
# --------------------------------------------------------------------------------------
HEFED_SCRIPT = Path(sys.executable).with_name("hefed")


def _script(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``hefed`` console script (the entry point users run), as a real process."""
    return subprocess.run([str(HEFED_SCRIPT), *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=300, check=False)


def test_installed_script_starts(tmp_path):
    version = _script("--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"hefed, version {hefed.__version__}"
    help_ = _script("--help", cwd=tmp_path)
    assert help_.returncode == 0 and "keygen" in help_.stdout and help_.stderr == ""


@pytest.mark.slow
def test_readme_pipeline_through_the_installed_script(tmp_path, _consortium_master):
    """The README's steps (keygen, encrypt at each factory, aggregate, decrypt, solve), each a real process."""
    def ok(*args: object) -> subprocess.CompletedProcess:
        result = _script(*args, cwd=tmp_path)
        assert result.returncode == 0, (args[0], result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    ok("keygen", "--out-dir", "keys", "--bits", 1024, "--insecure-test-key")
    for name, frame in _consortium_master.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        ok("encrypt", f"{name}.csv", "--target", TARGET, "--public-key", "keys/public_key.json", "--factory-id", name,
           "--out", f"{name}.bundle.json", "--insecure-test-key")
    ok("aggregate", *(f"{name}.bundle.json" for name in _consortium_master), "--out", "aggregate.bundle.json")
    ok("decrypt", "--allow-unsigned",
            "aggregate.bundle.json", "--private-key", "keys/private_key.json", "--out", "statistics.json")
    solved = ok("solve", "statistics.json", "--out", "model.json", "--exact")
    assert "regression results" in solved.stdout and "wrote model.json" in solved.stdout
    pooled = pd.concat([read_table(tmp_path / f"{name}.csv") for name in _consortium_master], ignore_index=True)
    library = hefed.solve(hefed.compute_statistics(pooled, TARGET))
    assert hefed.LinearModel.load(tmp_path / "model.json").coef_exact_ == library.coef_exact_


def test_debug_shows_the_traceback_in_a_real_process(tmp_path):
    plain = run_cli_subprocess("solve", tmp_path / "nowhere.json")
    assert "nowhere.json" in assert_one_line_error(plain, 1)
    debug = run_cli_subprocess("--debug", "solve", tmp_path / "nowhere.json")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "nowhere.json" in debug.stderr


_IMPORTS = """
import sys
from hefed_cli.main import main
try:
    main({args!r}, prog_name="hefed")
except SystemExit:
    pass
print(" ".join(sorted(m for m in {watched!r} if m in sys.modules)), file=sys.stderr)
"""
_WATCHED = ("numpy", "pandas", "scipy", "sklearn", "rich", "phe", "hefed.stats", "hefed.data", "hefed.kinds",
            "hefed.protocol", "hefed.roles", "hefed.sim._compare")


@pytest.mark.parametrize(("args", "allowed"), [
    (["--help"], set()),
    (["--version"], set()),
    (["solve", "--help"], set()),
    (["encrypt", "--help"], {"numpy", "phe", "hefed.stats"}),  # the defaults it shows: Encoding, encryption
    (["simulate", "--help"], {"phe"}),  # the key sizes it shows (hefed.sim's defaults, beside the key module)
    (["check", "--help"], set()),
    (["study", "new", "--help"], set()),
])
def test_help_imports_only_what_it_shows(args, allowed):
    """Start-up: help loads no heavy library and no more of hefed than the defaults it prints."""
    code = _IMPORTS.format(args=args, watched=_WATCHED)
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stderr.split())
    assert loaded <= allowed, f"hefed {' '.join(args)} imported {sorted(loaded - allowed)}"


# --------------------------------------------------------------------------------------
# Help texts, order, plurals
# --------------------------------------------------------------------------------------
PROTOCOL_ORDER = ["keygen", "enroll", "roster", "study", "round", "check", "encrypt", "aggregate", "decrypt", "solve",
                  "evaluate", "finetune", "predict", "monitor", "whatif", "audit", "consortium-audit", "report", "glm",
                  "demo", "compare", "simulate", "federate"]


def _all_commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _all_commands(sub, (*path, name))


def test_help_lists_the_commands_in_protocol_order(cli):
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    commands = result.stdout[result.stdout.index("Commands"):]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and line.split()]
    assert listed == PROTOCOL_ORDER


def test_every_command_and_option_has_help_text():
    from hefed_cli.main import main

    missing = [" ".join(path) or "hefed" for path, command in _all_commands(main) if not command.help]
    missing += [f"{' '.join(path)} {param.opts[0]}" for path, command in _all_commands(main)
                for param in command.params if isinstance(param, click.Option) and not param.help]
    assert not missing, f"no help text: {missing}"


def test_key_size_defaults_say_why(cli):
    from hefed._keys import DEFAULT_BITS
    from hefed.sim import DEMO_KEY_BITS, SIMULATION_KEY_BITS

    def text(*args: str) -> str:
        result = cli(*args, "--help")
        assert result.returncode == 0, result.stderr
        return " ".join(result.stdout.split())

    keygen = text("keygen")
    assert f"[default: {DEFAULT_BITS}]" in keygen and "NIST" in keygen and "2048 or more" in keygen
    demo = text("demo")
    assert f"[default: {DEMO_KEY_BITS}]" in demo and "times each real step" in demo
    for command in ("compare", "simulate"):
        help_ = text(command)
        assert f"[default: {SIMULATION_KEY_BITS}]" in help_, command
        assert "throw-away key" in help_ and "do not depend on the key size" in help_ and "Never for real data" in help_


def test_plurals(pipeline, tmp_path, cli):
    one = cli("aggregate", pipeline.bundles[0], "--out", tmp_path / "one.json")
    assert one.returncode == 0, one.stderr
    assert "aggregate of 1 factory (" in one.stdout
    assert f"aggregate of {len(pipeline.bundles)} factories (" in pipeline.steps["aggregate"].stdout
    assert "from 4 factories (" in pipeline.steps["decrypt"].stdout


# --------------------------------------------------------------------------------------
# solve: prints without --out, its notes, one-line refusals
# --------------------------------------------------------------------------------------
def test_solve_prints_the_model_without_out(pipeline, tmp_path, cli):
    result = cli("solve", pipeline.root / "statistics.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "regression results" in result.stdout and "wrote" not in result.stdout
    assert list(tmp_path.iterdir()) == []
    as_json = json.loads(cli("solve", pipeline.root / "statistics.json", "--json").stdout)
    assert as_json["ok"] is True and as_json["model"] is None
    assert as_json["coef"] == json.loads((pipeline.root / "model.json").read_text())["coef"]


def test_solve_with_an_empty_ridge_is_a_one_line_usage_error(pipeline, tmp_path, cli):
    result = cli("solve", pipeline.root / "statistics.json", "--ridge", "", "--out", tmp_path / "m.json")
    message = assert_one_line_error(result, 2)
    assert "ridge" in message and "--ridge" in message
    assert not (tmp_path / "m.json").exists()


def test_solve_of_a_summary_says_it_gives_no_model(pipeline, tmp_path, cli):
    bundles = []
    for name, csv in pipeline.csvs.items():
        bundles.append(tmp_path / f"{name}.summary.json")
        assert cli("encrypt", csv, "--target", TARGET, "--summary", "--public-key", pipeline.public,
                   "--factory-id", name, "--out", bundles[-1]).returncode == 0
    assert cli("aggregate", *bundles, "--out", tmp_path / "agg.json").returncode == 0
    assert cli("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", pipeline.private,
               "--out", tmp_path / "summary.json").returncode == 0
    message = assert_one_line_error(cli("solve", tmp_path / "summary.json"), 1)  # exit 1, as before the registry
    assert "a summary aggregate is not solved into a model" in message and "statistics" in message
    message = assert_one_line_error(cli("solve", tmp_path / "agg.json"), 1)
    assert "an encrypted bundle" in message and "hefed decrypt" in message


def test_solve_prints_the_notes_of_ridge_auto_at_the_edge_of_its_grid(pipeline, tmp_path, cli):
    bundles = []
    for name, csv in pipeline.csvs.items():
        bundles.append(tmp_path / f"{name}.folds.json")
        assert cli("encrypt", csv, "--target", TARGET, "--folds", 3, "--public-key", pipeline.public,
                   "--factory-id", name, "--out", bundles[-1]).returncode == 0
    assert cli("aggregate", *bundles, "--out", tmp_path / "agg.json").returncode == 0
    assert cli("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", pipeline.private,
               "--out", tmp_path / "folds.json").returncode == 0
    folds = hefed.FoldStatistics.load(tmp_path / "folds.json")
    release = hefed.release_model(folds, "auto", [1e-3, 1e-2])
    assert release.notes, "the grid should put the choice at its edge"
    result = cli("solve", tmp_path / "folds.json", "--ridge", "auto", "--alphas", "0.001,0.01")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for note in release.notes:
        assert f"note: {note}" in text
    assert json.loads(cli("solve", tmp_path / "folds.json", "--ridge", "auto", "--alphas", "0.001,0.01",
                          "--json").stdout)["notes"] == release.notes


# --------------------------------------------------------------------------------------
# encrypt and finetune say what they did
# --------------------------------------------------------------------------------------
def test_encrypt_says_when_a_bundle_is_masked_and_signed(pipeline, tmp_path, cli):
    names = list(pipeline.csvs)[:2]
    for name in names:
        assert cli("enroll", "--factory-id", name, "--out-dir", tmp_path / name).returncode == 0
    assert cli("roster", "add", tmp_path / "roster.json",
               *(tmp_path / name / "identity.pub.json" for name in names)).returncode == 0
    assert cli("round", "new", "--roster", tmp_path / "roster.json", "--participants", ",".join(names),
               "--out", tmp_path / "round.json").returncode == 0
    round_id = json.loads((tmp_path / "round.json").read_text())["round_id"]
    for name in names:  # a version 2 round: every factory joins, then encrypts with the round keys
        assert cli("round", "join", "--round", tmp_path / "round.json", "--identity", tmp_path / name, "--roster",
                   tmp_path / "roster.json", "--out", tmp_path / f"join-{name}.json").returncode == 0
    assert cli("round", "start", *(tmp_path / f"join-{name}.json" for name in names), "--round",
               tmp_path / "round.json", "--roster", tmp_path / "roster.json", "--out",
               tmp_path / "round-keys.json").returncode == 0

    def encrypt(name: str, *extra: object) -> subprocess.CompletedProcess:
        result = cli("encrypt", pipeline.csvs[name], "--target", TARGET, "--public-key", pipeline.public,
                     "--factory-id", name, "--out", tmp_path / f"{name}.json", "--round", tmp_path / "round-keys.json",
                     "--identity", tmp_path / name, "--roster", tmp_path / "roster.json", *extra)
        assert result.returncode == 0, result.stderr
        return result

    assert f"masked and signed for round {round_id}" in encrypt(names[0]).stdout
    as_json = json.loads(encrypt(names[1], "--json").stdout)
    assert as_json["masked"] is True and as_json["round_id"] == round_id
    plain = json.loads(cli("encrypt", pipeline.csvs[names[0]], "--target", TARGET, "--public-key", pipeline.public,
                           "--factory-id", names[0], "--out", tmp_path / "plain.json", "--json").stdout)
    assert plain["masked"] is False and plain["round_id"] is None
    assert "masked" not in pipeline.steps[f"encrypt {names[0]}"].stdout


@pytest.mark.parametrize("in_memory", [False, True], ids=["streamed", "in-memory"])
def test_wrong_case_target_lists_the_columns(pipeline, tmp_path, cli, in_memory):
    name = next(iter(pipeline.csvs))
    extra = ["--test-fraction", 0.2] if in_memory else []  # a holdout reads the whole table; otherwise streamed
    result = cli("encrypt", pipeline.csvs[name], "--target", TARGET.upper(), "--public-key", pipeline.public,
                 "--factory-id", name, "--out", tmp_path / "b.json", *extra)
    message = assert_one_line_error(result, 1)
    assert repr(TARGET.upper()) in message and repr(TARGET) in message and "coal_t" in message


def test_finetune_prints_its_notes_and_saves_the_refit(pipeline, tmp_path, cli):
    from hefed.analysis import finetune

    name = next(iter(pipeline.csvs))
    result = cli("finetune", pipeline.csvs[name], "--model", pipeline.root / "model.json", "--lambdas", "1,100",
                 "--folds", 3, "--out", tmp_path / "tuned.json", "--exact")
    assert result.returncode == 0, result.stderr
    expected = finetune(hefed.LinearModel.load(pipeline.root / "model.json"), pipeline.csvs[name], None, [1, 100],
                        folds=3)
    assert expected.notes
    text = " ".join(result.stdout.split())
    for note in expected.notes:
        assert f"note: {note}" in text
    saved = hefed.LinearModel.load(tmp_path / "tuned.json")
    assert saved.coef_exact_ == expected.model.coef_exact_ and saved.n_samples_ == len(read_table(pipeline.csvs[name]))


def test_redirected_tables_are_never_wrapped_or_truncated(tmp_path, cli, public_key, private_key):
    long_name = "fuel_oil_consumption_in_tonnes_per_day_measured_at_the_main_boiler_house_meter_" * 2
    frame = pd.DataFrame({long_name: [1.0, 2.0, 3.5, 4.0], TARGET: [2.0, 4.5, 7.0, 8.5]})
    frame.to_csv(tmp_path / "plant.csv", index=False)
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    hefed.save_private_key(private_key, tmp_path / "priv.json")
    assert cli("encrypt", tmp_path / "plant.csv", "--target", TARGET, "--summary", "--public-key",
               tmp_path / "pub.json", "--factory-id", "plant", "--out", tmp_path / "b.json").returncode == 0
    result = cli("decrypt", "--allow-unsigned",
            tmp_path / "b.json", "--private-key", tmp_path / "priv.json", "--min-contributors", 1,
                 "--out", tmp_path / "summary.json")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if long_name in line)
    assert "2.625" in row  # the whole row on one line: name, count, mean


@pytest.mark.parametrize("streamed", [True, False])
def test_encoding_refusals_point_at_the_option_and_rounding_is_reported(pipeline, tmp_path, cli, streamed):
    """The library names the parameter (int_bits, frac_bits); the CLI adds its option, whichever reader ran
    (the block reader renumbers rows in the message and must keep what the error points at)."""
    name, csv = next(iter(pipeline.csvs.items()))
    holdout = [] if streamed else ["--test-fraction", "0.2"]  # a holdout reads the whole table instead
    common = ["encrypt", csv, "--target", TARGET, "--public-key", pipeline.public, "--factory-id", name, *holdout]
    too_big = assert_one_line_error(cli(*common, "--int-bits", 3, "--out", tmp_path / "a.json"), 1)
    assert "reaches 2^3" in too_big and too_big.endswith("[--int-bits]")
    # too coarse a grid is not refused but counted: each rounded value is reported, whichever reader ran
    coarse = cli(*common, "--frac-bits", 1, "--out", tmp_path / "b.json")
    assert coarse.returncode == 0, coarse.stderr
    assert "rounded to the 2^-1 grid" in coarse.stdout
