"""Key holder side: decrypt an aggregate, and only an aggregate.

The key holder refuses a bundle with fewer contributors than the disclosure
threshold (default 3) and checks, from the decrypted plaintexts themselves,
that the contribution counter equals the number of contributors listed and
that every slot passes its guard-bit check. A single factory's bundle
relabelled as an aggregate therefore fails: its counter reads 1.

:func:`decrypt_bundle` turns an aggregate of any kind into that kind's plain sums (its
:mod:`~hefed.kinds` entry says how, and which further checks they must pass);
:func:`decrypt_statistics` and :func:`decrypt_evaluation` are the same for one kind.

Against a malicious aggregator the key holder decrypts **signed round aggregates** only: it
checks every factory's signature and recomputes the aggregate from the signed contributions
itself (:func:`~hefed.protocol.verify_aggregate`), so a scaled, relabelled or padded aggregate
is refused. An unsigned aggregate (the plain protocol: trials, in-process simulations, a study
without a roster) is decrypted only with ``allow_unsigned=True``: its contributor list is then
the aggregator's word, and one factory's bundle padded with encryptions of zero under invented
ids would decrypt. A :class:`~hefed.roles.DecryptionLedger` refuses contributor sets that
overlap ones already decrypted under the key (differencing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phe import PaillierPrivateKey

from .._files import atomic_write_json, check_writable
from .._keys import key_fingerprint, load_private_key
from ..errors import (
    DuplicateContributorError,
    IntegrityError,
    KeyMismatchError,
    RoundError,
    SchemaMismatchError,
    TooFewContributorsError,
    UsageError,
)
from ..kinds import EVALUATION, STATISTICS, get_kind, kind_of_result
from ..primitives.encryption import decrypt_ciphertexts
from ..primitives.packing import PackingError
from ..protocol import Bundle, KeyHolderSigner, Roster, Study, load_release_key, verify_aggregate
from ..stats import EvaluationSums, SufficientStatistics
from ._ledger import DecryptionLedger, default_ledger_path

DEFAULT_MIN_CONTRIBUTORS = 3


UNSIGNED_WARNING = (
    "an unsigned aggregate: its contributor list is the aggregator's word, so one factory's bundle padded with "
    "encryptions of zero under invented ids, or scaled, would decrypt to that factory's own sums"
)


def _decrypt_values(bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int,
                    roster: Roster | None = None, allow_unsigned: bool = False,
                    ledger: DecryptionLedger | None = None) -> list[int]:
    """Threshold and key checks, the ledger, decryption, guard-bit and counter checks; the slot values.

    A masked round aggregate is decrypted only with the ``roster`` its signed manifests
    are checked against; an unsigned bundle is refused when a roster is given, and otherwise
    decrypted only with ``allow_unsigned``.
    """
    if not isinstance(min_contributors, int) or isinstance(min_contributors, bool) or min_contributors < 1:
        raise UsageError("min_contributors must be a positive integer", parameters=("min_contributors",))
    signed = roster is not None
    if roster is not None:
        contributors = sorted(verify_aggregate(bundle, roster, min_contributors))  # exactly the verified signers
        if contributors != sorted(bundle.contributors):
            raise RoundError("the aggregate's contributor list is not the verified set of signers")
    elif bundle.round_id:
        raise UsageError("this is a masked, signed round aggregate: give the roster to check its manifests",
                         parameters=("roster",))
    elif not allow_unsigned:
        raise RoundError(f"refused: {UNSIGNED_WARNING}. Decrypt signed round aggregates (give the roster), or allow "
                         "unsigned ones explicitly for trials", parameters=("allow_unsigned",))
    else:
        contributors = sorted(bundle.contributors)
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
    if ledger is not None:
        ledger.check(contributors, min_contributors, bundle.kind)
    layout = bundle.layout()
    plaintexts = decrypt_ciphertexts(private_key, bundle.ciphertexts)
    try:
        values = layout.unpack(plaintexts, count)
    except PackingError as exc:
        raise IntegrityError(f"decrypted aggregate is corrupt or overflowed: {exc}") from None
    *payload, counter = values
    if counter != count:
        raise IntegrityError(f"bundle lists {count} contributors but its ciphertexts sum {counter} contributions")
    if ledger is not None:  # recorded, under this bundle's key, before anything is released
        ledger.record(contributors, bundle.kind, bundle.study, bundle.round_id, signed, bundle.key_fingerprint)
    return payload


def decrypt_bundle(
    bundle: Bundle,
    private_key: PaillierPrivateKey,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None,
    kind: str | None = None,
    study: Study | None = None,
    *,
    allow_unsigned: bool = False,
    ledger: DecryptionLedger | None = None,
) -> Any:
    """Decrypt an aggregate of any kind (what ``hefed decrypt`` runs), or only of ``kind`` when given.

    Returns the kind's plain sums (:class:`~hefed.stats.SufficientStatistics`,
    :class:`~hefed.stats.FoldStatistics`, :class:`~hefed.stats.CoefficientAggregate`,
    :class:`~hefed.stats.ColumnSummary` or :class:`~hefed.stats.EvaluationSums`), after the
    kind's own integrity checks (rows present, non-negative sums of squares, …).

    ``allow_unsigned`` accepts an aggregate that is not a signed round's (see the module
    docstring for what that gives up); ``ledger`` refuses contributor sets that would allow
    differencing and records the decryption.
    """
    if kind is not None and bundle.kind != kind:
        raise SchemaMismatchError(f"expected a {kind} bundle, got a {bundle.kind} bundle")
    if study is not None:  # the study's aggregate, over the study's threshold, under the study's roster
        study.check_bundle(bundle, "aggregate")
        min_contributors = max(min_contributors, study.min_contributors)
        study.check_roster(roster)  # a roster study's aggregate is decrypted only as a signed round of it
    bundle_kind = get_kind(bundle.kind)
    values = _decrypt_values(bundle, private_key, min_contributors, roster, allow_unsigned, ledger)
    result = bundle_kind.result(values, bundle.header)
    # per-column support: refused in a study or a signed round; a trial aggregate (unsigned, no study) warns
    bundle_kind.check_result(result, min_contributors, refuse=study is not None or roster is not None)
    result.study = bundle.study
    return result


def decrypt_statistics(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None, study: Study | None = None, *, allow_unsigned: bool = False,
    ledger: DecryptionLedger | None = None,
) -> SufficientStatistics:
    """Decrypt a ``statistics`` aggregate of at least ``min_contributors`` factories."""
    result: SufficientStatistics = decrypt_bundle(bundle, private_key, min_contributors, roster, STATISTICS.name, study,
                                                  allow_unsigned=allow_unsigned, ledger=ledger)
    return result


def decrypt_evaluation(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | None = None, study: Study | None = None, *, allow_unsigned: bool = False,
    ledger: DecryptionLedger | None = None,
) -> EvaluationSums:
    """Decrypt an ``evaluation`` aggregate into the consortium's exact holdout sums."""
    result: EvaluationSums = decrypt_bundle(bundle, private_key, min_contributors, roster, EVALUATION.name, study,
                                            allow_unsigned=allow_unsigned, ledger=ledger)
    return result


def release_sums(result: Any, signer: KeyHolderSigner) -> dict[str, Any]:
    """The JSON object of decrypted sums, signed by the key holder's release key with their study and
    contributor set (what ``hefed decrypt --release-key`` writes)."""
    return signer.sign(result.to_dict(), kind_of_result(result).name, getattr(result, "study", None),
                       list(getattr(result, "contributors", [])))


PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Decrypted:
    """What :func:`decrypt_to_file` did: the sums, the ledger that allowed them, whether they were signed."""

    result: Any
    ledger: DecryptionLedger | None
    signed: bool


def decrypt_to_file(
    bundle: Bundle | PathLike,
    private_key: PaillierPrivateKey | PathLike,
    out: PathLike,
    *,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    roster: Roster | PathLike | None = None,
    study: Study | PathLike | None = None,
    allow_unsigned: bool = False,
    ledger: DecryptionLedger | PathLike | None = None,
    release_key: KeyHolderSigner | PathLike | None = None,
    allow_insecure_permissions: bool = False,
    force: bool = False,
) -> Decrypted:
    """What ``hefed decrypt`` does: decrypt an aggregate and write its sums, signed, atomically.

    With a study or a roster the ledger is on by default (``decryption-ledger.json`` beside the
    private key file). The sums are signed with ``release_key``; when the study names its key
    holder they must be, with that very key (by default ``keyholder.key.json`` beside the private
    key). Returns the decrypted sums, the ledger used and whether the sums were signed.
    """
    check_writable(out, force)
    key_path = None if isinstance(private_key, PaillierPrivateKey) else Path(private_key)
    if key_path is not None:
        private_key = load_private_key(key_path, allow_insecure_permissions)
    assert isinstance(private_key, PaillierPrivateKey)
    roster = Roster.load(roster) if isinstance(roster, (str, os.PathLike)) else roster
    study = Study.load(study) if isinstance(study, (str, os.PathLike)) else study
    bundle = Bundle.load(bundle) if isinstance(bundle, (str, os.PathLike)) else bundle
    fingerprint = key_fingerprint(private_key.public_key)
    if ledger is None and (study is not None or roster is not None) and key_path is not None:
        ledger = default_ledger_path(key_path)
    if isinstance(ledger, (str, os.PathLike)):
        ledger = DecryptionLedger.open(ledger, fingerprint)
    if release_key is None and study is not None and study.keyholder is not None and key_path is not None:
        beside = key_path.resolve().parent / "keyholder.key.json"
        release_key = beside if beside.exists() else None
    if isinstance(release_key, (str, os.PathLike)):
        release_key = load_release_key(release_key, allow_insecure_permissions)
    if study is not None and study.keyholder is not None:
        if release_key is None:
            raise UsageError("the study names its key holder's release key: sign the decrypted sums with it",
                             parameters=("release_key",))
        if release_key.public != study.keyholder:
            raise KeyMismatchError("the release key is not the one the study names for its key holder",
                                   parameters=("release_key",))
    result = decrypt_bundle(bundle, private_key, min_contributors, roster, study=study,
                            allow_unsigned=allow_unsigned, ledger=ledger)
    obj = release_sums(result, release_key) if release_key is not None else result.to_dict()
    atomic_write_json(out, obj, force=force)
    return Decrypted(result, ledger, release_key is not None)
