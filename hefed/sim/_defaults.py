"""The simulations' defaults, in one place and importable without scikit-learn or pandas.

Front ends (the CLI's help texts) read them here; every simulation function takes its default
from here and says why in its docstring.

**Key sizes.** In a simulation every role — each factory, the aggregator, the key holder —
runs in one process that already holds every factory's plaintext, so the key protects
nothing there. What a simulation must reproduce is the protocol's *arithmetic*: the exact
integer encoding, the packing with guard bits, the homomorphic sums, the key holder's
threshold and integrity checks, the exact solve. That arithmetic is the same at every key
size (the packing layout is derived from the key and slots may straddle plaintexts), so the
result of a simulation does not depend on the key size; only its speed does. Measured on the
2-core machine this project runs on, one fit of three built-in factories (encrypt, aggregate,
decrypt, solve, key reused) takes about 16 ms with a 1024-bit key, 31 ms with 2048 and 66 ms
with 3072 bits. Simulation keys are generated with ``insecure_test_key=True``: **never use a
simulation for real data** — a real consortium's key holder runs ``hefed keygen`` (3072 bits by
default, at least 2048).
"""

from __future__ import annotations

from .._keys import DEFAULT_BITS

__all__ = ["DEFAULT_MU", "DEMO_KEY_BITS", "MODELS", "SIMULATION_KEY_BITS"]

#: Key size of the in-process simulations (:func:`~hefed.sim.compare_models`,
#: :func:`~hefed.sim.simulate_fedavg`, :class:`~hefed.sim.FederatedLinearRegression`): 1024 bits.
#: A small, insecure test key: the simulations check the protocol's arithmetic, which does not
#: depend on the key size, and a cross-validation or ``check_estimator`` run fits dozens of times.
#: The key pair is generated once per process and per size and reused (:func:`~hefed.sim.simulation_keypair`).
SIMULATION_KEY_BITS = 1024

#: Key size of :func:`~hefed.sim.run_demo` (``hefed demo``): the key generator's default, 3072 bits,
#: because the demonstration times each step of the real protocol and writes real key files; its
#: timings are those a consortium would see. A fresh key pair is generated for each demo.
DEMO_KEY_BITS = DEFAULT_BITS

#: Default proximal strength of :func:`~hefed.sim.simulate_fedavg`: μ_i = DEFAULT_MU · n_i.
DEFAULT_MU = 1.0

#: The models :func:`~hefed.sim.compare_models` evaluates, in report order.
MODELS = ("local", "federated", "centralised", "finetuned")
