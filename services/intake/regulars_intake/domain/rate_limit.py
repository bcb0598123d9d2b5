"""Per-shop rate limit: a token bucket per shop, in events per second. Pure (clock given)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # most tokens held
    tokens: float | None = None  # None: full, not yet used
    updated: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 when allowed (and taken); else the seconds to wait before it would be."""
        if self.tokens is None:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if cost <= self.tokens:
            self.tokens -= cost
            return 0.0
        if cost > self.burst:
            # A batch bigger than the burst could never pass: let it through once full.
            if self.tokens >= self.burst:
                self.tokens -= cost
                return 0.0
            return (self.burst - self.tokens) / self.rate
        return (cost - self.tokens) / self.rate


class ShopRateLimits:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, shop_id: str, now: float, cost: float = 1.0) -> int:
        """0 when allowed; else whole seconds for a Retry-After header."""
        bucket = self._buckets.get(shop_id)
        if bucket is None:
            bucket = self._buckets[shop_id] = TokenBucket(self.rate, self.burst)
        wait = bucket.take(now, cost)
        return 0 if wait == 0 else max(1, math.ceil(wait))
