"""Output of every command: human text and tables, or one JSON object with --json; nothing with --quiet.

Tables go through rich: on a terminal they fit its width; when stdout is redirected (a file, a pipe,
a test) they are printed at their natural width, never wrapped or truncated. Errors map to exit codes
here and only here (:func:`exit_code`, :func:`describe_error`): the library's errors carry none.

Start-up matters (``hefed --help`` imports this module): rich, numpy and the library are imported
when first needed, not at module level.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Width of the rich console when stdout is not a terminal: wide enough that no table is wrapped.
REDIRECTED_WIDTH = 10_000


def _meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def quiet() -> bool:
    """True with --json or --quiet: no human output."""
    meta = _meta()
    return bool(meta.get("hefed.json") or meta.get("hefed.quiet"))


def json_mode() -> bool:
    return bool(_meta().get("hefed.json"))


def console() -> Any:
    """A rich console on the current stdout: the terminal's width there, unlimited when redirected.

    Made per call, so the width follows the stdout of this invocation (tests run many in one process).
    """
    from rich.console import Console

    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else REDIRECTED_WIDTH, soft_wrap=not terminal)


def say(text: str) -> None:
    """An informational line; silent with --json or --quiet."""
    if not quiet():
        click.echo(text)


def show(renderable: object) -> None:
    """A rich table or text (rich markup allowed); silent with --json or --quiet."""
    if not quiet():
        console().print(renderable)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 factory', '2 factories', '0 rows'."""
    if count == 1:
        return f"{count} {singular}"
    if plural_form is None:
        plural_form = singular[:-1] + "ies" if singular.endswith("y") and singular[-2:-1] not in "aeiou" \
            else singular + "s"
    return f"{count} {plural_form}"


def _json_default(value: object) -> object:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return tolist()
    return str(value)


def _finite(value: object) -> object:
    """NaN and ±inf as null (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes)):
        return _finite(tolist())
    return value


def emit(**data: object) -> None:
    """With --json: print the command's results as one JSON object on stdout (``"ok": true`` first)."""
    if json_mode():
        click.echo(json.dumps(_finite({"ok": True, **data}), default=_json_default, allow_nan=False))


#: The option of each library parameter an error message may advise changing.
PARAMETER_OPTIONS = {
    "force": "--force",
    "int_bits": "--int-bits",
    "frac_bits": "--frac-bits",
    "max_contributors": "--max-contributors",
    "missing": "--missing drop",
    "impute": "--impute mean",
    "max_z": "--max-z",
    "summary": "--summary-file",
    "ridge": "--ridge",
    "alphas": "--alphas",
    "folds": "--folds",
    "seed": "--seed",
    "test_fraction": "--test-fraction",
    "bits": "--bits",
    "key_bits": "--bits",
    "insecure_test_key": "--insecure-test-key",
    "allow_insecure_permissions": "--allow-insecure-permissions",
    "allow_unsigned": "--allow-unsigned",
    "ledger": "--ledger",
    "release_key": "--release-key",
    "roster": "--roster",
    "round": "--round",
    "identity": "--identity",
    "replace": "--replace",
    "standardize": "--standardize",
    "dp_epsilon": "--dp-epsilon",
    "dp_delta": "--dp-delta",
    "factory_id": "--factory-id",
    "encryption": "--encryption",
    "lambdas": "--lambdas",
    "mu": "--mu",
    "rounds": "--rounds",
    "target": "--target",
    "features": "--features",
    "min_contributors": "--min-contributors",
    "timeout": "--timeout",
    "max_rounds": "--max-rounds",
    "drop_outs": "--drop-out",
    "kind": "--kind",
    "model": "--model",
    "cov_type": "--cov-type",
    "maxlags": "--maxlags",
    "robust": "--robust",
    "fixed_effects": "--fixed-effects",
    "out": "--out",
    "public_key": "--public-key",
    "private_key": "--private-key",
    "fit_intercept": "--no-intercept",
    "study": "--study",
    "holdout": "--test-fraction",
    "delimiter": "--delimiter",
    "decimal": "--decimal",
    "file_encoding": "--file-encoding",
    "sheet": "--sheet",
    "bounds": "--bounds",
    "data_paths": "--data",
    "wait_for_nodes": "",
    "expected_factories": "",
    "coef_frac_bits": "",
    "coef_int_bits": "",
}


def exit_code(exc: Exception) -> int:
    """2 for bad usage (:class:`~hefed.errors.UsageError`), 1 for every other refusal."""
    from hefed.errors import UsageError

    return 2 if isinstance(exc, UsageError) else 1


def describe_error(exc: Exception) -> str:
    """The library's one-line message, with the command-line options it points at."""
    from hefed.errors import HefedError, IncompleteRoundError

    message = str(exc)
    if isinstance(exc, IncompleteRoundError) and len(exc.survivors) >= 2:
        message += f" (hefed round new --participants {','.join(exc.survivors)})"
    options = [PARAMETER_OPTIONS.get(p, "") for p in exc.parameters] if isinstance(exc, HefedError) else []
    options = list(dict.fromkeys(o for o in options if o))
    if options:
        message += f" [{', '.join(options)}]"
    return message


def report_error(ctx: click.Context, message: str, code: int) -> None:
    """``hefed: error: MESSAGE`` on stderr (one line); with --json also the error as JSON on stdout."""
    click.echo(f"hefed: error: {message}", err=True)
    if ctx.meta.get("hefed.json"):
        click.echo(json.dumps({"ok": False, "error": message, "exit_code": code}))


def _flag_to_meta(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[key] = True

    return callback


def output_options(command: F) -> F:
    """--json and --quiet on a command."""
    command = click.option("--json", "json_output", is_flag=True, expose_value=False, is_eager=True,
                           callback=_flag_to_meta("hefed.json"),
                           help="Print the results as one JSON object (machine-readable), nothing else.")(command)
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_flag_to_meta("hefed.quiet"), help="Print nothing but errors.")(command)
