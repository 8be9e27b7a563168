"""The registry of bundle kinds: what each kind carries, its public parameters, bounds and layout.

A *kind* is one sort of encrypted message a factory sends (``statistics``,
``fold_statistics``, ``coefficients``, ``summary``, ``evaluation``, …). One
:class:`Kind` object per kind says everything the protocol needs to know about it:

* its name and its **public parameters** (validated here: names, ranges, digests);
* the **bounds** ``(lo, hi)`` of each integer one contribution packs, from public
  parameters only; :func:`layout` turns them into slots wide enough for the sum of
  ``encoding.max_contributors`` contributions, plus a final counter slot (1 per
  contribution) so the key holder can check how many bundles were summed;
* its **plain sums** type (the same at a factory, locally, and at the key holder, decrypted)
  and the conversions ``values`` (sums → the integers packed) and ``result`` (decrypted
  integers → sums), and the integrity checks of a decrypted result;
* how a factory **computes** its sums from its own rows (``compute``, with a typed request);
* whether it travels through Flower.

Sealing, aggregating, decrypting, loading decrypted files, rendering and Flower all ask the
registry; nothing else switches on kind names. How a kind's sums become a *model* is
registered one layer up, by the analyst (:mod:`hefed.roles`), so kinds never import models.
A new kind is one module (a :class:`Kind` subclass and a request type) plus one
:func:`register` call.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd

from .._files import read_json_object
from ..errors import InvalidFileError, OverflowRiskError, UsageError
from ..primitives.packing import Layout, PackingError, layout_digest, slot_width
from ..stats import Encoding

_DIGEST = re.compile(r"[0-9a-f]{32}")

#: Most features a bundle may have. Studies of a few hundred columns (categorical features one-hot encoded,
#: the 300-feature targets of the performance work) fit; a 1000-feature Gram matrix is already half a million
#: statistics, and its exact solve takes hours.
MAX_FEATURES = 1000

#: Most per-column grids an encoding in a file may list: every model column (features, a categorical feature's
#: dummies and the target) twice over. Looking a column's grid up scans them, once per column of the bundle.
MAX_ENCODING_COLUMNS = 2 * (MAX_FEATURES + 1)

#: Most values one contribution packs, its counter included. The largest honest ones: a 1000-feature Gram and
#: its support counts (2 × 502,503 values), 300 features' Gram in 10 folds and its support (457,530 + 45,753).
#: A layout keeps about 20 bytes per value (:class:`~hefed.primitives.packing.Layout`), so even the cap costs
#: well under 100 MB.
MAX_VALUES = 1 << 21

#: Most ciphertexts one contribution has. A contribution of :data:`MAX_VALUES` values at the default encoding's
#: width (~350 bits each) under a 2048-bit key needs ~360,000; a bundle of 2^20 ciphertexts is far beyond what
#: anyone decrypts (hours), and beyond the JSON cap (:data:`hefed._files.MAX_JSON_BYTES`) for keys of 2048
#: bits and more.
MAX_CIPHERTEXTS = 1 << 20


S = TypeVar("S")
Q = TypeVar("Q")


@dataclass(frozen=True)
class Header:
    """What a bundle states publicly about its contents: all a kind needs to read its values."""

    target: str
    features: tuple[str, ...]
    encoding: Encoding
    parameters: Mapping[str, Any] = field(default_factory=dict)
    contributors: tuple[str, ...] = ()


@dataclass
class Computed(Generic[S]):
    """What a factory computed for one kind: the plain sums, the bundle header, and what happened to
    its rows (cleaning report, rows held out)."""

    sums: S
    header: Header
    report: Any = None
    holdout: pd.DataFrame | None = None


class Kind(ABC, Generic[S, Q]):
    """One bundle kind (see the module docstring). Subclasses set the class attributes and the methods."""

    #: The kind's name, as bundles and files carry it.
    name: ClassVar[str]
    #: One line saying what one contribution carries.
    description: ClassVar[str]
    #: The public parameters its bundles carry (``*_digest`` ones are 32 hex digits).
    parameter_names: ClassVar[tuple[str, ...]] = ()
    #: The plain sums: a factory's own, or the decrypted sum over factories.
    result_type: ClassVar[type]
    #: The ``format`` of the decrypted sums' JSON file.
    result_format: ClassVar[str]
    #: The typed request a factory is given to compute this kind.
    request_type: ClassVar[type]
    #: Whether the Flower app collects this kind.
    travels_by_flower: ClassVar[bool] = False
    #: Place in protocol order (listings, help texts): summary, statistics, folds, coefficients, evaluation.
    order: ClassVar[int] = 100
    #: Whether a factory computes it from cleaned rows (missing values refused or dropped, outliers, bounds);
    #: otherwise from the table as it is (a summary counts the gaps; an evaluation measures the holdout).
    cleans_rows: ClassVar[bool] = True

    # --- public parameters ------------------------------------------------------------------
    def check_parameters(self, parameters: object, source: str = "bundle") -> dict[str, Any]:
        """Validate the kind's public parameters: exactly its names, small non-negative integers,
        ``*_digest`` ones 32 hex digits; then :meth:`_check_parameters` for the kind's own rules."""
        expected = set(self.parameter_names)
        if not isinstance(parameters, Mapping) or set(parameters) != expected:
            raise InvalidFileError(f"{source}: 'parameters' of a {self.name} bundle must be exactly {sorted(expected)}")
        for name, value in parameters.items():
            if name.endswith("_digest"):
                if not isinstance(value, str) or not _DIGEST.fullmatch(value):
                    raise InvalidFileError(f"{source}: parameter {name!r} must be a 32-digit hex digest")
            elif name.endswith("_seed"):
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
                    raise InvalidFileError(f"{source}: parameter {name!r} must be an integer in [0, 2^63)")
            elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4096:
                raise InvalidFileError(f"{source}: parameter {name!r} must be an integer in [0, 4096]")
        checked = dict(parameters)
        self._check_parameters(checked, source)
        return checked

    def _check_parameters(self, parameters: dict[str, Any], source: str) -> None:
        """The kind's own rules on its (already type-checked) parameters; none by default."""

    # --- what one contribution packs ------------------------------------------------------
    def packed_size(self, features: Sequence[str], target: str, encoding: Encoding,
                    parameters: Mapping[str, Any]) -> tuple[int, int]:
        """How many values one contribution packs and their total width in bits (slots of sums of
        ``encoding.max_contributors`` contributions), worked out before any layout is built: a header of a hostile
        file must be measured before its layout takes memory. The default sums :meth:`bounds`, fine for kinds
        packing a few values per feature; kinds packing more (Gram matrices) override it with a closed form."""
        bounds = self.bounds(features, target, encoding, parameters)
        return len(bounds), sum(slot_width(lo, hi, encoding.max_contributors) for lo, hi in bounds)

    @abstractmethod
    def bounds(self, features: Sequence[str], target: str, encoding: Encoding,
               parameters: Mapping[str, Any]) -> list[tuple[int, int]]:
        """Bounds ``(lo, hi)`` of each integer one contribution packs, in travel order: a new list each call
        (the layout appends the counter to it); entries with the same bounds may share one tuple, which keeps
        the layouts of large Gram matrices small."""

    @abstractmethod
    def values(self, sums: S, header: Header) -> list[int]:
        """The exact integers ``sums`` travel as (factory side), in travel order."""

    @abstractmethod
    def result(self, values: Sequence[int], header: Header) -> S:
        """The plain sums the decrypted, checked integers stand for (key holder side)."""

    def check_result(self, result: S, threshold: int = 1, *, refuse: bool = True) -> None:
        """Refuse decrypted sums no honest data gives (raise :class:`~hefed.errors.IntegrityError`), and sums of a
        column that fewer than ``threshold`` factories (but some) are behind, by the support counts the kind
        carries (:mod:`hefed.stats._support`): :class:`~hefed.errors.SingledOutColumnError`, or with
        ``refuse=False`` (a trial) a :class:`~hefed.errors.SingledOutColumnWarning`."""

    # --- factory side ----------------------------------------------------------------------
    #: Whether a study's factory computes it only for a model the study's key holder signed (a study without a
    #: key holder then refuses it): kinds whose sums, for a chosen model, single out plants.
    needs_signed_model: ClassVar[bool] = False

    #: Fields of the request that only a run knows (e.g. the model an evaluation measures); a study fixes the rest.
    runtime_fields: ClassVar[tuple[str, ...]] = ()

    def _agreed_fields(self) -> set[str]:
        """The request's fields a study fixes: all but the runtime ones."""
        return {f.name for f in dataclasses.fields(self.request_type)} - set(self.runtime_fields)

    def _refuse_unknown(self, parameters: Mapping[str, Any]) -> None:
        agreed = self._agreed_fields()
        unknown = set(parameters) - agreed
        if unknown:
            raise UsageError(f"a {self.name} request takes no parameter(s) {sorted(unknown)} (it takes "
                             f"{sorted(agreed) or 'none'})")

    def request_for(self, parameters: Mapping[str, Any], **runtime: Any) -> Q:
        """The typed request with the parameters a study fixed, plus what only the run knows."""
        self._refuse_unknown(parameters)
        try:
            request: Q = self.request_type(**parameters, **runtime)
        except TypeError as exc:
            raise UsageError(f"a {self.name} request: {exc}") from None
        return request

    def bundle_parameters(self, request: Q) -> dict[str, Any]:
        """The public parameters a bundle made for ``request`` carries (none by default)."""
        return {}

    def check_study(self, agreed: Mapping[str, Any], min_contributors: int) -> None:
        """Refuse agreed parameters a study of this disclosure threshold must not offer (none by default): a
        factory reads its study's rules, so what it encrypts is bounded even by a key holder that skips its own."""

    def parameters_agree(self, parameters: Mapping[str, Any], agreed: Mapping[str, Any]) -> bool:
        """Whether a bundle's public parameters are the ones a study's ``agreed`` request parameters make. Kinds
        whose request carries a run's object (the model of an evaluation) cannot tell by default: True."""
        if self.runtime_fields:
            return True
        return dict(parameters) == self.bundle_parameters(self.request_for(agreed))

    def request_from(self, values: Mapping[str, Any], given: Collection[str] = ()) -> Q:
        """The kind's request, its fields filled by name from ``values`` (a command's options, a run's
        settings; ``None`` means not set). A name in ``given`` (set explicitly) that the request does not
        take is refused, and so is a required field ``values`` does not set."""
        fields = {f.name: f for f in dataclasses.fields(self.request_type)}
        unused = sorted(name for name in given if name not in fields)
        if unused:
            raise UsageError(f"{unused[0]} does not apply to {self.name} requests", parameters=(unused[0],))
        arguments = {name: values[name] for name in fields if values.get(name) is not None}
        needed = [name for name, f in fields.items() if name not in arguments
                  and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if needed:
            raise UsageError(f"{self.name} requests need {', '.join(needed)}", parameters=tuple(needed))
        request: Q = self.request_type(**arguments)
        return request

    def agreed_parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Of ``values``, the ones a study can fix for this kind (its request's fields but the runtime ones)."""
        agreed = self._agreed_fields()
        return {name: value for name, value in values.items() if name in agreed}

    def check_agreed_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Refuse parameters a study cannot fix for this kind: the request is built (the fields only a run knows
        left empty), so its own checks run."""
        self._refuse_unknown(parameters)
        # the request's own checks run, the run's fields (a model) standing empty
        self.request_for(parameters, **dict.fromkeys(self.runtime_fields))

    @abstractmethod
    def compute(self, table: Any, encoding: Encoding, request: Q) -> Computed[S]:
        """A factory's own sums from its :class:`~hefed.data.Table`, as ``request`` asks."""

    # --- files -------------------------------------------------------------------------------
    def load_result(self, obj: dict[str, Any], source: str) -> S:
        """The plain sums from their JSON object (what ``hefed decrypt`` wrote)."""
        return self.result_type.from_dict(obj, source)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<bundle kind {self.name!r}>"


_KINDS: dict[str, Kind[Any, Any]] = {}


def register(kind: Kind[Any, Any]) -> Kind[Any, Any]:
    """Add a kind to the registry (once per name)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"bundle kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: object, source: str = "bundle") -> Kind[Any, Any]:
    """The registered kind called ``name``; an unknown name is an :class:`~hefed.errors.InvalidFileError`."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidFileError(f"{source}: unknown bundle kind {name!r}")
    return kind


def all_kinds() -> tuple[Kind[Any, Any], ...]:
    """Every registered kind, in protocol order."""
    return tuple(sorted(_KINDS.values(), key=lambda kind: kind.order))


def kind_names(*, flower: bool = False) -> tuple[str, ...]:
    """The registered kinds' names in protocol order (only those that travel through Flower, with ``flower``)."""
    return tuple(kind.name for kind in all_kinds() if kind.travels_by_flower or not flower)


def kind_for_request(request: object) -> Kind[Any, Any]:
    """The kind whose typed request ``request`` is."""
    for kind in _KINDS.values():
        if isinstance(request, kind.request_type):
            return kind
    raise UsageError(f"not a bundle kind request: {request!r}")


def kind_of_result(result: object) -> Kind[Any, Any]:
    """The kind whose plain sums ``result`` is."""
    for kind in _KINDS.values():
        if type(result) is kind.result_type:
            return kind
    raise UsageError(f"not the plain sums of a bundle kind: {type(result).__name__}")


def load_result(path: Any, expected: Sequence[str] | None = None) -> Any:
    """Load what ``hefed decrypt`` wrote, whichever kind it is (only ``expected`` kinds, if given)."""
    return result_from_dict(read_json_object(path, "decrypted aggregate"), str(path), expected)


def result_from_dict(obj: dict[str, Any], source: str, expected: Sequence[str] | None = None) -> Any:
    """The plain sums a decrypted file's JSON object holds, whichever kind it is (only ``expected`` kinds, if given)."""
    fmt = obj.get("format")
    for kind in all_kinds():
        if kind.result_format == fmt:
            if expected is not None and kind.name not in expected:
                break
            return kind.load_result(obj, source)
    wanted = expected if expected is not None else kind_names()
    raise InvalidFileError(f"{source}: expected decrypted {' or '.join(wanted)} sums, got format {fmt!r}")


def layout_size(kind: str | Kind[Any, Any], features: Sequence[str], target: str, encoding: Encoding, n: int,
                parameters: Mapping[str, Any] | None = None) -> int:
    """How many ciphertexts the layout of this header has, worked out without building it, within the caps.

    Raises :class:`~hefed.errors.OverflowRiskError` (one line, naming the header field) when the features, the
    values packed (:data:`MAX_VALUES`) or the ciphertexts (:data:`MAX_CIPHERTEXTS`) exceed their caps, or when the
    key leaves no room for sums. A reader compares the count with the ciphertexts present before
    :func:`layout` builds anything (:meth:`hefed.protocol.Bundle.from_dict`).
    """
    kind = get_kind(kind, "layout") if isinstance(kind, str) else kind
    checked = kind.check_parameters(parameters or {}, "layout")
    return _size(kind, features, target, encoding, n, checked)


def _size(kind: Kind[Any, Any], features: Sequence[str], target: str, encoding: Encoding, n: int,
          parameters: Mapping[str, Any]) -> int:
    if not 1 <= len(features) <= MAX_FEATURES:
        raise OverflowRiskError(f"'features': a bundle has between 1 and {MAX_FEATURES} features, not {len(features)}")
    values, bits = kind.packed_size(features, target, encoding, parameters)
    values, bits = values + 1, bits + slot_width(0, 1, encoding.max_contributors)  # the counter
    if values > MAX_VALUES:
        raise OverflowRiskError(f"'features' and 'parameters': a {kind.name} contribution of {len(features)} features "
                                f"packs {values} values; at most {MAX_VALUES}")
    chunk = n.bit_length() - 1 - encoding.max_contributors.bit_length()
    if chunk < 1:
        raise OverflowRiskError(f"'encoding': sums of max_contributors {encoding.max_contributors} bundles leave no "
                                f"room in a {n.bit_length()}-bit key's plaintexts; lower max_contributors or use a "
                                "larger key", parameters=("max_contributors",))
    plaintexts = -(-bits // chunk)
    if plaintexts > MAX_CIPHERTEXTS:
        raise OverflowRiskError(f"'encoding': a {kind.name} contribution of {len(features)} features and these widths "
                                f"needs {plaintexts} ciphertexts; at most {MAX_CIPHERTEXTS}",
                                parameters=("int_bits", "frac_bits"))
    return plaintexts


def layout(kind: str | Kind[Any, Any], features: Sequence[str], target: str, encoding: Encoding, n: int,
           parameters: Mapping[str, Any] | None = None, *, expected_digest: str | None = None) -> Layout:
    """The public packing layout of a bundle's plaintexts: the kind's values, then the counter.

    ``n`` is the key's modulus; every party derives the same layout from public data only. Its size is
    checked against the caps first (:func:`layout_size`). Layouts are kept for reuse (every bundle of an
    aggregation shares one), at most :data:`MAX_CACHED_VALUES` values in all. With ``expected_digest`` (what a
    file says its layout is) the digest is worked out first, without building the layout
    (:func:`~hefed.primitives.packing.layout_digest`), and a mismatch is an
    :class:`~hefed.errors.InvalidFileError` naming ``'layout_digest'``: a lying header costs no layout and
    fills no cache.
    """
    kind = get_kind(kind, "layout") if isinstance(kind, str) else kind
    checked = kind.check_parameters(parameters or {}, "layout")
    key = (kind.name, tuple(features), target, encoding, n, tuple(sorted(checked.items())))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
    if cached is not None:
        if expected_digest is not None and cached.digest() != expected_digest:
            raise InvalidFileError("'layout_digest' does not match the layout its metadata implies")
        return cached
    built = _build_layout(kind, key[1], target, encoding, n, checked, expected_digest)
    with _CACHE_LOCK:
        _CACHE[key] = built
        while sum(len(cached.slots) for cached in _CACHE.values()) > MAX_CACHED_VALUES and len(_CACHE) > 1:
            _CACHE.popitem(last=False)
    return built


#: Most values the layouts kept for reuse hold together (~20 bytes each).
MAX_CACHED_VALUES = MAX_VALUES
_CACHE: collections.OrderedDict[tuple[Any, ...], Layout] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()


def _build_layout(kind: Kind[Any, Any], features: tuple[str, ...], target: str, encoding: Encoding, n: int,
                  parameters: dict[str, Any], expected_digest: str | None = None) -> Layout:
    size = _size(kind, features, target, encoding, n, parameters)
    bounds = kind.bounds(features, target, encoding, parameters)
    bounds.append((0, 1))  # the counter (kinds return a fresh list)
    if expected_digest is not None and layout_digest(bounds, n.bit_length() - 1,
                                                     encoding.max_contributors) != expected_digest:
        raise InvalidFileError("'layout_digest' does not match the layout its metadata implies")
    try:
        built = Layout.build(bounds, n.bit_length() - 1, encoding.max_contributors)
    except PackingError as exc:
        raise OverflowRiskError(
            f"the encoding needs wider slots than a {n.bit_length()}-bit key holds ({exc}); "
            "lower int_bits or frac_bits, or use a larger key", parameters=("int_bits", "frac_bits"),
        ) from None
    if built.n_plaintexts != size:  # a kind's packed_size must say what its bounds make: readers rely on it
        raise RuntimeError(f"bundle kind {kind.name!r}: packed_size implies {size} ciphertexts, its bounds make "
                           f"{built.n_plaintexts}")
    if expected_digest is not None:
        built._digest_value = expected_digest  # just checked
    return built
