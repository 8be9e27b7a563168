"""Key holder side: decrypt an aggregate, and only an aggregate.

The key holder refuses a bundle with fewer contributors than the disclosure
threshold (default 3) and checks, from the decrypted plaintexts themselves,
that the contribution counter equals the number of contributors listed and
that every slot passes its guard-bit check. A single factory's bundle
relabelled as an aggregate therefore fails: its counter reads 1.

:func:`decrypt_bundle` turns an aggregate of any kind into that kind's plain sums (its
:mod:`~hefed.kinds` entry says how, and which further checks they must pass);
:func:`decrypt_statistics` and :func:`decrypt_evaluation` are the same for one kind.
"""

from __future__ import annotations

from typing import Any

from phe import PaillierPrivateKey

from .._keys import key_fingerprint
from ..errors import (
    DuplicateContributorError,
    IntegrityError,
    KeyMismatchError,
    SchemaMismatchError,
    TooFewContributorsError,
    UsageError,
)
from ..kinds import EVALUATION, STATISTICS, get_kind
from ..primitives.encryption import decrypt_ciphertexts
from ..primitives.packing import PackingError
from ..protocol import Bundle, Roster, Study, verify_aggregate
from ..stats import EvaluationSums, SufficientStatistics

DEFAULT_MIN_CONTRIBUTORS = 3


def _decrypt_values(bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int,
                    roster: Roster | None = None) -> list[int]:
    """Threshold and key checks, decryption, guard-bit and counter checks; the slot values.

    A masked round aggregate is decrypted only with the ``roster`` its signed manifests
    are checked against; an unsigned bundle is refused when a roster is given.
    """
    if not isinstance(min_contributors, int) or isinstance(min_contributors, bool) or min_contributors < 1:
        raise UsageError("min_contributors must be a positive integer", parameters=("min_contributors",))
    if roster is not None:
        verify_aggregate(bundle, roster, min_contributors)
    elif bundle.round_id:
        raise UsageError("this is a masked, signed round aggregate: give the roster to check its manifests",
                         parameters=("roster",))
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


def decrypt_bundle(
    bundle: Bundle,
    private_key: PaillierPrivateKey,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
    kind: str | None = None,
    study: Study | None = None,
) -> Any:
    """Decrypt an aggregate of any kind (what ``hefed decrypt`` runs), or only of ``kind`` when given.

    Returns the kind's plain sums (:class:`~hefed.stats.SufficientStatistics`,
    :class:`~hefed.stats.FoldStatistics`, :class:`~hefed.stats.CoefficientAggregate`,
    :class:`~hefed.stats.ColumnSummary` or :class:`~hefed.stats.EvaluationSums`), after the
    kind's own integrity checks (rows present, non-negative sums of squares, …).
    """
    if kind is not None and bundle.kind != kind:
        raise SchemaMismatchError(f"expected a {kind} bundle, got a {bundle.kind} bundle")
    if study is not None:  # the study's aggregate, over the study's threshold, under the study's roster
        study.check_bundle(bundle, "aggregate")
        min_contributors = max(min_contributors, study.min_contributors)
        study.check_roster(roster)  # a roster study's aggregate is decrypted only as a signed round of it
    bundle_kind = get_kind(bundle.kind)
    result = bundle_kind.result(_decrypt_values(bundle, private_key, min_contributors, roster), bundle.header)
    bundle_kind.check_result(result)
    result.study = bundle.study
    return result


def decrypt_statistics(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None, study: Study | None = None,
) -> SufficientStatistics:
    """Decrypt a ``statistics`` aggregate of at least ``min_contributors`` factories."""
    result: SufficientStatistics = decrypt_bundle(bundle, private_key, min_contributors, roster, STATISTICS.name, study)
    return result


def decrypt_evaluation(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None, study: Study | None = None,
) -> EvaluationSums:
    """Decrypt an ``evaluation`` aggregate into the consortium's exact holdout sums."""
    result: EvaluationSums = decrypt_bundle(bundle, private_key, min_contributors, roster, EVALUATION.name, study)
    return result
