"""Paillier key pairs in pheutil's JSON (JWK-like) format.

Public key: ``{"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"], "n": <b64url>, "kid": ...}``
Private key: ``{"kty": "DAJ", "key_ops": ["decrypt"], "p": <b64url>, "q": <b64url>, "pub": {...}, "kid": ...}``

These are the files ``pheutil genpkey`` and ``pheutil extract`` (phe[cli]) read
and write, so keys move freely between the two tools. Private keys are written
with mode 0600 and never printed; loading one that group or others can read is
refused unless explicitly allowed, as ssh does. The two are never mistaken for
each other: a private key file given as the public key is refused (whoever
encrypts must never hold it), and a public key file given as the private key
is named as such before anything else is checked.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import gmpy2
from phe import PaillierPrivateKey, PaillierPublicKey, generate_paillier_keypair
from phe.util import base64_to_int, int_to_base64

from ._files import atomic_write_json, read_json_object, stat_file
from .errors import InsecureKeyError, InvalidFileError, KeyMismatchError, UsageError

DEFAULT_BITS = 3072
MIN_SECURE_BITS = 2048
MIN_TEST_BITS = 256
MAX_BITS = 8192

__all__ = [
    "PaillierPublicKey",
    "PaillierPrivateKey",
    "generate_keypair",
    "save_public_key",
    "load_public_key",
    "save_private_key",
    "load_private_key",
    "key_fingerprint",
    "check_public_key",
]

#: Every prime below this divides :func:`_small_primes_product`: an n sharing one is refused (a gcd, about a
#: millisecond for a 2048-bit n). Honest primes of a Paillier key have hundreds of bits; a modulus with a factor
#: this small is factored by anyone holding the public key alone.
SMALL_FACTOR_BOUND = 1 << 20

#: Fingerprints of test keys made in this process with ``generate_keypair(..., insecure_test_key=True)``: the
#: consent to an insecure size was given here, so the same process (tests, simulations) may use them.
_TEST_KEYS: set[str] = set()
#: Fingerprints already found sound (the gcd need not be repeated for every bundle of an aggregation).
_SOUND_KEYS: set[str] = set()
_LOCK = threading.Lock()


def generate_keypair(
    bits: int = DEFAULT_BITS, insecure_test_key: bool = False
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Make a Paillier key pair with an n of ``bits`` bits (default 3072).

    Keys below 2048 bits are refused unless ``insecure_test_key`` (for tests only).
    """
    if not isinstance(bits, int) or bits > MAX_BITS or bits < MIN_TEST_BITS or bits % 2:
        raise UsageError(f"key size must be an even number of bits in [{MIN_SECURE_BITS}, {MAX_BITS}]",
                         parameters=("bits",))
    if bits < MIN_SECURE_BITS and not insecure_test_key:
        raise InsecureKeyError(
            f"{bits}-bit keys are insecure; use at least {MIN_SECURE_BITS} (smaller keys only for throw-away tests)",
            parameters=("insecure_test_key",),
        )
    # phe draws its primes from random.SystemRandom, i.e. os.urandom.
    public_key, private_key = generate_paillier_keypair(n_length=bits)
    if bits < MIN_SECURE_BITS:
        with _LOCK:
            _TEST_KEYS.add(key_fingerprint(public_key))
    return public_key, private_key


@functools.cache
def _small_primes_product() -> gmpy2.mpz:
    """The product of every prime below :data:`SMALL_FACTOR_BOUND` (1.5 million bits; made once, in ~15 ms)."""
    return gmpy2.primorial(SMALL_FACTOR_BOUND - 1)


def check_public_key(public_key: PaillierPublicKey, *, insecure_test_key: bool = False,
                     source: str = "public key") -> None:
    """Refuse a Paillier public key no role should encrypt under, accept or pass on.

    Always refused (:class:`~hefed.errors.InsecureKeyError`): an n of fewer than 256 or more than 8192 bits,
    an even n, an n with a prime factor below 2^20, a prime n, and an n that is a perfect power (p², p³ …): each
    is factored (or has no secret factorisation) by whoever holds the public key. An n below 2048 bits is
    refused too unless ``insecure_test_key``, or unless this very process made it with
    ``generate_keypair(..., insecure_test_key=True)``. The message names ``source`` and n's bit length only.
    """
    n = getattr(public_key, "n", None)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise InsecureKeyError(f"{source}: not a Paillier public key")
    bits = n.bit_length()
    if not MIN_TEST_BITS <= bits <= MAX_BITS:
        raise InsecureKeyError(f"{source}: a {bits}-bit modulus; Paillier keys here have {MIN_TEST_BITS} to "
                               f"{MAX_BITS} bits")
    fingerprint = key_fingerprint(public_key)
    if fingerprint not in _SOUND_KEYS:
        if n % 2 == 0:
            raise InsecureKeyError(f"{source}: the {bits}-bit modulus is even, so anyone can factor it")
        if gmpy2.gcd(n, _small_primes_product()) != 1:
            raise InsecureKeyError(f"{source}: the {bits}-bit modulus has a prime factor below 2^20, so anyone "
                                   "can factor it")
        if gmpy2.is_power(n):
            raise InsecureKeyError(f"{source}: the {bits}-bit modulus is a perfect power, not a product of two "
                                   "distinct primes")
        if gmpy2.is_prime(n):
            raise InsecureKeyError(f"{source}: the {bits}-bit modulus is prime, not a product of two primes")
        with _LOCK:
            if len(_SOUND_KEYS) >= 4096:  # a process meets a few keys; a stream of hostile ones must not grow it
                _SOUND_KEYS.clear()
            _SOUND_KEYS.add(fingerprint)
    if bits < MIN_SECURE_BITS and not insecure_test_key and fingerprint not in _TEST_KEYS:
        raise InsecureKeyError(
            f"{source}: a {bits}-bit key is insecure; use at least {MIN_SECURE_BITS} bits (smaller keys only for "
            "throw-away tests, allowed explicitly)", parameters=("insecure_test_key",))


def key_fingerprint(public_key: PaillierPublicKey) -> str:
    """SHA-256 of the big-endian bytes of n, hex (first 32 digits): names a key in bundles."""
    n = public_key.n
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()[:32]


def _public_jwk(public_key: PaillierPublicKey, stamp: str) -> dict[str, Any]:
    return {
        "kty": "DAJ",
        "alg": "PAI-GN1",
        "key_ops": ["encrypt"],
        "n": int_to_base64(public_key.n),
        "kid": f"Paillier public key generated by hefed on {stamp}",
    }


def _stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def save_public_key(
    public_key: PaillierPublicKey, path: str | os.PathLike[str], force: bool = False
) -> Path:
    """Write the public key in pheutil's JSON format."""
    return atomic_write_json(path, _public_jwk(public_key, _stamp()), force=force)


def save_private_key(
    private_key: PaillierPrivateKey, path: str | os.PathLike[str], force: bool = False
) -> Path:
    """Write the private key (pheutil's JSON format) with mode 0600."""
    stamp = _stamp()
    obj = {
        "kty": "DAJ",
        "key_ops": ["decrypt"],
        "p": int_to_base64(private_key.p),
        "q": int_to_base64(private_key.q),
        "pub": _public_jwk(private_key.public_key, stamp),
        "kid": f"Paillier private key generated by hefed on {stamp}",
    }
    return atomic_write_json(path, obj, force=force, mode=0o600)


def _b64_int(obj: dict[str, Any], field: str, source: str) -> int:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidFileError(f"{source}: field {field!r} missing or not a base64url string")
    if len(value) > 4 * MAX_BITS:
        raise InvalidFileError(f"{source}: field {field!r} is far too long")
    try:
        return base64_to_int(value)
    except Exception:
        raise InvalidFileError(f"{source}: field {field!r} is not valid base64url") from None


def _public_from_jwk(obj: Any, source: str) -> PaillierPublicKey:
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{source}: public key must be a JSON object")
    if obj.get("kty") != "DAJ":
        raise InvalidFileError(f"{source}: not a Paillier key (kty {obj.get('kty')!r}, expected 'DAJ')")
    if "alg" in obj and obj["alg"] != "PAI-GN1":
        raise InvalidFileError(f"{source}: unsupported algorithm {obj['alg']!r}")
    n = _b64_int(obj, "n", source)
    if n.bit_length() < MIN_TEST_BITS or n.bit_length() > MAX_BITS:
        raise InvalidFileError(f"{source}: modulus n has {n.bit_length()} bits, outside [{MIN_TEST_BITS}, {MAX_BITS}]")
    public_key = PaillierPublicKey(n)
    try:  # the size rule is the caller's
        check_public_key(public_key, insecure_test_key=True, source=source)
    except InsecureKeyError as exc:  # a file holding no sound modulus is an invalid key file
        raise InvalidFileError(str(exc)) from None
    return public_key


def _is_private(obj: dict[str, Any]) -> bool:
    """A private key file (pheutil's and hefed's hold p, q and pub; others lambda and mu)."""
    return bool({"p", "q", "pub", "lambda", "mu"} & set(obj))


def _is_public(obj: dict[str, Any]) -> bool:
    """A public key file: a modulus n and nothing that can decrypt."""
    return "n" in obj and not _is_private(obj)


def load_public_key(path: str | os.PathLike[str], *, insecure_test_key: bool = False) -> PaillierPublicKey:
    """Load a public key (pheutil format), checked by :func:`check_public_key`.

    A private key file is refused, not silently reduced to its public half: whoever encrypts
    (a factory, the aggregator) must never hold the private key. A key below 2048 bits is refused
    unless ``insecure_test_key`` (or this process made it as a test key); loaded with the flag, it counts as a
    test key of this process from then on (the consent was given here), as one it generated does.
    """
    obj = read_json_object(path, "public key")
    if _is_private(obj):
        raise InsecureKeyError(f"{path}: this is the private key, which can decrypt every bundle; whoever encrypts "
                               "must never hold it: use the public key (public_key.json)", parameters=("public_key",))
    key_ops = obj.get("key_ops", ["encrypt"])
    if not isinstance(key_ops, list) or "encrypt" not in key_ops:
        raise InvalidFileError(f"{path}: key_ops does not allow encryption")
    public_key = _public_from_jwk(obj, str(path))
    check_public_key(public_key, insecure_test_key=insecure_test_key, source=str(path))
    if insecure_test_key and public_key.n.bit_length() < MIN_SECURE_BITS:
        with _LOCK:
            _TEST_KEYS.add(key_fingerprint(public_key))
    return public_key


def load_private_key(
    path: str | os.PathLike[str], allow_insecure_permissions: bool = False
) -> PaillierPrivateKey:
    """Load a private key (pheutil format), checking it matches its public part.

    A public key file is refused first, saying so. Refuses a file that group or others may read
    unless ``allow_insecure_permissions``.
    """
    path = Path(path)
    mode = stat_file(path, "private key").st_mode
    obj = read_json_object(path, "private key")
    if _is_public(obj):
        raise InvalidFileError(f"{path}: this is the public key, which cannot decrypt; give the private key "
                               "(private_key.json, kept by the key holder)", parameters=("private_key",))
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not allow_insecure_permissions:
        raise InsecureKeyError(
            f"{path}: private key is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            "run chmod 600 on it, or allow insecure permissions explicitly", parameters=("allow_insecure_permissions",)
        )
    if obj.get("kty") != "DAJ" or "p" not in obj or "q" not in obj:
        raise InvalidFileError(f"{path}: not a Paillier private key (needs kty 'DAJ', p, q, pub)")
    public_key = _public_from_jwk(obj.get("pub"), f"{path} (pub)")
    p, q = _b64_int(obj, "p", str(path)), _b64_int(obj, "q", str(path))
    if p * q != public_key.n:
        raise KeyMismatchError(f"{path}: p·q does not equal the public key's n")
    if p == q or not gmpy2.is_prime(p) or not gmpy2.is_prime(q):
        raise InvalidFileError(f"{path}: p and q must be distinct primes")
    return PaillierPrivateKey(public_key, p, q)
