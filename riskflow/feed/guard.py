"""What keeps the officers' feed standing under a hostile or careless client.

- :class:`FeedLimits`: the numbers (from the settings; ``riskflow feed`` passes them in).
- :class:`StreamSlots`: concurrent live streams per token and in total; above either the
  stream is refused (503 + ``Retry-After``) instead of holding memory and a socket.
- :class:`AuthThrottle`: failed token attempts per client address, a token bucket; an address
  that used up its allowance gets 429 + ``Retry-After`` without its token being checked, so
  guessing runs at ``auth_rate`` per second at most. A token that already worked from that
  address still does, so an officer is not locked out by someone guessing behind the same NAT.
- :data:`SECURITY_HEADERS`: set on every response (pages, API, errors, static files).

>>> slots = StreamSlots(per_token=1, total=5)
>>> slots.acquire("k"), slots.acquire("k")
(None, 'per_token')
>>> slots.release("k"); slots.acquire("k")
>>> t = [0.0]
>>> th = AuthThrottle(burst=2, rate=0.5, clock=lambda: t[0])
>>> th.failed("10.0.0.9"); th.failed("10.0.0.9"); th.retry_after("10.0.0.9", "guess")
2
>>> t[0] = 2.0; th.retry_after("10.0.0.9", "guess") is None
True
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger(__name__)

#: No inline script or style, no frames, no plug-ins: the page is index.html + feed.js + feed.css.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class FeedLimits:
    """Bounds of the feed; the defaults are those of the settings (riskflow/core/settings.py)."""

    streams_per_token: int = 8
    streams_total: int = 200
    max_note_bytes: int = 4096
    auth_burst: int = 10
    auth_rate: float = 1.0
    #: Rows a live stream reads from the store at a time while it catches up (``since=``, or
    #: after falling behind): what one connection holds, whatever the history's size.
    stream_page: int = 200
    #: Change batches (shared by all streams) a stream may have waiting; one more and it is
    #: "behind": the waiting ones are dropped and it catches up from the store instead.
    stream_queue: int = 8
    #: A stream whose client takes longer than this to accept one write is closed.
    stream_write_timeout: float = 60.0
    #: Seconds a refused stream is told to wait (``Retry-After``).
    stream_retry_after: int = 10

    @property
    def max_body_bytes(self) -> int:
        """Largest request body read at all: the three text fields at their limit, and room for JSON."""
        return 3 * self.max_note_bytes * 6 + 16384  # a JSON \\uXXXX escape is 6 bytes per character


class StreamSlots:
    """Counts of open live streams, per key (a token's digest) and in total."""

    def __init__(self, per_token: int, total: int) -> None:
        self.per_token = per_token
        self.total = total
        self.open = 0
        self.by_key: dict[str, int] = {}

    def acquire(self, key: str) -> str | None:
        """Take a slot; or the reason there is none (``total`` or ``per_token``)."""
        if self.open >= self.total:
            return "total"
        if self.by_key.get(key, 0) >= self.per_token:
            return "per_token"
        self.open += 1
        self.by_key[key] = self.by_key.get(key, 0) + 1
        return None

    def release(self, key: str) -> None:
        self.open -= 1
        left = self.by_key.get(key, 0) - 1
        if left > 0:
            self.by_key[key] = left
        else:
            self.by_key.pop(key, None)


def token_key(token: str) -> str:
    """A short digest standing for a token in the feed's bookkeeping (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class _Address:
    allowance: float
    stamp: float
    known: set[str] = field(default_factory=set)


class AuthThrottle:
    """Failed-token back-off per client address, and a warning at most every ``log_every`` seconds.

    Each address may fail ``burst`` times at once, then ``rate`` times a second. The table of
    addresses is bounded (least recently seen dropped first).
    """

    KNOWN_PER_ADDRESS: Final = 16

    def __init__(
        self,
        burst: int,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10000,
        log_every: float = 60.0,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self.max_addresses = max_addresses
        self.log_every = log_every
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        self._next_log = -math.inf
        self._failed = 0
        self._refused = 0
        self._from: set[str] = set()

    def _state(self, addr: str, create: bool) -> _Address | None:
        now = self.clock()
        st = self._addresses.get(addr)
        if st is None:
            if not create:
                return None
            st = self._addresses[addr] = _Address(float(self.burst), now)
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(addr)
            st.allowance = min(float(self.burst), st.allowance + (now - st.stamp) * self.rate)
            st.stamp = now
        return st

    def retry_after(self, addr: str, token: str | None) -> int | None:
        """Seconds ``addr`` must wait before its next attempt, or None if it may try now."""
        st = self._state(addr, create=False)
        if st is None or st.allowance >= 1.0:
            return None
        if token and token_key(token) in st.known:
            return None
        self._refused += 1
        self._note(addr)
        return max(1, math.ceil((1.0 - st.allowance) / self.rate))

    def failed(self, addr: str) -> None:
        st = self._state(addr, create=True)
        assert st is not None
        st.allowance = max(0.0, st.allowance - 1.0)
        self._failed += 1
        self._note(addr)

    def succeeded(self, addr: str, token: str) -> None:
        st = self._state(addr, create=True)
        assert st is not None
        if len(st.known) < self.KNOWN_PER_ADDRESS:
            st.known.add(token_key(token))

    def _note(self, addr: str) -> None:
        if len(self._from) < 1000:
            self._from.add(addr)
        now = self.clock()
        if now < self._next_log:
            return
        shown = ", ".join(sorted(self._from)[:3]) + (" …" if len(self._from) > 3 else "")
        log.warning(
            "feed: %d failed token attempt(s), %d refused by back-off, from %d address(es) (%s) since the last "
            "report (one at most every %.0f s)",
            self._failed,
            self._refused,
            len(self._from),
            shown,
            self.log_every,
        )
        self._failed = self._refused = 0
        self._from.clear()
        self._next_log = now + self.log_every
