"""The exceptions hefed raises.

Every error a user can cause derives from :class:`HefedError`; messages are one line and name
the file, column and row where there is one (a factory's own messages may quote its own cell
values: they are for the factory's operator, and what leaves a factory is only
:func:`reply_category`, a fixed short string per exception class). Errors carry no
exit codes and name no command-line flags: where a message advises changing a setting it
names the library parameter and sets :attr:`HefedError.parameters`, so a front end (the CLI)
can point at its own option for it.

Where scikit-learn expects a :class:`ValueError` (bad data, bad parameter values), the
matching hefed errors are :class:`ValueError` subclasses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self


class RoundedValuesWarning(UserWarning):
    """Values finer than their column's grid were rounded to it (counted; a call that returns no
    report says so with this warning rather than silently)."""


class PrivacyNoiseWarning(UserWarning):
    """A differentially private release whose noise swamps a statistic or a coefficient (the model may be
    useless: a larger epsilon, tighter bounds or more rows)."""


class SingledOutColumnWarning(UserWarning):
    """A trial aggregate (unsigned, no study) whose sums of some column or level come from fewer factories than
    the disclosure threshold: they single out a factory (in a study or a signed round this is refused:
    :class:`SingledOutColumnError`)."""


class FewClustersWarning(UserWarning):
    """Cluster-robust standard errors from few clusters (plants): below about 20 they are too small."""


class HefedError(Exception):
    """Base class of every error hefed raises on bad input or refused operations.

    ``parameters`` names the library parameters (``"int_bits"``, ``"force"`` …) whose change
    the message suggests, if any.
    """

    def __init__(self, message: str = "", *, parameters: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.parameters: tuple[str, ...] = tuple(parameters)

    def reworded(self, message: str) -> Self:
        """The same error — its type and every attribute (the parameters it points at, the columns of a
        singular system, the survivors of a round) — with another message (e.g. rows renumbered)."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.args = (message,)
        return copy


class UsageError(HefedError, ValueError):
    """The call was used wrongly (bad parameter values, refused overwrite)."""


class OutputExistsError(UsageError):
    """An output file exists and ``force`` was not given."""


class InvalidFileError(HefedError, ValueError):
    """A file (key, bundle, statistics, model, data) is malformed or unreadable."""


class DataError(HefedError, ValueError):
    """A data table cannot be used: missing columns, non-numeric cells, NaN, too few rows."""


class EncodingError(HefedError, ValueError):
    """A value cannot be represented exactly within the declared encoding."""


class OverflowRiskError(EncodingError):
    """A statistic, or a sum of them, could exceed the plaintext space; refused, never wrapped."""


class KeyMismatchError(HefedError):
    """Ciphertexts or keys belong to different Paillier keys, or a key pair does not match."""


class SchemaMismatchError(HefedError, ValueError):
    """Bundles or tables differ in target, features, encoding or kind and cannot be combined."""


class DuplicateContributorError(HefedError):
    """The same factory id appears more than once in an aggregation."""


class TooFewContributorsError(HefedError):
    """An aggregate has fewer contributors than the disclosure threshold."""


class SingledOutColumnError(TooFewContributorsError):
    """An aggregate whose sums of some column or level come from fewer factories than the disclosure threshold
    (a column non-zero at one or two plants, a categorical level only one plant has): refused, nothing decrypted
    is released."""


class IntegrityError(HefedError):
    """A decrypted aggregate fails its guard-bit or contributor-count checks."""


class SingularSystemError(HefedError, ValueError):
    """The (ridge-)normal equations have no unique solution."""

    def __init__(self, message: str, columns: Sequence[str] | None = None, *,
                 parameters: Sequence[str] = ("ridge",)) -> None:
        super().__init__(message, parameters=parameters)
        self.columns = list(columns or [])


class ResultRangeError(HefedError):
    """An exact result cannot be represented as a float64 (beyond ±1.8e308)."""


class RoundError(HefedError):
    """A contribution or aggregate does not belong to the round, or its signature is invalid."""


class ReleaseError(HefedError):
    """Decrypted sums or a model not signed by the key holder a study names, or changed after signing."""


class LedgerError(HefedError):
    """The key holder's ledger refuses a decryption: its contributor set overlaps one already decrypted
    under the same key without being identical (the difference would single out factories)."""


class PrivacyNoiseError(HefedError, ValueError):
    """A differentially private release refused because the noised statistics are unusable (a Gram matrix that
    is not positive definite, a noised row count below the parameters): nothing is clipped in silence."""


class IncompleteRoundError(RoundError):
    """Not every participant of a masked round delivered: the masks cannot cancel.

    ``missing`` and ``survivors`` name the factories, so a front end can offer the new round.
    """

    def __init__(self, message: str, missing: Sequence[str] = (), survivors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.survivors = list(survivors)


class InsecureKeyError(UsageError):
    """A key size or key file permission that is refused for safety."""


class UnpinnedError(UsageError):
    """A factory was asked to take part without the pin multi-party use needs: the key it encrypts under (its
    study's, or node config ``key-fingerprint``) or, for a masked round, the roster (its study's, or
    ``roster-digest``)."""


# --- what leaves a factory: a fixed category per exception class, never the message --------------------------

#: The category of each exception class, most specific first (looked up along the exception's MRO).
_REPLY_CATEGORIES: dict[type[BaseException], str] = {
    InsecureKeyError: "refused: insecure key",
    UnpinnedError: "refused: no pin for key or roster",
    KeyMismatchError: "refused: key mismatch",
    SchemaMismatchError: "refused: study or schema mismatch",
    RoundError: "refused: round or roster mismatch",
    EncodingError: "refused: data out of range",
    DataError: "refused: data not usable",
    DuplicateContributorError: "refused: duplicate contribution",
    TooFewContributorsError: "refused: too few contributors",
    IntegrityError: "refused: integrity check failed",
    SingularSystemError: "failed: singular system",
    ResultRangeError: "failed: result out of range",
    InvalidFileError: "refused: bad request or file",
    UsageError: "refused: bad request or configuration",
    HefedError: "refused: other",
}
#: What a reply says about an exception that is not a hefed error (a bug, a crash): nothing but this.
INTERNAL_CATEGORY = "failed: internal"
#: Every category a reply may carry (an aggregator treats any other text as a malformed reply).
REPLY_CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys([*_REPLY_CATEGORIES.values(), INTERNAL_CATEGORY]))


def reply_category(exc: BaseException) -> str:
    """The fixed, short category a reply that leaves a factory carries for ``exc`` (e.g. ``"refused: key
    mismatch"``): chosen by the exception's class alone, so it never holds a value, a row number, a column
    statistic, a column name or a path. The full message stays in the factory's own log."""
    for cls in type(exc).__mro__:
        category = _REPLY_CATEGORIES.get(cls)
        if category is not None:
            return category
    return INTERNAL_CATEGORY
