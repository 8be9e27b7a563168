"""Running the real ``hefed`` command line as subprocesses, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence


def _env() -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200")  # keep rich from wrapping lines in captured output
    env.pop("PYTHONWARNINGS", None)
    return env


def _argv(args: Sequence[object]) -> list[str]:
    return [sys.executable, "-m", "hefed_cli.main", *map(str, args)]


def run_cli(
    *args: object, cwd: str | os.PathLike[str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``python -m hefed_cli.main ARGS...`` as a real subprocess, capturing text output."""
    return subprocess.run(_argv(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def run_cli_parallel(
    commands: list[list[object]], cwd: str | os.PathLike[str] | None = None, timeout: float = 180
) -> list[subprocess.CompletedProcess]:
    """Several independent commands at once (each factory works on its own machine anyway)."""
    procs = [subprocess.Popen(_argv(args), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for args in commands]
    results = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results
