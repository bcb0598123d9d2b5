"""How often the provider's public hooks may be called: token buckets. Pure (clock given).

Each replica keeps its own buckets: a limit, not a record, so losing them on a restart
loses nothing that was accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: bucket keys kept at most; beyond that the oldest are forgotten (a flood of made-up
#: numbers must not grow memory without bound)
MAX_KEYS = 10_000


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # most tokens held
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when allowed (and taken); else the seconds until it would be."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class HookRateLimits:
    """One bucket per key (a hook, a sender's number)."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str, now: float) -> int:
        """0 when allowed; else whole seconds for a Retry-After header."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
        wait = bucket.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
