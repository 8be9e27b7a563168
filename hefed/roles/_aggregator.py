"""Aggregator side: add bundles homomorphically, without any private key.

``D(Π c_i mod n²) = Σ m_i``: multiplying ciphertexts adds the packed
plaintexts slot by slot. Bundles must agree in kind, key, target, feature
set and encoding (each difference is named), contributors must be distinct,
and the total number of contributions must stay within the encoding's
``max_contributors``, for which the guard bits were sized.

A version 2 round (:mod:`hefed.protocol._recovery`) is collected instead (:func:`collect_round`:
the product of the valid contributions and the unmask request to the survivors) and, once the
survivors' signed reveals are in, unmasked (:func:`unmask_round`): the aggregate of the survivors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gmpy2

from .. import _pool as parallel
from ..errors import DuplicateContributorError, OverflowRiskError, RoundError, SchemaMismatchError, UsageError
from ..protocol import (
    Bundle,
    Reveal,
    Roster,
    Round,
    RoundKeys,
    Study,
    UnmaskRequest,
    check_round_complete,
    make_unmask_request,
    unmask,
    verify_round_contribution,
)

# Reading and checking a bundle file costs ~1 ms; a worker start ~0.5 s.
_MIN_FILES_PER_WORKER = 500


def aggregate(
    bundles: Iterable[Bundle | str | os.PathLike[str]],
    roster: Roster | None = None,
    round_: Round | RoundKeys | None = None,
    study: Study | None = None,
) -> Bundle:
    """Sum bundles (objects or file paths, read one at a time) into one aggregate bundle.

    Masked, signed contributions of a round (:mod:`hefed.protocol`) need the consortium
    ``roster`` and the ``round_``: each bundle must then be a roster member's valid
    signed contribution to this round, and every participant must have delivered.
    With a ``study``, every bundle must have been made for it (its digest, key, allowed kind,
    columns and encoding), and the roster must be the study's.
    """
    if (roster is None) != (round_ is None):
        raise UsageError("a masked round needs both the roster and the round", parameters=("roster", "round"))
    if isinstance(round_, RoundKeys):
        raise UsageError(f"round {round_.round_id} is a version 2 round: collect its contributions (collect_round, "
                         "hefed round collect), then unmask them with the survivors' reveals (unmask_round, "
                         "hefed round unmask)", parameters=("round",))
    if study is not None:  # a roster study's rounds only: masked, signed, of its roster, over its threshold
        study.check_roster(roster, round_)
    result = _aggregate(bundles, roster, round_)
    if study is not None:
        study.check_bundle(result, "the bundles")  # every bundle has the first one's study, key, kind and schema
    return result


def collect_round(
    bundles: Iterable[Bundle | str | os.PathLike[str]], roster: Roster, keys: RoundKeys, study: Study | None = None,
) -> tuple[Bundle, UnmaskRequest]:
    """Aggregator, version 2 round: the product of the valid signed contributions (bundles or files) —
    their senders are the survivors — and the unmask request for the survivors.

    Fewer survivors than the round's threshold, or the ``study``'s ``min_contributors``, fail the
    round (:class:`~hefed.errors.IncompleteRoundError` names who is missing)."""
    if study is not None:
        study.check_roster(roster, keys.round)
        if keys.round.study != study.digest:
            raise RoundError(f"round {keys.round_id} serves {keys.round.study or 'no study'}, not study {study.digest}")
    keys.check(roster)
    named = ((str(item) if not isinstance(item, Bundle) else f"bundle of {item.contributors}", item, None)
             for item in bundles)
    collected = _fold(named, roster, keys)[0]
    if study is not None:
        study.check_bundle(collected, "the bundles")
    request = make_unmask_request(keys, collected.contributors, study.min_contributors if study is not None else 1)
    return collected, request


def unmask_round(
    collected: Bundle | str | os.PathLike[str], keys: RoundKeys, reveals: Iterable[Reveal | str | os.PathLike[str]],
    roster: Roster,
) -> Bundle:
    """Aggregator, version 2 round: the survivors' aggregate from the collected product and at least
    the threshold of signed reveals (objects or files)."""
    bundle = collected if isinstance(collected, Bundle) else Bundle.load(collected)
    answers = [r if isinstance(r, Reveal) else Reveal.load(r) for r in reveals]
    return unmask(bundle, keys, answers, roster)


def _aggregate(
    bundles: Iterable[Bundle | str | os.PathLike[str]], roster: Roster | None, round_: Round | None,
) -> Bundle:
    if roster is None and isinstance(bundles, Sequence):
        workers = parallel.workers_for(len(bundles), _MIN_FILES_PER_WORKER)
        if workers > 1 and all(isinstance(item, (str, os.PathLike)) for item in bundles):
            # Many files: each worker reads and multiplies its share, one file at a time;
            # the partial products are then combined with the same checks.
            pieces = parallel.split([str(item) for item in bundles], workers)
            partials = parallel.map_pieces(_aggregate_files, pieces)
            return _fold(((name, partial, sources) for partial, sources, name in partials), None, None)[0]
    named = ((str(item) if not isinstance(item, Bundle) else f"bundle of {item.contributors}", item, None)
             for item in bundles)
    return _fold(named, roster, round_)[0]


def _fold(
    items: Iterable[tuple[str, Bundle | str | os.PathLike[str], Mapping[str, str] | None]],
    roster: Roster | None,
    round_: Round | RoundKeys | None,
) -> tuple[Bundle, dict[str, str]]:
    """Multiply bundles one at a time with every check; also returns which file each factory came from.

    ``items`` are (name, bundle or path, sources): ``sources`` maps the factories of a partial
    product (a pool worker's share) to the files they came from; ``None`` means ``name``.
    """
    manifests: list[dict[str, Any]] = []
    contributions: dict[str, list[int]] = {}
    first: Bundle | None = None
    first_name = ""
    acc: list[gmpy2.mpz] = []
    contributors: list[str] = []
    seen: dict[str, str] = {}
    for name, item, sources in items:
        bundle = item if isinstance(item, Bundle) else Bundle.load(item)
        if roster is not None and round_ is not None:
            verify_round_contribution(bundle, roster, round_, name)
            manifests.extend(bundle.manifests)
            contributions[bundle.contributors[0]] = list(bundle.ciphertexts)
        elif bundle.round_id:
            raise UsageError(f"{name} is a masked, signed round contribution: give the roster and the round",
                             parameters=("roster", "round"))
        if first is None:
            first, first_name = bundle, name
            acc = [gmpy2.mpz(c) for c in bundle.ciphertexts]
        else:
            diffs = first.schema_differences(bundle)
            if diffs:
                raise SchemaMismatchError(f"{name} does not match {first_name}: " + "; ".join(diffs))
            nsq = gmpy2.mpz(first.public_key.nsquare)
            acc = [gmpy2.f_mod(a * c, nsq) for a, c in zip(acc, bundle.ciphertexts, strict=True)]
        for factory in bundle.contributors:
            origin = sources[factory] if sources else name
            if factory in seen:
                raise DuplicateContributorError(
                    f"factory {factory!r} appears twice ({seen[factory]} and {origin})"
                )
            seen[factory] = origin
            contributors.append(factory)
        if len(contributors) > first.encoding.max_contributors:
            raise OverflowRiskError(
                f"more than {first.encoding.max_contributors} contributions: the encoding's guard bits "
                "do not allow this many"
            )
    if first is None:
        raise UsageError("aggregate needs at least one bundle")
    if isinstance(round_, Round):
        check_round_complete(contributors, round_)
    return Bundle(
        first.kind, first.public_key, first.target, list(first.features), first.encoding,
        contributors, [int(a) for a in acc], first.layout_digest, dict(first.parameters),
        first.round_id, manifests, contributions, first.study,
    ), seen


def _aggregate_files(paths: Sequence[str]) -> tuple[Bundle, dict[str, str], str]:
    """Pool worker: the product of a share of the bundle files, which file each factory
    came from, and the share's first file (to name it in a mismatch)."""
    partial, seen = _fold(((path, path, None) for path in paths), None, None)
    return partial, seen, paths[0]
