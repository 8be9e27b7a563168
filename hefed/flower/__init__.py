"""hefed on Flower: factories, aggregator and key holder on different machines and networks.

The optional extra ``pip install 'hefed[flower]'`` (Flower 1.42) turns the
protocol into a Flower app:

* :mod:`hefed.flower.app` — the ``ServerApp`` (aggregator) and ``ClientApp``
  (factory); it imports Flower, so import it only where Flower is installed;
* :class:`RunSettings` — a run's settings, checked once, whether they come from
  Flower's run config (the ServerApp, the ClientApps) or from Python values
  (``hefed federate``, the launcher); :class:`FactoryConfig` — a factory's node config;
* :mod:`hefed.flower.project` — the app project ``flwr run`` submits
  (:func:`write_app`; also ``python -m hefed.flower write-app DIR``);
* :mod:`hefed.flower.launcher` — :func:`run_local_federation`, the one-machine
  trial behind ``hefed federate``, which reports each step as a :class:`ProgressEvent`.

Behind them, private modules by job (no Flower import): ``_config`` (run and node
config), ``_messages`` (what travels: requests, replies, keys, rosters, rounds and
bundles as text and bytes), ``_factory`` (the ClientApp's checks and bundle), ``_tally``
(the aggregator's tally, masked rounds and report) and ``_progress`` (the progress file).

With a ``study`` (run config: the aggregator's copy; node config ``study`` and
``study-digest``: each factory's own copy and its pin) the study decides what every
factory computes; the run config names the study and nothing else that changes it, and
a factory refuses requests of another study, key, kind or roster (or of none).

The key holder stays outside Flower: no Flower process, message or config
ever holds the private key. Bundles travel as the JSON bytes of
:meth:`hefed.protocol.Bundle.to_dict`.

With a ``roster`` in the run config the app runs one masked, signed round that
survives drop-outs (a version 2 round of :mod:`hefed.protocol`): a cheap ready step
fixes the participants (each proves its claim with a signature over a fresh nonce, so
a rogue SuperNode can neither take a member's place nor exclude it), they join (mask
key and self-mask seed Shamir-shared among them; the round secret stays in each
factory's identity folder), contribute (masked and signed with the identity named in
its own node config; its private keys never leave its SuperNode), and the survivors
reveal the shares that remove the drop-outs' masks: down to the round's threshold
nothing is re-run.

Every factory is pinned: it encrypts only under its study's key or the key its node
config pins, joins masked rounds only of its study's roster or the roster it pins, and
its replies carry a fixed error category, never its data (the full message stays in its
own log). :mod:`hefed.flower.app` says what the aggregator can and cannot do.
"""

from __future__ import annotations

from ._config import KINDS, RUN_CONFIG_DEFAULTS, FactoryConfig, RunSettings
from ._progress import ProgressEvent
from .launcher import (
    FederationError,
    FederationResult,
    LocalFederation,
    run_local_federation,
    run_settings_locally,
)
from .project import app_pyproject, write_app

__all__ = [
    "KINDS",
    "RUN_CONFIG_DEFAULTS",
    "FactoryConfig",
    "FederationError",
    "FederationResult",
    "LocalFederation",
    "ProgressEvent",
    "RunSettings",
    "app_pyproject",
    "run_local_federation",
    "run_settings_locally",
    "write_app",
]
