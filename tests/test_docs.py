"""The documents' promises: the README's commands are the ones CI runs, and every test THREAT_MODEL.md
cites exists."""

from __future__ import annotations

import re
from pathlib import Path

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

