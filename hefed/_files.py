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
from typing import Any, ClassVar, Self

import gmpy2

from .errors import InvalidFileError, OutputExistsError

#: Largest JSON document hefed reads: a bundle, the biggest files there are. The largest honest one, a round aggregate
#: carrying every contribution of a 300-feature study under a 3072-bit key, is about 5 MB per factory; the caps of
#: :mod:`hefed.kinds` (features, folds, values per contribution) bound one contribution at about 90 MB.
MAX_JSON_BYTES = 256 * 1024 * 1024

#: Largest file of each smaller kind (keys, identities, studies, rosters, rounds, models, bounds, ledgers …); a kind not
#: listed here (bundles, decrypted sums) may be up to :data:`MAX_JSON_BYTES`.
MAX_JSON_BYTES_OF: dict[str, int] = {
    "public key": 1 << 16, "private key": 1 << 16, "identity": 1 << 16, "release key": 1 << 16,
    "bounds": 1 << 22, "study": 1 << 24, "roster": 1 << 24, "round": 1 << 24, "model": 1 << 26,
}

#: A JSON document may hold at most this many values beyond one per :data:`BYTES_PER_VALUE` bytes of its text.
#: Parsing costs about 60 bytes of memory per value (a dict about 200): the allowance keeps a hostile
#: ``[{},{},…]`` or ``[0,0,…]`` from taking 20–30 times its size, while any file hefed writes (long base64
#: ciphertexts, decimal strings, indented) stays far below it.
BASE_VALUES = 4096
#: See :data:`BASE_VALUES`; an object counts four values and a list two (they cost that much more to build).
BYTES_PER_VALUE = 6

#: Most decimal digits of a JSON integer (Python's own limit for ``int(str)``; hefed writes every large integer —
#: ciphertexts, sums — as a string, and every JSON integer it reads is a small count, size or seed).
MAX_INT_DIGITS = 4300


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


def max_json_bytes(what: str) -> int:
    """The largest ``what`` file hefed reads (:data:`MAX_JSON_BYTES_OF`, else :data:`MAX_JSON_BYTES`)."""
    return MAX_JSON_BYTES_OF.get(what, MAX_JSON_BYTES)


def read_json_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise :class:`InvalidFileError` naming the file.

    The file's size is checked against the cap of its kind before a byte is read, and its text by
    :func:`parse_json_object` before it is parsed.
    """
    path = Path(path)
    size = stat_file(path, what).st_size
    if path.is_dir():
        raise InvalidFileError(f"{path}: is a directory, expected a {what} file")
    if size == 0:
        raise InvalidFileError(f"{path}: {what} file is empty")
    limit = max_json_bytes(what)
    if size > limit:
        raise InvalidFileError(f"{path}: {what} file is too large ({size} bytes; at most {limit})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidFileError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    return parse_json_object(raw, str(path), what, what_is="file")


def parse_json_object(raw: bytes, source: str, what: str, *, what_is: str = "message") -> dict[str, Any]:
    """Parse the JSON object ``raw`` (a ``what`` file or message from ``source``), within hefed's caps.

    Refused before parsing: more bytes than the kind's cap, more values than the text's length allows
    (:data:`BASE_VALUES`, :data:`BYTES_PER_VALUE`: memory stays a small multiple of the size), and while parsing
    an integer of more than :data:`MAX_INT_DIGITS` digits, ``NaN``/``Infinity``, and nesting beyond Python's
    recursion limit. Every refusal is one :class:`InvalidFileError` line naming ``source``.
    """
    limit = max_json_bytes(what)
    if len(raw) > limit:
        raise InvalidFileError(f"{source}: {what} {what_is} is too large ({len(raw)} bytes; at most {limit})")
    values = raw.count(b",") + raw.count(b":") + 4 * raw.count(b"{") + 2 * raw.count(b"[")
    allowed = BASE_VALUES + len(raw) // BYTES_PER_VALUE
    if values > allowed:
        raise InvalidFileError(f"{source}: {what} {what_is} holds too many JSON values for its size ({values} "
                               f"separators and brackets in {len(raw)} bytes; at most {allowed})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidFileError(f"{source}: {what} {what_is} is not UTF-8 text (binary?)") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise InvalidFileError(
            f"{source}: {what} {what_is} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    except ValueError as exc:
        raise InvalidFileError(f"{source}: {what} {what_is}: {exc}") from None
    except RecursionError:
        raise InvalidFileError(f"{source}: {what} {what_is} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{source}: {what} {what_is} must hold a JSON object")
    return obj


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


_RATIONAL = re.compile(r"-?[0-9]{1,60000}(/[0-9]{1,60000})?")
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
    # gmpy2 converts in subquadratic time and has no digit limit (Python's int(str) stops at 4300 digits,
    # which the exact coefficients of a 100-feature model exceed); the pattern caps the length.
    top, bottom = int(gmpy2.mpz(numerator)), int(gmpy2.mpz(denominator or "1"))
    if bottom == 0:
        raise InvalidFileError(f"{source}: {field!r} has a zero denominator")
    value = Fraction(top, bottom)
    if finite and abs(value) >= FLOAT_LIMIT:
        raise InvalidFileError(f"{source}: {field!r} is beyond float64 range")
    if non_negative and value < 0:
        raise InvalidFileError(f"{source}: {field!r} must not be negative")
    return value


def format_rational(value: Fraction) -> str:
    """An exact rational as ``"p/q"``, what :func:`parse_rational` reads back (any number of digits)."""
    return f"{gmpy2.mpz(value.numerator).digits()}/{gmpy2.mpz(value.denominator).digits()}"


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


class JsonDocument:
    """``save`` and ``load`` for a typed JSON file; a subclass gives ``to_dict``, ``from_dict(obj, source)`` and
    ``LABEL`` (how a refusal names the file). Saving is atomic (:func:`atomic_write_json`) and loading guarded
    (:func:`read_json_object`)."""

    LABEL: ClassVar[str] = "file"

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, obj: Any, source: str = "file") -> Any:
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        loaded: Self = cls.from_dict(read_json_object(path, cls.LABEL), str(path))
        return loaded
