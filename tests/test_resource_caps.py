"""Hostile files are refused before they cost memory or time (issue 14, attack 7: resource bombs).

Every size a bundle states — features, folds, encoding widths, ciphertext count, JSON length, integer
digits, nesting — is checked against the caps (:mod:`hefed.kinds`, :mod:`hefed._files`) before anything
is built for it; the count of ciphertexts the header implies is compared with the count present before
any packing layout is made. Each bomb is refused by ``Bundle.load``, ``hefed.aggregate`` and the key
holder's ``decrypt_to_file`` with one line naming the file and the field, and its peak memory (traced
allocations) stays below a small multiple of its size plus a constant. On main before issue 14 an 8.7 KB
bundle declaring 1000 features with maximal widths made each of them build a 1.9 GB layout.
"""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hefed
from hefed._files import MAX_INT_DIGITS, MAX_JSON_BYTES, parse_json_object
from hefed.errors import InvalidFileError
from hefed.kinds import MAX_CIPHERTEXTS, MAX_FEATURES, MAX_VALUES, get_kind, layout_size
from hefed.kinds import _registry as registry
from hefed.primitives.packing import slot_width
from hefed.protocol import Bundle
from hefed.roles import decrypt_to_file
from hefed.stats import ColumnEncoding, Encoding

TARGET = "y"
#: The widest encoding a file may declare: 1000 value bits per column, 2^64 rows, 2^32 contributors.
WIDEST = {"scheme": "hefed-fixed-binary-v1", "frac_bits": 500, "int_bits": 500, "max_rows_bits": 64,
          "max_contributors": 1 << 32}
#: The narrowest: every Gram entry a few bits, so a file holds the most layout per byte.
NARROWEST = Encoding(frac_bits=0, int_bits=1, max_rows_bits=1, max_contributors=1)
#: Peak traced memory a refusal may take: this many times the file's size, plus a constant. A header that passes
#: every cap and is honest about its ciphertext count is refused only once its layout digest is worked out (its
#: bounds: about 8 bytes per packed value, at most ~0.75 values per byte of file); every other bomb before it is
#: parsed, or before anything is sized from it.
LAYOUT_MEMORY_PER_BYTE = 16
MEMORY_PER_BYTE = 4
#: A file within the JSON allowance is parsed before its header is judged: a dict costs ~230 bytes in memory.
PARSED_MEMORY_PER_BYTE = 8
MEMORY_CONSTANT = 16 << 20


def _names(count: int) -> list[str]:
    return [f"f{i}" for i in range(count)]


@pytest.fixture(scope="module")
def honest(keypair) -> dict[str, Any]:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], TARGET: [2.0, 4.1, 6.0, 8.2]})
    return hefed.encrypt_statistics(frame, TARGET, keypair[0], ["x"], factory_id="plant-a").to_dict()


def _narrow(honest: dict[str, Any], features: int) -> dict[str, Any]:
    """A header honest about its ciphertext count with the narrowest slots (valid ciphertexts, all 1), but a
    layout digest that does not match: refused only once the layout is built and hashed."""
    n = hefed.Bundle.from_dict(honest).public_key.n
    count = layout_size("statistics", _names(features), TARGET, NARROWEST, n, {})
    one = base64.b64encode((1).to_bytes(((n * n).bit_length() + 7) // 8, "big")).decode()
    return {**honest, "schema": {"target": TARGET, "features": _names(features)}, "encoding": NARROWEST.to_dict(),
            "ciphertexts": [one] * count, "layout_digest": "0" * 32}


def _replace_list(honest: dict[str, Any], filler: str) -> str:
    text = json.dumps(honest)
    head, _, tail = text.partition('"ciphertexts": [')
    return head + '"ciphertexts": [' + filler + tail[tail.index("]"):]


#: bomb → (how to make it from the honest bundle, the field its refusal names)
BOMBS = {
    "1000 features, widest encoding": (
        lambda h: {**h, "schema": {"target": TARGET, "features": _names(1000)}, "encoding": WIDEST}, "'encoding'"),
    "1001 features": (lambda h: {**h, "schema": {"target": TARGET, "features": _names(1001)}}, "'features'"),
    "100 folds of 300 features": (
        lambda h: {**h, "kind": "fold_statistics", "parameters": {"folds": 100, "fold_seed": 0},
                   "schema": {"target": TARGET, "features": _names(300)}, "encoding": WIDEST}, "'parameters'"),
    "ciphertext count lies": (
        lambda h: {**h, "schema": {"target": TARGET, "features": _names(300)}}, "'ciphertexts'"),
    "contributions count lies": (
        lambda h: {**h, "round_id": "a" * 32, "manifests": [], "contributions": {"plant-a": h["ciphertexts"] * 2}},
        "'contributions'"),
    "64 MiB of JSON values": (lambda h: _replace_list(h, "{}," * ((64 << 20) // 3) + "{}"), "JSON values"),
    "64 MiB of zeros": (lambda h: _replace_list(h, "0," * ((64 << 20) // 2) + "0"), "JSON values"),
    "integer of 5000 digits": (
        lambda h: json.dumps(h).replace('"version": 1', '"version": 1' + "0" * 5000, 1), "digits"),
    "deep nesting": (lambda h: '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON values"),
    "deep nesting, diluted": (  # within the values allowance, deeper than any recursion limit (tests raise it)
        lambda h: '{"a": ' + "[" * 100_000 + "]" * 100_000 + ', "b": "' + "x" * 1_300_000 + '"}', "nested too deeply"),
    "narrowest slots, 400 features": (lambda h: _narrow(h, 400), "'layout_digest'"),
    "100,000 column grids": (  # parsed, then refused on the header (a lookup scanned every grid: 0.5 s a MB)
        lambda h: {**h, "schema": {"target": TARGET, "features": _names(1000)}, "encoding": {
            **h["encoding"], "columns": {f"c{i:06d}{'x' * 30}": {"frac_bits": 1, "int_bits": 1}
                                         for i in range(100_000)}}}, "'encoding'"),
}


@pytest.fixture(scope="module")
def bombs(honest, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    paths = {}
    for i, (name, (make, _)) in enumerate(BOMBS.items()):
        made = make(honest)
        paths[name] = folder / f"bomb-{i}.json"
        paths[name].write_text(made if isinstance(made, str) else json.dumps(made))
    return paths


def _peak(call) -> tuple[BaseException | None, int]:
    """Run ``call``; the exception it raised (or None) and its peak traced memory in bytes."""
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the assertions
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


@pytest.fixture(scope="module")
def warm(honest) -> None:
    """Imports, the small-primes product and the first layouts are made before memory is measured."""
    Bundle.from_dict(honest)


def _refused(call, path: Path, field: str) -> int:
    error, peak = _peak(call)
    assert isinstance(error, InvalidFileError), repr(error)
    message = str(error)
    assert "\n" not in message and message.startswith(f"{path}:") and field in message, message
    size = path.stat().st_size
    per_byte = {"'layout_digest'": LAYOUT_MEMORY_PER_BYTE, "'encoding'": PARSED_MEMORY_PER_BYTE}.get(
        field, MEMORY_PER_BYTE)
    assert peak < per_byte * size + MEMORY_CONSTANT, (peak, size)
    return peak


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_bundle_load_refuses_each_bomb_in_memory_proportional_to_its_size(bombs, warm, bomb):
    _refused(lambda: Bundle.load(bombs[bomb]), bombs[bomb], BOMBS[bomb][1])


@pytest.mark.parametrize("bomb", ["1000 features, widest encoding", "100 folds of 300 features",
                                  "ciphertext count lies", "64 MiB of JSON values", "integer of 5000 digits",
                                  "narrowest slots, 400 features"])
def test_aggregate_and_decrypt_refuse_each_bomb(bombs, warm, keypair, tmp_path, bomb):
    path = bombs[bomb]
    _refused(lambda: hefed.aggregate([path, path]), path, BOMBS[bomb][1])
    _refused(lambda: decrypt_to_file(path, keypair[1], tmp_path / "sums.json", min_contributors=1,
                                     allow_unsigned=True), path, BOMBS[bomb][1])
    assert not (tmp_path / "sums.json").exists()


@pytest.mark.parametrize("bomb", ["1000 features, widest encoding", "100 folds of 300 features",
                                  "ciphertext count lies", "contributions count lies"])
def test_no_layout_is_built_for_a_header_that_exceeds_a_cap_or_lies_about_its_count(bombs, monkeypatch, bomb):
    def refuse(*args: Any) -> None:
        raise AssertionError("a layout was built for a hostile header")

    monkeypatch.setattr(registry, "_build_layout", refuse)
    monkeypatch.setattr(registry, "_CACHE", registry.collections.OrderedDict())
    with pytest.raises(InvalidFileError, match=BOMBS[bomb][1]):
        Bundle.load(bombs[bomb])


def test_a_header_lying_about_its_layout_digest_gets_no_layout(bombs, monkeypatch):
    def refuse(*args: Any) -> None:
        raise AssertionError("a layout was built for a header whose digest is wrong")

    monkeypatch.setattr(registry.Layout, "build", refuse)
    monkeypatch.setattr(registry, "_CACHE", registry.collections.OrderedDict())
    with pytest.raises(InvalidFileError, match="'layout_digest'"):
        Bundle.load(bombs["narrowest slots, 400 features"])


def test_a_header_lying_about_its_layout_is_not_kept_in_the_layout_cache(bombs, warm):
    before = list(registry._CACHE)
    with pytest.raises(InvalidFileError, match="'layout_digest'"):
        Bundle.load(bombs["narrowest slots, 400 features"])
    assert list(registry._CACHE) == before  # else 64 such files kept 64 layouts (the old lru_cache)


def test_a_file_above_the_json_cap_is_refused_before_a_byte_is_read(tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: takes no disk
        handle.truncate(MAX_JSON_BYTES + 1)
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    error, peak = _peak(lambda: Bundle.load(big))
    assert isinstance(error, InvalidFileError) and "too large" in str(error) and str(error).startswith(f"{big}:")
    assert read == [] and peak < 1 << 20
    with pytest.raises(InvalidFileError, match="public key file is too large"):  # smaller kinds, smaller caps
        big.write_bytes(b" " * (1 << 17))
        hefed.load_public_key(big)


def test_a_flower_reply_with_a_huge_integer_is_a_clean_refusal(honest):
    """What aborted the ServerApp's tally: json.loads raised a bare ValueError past Python's 4300 digits."""
    data = json.dumps(honest).replace('"version": 1', '"version": 1' + "0" * 4400, 1).encode()
    with pytest.raises(InvalidFileError, match=f"at most {MAX_INT_DIGITS}") as info:
        Bundle.from_bytes(data, "bundle from plant-a")
    assert str(info.value).startswith("bundle from plant-a:")
    with pytest.raises(InvalidFileError, match="too many JSON values"):
        Bundle.from_bytes(b'{"a": [' + b"[]," * 100_000 + b"[]]}", "bundle from plant-b")
    assert Bundle.from_bytes(json.dumps(honest).encode(), "bundle from plant-c").contributors == ["plant-a"]


def test_parse_json_object_refuses_non_objects_and_bad_text_with_one_line():
    for raw, words in [(b"[1, 2]", "must hold a JSON object"), (b"\xff\xfe", "not UTF-8"),
                       (b'{"a": NaN}', "non-standard JSON constant"), (b'{"a": ', "not valid JSON")]:
        with pytest.raises(InvalidFileError, match=words) as info:
            parse_json_object(raw, "reply", "bundle")
        assert "\n" not in str(info.value) and str(info.value).startswith("reply: bundle message")


def test_the_cli_aggregate_refuses_a_bomb_with_one_line(bombs, cli, tmp_path):
    path = bombs["1000 features, widest encoding"]
    result = cli("aggregate", path, path, "--out", tmp_path / "aggregate.json")
    assert result.returncode == 1 and not (tmp_path / "aggregate.json").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "'encoding'" in lines[0], result.stderr


# --- the closed form the caps rely on -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(features=st.integers(1, 12), folds=st.integers(2, 6), rows=st.integers(1, 64),
       contributors=st.integers(1, 1 << 32), widths=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 40)),
                                                             min_size=0, max_size=13))
def test_the_packed_size_worked_out_from_the_header_is_the_layouts(features, folds, rows, contributors, widths):
    names = _names(features)
    columns = {name: ColumnEncoding(*w) for name, w in zip([*names, TARGET], widths, strict=False)}
    encoding = Encoding.with_columns(columns, max_rows_bits=rows, max_contributors=contributors)
    for kind, parameters in [("statistics", {}), ("fold_statistics", {"folds": folds, "fold_seed": 1}),
                             ("summary", {})]:
        bounds = get_kind(kind).bounds(names, TARGET, encoding, parameters)
        assert get_kind(kind).packed_size(names, TARGET, encoding, parameters) == (
            len(bounds), sum(slot_width(lo, hi, contributors) for lo, hi in bounds))
    n = (1 << 1023) + 1
    layout = hefed.kinds.layout("statistics", names, TARGET, encoding, n)
    assert layout_size("statistics", names, TARGET, encoding, n) == layout.n_plaintexts


def test_the_caps_leave_room_for_the_studies_hefed_is_for():
    n = (1 << 2047) + 1
    assert layout_size("statistics", _names(MAX_FEATURES), TARGET, Encoding(), n) < MAX_CIPHERTEXTS
    assert layout_size("fold_statistics", _names(300), TARGET, Encoding(), n, {"folds": 10, "fold_seed": 0}) > 0
    assert get_kind("statistics").packed_size(_names(MAX_FEATURES), TARGET, Encoding(), {})[0] < MAX_VALUES


@pytest.mark.skipif(os.environ.get("HEFED_BIG_BOMBS") != "1", reason="set HEFED_BIG_BOMBS=1 to run the 1000-feature "
                    "narrow bomb (~0.7 MB file, a few seconds under tracemalloc)")
def test_the_largest_narrow_layout_a_file_can_ask_for_stays_proportional(honest, warm, tmp_path):
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(_narrow(honest, 1000)))
    _refused(lambda: Bundle.load(path), path, "'layout_digest'")
