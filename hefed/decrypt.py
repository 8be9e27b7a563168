"""Key holder side: decrypt an aggregate, and only an aggregate, into statistics.

The key holder refuses a bundle with fewer contributors than the disclosure
threshold (default 3) and checks, from the decrypted plaintexts themselves,
that the contribution counter equals the number of contributors listed and
that every slot passes its guard-bit check. A single factory's bundle
relabelled as an aggregate therefore fails: its counter reads 1.
"""

from __future__ import annotations

from phe import PaillierPrivateKey

from .bundle import Bundle
from .errors import DuplicateContributorError, IntegrityError, KeyMismatchError, TooFewContributorsError, UsageError
from .keys import key_fingerprint
from .primitives.packing import PackingError
from .primitives.paillier import decrypt_raw
from .statistics import SufficientStatistics, upper_triangle_index

DEFAULT_MIN_CONTRIBUTORS = 3


def decrypt_statistics(
    bundle: Bundle, private_key: PaillierPrivateKey, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
) -> SufficientStatistics:
    """Decrypt an aggregate bundle of at least ``min_contributors`` factories."""
    if not isinstance(min_contributors, int) or min_contributors < 1:
        raise UsageError("min_contributors must be a positive integer")
    if bundle.key_fingerprint != key_fingerprint(private_key.public_key):
        raise KeyMismatchError(
            f"bundle was encrypted for key {bundle.key_fingerprint}, "
            f"but the private key is {key_fingerprint(private_key.public_key)}"
        )
    if len(set(bundle.contributors)) != len(bundle.contributors):
        raise DuplicateContributorError("bundle lists a factory more than once")
    count = len(bundle.contributors)
    if count < min_contributors:
        raise TooFewContributorsError(
            f"bundle has {count} contributor(s); at least {min_contributors} are required "
            "before anything is decrypted"
        )
    layout = bundle.layout()
    plaintexts = [decrypt_raw(private_key, c) for c in bundle.ciphertexts]
    try:
        values = layout.unpack(plaintexts, count)
    except PackingError as exc:
        raise IntegrityError(f"decrypted aggregate is corrupt or overflowed: {exc}") from None
    *stats, counter = values
    if counter != count:
        raise IntegrityError(
            f"bundle lists {count} contributors but its ciphertexts sum {counter} contributions"
        )
    result = SufficientStatistics.from_vector(
        stats, bundle.target, bundle.features, bundle.encoding, bundle.contributors
    )
    m = len(result.gram)
    if any(result.gram[a][a] < 0 for a in range(m)) or len(stats) != len(upper_triangle_index(m)):
        raise IntegrityError("decrypted statistics are inconsistent")
    return result
