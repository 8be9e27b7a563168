"""What travels: encrypted bundles, factory identities and the roster, masked and signed rounds.

Layer 5 of hefed (above :mod:`hefed.kinds`).

* :class:`Bundle` — ciphertexts plus public metadata, sealed from a kind's plain sums;
* :func:`enroll`, :class:`FactoryIdentity`, :class:`Roster` — who may contribute, with which keys;
* :class:`Round`, :class:`Masking`, :func:`mask_and_sign`, :func:`verify_contribution`,
  :func:`verify_aggregate` — pairwise zero-sum masks and signed manifests: only the full sum of
  a round can be read;
* version 2 rounds that survive drop-outs (SecAgg on Paillier): :func:`propose_round`,
  :func:`join_round`, :func:`start_round` (:class:`RoundKeys`), :func:`mask_contribution`,
  :func:`make_unmask_request`, :func:`reveal`, :func:`unmask`; :func:`run_round` runs one in process.
"""

from __future__ import annotations

from ._bundle import FORMAT, Bundle
from ._identity import FactoryIdentity, Member, Roster, enroll, load_identity, load_member, roster_add
from ._ids import FACTORY_ID_PATTERN, check_factory_id
from ._recovery import (
    Join,
    Masking,
    Reveal,
    RoundKeys,
    RoundRun,
    RoundSecret,
    UnmaskRequest,
    accept_round_keys,
    collect_contributions,
    default_threshold,
    join_round,
    load_round_inputs,
    load_secret,
    make_unmask_request,
    mask_contribution,
    propose_round,
    recovery_correction,
    reveal,
    run_round,
    start_round,
    unmask,
    verify_aggregate,
    verify_round_contribution,
)
from ._rounds import (
    Round,
    check_round_complete,
    check_signed_manifests,
    check_signed_product,
    ciphertext_digest,
    factory_masks,
    mask_and_sign,
    new_round,
    schema_digest,
    verify_contribution,
)
from ._signed import (
    KeyHolderSigner,
    ReleaseSignature,
    body_digest,
    check_signer,
    load_release_key,
    load_release_public,
    make_release_key,
    open_release,
)
from ._study import ColumnSpec, Study

__all__ = [
    "Join",
    "Reveal",
    "RoundKeys",
    "RoundRun",
    "RoundSecret",
    "UnmaskRequest",
    "accept_round_keys",
    "check_signed_manifests",
    "check_signed_product",
    "collect_contributions",
    "default_threshold",
    "join_round",
    "load_secret",
    "make_unmask_request",
    "mask_contribution",
    "propose_round",
    "recovery_correction",
    "reveal",
    "run_round",
    "start_round",
    "unmask",
    "verify_round_contribution",
    # version 1 rounds, bundles, identities, studies
    "FACTORY_ID_PATTERN",
    "FORMAT",
    "Bundle",
    "ColumnSpec",
    "Study",
    "FactoryIdentity",
    "KeyHolderSigner",
    "ReleaseSignature",
    "body_digest",
    "check_signer",
    "load_release_key",
    "load_release_public",
    "make_release_key",
    "open_release",
    "Masking",
    "Member",
    "Roster",
    "Round",
    "check_factory_id",
    "check_round_complete",
    "ciphertext_digest",
    "enroll",
    "factory_masks",
    "load_identity",
    "load_member",
    "load_round_inputs",
    "mask_and_sign",
    "new_round",
    "roster_add",
    "schema_digest",
    "verify_aggregate",
    "verify_contribution",
]
