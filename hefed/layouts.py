"""Public packing layouts of every bundle kind, derived from public parameters only.

Each kind lists, per contribution, the bounds ``(lo, hi)`` of the integers it
packs; :class:`~hefed.primitives.packing.Layout` turns them into slots wide
enough for the sum of ``encoding.max_contributors`` contributions. A final
slot counts contributions (1 per factory), so the key holder can check how
many bundles were actually summed.

* ``statistics``: the upper triangle of the Gram matrix of ``[1, X·2^F, y·2^F]``.
  With encoded values ``|v| < 2^value_bits`` and at most ``2^max_rows_bits`` rows,
  ``|Σ v_a·v_b| < 2^(bits_a + bits_b + max_rows_bits)``; diagonal entries are sums
  of squares, hence non-negative.
* ``evaluation``: ``n, Σr², Σ|r|, Σy, Σy²`` of a model's residuals ``r`` on a holdout,
  with residuals scaled to integers by ``2^scale_bits`` and bounded by ``2^residual_bits``;
  ``model_digest`` names the model evaluated, so evaluations of different models never mix.
* ``fold_statistics``: the statistics of each of ``folds`` cross-validation folds, one block
  after another (rows assigned by a hash seeded with ``fold_seed``).
* ``summary``: per column (the features, then the target) the count of non-missing values,
  Σv and Σv² — the cheap first round of federated preprocessing.
* ``coefficients``: ``n, n·θ₀, n·θ₁ … n·θ_d`` of a factory's own model (coefficient mode),
  coefficients encoded with ``coef_frac_bits`` fractional bits and below ``2^coef_int_bits``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from phe import PaillierPublicKey

from .encoding import Encoding
from .errors import InvalidFileError, OverflowRiskError
from .primitives.packing import Layout, PackingError

_DIGEST = re.compile(r"[0-9a-f]{32}")

#: Most features a bundle may have (a 1000-feature Gram matrix is already half a million statistics).
MAX_FEATURES = 1000

#: Public parameters each kind carries in its bundles (``*_digest`` ones are hex strings).
KIND_PARAMETERS: dict[str, tuple[str, ...]] = {
    "statistics": (),
    "evaluation": ("scale_bits", "residual_bits", "model_digest"),
    "coefficients": ("coef_frac_bits", "coef_int_bits", "fit_intercept"),
    "fold_statistics": ("folds", "fold_seed"),
    "summary": (),
}


def upper_triangle_index(m: int) -> list[tuple[int, int]]:
    """(a, b) pairs with a <= b, row by row: the order statistics travel in."""
    return [(a, b) for a in range(m) for b in range(a, m)]


def statistic_bounds(n_features: int, encoding: Encoding) -> list[tuple[int, int]]:
    """Bounds per contribution of each upper-triangle Gram entry, in travel order."""
    m = n_features + 2
    bits = [0] + [encoding.value_bits] * (m - 1)
    bounds = []
    for a, b in upper_triangle_index(m):
        hi = (1 << (bits[a] + bits[b] + encoding.max_rows_bits)) - 1
        bounds.append((0, hi) if a == b else (-hi, hi))
    return bounds


def evaluation_bounds(encoding: Encoding, residual_bits: int) -> list[tuple[int, int]]:
    """Bounds of (n, Σr², Σ|r|, Σy, Σy²) with ``|r·2^scale| < 2^residual_bits``."""
    rows, vb = encoding.max_rows_bits, encoding.value_bits
    return [
        (0, (1 << rows) - 1),
        (0, (1 << (rows + 2 * residual_bits)) - 1),
        (0, (1 << (rows + residual_bits)) - 1),
        (-(1 << (rows + vb)) + 1, (1 << (rows + vb)) - 1),
        (0, (1 << (rows + 2 * vb)) - 1),
    ]


def coefficient_bounds(n_features: int, encoding: Encoding, parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Bounds of (n, n·θ₀, n·θ₁ … n·θ_d) with ``|θ·2^coef_frac_bits| < 2^(coef_frac_bits + coef_int_bits)``."""
    rows = encoding.max_rows_bits
    hi = (1 << (rows + parameters["coef_frac_bits"] + parameters["coef_int_bits"])) - 1
    return [(0, (1 << rows) - 1)] + [(-hi, hi)] * (n_features + 1)


def check_parameters(kind: str, parameters: object, source: str = "bundle") -> dict[str, Any]:
    """Validate a kind's public parameters (names and small non-negative integers)."""
    if kind not in KIND_PARAMETERS:
        raise InvalidFileError(f"{source}: unknown bundle kind {kind!r}")
    expected = set(KIND_PARAMETERS[kind])
    if not isinstance(parameters, Mapping) or set(parameters) != expected:
        raise InvalidFileError(f"{source}: 'parameters' of a {kind} bundle must be exactly {sorted(expected)}")
    for name, value in parameters.items():
        if name.endswith("_digest"):
            if not isinstance(value, str) or not _DIGEST.fullmatch(value):
                raise InvalidFileError(f"{source}: parameter {name!r} must be a 32-digit hex digest")
        elif name == "fold_seed":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
                raise InvalidFileError(f"{source}: parameter 'fold_seed' must be an integer in [0, 2^63)")
        elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4096:
            raise InvalidFileError(f"{source}: parameter {name!r} must be an integer in [0, 4096]")
    if kind == "fold_statistics" and not 2 <= parameters["folds"] <= 100:
        raise InvalidFileError(f"{source}: 'folds' must be between 2 and 100")
    return dict(parameters)


def payload_layout(
    kind: str,
    n_features: int,
    encoding: Encoding,
    public_key: PaillierPublicKey,
    parameters: Mapping[str, Any] | None = None,
) -> Layout:
    """The public packing layout of a bundle's plaintexts (the kind's values, then the counter)."""
    parameters = check_parameters(kind, parameters or {}, "layout")
    # Layouts are immutable and every bundle of an aggregation shares one: build it once.
    return _cached_layout(kind, n_features, encoding, public_key.n, tuple(sorted(parameters.items())))


@functools.lru_cache(maxsize=64)
def _cached_layout(
    kind: str, n_features: int, encoding: Encoding, n: int, parameter_items: tuple[tuple[str, Any], ...]
) -> Layout:
    parameters = dict(parameter_items)
    if not 1 <= n_features <= MAX_FEATURES:
        raise OverflowRiskError(f"a bundle has between 1 and {MAX_FEATURES} features, not {n_features}")
    if kind == "statistics":
        bounds = statistic_bounds(n_features, encoding)
    elif kind == "summary":
        rows, vb = encoding.max_rows_bits, encoding.value_bits
        hi1, hi2 = (1 << (rows + vb)) - 1, (1 << (rows + 2 * vb)) - 1
        bounds = [(0, (1 << rows) - 1), (-hi1, hi1), (0, hi2)] * (n_features + 1)
    elif kind == "fold_statistics":
        bounds = statistic_bounds(n_features, encoding) * parameters["folds"]
    elif kind == "coefficients":
        bounds = coefficient_bounds(n_features, encoding, parameters)
    else:
        bounds = evaluation_bounds(encoding, parameters["residual_bits"])
    try:
        return Layout.build([*bounds, (0, 1)], n.bit_length() - 1, encoding.max_contributors)
    except PackingError as exc:
        raise OverflowRiskError(
            f"the encoding needs wider slots than a {n.bit_length()}-bit key holds ({exc}); "
            "lower --int-bits/--frac-bits or use a larger key"
        ) from None
