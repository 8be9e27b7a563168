"""Options and option parsing shared by several commands.

Loading a command must stay cheap (``hefed --help`` loads them all), so an option whose default or
choices come from the library names them as ``"module:attribute"`` and imports them only when they are
first needed: when the command runs, or when its own ``--help`` shows them (:class:`LibraryDefault`,
:class:`LibraryChoice`). The library stays the one place each default is defined.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def library_constant(source: str) -> Any:
    """``"hefed.stats:Encoding.frac_bits"`` → the value (the module imported now)."""
    module, _, attributes = source.partition(":")
    value: Any = importlib.import_module(module)
    for attribute in attributes.split("."):
        value = getattr(value, attribute)
    return value


class LibraryDefault(click.Option):
    """An option whose default is a library constant (``library_default="module:attribute"``), imported
    the first time the default is needed: when the command runs, or when its ``--help`` shows it."""

    def __init__(self, *args: Any, library_default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.library_default = library_default
        self._resolved = False

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        if not self._resolved:
            self.default, self._resolved = library_constant(self.library_default), True
        return super().get_default(ctx, call=call)


class LibraryChoice(click.Choice[str]):
    """A choice among a library's tuple of names (``"module:attribute"``), imported when first needed."""

    def __init__(self, source: str) -> None:  # no super().__init__: it would read the choices now
        self.source = source
        self.case_sensitive = True
        self._choices: tuple[str, ...] | None = None

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(library_constant(self.source))
        return self._choices

    @choices.setter
    def choices(self, value: tuple[str, ...]) -> None:
        self._choices = tuple(value)


def split_names(text: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c']; None or '' → None (meaning: the default)."""
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """'0.1,1,10' → [0.1, 1.0, 10.0], or a usage error naming the option."""
    from hefed.errors import UsageError

    if text is None or not text.strip():
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected a number or comma-separated numbers, got {text!r}") from None


def check_together(options: dict[str, object], what: str) -> bool:
    """All of ``options`` given, or none (a usage error naming them otherwise); True when all are given."""
    from hefed.errors import UsageError

    given = [value is not None and value != () for value in options.values()]
    if any(given) and not all(given):
        names = list(options)
        raise UsageError(f"{what} needs all of {', '.join(names[:-1])} and {names[-1]}")
    return all(given)


def _apply(command: F, decorators: Sequence[Callable[[Any], Any]]) -> F:
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def insecure_test_key_option(command: F) -> F:
    """``--insecure-test-key``: accept a public key below 2048 bits (throw-away tests; a roster's study refuses it)."""
    return click.option("--insecure-test-key", is_flag=True,
                        help="Accept a public key below 2048 bits (throw-away tests only; a study with a roster "
                        "refuses it).")(command)


def force_option(command: F) -> F:
    """``--force``: replace existing output files."""
    return click.option("--force", is_flag=True, help="Replace existing output files.")(command)


def consortium_options(command: F) -> F:
    """--data FILE... (one table per factory; default: the built-in data), --target, --features, --test-fraction."""
    return _apply(command, [
        click.option("--data", "data_paths", multiple=True, type=click.Path(path_type=Path),
                     help="One table per factory (repeat, or list after one --data); default: the built-in data."),
        click.argument("more_data", nargs=-1, type=click.Path(path_type=Path)),
        click.option("--target", default=None,
                     help="Response column (required with --data; co2_t on the built-in data)."),
        click.option("--features", default=None,
                     help="Comma-separated feature columns (default: every numeric column but the target)."),
        click.option("--test-fraction", default=0.25, show_default=True, type=float,
                     help="Fraction of each factory's rows held out for evaluation."),
    ])


def encryption_option(command: F) -> F:
    """``--encryption djn|classic`` (see hefed.primitives.encryption and THREAT_MODEL.md)."""
    return click.option(
        "--encryption", cls=LibraryDefault, library_default="hefed.primitives.encryption:DEFAULT_METHOD",
        type=LibraryChoice("hefed.primitives.encryption:METHODS"), show_default=True,
        help="djn: fixed-base short-exponent encryption (fast; adds a short-exponent assumption, see "
        "THREAT_MODEL.md); classic: phe's r^n encryption.",
    )(command)


def encoding_options(*, contributors: bool = True) -> Callable[[F], F]:
    """--frac-bits, --int-bits (and --max-contributors): the public encoding, the same at every factory."""
    decorators = [
        click.option("--frac-bits", cls=LibraryDefault, library_default="hefed.stats:Encoding.frac_bits",
                     show_default=True, type=int,
                     help="Encoding: binary digits below the point (same for every factory)."),
        click.option("--int-bits", cls=LibraryDefault, library_default="hefed.stats:Encoding.int_bits",
                     show_default=True, type=int,
                     help="Encoding: values must be below 2^INT_BITS in magnitude (same for every factory)."),
    ]
    if contributors:
        decorators.append(click.option(
            "--max-contributors", cls=LibraryDefault, library_default="hefed.stats:Encoding.max_contributors",
            show_default=True, type=int,
            help="Encoding: most factories an aggregate may sum (same for every factory)."))
    return lambda command: _apply(command, decorators)


def file_format_options(command: F) -> F:
    """--delimiter, --decimal, --file-encoding, --sheet: how to read DATA where detection should not decide."""
    return _apply(command, [
        click.option("--delimiter", type=click.Choice([",", ";", "tab"]), default=None,
                     help="CSV delimiter (default: detected; .tsv files: tab)."),
        click.option("--decimal", type=click.Choice([".", ","]), default=None,
                     help="Decimal separator (default: detected; ',' for European Excel exports)."),
        click.option("--file-encoding", default=None,
                     help="Text encoding of a CSV file, e.g. utf-8, cp1252, latin-1 (default: detected)."),
        click.option("--sheet", default=None, help="Worksheet of an .xlsx workbook, by name or 0-based number "
                     "(default: the first)."),
    ])


def file_format(delimiter: str | None, decimal: str | None, file_encoding: str | None, sheet: str | None) -> Any:
    """The :class:`hefed.data.FileFormat` the options ask for (``None`` when none was given: detect everything)."""
    if delimiter is None and decimal is None and file_encoding is None and sheet is None:
        return None
    from hefed.data import FileFormat

    return FileFormat(delimiter="\t" if delimiter == "tab" else delimiter, decimal=decimal, encoding=file_encoding,
                      sheet=int(sheet) if sheet is not None and sheet.isdigit() else sheet)
