"""Requests per client: a token bucket per address and a wider one per network.

A volunteer's `probe submit` sends a run (tens of requests) back to back and then
nothing for hours; a flood keeps sending. A bucket of `burst` tokens refilled at
`rate` a second serves the first at once and slows the second to `rate`. One
attacker may own many addresses but few networks, so the /24 (IPv4) or /64 (IPv6)
an address is in (`probe.server.admission.Client`) has a bucket too,
`NETWORK_FACTOR` times as large: a flood from one address leaves its neighbours
served, a flood from a whole network is held to a few addresses' worth. Only an
admitted request takes tokens, so a refused flood does not starve the network.

Memory is bounded: buckets are kept in order of last use, those idle long enough
to have refilled (they hold nothing a new bucket would not) are dropped, and beyond
`max_tracked` the least recently used goes, its client then starting afresh.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from probe.server.admission import Client

NETWORK_FACTOR = 4
DEFAULT_RATE = 20.0  # requests a second, per address
DEFAULT_BURST = 100  # requests at once, per address: a run's measurements sent back to back
DEFAULT_MAX_TRACKED = 50_000  # addresses and networks together


@dataclass
class _Bucket:
    tokens: float
    at: float  # when `tokens` was counted


class RateLimiter:
    """Admit or refuse one request of a client; safe to use from many threads."""

    def __init__(self, rate: float, burst: int, max_tracked: int = DEFAULT_MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_tracked < 2:
            raise ValueError("rate > 0, burst >= 1 and max_tracked >= 2 are needed")
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, host: str) -> float:
        """0 if a request from `host` may go on (its tokens taken), else the seconds
        until it may."""
        client = Client.of(host)
        now = self._clock()
        with self._lock:
            self._forget_idle(now)
            wait = 0.0
            buckets = []
            for key, factor in ((client.address, 1), (client.network, NETWORK_FACTOR)):
                bucket = self._bucket(key, factor, now)
                buckets.append(bucket)
                if bucket.tokens < 1:
                    wait = max(wait, (1 - bucket.tokens) / (self.rate * factor))
            if wait:
                return wait
            for bucket in buckets:
                bucket.tokens -= 1
            return 0.0

    def _bucket(self, key: str, factor: int, now: float) -> _Bucket:
        """The key's bucket, refilled to `now` and marked as the most recently used."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst * factor), now)
            while len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst * factor),
                                bucket.tokens + (now - bucket.at) * self.rate * factor)
            bucket.at = now
        return bucket

    def _forget_idle(self, now: float) -> None:
        """Drop the least recently used buckets that have refilled since (amortised O(1))."""
        full_after = self.burst / self.rate  # the longest any bucket takes to refill
        while self._buckets:
            bucket = next(iter(self._buckets.values()))
            if now - bucket.at < full_after:
                return
            self._buckets.popitem(last=False)


def retry_after(wait: float) -> str:
    """A `Retry-After` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
