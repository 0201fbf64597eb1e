"""Bounded-memory distinct counting of affected people 影响人数 (a KMV sketch).

An entity may have thousands of investors; its state must stay around 2 KB.
We keep the ``k`` smallest 32-bit hashes of the people seen (sorted, 4 bytes
each, so ``k = 32`` costs 128 bytes). While fewer than ``k`` distinct people
were seen the count is exact -- the common case for a single fund -- and past
that the estimate ``(k - 1) * 2**32 / h_k`` (``h_k`` the k-th smallest hash) has
a relative standard error of about ``1 / sqrt(k - 2)`` (18 % at k = 32). Why KMV
rather than HyperLogLog: HLL needs ~64+ registers to be useful and is never
exact for small counts, while KMV is exact where most entities live, is
deterministic (same people, same bytes, in any order) and merges by union.

>>> s = b""
>>> for who in ["inv:A", "inv:B", "inv:A"]:
...     s = add(s, who, k=32)
>>> estimate(s, k=32)
2
"""

from __future__ import annotations

import hashlib

_W = 4  # bytes per hash
_SPACE = 1 << 32


def _hash(who: str) -> bytes:
    # Fixed-width big-endian: byte order is numeric order, so the sketch is searched as bytes.
    return hashlib.blake2b(who.encode(), digest_size=_W).digest()


def add(blob: bytes, who: str, *, k: int) -> bytes:
    """The sketch ``blob`` with person ``who`` added (unchanged if already counted or too large)."""
    h = _hash(who)
    n = len(blob) // _W
    if n >= k and h > blob[(k - 1) * _W : k * _W]:
        return blob  # the common case once full: not among the k smallest
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if blob[mid * _W : mid * _W + _W] < h:
            lo = mid + 1
        else:
            hi = mid
    at = lo * _W
    if lo < n and blob[at : at + _W] == h:
        return blob
    out = blob[:at] + h + blob[at:]
    return out[: k * _W] if n >= k else out


def estimate(blob: bytes, *, k: int) -> int:
    """Distinct people in the sketch: exact below ``k``, estimated above."""
    n = len(blob) // _W
    if n < k:
        return n
    kth = int.from_bytes(blob[(k - 1) * _W : k * _W], "big")
    return max(k, round((k - 1) * _SPACE / (kth + 1)))
