"""A rate limit and its decision: allowed now, or how long to wait. Pure (clock given).

A limit is a steady rate with a burst, kept as GCRA: one number per limited thing, the
moment its bucket would be full again (``tat``). A request of ``cost`` fits when, after
it, that moment is at most ``burst`` requests' worth of time ahead of now. The same rule
runs in PostgreSQL (:mod:`regulars_runtime.limit_store`) so that every replica draws on
one bucket; this is the rule itself, and what tells a refused caller when to come back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .http import Problem

#: seconds of float rounding forgiven between the database's arithmetic and ours
_SLACK = 1e-6


@dataclass(frozen=True)
class Rate:
    """``per_second`` on average, ``burst`` at once; ``name`` names it in a 429."""

    name: str
    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError(f"{self.name}: the rate must be positive and the burst at least 1")

    @property
    def scope(self) -> str:
        """Its bucket's name in the shared table: replicas configured alike share one; a
        changed rate starts afresh rather than reading a bucket kept at another pace."""
        return f"{self.name} @{self.per_second:g}/s x{self.burst:g}"

    @property
    def interval(self) -> float:
        """Seconds one request's worth of the bucket takes to come back."""
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of now the bucket's full moment may be: the whole burst."""
        return self.burst * self.interval

    def charge(self, cost: float) -> float:
        """What a request of ``cost`` moves the full moment on by."""
        return cost * self.interval

    def needed(self, cost: float) -> float:
        """What must be free for it: a request larger than the burst could never fit, so
        it goes through once the bucket is full (and then waits out its whole cost)."""
        return min(self.charge(cost), self.tolerance)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    #: seconds until the same request would fit (0 when allowed)
    wait: float = 0.0
    #: the bucket's full moment after this request (unchanged when refused)
    tat: float = 0.0

    @property
    def retry_after(self) -> int:
        """Whole seconds for a Retry-After header (at least 1 when refused)."""
        return 0 if self.allowed else max(1, math.ceil(self.wait - _SLACK))


def decide(rate: Rate, tat: float | None, now: float, cost: float = 1.0) -> Verdict:
    """``tat``: the bucket's full moment before this request (None: never used, or so
    long ago that it is full)."""
    start = now if tat is None else max(tat, now)
    if start + rate.needed(cost) - now <= rate.tolerance + _SLACK:
        return Verdict(True, 0.0, start + rate.charge(cost))
    return Verdict(False, start + rate.needed(cost) - rate.tolerance - now, start)


def too_many(rate: Rate, verdict: Verdict) -> Problem:
    """The 429 answer: Retry-After, and the limit named in the problem document."""
    wait = verdict.retry_after
    return Problem(
        429,
        f"over the limit of {rate.name} ({_amount(rate.per_second)}/s, {_amount(rate.burst)}"
        f" at once); retry in {wait} s",
        {"Retry-After": str(wait)},
        limit=rate.name,
        retry_after=wait,
    )


def _amount(value: float) -> str:
    return f"{value:g}"
