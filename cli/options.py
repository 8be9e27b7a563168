"""Option parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hefed.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


def split_names(text: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c']; None or '' → None (meaning: the default)."""
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """'0.1,1,10' → [0.1, 1.0, 10.0], or a usage error naming the option."""
    if text is None or not text.strip():
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected a number or comma-separated numbers, got {text!r}") from None


def consortium_options(command: F) -> F:
    """--data FILE... (one table per factory; default: the built-in data), --target, --features, --test-fraction."""
    for decorator in reversed([
        click.option("--data", "data_paths", multiple=True, type=click.Path(path_type=Path),
                     help="One table per factory (repeat, or list after one --data); default: the built-in data."),
        click.argument("more_data", nargs=-1, type=click.Path(path_type=Path)),
        click.option("--target", default=None, help="Response column (default co2_t on the built-in data)."),
        click.option("--features", default=None, help="Comma-separated feature columns."),
        click.option("--test-fraction", default=0.25, show_default=True, type=float,
                     help="Fraction of each factory's rows held out for evaluation."),
    ]):
        command = decorator(command)
    return command


def encryption_option(command: F) -> F:
    """``--encryption djn|classic`` (see hefed.encryption and THREAT_MODEL.md)."""
    return click.option(
        "--encryption", type=click.Choice(["djn", "classic"]), default="djn", show_default=True,
        help="djn: fixed-base short-exponent encryption (fast; adds a short-exponent assumption, see "
        "THREAT_MODEL.md); classic: phe's r^n encryption.",
    )(command)
