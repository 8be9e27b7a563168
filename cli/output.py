"""Output of every command: human text and tables, or one JSON object with --json; nothing with --quiet."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from rich.console import Console

console = Console()


def _meta() -> dict[str, object]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def say(text: str) -> None:
    """An informational line; silent with --json or --quiet."""
    if not (_meta().get("hefed.json") or _meta().get("hefed.quiet")):
        click.echo(text)


def show(renderable: object) -> None:
    """A rich table or text; silent with --json or --quiet."""
    if not (_meta().get("hefed.json") or _meta().get("hefed.quiet")):
        console.print(renderable)


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(value: object) -> object:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def emit(**data: object) -> None:
    """With --json: print the command's results as one JSON object on stdout."""
    if _meta().get("hefed.json"):
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
    "insecure_test_key": "--insecure-test-key",
    "allow_insecure_permissions": "--allow-insecure-permissions",
    "roster": "--roster",
    "round": "--round",
    "identity": "--identity",
    "replace": "--replace",
    "standardize": "--standardize",
    "dp_epsilon": "--dp-epsilon",
    "dp_delta": "--dp-delta",
    "factory_id": "--factory-id",
    "encryption": "--encryption",
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
    if isinstance(exc, IncompleteRoundError) and exc.survivors:
        message += f" (hefed round new --participants {','.join(exc.survivors)})"
    options = [PARAMETER_OPTIONS.get(p, "") for p in exc.parameters] if isinstance(exc, HefedError) else []
    options = [o for o in options if o]
    if options:
        message += f" [{', '.join(options)}]"
    return message


def report_error(ctx: click.Context, message: str, exit_code: int) -> None:
    click.echo(f"hefed: error: {message}", err=True)
    if ctx.meta.get("hefed.json"):
        click.echo(json.dumps({"ok": False, "error": message, "exit_code": exit_code}))


def _flag_to_meta(key: str):  # noqa: ANN202 - click callback factory
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[key] = True

    return callback


def output_options(command):  # noqa: ANN001, ANN201 - decorator
    """--json and --quiet on a command."""
    command = click.option("--json", "json_output", is_flag=True, expose_value=False, is_eager=True,
                           callback=_flag_to_meta("hefed.json"),
                           help="Print the results as one JSON object (machine-readable), nothing else.")(command)
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_flag_to_meta("hefed.quiet"), help="Print nothing but errors.")(command)


