"""hefed on Flower: factories, aggregator and key holder on different machines and networks.

The optional extra ``pip install 'hefed[flower]'`` (Flower 1.42) turns the
protocol into a Flower app:

* :mod:`hefed.flower.app` — the ``ServerApp`` (aggregator) and ``ClientApp``
  (factory); it imports Flower, so import it only where Flower is installed;
* :mod:`hefed.flower.protocol` — the request/reply records, the checks and the
  library calls both sides make (no Flower import);
* :mod:`hefed.flower.project` — the app project ``flwr run`` submits
  (:func:`write_app`; also ``python -m hefed.flower write-app DIR``);
* :mod:`hefed.flower.launcher` — :func:`run_local_federation`, the one-machine
  trial behind ``hefed federate``.

The key holder stays outside Flower: no Flower process, message or config
ever holds the private key. Bundles travel as the JSON bytes of
:meth:`hefed.Bundle.to_dict`.

With a ``roster`` in the run config the app runs masked, signed rounds
(:mod:`hefed.rounds`): a cheap ready step fixes the participants, each factory
masks and signs with the identity named in its own node config (its private
keys never leave its SuperNode), and a participant that fails to deliver makes
the aggregator re-run a new round for the others.
"""

from __future__ import annotations

from .launcher import FederationError, FederationResult, LocalFederation, run_local_federation
from .project import app_pyproject, write_app
from .protocol import KINDS, RUN_CONFIG_DEFAULTS

__all__ = [
    "FederationError",
    "FederationResult",
    "KINDS",
    "LocalFederation",
    "RUN_CONFIG_DEFAULTS",
    "app_pyproject",
    "run_local_federation",
    "write_app",
]
