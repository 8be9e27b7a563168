"""The documents' promises: the README's commands are the ones CI runs, and every test THREAT_MODEL.md
cites exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M))
    return names


def test_every_test_cited_in_the_threat_model_exists():
    cited = set(re.findall(r"`(test_\w+)`", (ROOT / "THREAT_MODEL.md").read_text(encoding="utf-8")))
    assert len(cited) > 20
    missing = sorted(cited - _test_names())
    assert not missing, f"THREAT_MODEL.md cites tests that do not exist: {missing}"


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
    test = ".venv/bin/python -m pytest -q"
    for command in (install, test):
        assert command in readme, f"README lacks {command!r}"
        assert command in ci, f".ci/run lacks {command!r}"
    assert "hefed demo" in readme



@pytest.mark.slow  # collects the whole suite in a subprocess
def test_the_documented_fast_loop_selects_a_fast_subset():
    """The README's inner loop is `-m "not slow"`, and the marker really leaves tests out."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert '.venv/bin/python -m pytest -q -m "not slow"' in readme
    assert "mypy" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    listed = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "slow", str(ROOT / "tests")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert re.search(r"(\d+)/\d+ tests collected \(\d+ deselected\)", listed.stdout), listed.stdout[-500:]


@pytest.mark.slow  # runs the README's Python example end to end (a 3072-bit key pair is swapped for a small one)
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    import hefed

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    small = hefed.generate_keypair(1024, insecure_test_key=True)
    monkeypatch.setattr(hefed, "generate_keypair", lambda *args, **kwargs: small)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md (Python API)", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["model"].coef_exact_ == hefed.solve(namespace["stats"]).coef_exact_
    assert namespace["est"].coef_.shape == (len(namespace["features"]),)


def test_the_readme_study_example_runs_and_rounds_what_it_says(tmp_path, monkeypatch):
    """The README's Python study example runs as written (a small key for the 3072-bit one), and the rounding
    count its comment shows is the one it produces."""
    import hefed

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("In Python (`hefed.Study`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    claimed = re.search(r"results\[0\]\.report\.rounding\.counts\s+# (\{[^}]*\})", block)
    assert claimed is not None, "the example no longer shows its rounding counts"
    small = hefed.generate_keypair(1024, insecure_test_key=True)
    monkeypatch.setattr(hefed, "generate_keypair", lambda *args, **kwargs: small)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md (studies in Python)", "exec"), namespace)  # noqa: S102 - our own documentation
    results, study = namespace["results"], namespace["study"]
    assert dict(results[0].report.rounding.counts) == ast.literal_eval(claimed.group(1))
    assert namespace["model"].study_ == study.digest
