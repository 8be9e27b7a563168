"""The exceptions hefed raises.

Every error a user can cause derives from :class:`HefedError`. The CLI maps
:class:`UsageError` subclasses to exit code 2 and every other ``HefedError``
to exit code 1, printing the message as a single line.
"""

from __future__ import annotations


class HefedError(Exception):
    """Base class of every error hefed raises on bad input or refused operations."""

    exit_code = 1


class UsageError(HefedError):
    """The command or call was used wrongly (bad option values, refused overwrite)."""

    exit_code = 2


class OutputExistsError(UsageError):
    """An output file exists and ``force`` was not given."""


class InvalidFileError(HefedError):
    """A file (key, bundle, statistics, model, data) is malformed or unreadable."""


class DataError(HefedError):
    """A data table cannot be used: missing columns, non-numeric cells, NaN, too few rows."""


class EncodingError(HefedError):
    """A value cannot be represented exactly within the declared encoding."""


class OverflowRiskError(EncodingError):
    """A statistic, or a sum of them, could exceed the plaintext space; refused, never wrapped."""


class KeyMismatchError(HefedError):
    """Ciphertexts or keys belong to different Paillier keys, or a key pair does not match."""


class SchemaMismatchError(HefedError):
    """Bundles differ in target, features, encoding or kind and cannot be combined."""


class DuplicateContributorError(HefedError):
    """The same factory id appears more than once in an aggregation."""


class TooFewContributorsError(HefedError):
    """An aggregate has fewer contributors than the disclosure threshold."""


class IntegrityError(HefedError):
    """A decrypted aggregate fails its guard-bit or contributor-count checks."""


class SingularSystemError(HefedError):
    """The (ridge-)normal equations have no unique solution."""

    def __init__(self, message: str, columns: list[str] | None = None) -> None:
        super().__init__(message)
        self.columns = list(columns or [])


class ResultRangeError(HefedError):
    """An exact result cannot be represented as a float64 (beyond ±1.8e308)."""


class RoundError(HefedError):
    """A contribution or aggregate does not belong to the round, or its signature is invalid."""


class InsecureKeyError(UsageError):
    """A key size or key file permission that is refused for safety."""
