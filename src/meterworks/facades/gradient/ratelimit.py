"""Per-token request limiting: one token bucket per GRADIENT-TOKEN, in this process.

The vendor allows 100 requests per second; a client tuned to that limit keeps working, and one
that bursts past it gets 429 with `Retry-After`. Buckets refill on the monotonic clock, not the
injected business clock: a limit is about real elapsed time even when tests freeze the clock.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

# Past this many distinct tokens, full (idle) buckets are forgotten, so memory stays bounded
# whatever tokens clients invent.
MAX_TRACKED_TOKENS = 10_000


class TokenBuckets:
    """`rate` requests per second per key, with bursts of up to one second's worth."""

    def __init__(self, rate: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._now = now
        self._buckets: dict[bytes, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> int | None:
        """Spend one request for `key`: None when allowed, else whole seconds to wait (≥ 1)."""
        if not self.enabled:
            return None
        # A fixed-size digest, so a client sending huge header values cannot grow memory.
        slot = hashlib.sha256(key.encode()).digest()
        with self._lock:
            now = self._now()
            tokens, seen = self._buckets.get(slot, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - seen) * self.rate)
            if tokens >= 1.0:
                self._remember(slot, tokens - 1.0, now)
                return None
            self._remember(slot, tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _remember(self, slot: bytes, tokens: float, now: float) -> None:
        if slot not in self._buckets and len(self._buckets) >= MAX_TRACKED_TOKENS:
            self._forget_idle(now)
        self._buckets[slot] = (tokens, now)

    def _forget_idle(self, now: float) -> None:
        idle = [
            slot
            for slot, (tokens, seen) in self._buckets.items()
            if tokens + (now - seen) * self.rate >= self.capacity
        ]
        for slot in idle:
            del self._buckets[slot]
        if len(self._buckets) >= MAX_TRACKED_TOKENS:
            # Every bucket is busy: forgetting all of them errs on the side of serving.
            self._buckets.clear()
