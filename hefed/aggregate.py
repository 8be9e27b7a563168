"""Aggregator side: add bundles homomorphically, without any private key.

``D(Π c_i mod n²) = Σ m_i``: multiplying ciphertexts adds the packed
plaintexts slot by slot. Bundles must agree in kind, key, target, feature
set and encoding (each difference is named), contributors must be distinct,
and the total number of contributions must stay within the encoding's
``max_contributors``, for which the guard bits were sized.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import gmpy2

from .bundle import Bundle
from .errors import DuplicateContributorError, OverflowRiskError, SchemaMismatchError, UsageError
from .identity import Roster
from .rounds import Round, check_round_complete, verify_contribution


def aggregate(
    bundles: Iterable[Bundle | str | os.PathLike[str]],
    roster: Roster | None = None,
    round_: Round | None = None,
) -> Bundle:
    """Sum bundles (objects or file paths, read one at a time) into one aggregate bundle.

    Masked, signed contributions of a round (:mod:`hefed.rounds`) need the consortium
    ``roster`` and the ``round_``: each bundle must then be a roster member's valid
    signed contribution to this round, and every participant must have delivered.
    """
    if (roster is None) != (round_ is None):
        raise UsageError("a masked round needs both the roster and the round")
    manifests: list[dict[str, Any]] = []
    contributions: dict[str, list[int]] = {}
    first: Bundle | None = None
    first_name = ""
    acc: list[gmpy2.mpz] = []
    contributors: list[str] = []
    seen: dict[str, str] = {}
    for item in bundles:
        name = str(item) if not isinstance(item, Bundle) else f"bundle of {item.contributors}"
        bundle = item if isinstance(item, Bundle) else Bundle.load(item)
        if roster is not None and round_ is not None:
            verify_contribution(bundle, roster, round_, name)
            manifests.extend(bundle.manifests)
            contributions[bundle.contributors[0]] = list(bundle.ciphertexts)
        elif bundle.round_id:
            raise UsageError(f"{name} is a masked, signed round contribution: give the roster and the round")
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
            if factory in seen:
                raise DuplicateContributorError(
                    f"factory {factory!r} appears twice ({seen[factory]} and {name})"
                )
            seen[factory] = name
            contributors.append(factory)
        if len(contributors) > first.encoding.max_contributors:
            raise OverflowRiskError(
                f"more than {first.encoding.max_contributors} contributions: the encoding's guard bits "
                "do not allow this many"
            )
    if first is None:
        raise UsageError("aggregate needs at least one bundle")
    if round_ is not None:
        check_round_complete(contributors, round_)
    return Bundle(
        first.kind, first.public_key, first.target, list(first.features), first.encoding,
        contributors, [int(a) for a in acc], first.layout_digest, dict(first.parameters),
        first.round_id, manifests, contributions,
    )
