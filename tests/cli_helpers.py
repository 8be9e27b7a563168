"""Running the ``hefed`` command line in the tests: in-process by default, as a real subprocess on demand.

:func:`run_cli` runs a command in this process with click's ``CliRunner`` (no ~1–2 s interpreter start-up
per command) and returns a :class:`subprocess.CompletedProcess` (``returncode``, ``stdout``, ``stderr``),
as the subprocess did, so tests read the same fields either way. It resets what a real process would
get fresh and a previous in-process run could leave behind:

* the working directory (``cwd`` is entered, then left again);
* the environment (``COLUMNS=200`` as the subprocesses had; click restores ``os.environ`` afterwards);
* the streams (stdout/stderr captured per run; rich consoles are made per call on the current stdout, so
  no width or terminal state carries over);
* an exception that escapes the command (a bug) is written to ``stderr`` as Python's traceback, with exit
  code 1, exactly as the interpreter would: "no traceback" assertions keep their teeth;
* a warning the command raises is written to ``stderr`` as the interpreter would print it (pytest would
  otherwise record it out of sight), so "one line on stderr" assertions catch stray warnings too.

In-process runs are serialised by a lock (working directory and streams belong to the whole process), so
helpers that start commands from threads stay correct. State that is meant to persist between commands
in one process — the worker pool, the DJN fixed-base tables, a simulation's key — is shared, as in a
long-running library user.

:func:`run_cli_subprocess` runs ``python -m hefed_cli.main`` as a real subprocess, for the end-to-end
tests that need one (the entry point, signals, a terminal, the interpreter's own tracebacks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence

from click.testing import CliRunner

#: What every run sees in its environment (rich and click must not wrap captured output).
ENV = {"COLUMNS": "200"}

_LOCK = threading.RLock()


def _env() -> dict[str, str]:
    env = dict(os.environ, **ENV)
    env.pop("PYTHONWARNINGS", None)
    return env


def _argv(args: Sequence[object]) -> list[str]:
    return [sys.executable, "-m", "hefed_cli.main", *map(str, args)]


def run_cli(
    *args: object, cwd: str | os.PathLike[str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``hefed ARGS...`` in this process (click's CliRunner); ``timeout`` is accepted for the
    subprocess helper's signature and not enforced."""
    from hefed_cli.main import main

    argv = [str(a) for a in args]
    with _LOCK:
        before = os.getcwd()
        try:
            if cwd is not None:
                os.chdir(cwd)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = CliRunner(env=ENV).invoke(main, argv, prog_name="hefed", catch_exceptions=True)
        finally:
            os.chdir(before)
    stderr = result.stderr + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                     for w in caught)
    if result.exception is not None and not isinstance(result.exception, SystemExit) and result.exc_info:
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["hefed", *argv], result.exit_code, result.stdout, stderr)


def run_cli_parallel(
    commands: list[list[object]], cwd: str | os.PathLike[str] | None = None, timeout: float = 180
) -> list[subprocess.CompletedProcess]:
    """Several independent commands (each factory works on its own machine), one after the other in this
    process: without a process start-up each, that is faster than running them side by side."""
    return [run_cli(*args, cwd=cwd, timeout=timeout) for args in commands]


def run_cli_subprocess(
    *args: object, cwd: str | os.PathLike[str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``python -m hefed_cli.main ARGS...`` as a real subprocess, capturing text output."""
    return subprocess.run(_argv(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
