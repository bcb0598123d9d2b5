"""Rate limits shared by every replica: the GCRA rule of :mod:`regulars_runtime.limits`
applied in PostgreSQL, one statement per check on one row per limited thing.

The statement takes its clock from the database, so replicas whose clocks differ still
draw on one bucket. Each process also remembers, until it passes, a refusal the database
gave: a flood that is over its limit is refused here without a round trip, and what holds
is the shared limit all the same (a process only ever refuses sooner, never admits more).
When the database cannot be asked the request is let through: a limit protects the
service, and a request that cannot reach the database fails on its own anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from . import metrics
from .limits import Rate, Verdict, decide, too_many

log = logging.getLogger(__name__)

#: refusals remembered per process at most (a flood of made-up keys is bounded)
REMEMBERED = 10_000
#: how often a process deletes rows whose bucket is full again (they mean nothing)
PRUNE_EVERY = 300.0

# $3: what this request moves the full moment on by; $4: what must be free for it;
# $5: how far ahead of now the full moment may be. The outer SELECT reads the row as it
# was before this statement, to say how long a refused request waits.
_TAKE = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
taken AS (
    INSERT INTO rate_limits AS r (scope, key, tat)
    SELECT $1, $2, clock.now + $3 FROM clock
    ON CONFLICT (scope, key) DO UPDATE
        SET tat = greatest(r.tat, (SELECT now FROM clock)) + $3
        WHERE greatest(r.tat, (SELECT now FROM clock)) + $4 - (SELECT now FROM clock)
            <= $5 + 1e-6
    RETURNING r.tat
)
SELECT clock.now, (SELECT tat FROM taken) AS taken,
       (SELECT tat FROM rate_limits WHERE scope = $1 AND key = $2) AS before
FROM clock
"""


@dataclass
class _Refusal:
    until: float  # this process's monotonic clock
    cost: float


class SharedLimits:
    """Checks a :class:`Rate` for a key (a shop, a hook, a client address) in the
    service's ``rate_limits`` table."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        service: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.service = service
        self.monotonic = monotonic
        self._refused: dict[tuple[str, str], _Refusal] = {}
        self._pruned = monotonic()

    async def check(self, rate: Rate, key: str, cost: float = 1.0) -> Verdict:
        here = self.monotonic()
        remembered = self._refused.get((rate.scope, key))
        if remembered is not None:
            if remembered.until > here and cost >= remembered.cost:
                return self._refuse(rate, Verdict(False, remembered.until - here))
            del self._refused[(rate.scope, key)]
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    _TAKE,
                    rate.scope,
                    key,
                    rate.charge(cost),
                    rate.needed(cost),
                    rate.tolerance,
                )
                if here - self._pruned > PRUNE_EVERY:
                    self._pruned = here
                    await conn.execute(
                        "DELETE FROM rate_limits"
                        " WHERE tat < extract(epoch FROM clock_timestamp()) - 60"
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(
                "could not check a shared rate limit; letting the request through",
                extra={"limit": rate.name, "error": repr(exc)},
            )
            return Verdict(True)
        assert row is not None
        if row["taken"] is not None:
            return Verdict(True, 0.0, float(row["taken"]))
        verdict = decide(rate, row["before"], float(row["now"]), cost)
        if verdict.allowed:
            # the row moved between the statement's snapshot and its lock: a moment more
            verdict = Verdict(False, rate.interval, verdict.tat)
        if len(self._refused) >= REMEMBERED:
            del self._refused[next(iter(self._refused))]
        self._refused[(rate.scope, key)] = _Refusal(here + verdict.wait, cost)
        return self._refuse(rate, verdict)

    def refused_here(self, rate: Rate, key: str, cost: float = 1.0) -> Verdict | None:
        """The refusal this process remembers for ``key``, if one still holds: what can
        be known without asking the database."""
        remembered = self._refused.get((rate.scope, key))
        here = self.monotonic()
        if remembered is None or remembered.until <= here or cost < remembered.cost:
            return None
        return self._refuse(rate, Verdict(False, remembered.until - here))

    async def enforce(self, rate: Rate, key: str, cost: float = 1.0) -> None:
        """Raises the 429 (Retry-After, the limit named) when over ``rate``."""
        verdict = await self.check(rate, key, cost)
        if not verdict.allowed:
            raise too_many(rate, verdict)

    def _refuse(self, rate: Rate, verdict: Verdict) -> Verdict:
        metrics.RATE_LIMITED.labels(self.service, rate.name).inc()
        return verdict
