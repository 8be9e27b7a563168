"""Safe file handling shared by every layer: atomic writes, guarded JSON reads, exact rationals.

Outputs are written to a temporary file in the target directory, flushed to
disk and renamed over the destination, so a crash leaves either the old state
or the complete new file, never half of one. An existing output is only
replaced when the caller says ``force``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import InvalidFileError, OutputExistsError

#: Largest JSON document hefed reads (bundles of thousands of ciphertexts stay far below).
MAX_JSON_BYTES = 256 * 1024 * 1024


def check_writable(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse to replace an existing file unless ``force``; return the path."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: file exists; not replaced unless forced", parameters=("force",))
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputExistsError(f"{path}: directory {parent} does not exist")
    return path


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int = 0o644
) -> Path:
    """Write ``data`` to ``path`` atomically with permission ``mode``."""
    path = check_writable(path, force)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputExistsError(f"{path}: directory {directory} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # Set the mode before any byte is written, so a private key is never
        # readable by others, not even for a moment.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not force and path.exists():
            raise OutputExistsError(f"{path}: file appeared while writing; not replaced")
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, force: bool = False, mode: int = 0o644
) -> Path:
    """Serialise ``obj`` as indented JSON and write it atomically."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"), force=force, mode=mode)


def stat_file(path: str | os.PathLike[str], what: str) -> os.stat_result:
    """The ``os.stat`` of a ``what`` file, or an :class:`InvalidFileError` saying it is missing or unreadable."""
    try:
        return Path(path).stat()
    except FileNotFoundError:
        raise InvalidFileError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise InvalidFileError(f"{path}: cannot read {what} file ({exc.strerror})") from None


def read_json_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise :class:`InvalidFileError` naming the file."""
    path = Path(path)
    size = stat_file(path, what).st_size
    if path.is_dir():
        raise InvalidFileError(f"{path}: is a directory, expected a {what} file")
    if size == 0:
        raise InvalidFileError(f"{path}: {what} file is empty")
    if size > MAX_JSON_BYTES:
        raise InvalidFileError(f"{path}: {what} file is too large ({size} bytes)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidFileError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidFileError(f"{path}: {what} file is not UTF-8 text (binary?)") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidFileError(
            f"{path}: {what} file is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    except ValueError as exc:
        raise InvalidFileError(f"{path}: {what} file: {exc}") from None
    except RecursionError:
        raise InvalidFileError(f"{path}: {what} file is nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{path}: {what} file must hold a JSON object")
    return obj


_RATIONAL = re.compile(r"-?[0-9]{1,20000}(/[0-9]{1,20000})?")
# Smallest magnitude that float() rounds to infinity: (2 - 2^-53)·2^1023 rounded up.
FLOAT_LIMIT = Fraction(2**1024 - 2**970)


def parse_rational(text: Any, source: str, field: str, *, finite: bool = True,
                   non_negative: bool = False) -> Fraction:
    """Parse an exact rational written as ``"p"`` or ``"p/q"`` (what hefed writes).

    Exponent notation is refused (``"1e999999999"`` would take forever to expand), and with
    ``finite`` so is anything float64 cannot hold, since it is converted to float later.
    """
    if not isinstance(text, str) or not _RATIONAL.fullmatch(text):
        raise InvalidFileError(f"{source}: {field!r} must be an exact rational 'p/q' string")
    numerator, _, denominator = text.partition("/")
    if denominator and int(denominator) == 0:
        raise InvalidFileError(f"{source}: {field!r} has a zero denominator")
    value = Fraction(int(numerator), int(denominator or 1))
    if finite and abs(value) >= FLOAT_LIMIT:
        raise InvalidFileError(f"{source}: {field!r} is beyond float64 range")
    if non_negative and value < 0:
        raise InvalidFileError(f"{source}: {field!r} must not be negative")
    return value


def format_rational(value: Fraction) -> str:
    """An exact rational as ``"p/q"``, what :func:`parse_rational` reads back."""
    return f"{value.numerator}/{value.denominator}"


_DIGEST = re.compile(r"[0-9a-f]{32}")


def is_digest(value: Any) -> bool:
    """A digest or random id as hefed writes them (studies, rosters, rounds): 32 lowercase hex digits."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def split_study(obj: dict[str, Any], source: str) -> tuple[dict[str, Any], str | None]:
    """A results file's object without its optional ``study`` (the digest of the study it belongs to), and that
    digest (checked: 32 hex digits)."""
    if "study" not in obj:
        return obj, None
    study = obj["study"]
    if not is_digest(study):
        raise InvalidFileError(f"{source}: 'study' must be a study digest of 32 hex digits")
    return {k: v for k, v in obj.items() if k != "study"}, study


def study_field(study: str | None) -> dict[str, str]:
    """The optional ``study`` entry of a results file."""
    return {"study": study} if study else {}


def is_version(value: Any, expected: int) -> bool:
    """A format version must be that very integer (JSON true and 1.0 are not version 1)."""
    return type(value) is int and value == expected


def check_format(obj: dict[str, Any], source: str, file_format: str, version: int, what: str) -> None:
    """Refuse an object that is not a hefed ``what`` file: another ``format``, or another ``version``."""
    if obj.get("format") != file_format or not is_version(obj.get("version"), version):
        raise InvalidFileError(f"{source}: not a hefed {what} file (version {version})")


def check_names(names: Any, source: str, field: str) -> None:
    """Column and factory names must be strings that can be written out as UTF-8 (no lone surrogates)."""
    for name in names:
        try:
            name.encode("utf-8")
        except (UnicodeEncodeError, AttributeError):
            raise InvalidFileError(f"{source}: {field} contains a name that is not valid text") from None


def parse_str_list(value: Any, source: str, field: str, *, non_empty: bool = True) -> list[str]:
    """A JSON list of strings, or an :class:`InvalidFileError` naming the field."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (non_empty and not value):
        raise InvalidFileError(f"{source}: {field!r} must be a {'non-empty ' if non_empty else ''}list of strings")
    check_names(value, source, repr(field))
    return list(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
