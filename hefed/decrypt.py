"""Key holder side: decrypt an aggregate, and only an aggregate.

The key holder refuses a bundle with fewer contributors than the disclosure
threshold (default 3) and checks, from the decrypted plaintexts themselves,
that the contribution counter equals the number of contributors listed and
that every slot passes its guard-bit check. A single factory's bundle
relabelled as an aggregate therefore fails: its counter reads 1.

:func:`decrypt_statistics` turns a ``statistics`` aggregate into
:class:`~hefed.statistics.SufficientStatistics`; :func:`decrypt_evaluation`
an ``evaluation`` aggregate into :class:`~hefed.evaluation.EvaluationSums`;
:func:`decrypt_bundle` does whichever the bundle's kind says.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from phe import PaillierPrivateKey

from .bundle import Bundle
from .coefficients import FORMAT as COEFFICIENTS_FORMAT
from .coefficients import CoefficientAggregate
from .crossval import FORMAT as FOLDS_FORMAT
from .crossval import FoldStatistics
from .encryption import decrypt_ciphertexts
from .errors import (
    DuplicateContributorError,
    IntegrityError,
    InvalidFileError,
    KeyMismatchError,
    SchemaMismatchError,
    TooFewContributorsError,
    UsageError,
)
from .evaluation import EvaluationSums, sums_from_values
from .fileio import read_json_object
from .identity import Roster
from .keys import key_fingerprint
from .preprocess import ColumnSummary, summary_from_values
from .primitives.packing import PackingError
from .rounds import verify_aggregate
from .statistics import FORMAT as STATISTICS_FORMAT
from .statistics import SufficientStatistics

DEFAULT_MIN_CONTRIBUTORS = 3


def _decrypt_values(bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int,
                    roster: Roster | None = None) -> list[int]:
    """Threshold and key checks, decryption, guard-bit and counter checks; the slot values.

    A masked round aggregate is decrypted only with the ``roster`` its signed manifests
    are checked against; an unsigned bundle is refused when a roster is given.
    """
    if not isinstance(min_contributors, int) or isinstance(min_contributors, bool) or min_contributors < 1:
        raise UsageError("min_contributors must be a positive integer")
    if roster is not None:
        verify_aggregate(bundle, roster, min_contributors)
    elif bundle.round_id:
        raise UsageError("this is a masked, signed round aggregate: give the roster to check its manifests")
    if bundle.key_fingerprint != key_fingerprint(private_key.public_key):
        raise KeyMismatchError(
            f"bundle was encrypted for key {bundle.key_fingerprint}, "
            f"but the private key is {key_fingerprint(private_key.public_key)}"
        )
    if len(set(bundle.contributors)) != len(bundle.contributors):
        raise DuplicateContributorError("bundle lists a factory more than once")
    count = len(bundle.contributors)
    if count < min_contributors:
        raise TooFewContributorsError(
            f"bundle has {count} contributor(s); at least {min_contributors} are required "
            "before anything is decrypted"
        )
    layout = bundle.layout()
    plaintexts = decrypt_ciphertexts(private_key, bundle.ciphertexts)
    try:
        values = layout.unpack(plaintexts, count)
    except PackingError as exc:
        raise IntegrityError(f"decrypted aggregate is corrupt or overflowed: {exc}") from None
    *payload, counter = values
    if counter != count:
        raise IntegrityError(f"bundle lists {count} contributors but its ciphertexts sum {counter} contributions")
    return payload


Decrypted = SufficientStatistics | EvaluationSums | CoefficientAggregate | FoldStatistics | ColumnSummary


def _statistics(values: list[int], bundle: Bundle) -> SufficientStatistics:
    return SufficientStatistics.from_vector(values, bundle.target, bundle.features, bundle.encoding,
                                            bundle.contributors)


def _fold_statistics(values: list[int], bundle: Bundle) -> FoldStatistics:
    k = bundle.parameters["folds"]
    size = len(values) // k
    return FoldStatistics([_statistics(values[i * size:(i + 1) * size], bundle) for i in range(k)],
                          bundle.parameters["fold_seed"])


def _evaluation(values: list[int], bundle: Bundle) -> EvaluationSums:
    return sums_from_values(values, bundle.parameters, bundle.encoding, bundle.target, bundle.features,
                            bundle.contributors)


#: How each bundle kind's decrypted, checked slot values become its result.
_RESULTS: dict[str, Callable[[list[int], Bundle], Decrypted]] = {
    "statistics": _statistics,
    "fold_statistics": _fold_statistics,
    "evaluation": _evaluation,
    "coefficients": CoefficientAggregate.from_values,
    "summary": summary_from_values,
}


def decrypt_bundle(
    bundle: Bundle,
    private_key: PaillierPrivateKey,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
    kind: str | None = None,
) -> Decrypted:
    """Decrypt an aggregate of any kind (what ``hefed decrypt`` runs), or only of ``kind`` when given.

    Every result is checked for rows and non-negative sums of squares before it is returned.
    """
    if kind is not None and bundle.kind != kind:
        raise SchemaMismatchError(f"expected a {kind} bundle, got a {bundle.kind} bundle")
    result = _RESULTS[bundle.kind](_decrypt_values(bundle, private_key, min_contributors, roster), bundle)
    parts = result.folds if isinstance(result, FoldStatistics) else [result]
    for part in parts:
        if isinstance(part, SufficientStatistics) and any(part.gram[a][a] < 0 for a in range(len(part.gram))):
            raise IntegrityError("decrypted statistics have a negative sum of squares")
    if isinstance(result, (EvaluationSums, CoefficientAggregate)) and result.n < 1:
        raise IntegrityError(f"decrypted {bundle.kind} aggregate covers no rows")
    return result


def decrypt_statistics(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
) -> SufficientStatistics:
    """Decrypt a ``statistics`` aggregate of at least ``min_contributors`` factories."""
    return decrypt_bundle(bundle, private_key, min_contributors, roster, "statistics")  # type: ignore[return-value]


def decrypt_evaluation(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
) -> EvaluationSums:
    """Decrypt an ``evaluation`` aggregate into the consortium's exact holdout sums."""
    return decrypt_bundle(bundle, private_key, min_contributors, roster, "evaluation")  # type: ignore[return-value]


def decrypt_coefficients(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
) -> CoefficientAggregate:
    """Decrypt a ``coefficients`` aggregate into ``Σ nᵢ`` and ``Σ nᵢθᵢ``."""
    return decrypt_bundle(bundle, private_key, min_contributors, roster, "coefficients")  # type: ignore[return-value]


def decrypt_fold_statistics(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
) -> FoldStatistics:
    """Decrypt a ``fold_statistics`` aggregate into the exact statistics of every fold."""
    return decrypt_bundle(bundle, private_key, min_contributors, roster, "fold_statistics")  # type: ignore[return-value]


def decrypt_summary(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
) -> ColumnSummary:
    """Decrypt a ``summary`` aggregate into the consortium's per-column count, mean and std."""
    return decrypt_bundle(bundle, private_key, min_contributors, roster, "summary")  # type: ignore[return-value]


def load_decrypted(path: str | os.PathLike[str]) -> SufficientStatistics | CoefficientAggregate | FoldStatistics:
    """Load what ``hefed decrypt`` wrote for ``hefed solve``: statistics or a coefficient aggregate."""
    obj = read_json_object(path, "decrypted aggregate")
    if obj.get("format") == COEFFICIENTS_FORMAT:
        return CoefficientAggregate.from_dict(obj, str(path))
    if obj.get("format") == STATISTICS_FORMAT:
        return SufficientStatistics.from_dict(obj, str(path))
    if obj.get("format") == FOLDS_FORMAT:
        return FoldStatistics.from_dict(obj, str(path))
    raise InvalidFileError(
        f"{path}: expected decrypted statistics or coefficients (format {obj.get('format')!r}); "
        "evaluation results are read, not solved"
    )


