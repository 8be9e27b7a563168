"""One simulated consortium: every role of the real protocol, in one process.

The simulations (:func:`~hefed.sim.compare_models`, :func:`~hefed.sim.simulate_fedavg`,
:class:`~hefed.sim.FederatedLinearRegression`, :func:`~hefed.sim.run_demo`) all run the same
steps through :class:`Consortium`: each factory encrypts its own rows
(:mod:`hefed.roles` factory side), the aggregator multiplies the ciphertexts without any
private key, and the key holder decrypts only the aggregate — after its disclosure threshold
and integrity checks — into the plain sums of the bundle kind, which the analyst solves.
Nothing is short-cut: the plain sums a simulation solves are those a real consortium would.

The key holder's per-column support check (a column or level non-zero at fewer factories than the
threshold) is a :class:`~hefed.errors.SingledOutColumnWarning` for such trial aggregates (unsigned, no
study), and simulations silence it: they hold every factory's rows in one process, so it would tell
nobody anything on every fit (the built-in data's clinker is the cement plant's alone). A study or a
signed round refuses such aggregates.

Keys: :func:`simulation_keypair` generates one small insecure test key pair per process and
key size on first use and reuses it afterwards, so a cross-validation or a ``check_estimator``
run does not pay for a key per fit (see :mod:`hefed.sim._defaults` for why a small key is fine
here, and never for real data).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPrivateKey, PaillierPublicKey

from .._keys import generate_keypair
from ..data import PreprocessReport, warn_rounding
from ..errors import KeyMismatchError, SingledOutColumnWarning, UsageError
from ..kinds import Header, Kind
from ..models import LinearModel
from ..protocol import Bundle
from ..roles import (
    DEFAULT_MIN_CONTRIBUTORS,
    aggregate,
    decrypt_bundle,
    decrypt_evaluation,
    decrypt_statistics,
    encrypt_bundle,
    encrypt_evaluation,
    encrypt_statistics,
    encrypt_sums,
    solve,
)
from ..stats import Encoding, EvaluationSums, SufficientStatistics, statistics_from_arrays
from ._defaults import SIMULATION_KEY_BITS

__all__ = ["Consortium", "simulation_keypair"]

_KEYS: dict[int, tuple[PaillierPublicKey, PaillierPrivateKey]] = {}
_KEYS_LOCK = threading.Lock()

BundleSource = Bundle | str | os.PathLike[str]


def simulation_keypair(bits: int = SIMULATION_KEY_BITS) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """This process's simulation key pair of ``bits`` bits: generated on first use, then reused.

    An insecure test key (``insecure_test_key=True``, any size from 256 bits): simulations check
    the protocol's arithmetic, which is the same at every key size, and hold every factory's
    plaintext anyway. Never encrypt real data with it.
    """
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise UsageError(f"key_bits must be an integer number of bits, got {bits!r}", parameters=("key_bits",))
    with _KEYS_LOCK:
        pair = _KEYS.get(bits)
        if pair is None:
            pair = _KEYS[bits] = generate_keypair(bits, insecure_test_key=True)
        return pair


@contextlib.contextmanager
def _simulated_key_holder() -> Iterator[None]:
    """The key holder of a simulation: the per-column support warning silenced (module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SingledOutColumnWarning)
        yield


@dataclass(frozen=True)
class Consortium:
    """A simulated consortium: the key holder's key pair and threshold; its methods are the roles.

    ``min_contributors`` is the key holder's disclosure threshold (it decrypts no aggregate of
    fewer factories); ``encoding`` the public exact encoding every factory uses (default
    :class:`~hefed.stats.Encoding`).
    """

    public_key: PaillierPublicKey
    private_key: PaillierPrivateKey
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
    encoding: Encoding | None = None

    @classmethod
    def simulated(
        cls,
        key_bits: int = SIMULATION_KEY_BITS,
        public_key: PaillierPublicKey | None = None,
        private_key: PaillierPrivateKey | None = None,
        min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
        encoding: Encoding | None = None,
    ) -> Consortium:
        """The given key pair, or else this process's :func:`simulation_keypair` of ``key_bits``."""
        if (public_key is None) != (private_key is None):
            raise UsageError("give both public_key and private_key, or neither",
                             parameters=("public_key", "private_key"))
        if public_key is None or private_key is None:
            public_key, private_key = simulation_keypair(key_bits)
        elif private_key.public_key != public_key:
            raise KeyMismatchError("private_key does not belong to public_key")
        return cls(public_key, private_key, min_contributors, encoding)

    @property
    def key_bits(self) -> int:
        """Size of the key's modulus n in bits."""
        return int(self.public_key.n.bit_length())

    # --- a factory, on its own site ------------------------------------------------------
    def encrypt(self, factory_id: str, data: pd.DataFrame | str | os.PathLike[str], target: str,
                features: Sequence[str] | None = None) -> Bundle:
        """A factory's exact statistics of its rows, encrypted (a missing value is refused, naming its cell)."""
        return encrypt_statistics(data, target, self.public_key, features, factory_id, self.encoding)

    def encrypt_arrays(self, factory_id: str, X: np.ndarray, y: np.ndarray, features: Sequence[str], target: str,
                       source: str | None = None) -> Bundle:
        """A factory's exact statistics of float64 arrays (columns of ``X`` named by ``features``), encrypted.

        Values finer than their column's grid are rounded to it, and said (a :class:`RoundedValuesWarning`)."""
        report = PreprocessReport(len(y), len(y))
        stats = statistics_from_arrays(X, y, features, target, self.encoding, factory_id, source or factory_id,
                                       report.rounding)
        warn_rounding(report, source or factory_id)
        return encrypt_bundle(stats, self.public_key, factory_id)

    def encrypt_sums(self, factory_id: str, kind: Kind[Any, Any], header: Header, sums: Any) -> Bundle:
        """Plain sums a factory computed itself (e.g. a FedAvg round's local model), encrypted as ``kind``."""
        return encrypt_sums(kind, header, sums, self.public_key, factory_id)

    # --- the aggregator (no private key), then the key holder ----------------------------
    def aggregate(self, bundles: Iterable[BundleSource]) -> Bundle:
        """The aggregator multiplies the bundles' ciphertexts (objects or files), with every check."""
        return aggregate(bundles)

    def decrypt_aggregate(self, bundles: Iterable[BundleSource], kind: Kind[Any, Any] | None = None) -> Any:
        """The aggregator sums the bundles (objects or files); the key holder decrypts only that sum,
        after its threshold and integrity checks, into the kind's plain sums (only of ``kind`` if given)."""
        total = self.aggregate(bundles)
        with _simulated_key_holder():
            return decrypt_bundle(total, self.private_key, self.min_contributors,
                                  kind=None if kind is None else kind.name, allow_unsigned=True)

    def decrypt_statistics(self, bundle: Bundle) -> SufficientStatistics:
        """The key holder decrypts a ``statistics`` aggregate (threshold and integrity checks)."""
        with _simulated_key_holder():
            return decrypt_statistics(bundle, self.private_key, self.min_contributors, allow_unsigned=True)

    # --- whole rounds ------------------------------------------------------------------------
    def statistics(self, tables: Mapping[str, pd.DataFrame], target: str,
                   features: Sequence[str] | None = None) -> SufficientStatistics:
        """One round of statistics: every factory encrypts its table, the aggregate alone is decrypted."""
        bundles = [self.encrypt(name, frame, target, features) for name, frame in tables.items()]
        return self.decrypt_statistics(self.aggregate(bundles))

    def statistics_of_arrays(self, parts: Mapping[str, tuple[np.ndarray, np.ndarray]], features: Sequence[str],
                             target: str, sources: Mapping[str, str] | None = None) -> SufficientStatistics:
        """The same round over each factory's float64 arrays ``{factory_id: (X, y)}``."""
        bundles = [self.encrypt_arrays(name, X, y, features, target, (sources or {}).get(name))
                   for name, (X, y) in parts.items()]
        return self.decrypt_statistics(self.aggregate(bundles))

    def fit(self, tables: Mapping[str, pd.DataFrame], target: str, features: Sequence[str] | None = None,
            ridge: float = 0.0, fit_intercept: bool = True) -> LinearModel:
        """The federated model: one round of statistics, solved exactly by the analyst."""
        return solve(self.statistics(tables, target, features), ridge=ridge, fit_intercept=fit_intercept)

    def evaluate(self, model: LinearModel, holdouts: Mapping[str, pd.DataFrame], target: str) -> EvaluationSums:
        """One round of evaluation: every factory encrypts its exact holdout residual sums for ``model``;
        the aggregate alone is decrypted (its ``metrics()`` are the consortium's pooled holdout metrics)."""
        bundles = [encrypt_evaluation(model, frame, target, self.public_key, name, self.encoding)
                   for name, frame in holdouts.items()]
        total = self.aggregate(bundles)
        with _simulated_key_holder():
            return decrypt_evaluation(total, self.private_key, self.min_contributors, allow_unsigned=True)
