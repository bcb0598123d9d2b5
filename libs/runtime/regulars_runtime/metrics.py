"""Prometheus metrics shared by every service (HTTP, consumers, outbox, timers, tables).

Every metric a service exports is declared here, so the alert rules and the dashboard
(deploy/k8s/base/monitoring) can be checked against one list. Gauges that describe a
table (the outbox, dead letters, timers, followup's messages, intake's pending webhook
tries) are read when Prometheus scrapes, at most every :data:`READ_EVERY` seconds, by
cheap queries (index-backed or LIMIT-bounded): see :class:`TableReadings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "regulars_http_requests_total", "HTTP requests answered", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "regulars_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_CONSUMED = Counter(
    "regulars_events_consumed_total", "Events handled by a consumer", ["service", "type", "result"]
)
DEAD_LETTERS = Counter(
    "regulars_dead_letters_total",
    "Events dead-lettered (kept in dead_letters, copied to the dead-letter topic)",
    ["service", "topic"],
)
DEAD_LETTERS_WAITING = Gauge(
    "regulars_dead_letters_waiting",
    "Dead letters noted in the service's table and not replayed yet",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "regulars_consumer_lag",
    "Records behind the partition's high watermark (this replica's assigned partitions)",
    ["service", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("regulars_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST = Gauge(
    "regulars_outbox_oldest_unpublished_seconds",
    "Age of the oldest outbox row not yet published (0 when none waits)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "regulars_outbox_published_total", "Outbox rows published to Kafka", ["service"]
)
OUTBOX_PARKED = Counter(
    "regulars_outbox_parked_total",
    "Outbox rows the broker refused for good (too large, not authorised), parked",
    ["service"],
)
BROKER_CHANGES = Counter(
    "regulars_broker_changes_total",
    "Times the relay saw a new Kafka cluster and re-published its retained outbox",
    ["service"],
)
RELAY_LEADER = Gauge(
    "regulars_relay_leader",
    "1 on the replica whose outbox relay holds the service's advisory lock (publishes), else 0",
    ["service"],
)
TIMER_LAG = Histogram(
    "regulars_timer_lag_seconds",
    "How late a durable timer fired after its moment",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30),
)
RATE_LIMITED = Counter(
    "regulars_rate_limited_total",
    "Requests refused with 429 by a rate limit, by the limit's name",
    ["service", "limit"],
)
API_KEY_LOOKUPS = Counter(
    "regulars_api_key_lookups_total",
    "API keys looked up in the database (a cached answer, good or bad, is not counted)",
    ["service", "result"],
)
TIMERS_DUE = Gauge(
    "regulars_timers_due", "Pending timers whose moment has come, not fired yet", ["service"]
)
TIMERS_LATE = Gauge(
    "regulars_timers_late",
    "Pending timers more than a minute past their moment",
    ["service"],
)
TIMERS_OLDEST_DUE = Gauge(
    "regulars_timers_oldest_due_seconds",
    "How far past its moment the oldest due, unfired timer is (0 when none is due)",
    ["service"],
)
POOL_CONNECTIONS = Gauge(
    "regulars_db_pool_connections",
    "PostgreSQL pool connections: in_use, idle, max",
    ["service", "state"],
)
BUILD_INFO = Gauge(
    "regulars_build_info", "The build running: always 1", ["service", "version", "commit"]
)
MESSAGES = Gauge(
    "regulars_messages",
    "Followup's outbound messages by channel and status (its messages table)",
    ["channel", "status"],
)
WEBHOOK_DELIVERIES = Counter(
    "regulars_webhook_deliveries_total",
    "Webhook tries by result: delivered, rejected (4xx), error (5xx), timeout, connection, refused",
    ["result"],
)
WEBHOOK_PENDING = Gauge(
    "regulars_webhook_deliveries_pending", "Webhook deliveries waiting for a (next) try", []
)
SLA_BREACHES = Counter(
    "regulars_recovery_sla_breaches_total",
    "Recovery-case SLA windows that ran out (escalated, or at the top of the ladder)",
    ["clock", "escalated"],
)

#: a timer this far past its moment counts as late (the alert's minute)
LATE_AFTER = 60.0
#: table gauges are read at most this often, whatever the number of scrapers
READ_EVERY = 5.0
#: a reading that takes longer is abandoned: the gauges keep their last values
READ_TIMEOUT = 3.0
#: counts stop at this: a backlog this large is an incident whatever its exact size, and
#: the count stays a bounded index scan
COUNT_CAP = 100_000


# -- computations (pure) -------------------------------------------------------------------


def partition_lag(highwater: int | None, position: int | None) -> int | None:
    """Records of a partition not yet applied: its high watermark less our position (the
    next offset to apply, which is the committed one once a round is done). None until a
    fetch has told us the high watermark."""
    if highwater is None or position is None:
        return None
    return max(0, highwater - position)


def seconds_past(moment: datetime | None, now: datetime) -> float:
    """How long ago ``moment`` was; 0 for none (nothing waits) or a moment still to come."""
    if moment is None:
        return 0.0
    return max(0.0, (now - moment).total_seconds())


def pool_connections(size: int, idle: int, max_size: int) -> dict[str, int]:
    return {"in_use": max(0, size - idle), "idle": idle, "max": max_size}


def counts_by(
    rows: Iterable[tuple[tuple[str, ...], int]], seen: Iterable[tuple[str, ...]]
) -> dict[tuple[str, ...], int]:
    """Counts per label set: those read now, and 0 for any set seen before that is gone
    (a status no message holds any more must read 0, not keep its last count)."""
    counts = dict.fromkeys(seen, 0)
    for labels, count in rows:
        counts[labels] = count
    return counts


def webhook_result(status_code: int | None, error: str | None) -> str:
    """The result label of one webhook try."""
    if status_code is None:
        return error or "connection"
    if 200 <= status_code < 300:
        return "delivered"
    if 400 <= status_code < 500:
        return "rejected"
    return "error"


def build_info(service: str, version: str, commit: str) -> None:
    BUILD_INFO.labels(service, version, commit or "unknown").set(1)


# -- readings from the service's own tables --------------------------------------------------

#: reads one or more gauges from the service's tables on a pooled connection; ``now``
#: is the service's clock (a test's fake clock decides what is due)
Reading = Callable[[asyncpg.Connection, str, datetime], Awaitable[None]]


async def read_outbox(conn: asyncpg.Connection, service: str, now: datetime) -> None:
    # both on the partial index of unpublished rows; the oldest row is the lowest id
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL"
        "  LIMIT $1) AS waiting) AS backlog,"
        " (SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1)"
        "  AS oldest, now() AS db_now",
        COUNT_CAP,
    )
    OUTBOX_BACKLOG.labels(service).set(row["backlog"])
    # database time: created_at is the database's now() at insert
    OUTBOX_OLDEST.labels(service).set(seconds_past(row["oldest"], row["db_now"]))


async def read_dead_letters(conn: asyncpg.Connection, service: str, now: datetime) -> None:
    waiting = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM dead_letters WHERE replayed_at IS NULL"
        " LIMIT $1) AS waiting",
        COUNT_CAP,
    )
    DEAD_LETTERS_WAITING.labels(service).set(waiting)


async def read_timers(conn: asyncpg.Connection, service: str, now: datetime) -> None:
    # all three on the partial index of pending timers (timers_pending)
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM timers WHERE fired_at IS NULL"
        "  AND cancelled_at IS NULL AND fire_at <= $1 LIMIT $3) AS d) AS due,"
        " (SELECT count(*) FROM (SELECT 1 FROM timers WHERE fired_at IS NULL"
        "  AND cancelled_at IS NULL AND fire_at <= $2 LIMIT $3) AS l) AS late,"
        " (SELECT min(fire_at) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
        "  AND fire_at <= $1) AS oldest",
        now,
        now - timedelta(seconds=LATE_AFTER),
        COUNT_CAP,
    )
    TIMERS_DUE.labels(service).set(row["due"])
    TIMERS_LATE.labels(service).set(row["late"])
    TIMERS_OLDEST_DUE.labels(service).set(seconds_past(row["oldest"], now))


def at_most_every(seconds: float, reading: Reading) -> Reading:
    """``reading``, skipped until ``seconds`` have passed since it last ran: for a count
    over a whole table (followup's messages by channel and status), which no partial
    index bounds."""
    last = float("-inf")

    async def throttled(conn: asyncpg.Connection, service: str, now: datetime) -> None:
        nonlocal last
        if time.monotonic() - last < seconds:
            return
        last = time.monotonic()
        await reading(conn, service, now)

    throttled.__name__ = reading.__name__
    return throttled


#: what every service reads: the library tables each service schema has
COMMON_READINGS: tuple[Reading, ...] = (read_outbox, read_dead_letters, read_timers)


@dataclass
class TableReadings:
    """Refreshes the table gauges of one service, at most every ``every`` seconds.

    Called by ``/metrics`` before it answers: with no scraper there is no query at all,
    and several scrapers (or replicas' Prometheus pairs) share one reading. Each reading
    that fails or runs past ``timeout`` is logged and its gauges keep their last values,
    so ``/metrics`` itself always answers.
    """

    service: str
    pool: asyncpg.Pool
    clock: Callable[[], datetime]
    readings: Sequence[Reading] = COMMON_READINGS
    every: float = READ_EVERY
    timeout: float = READ_TIMEOUT
    _last: float = field(default=float("-inf"), init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def refresh(self) -> None:
        self.read_pool()
        async with self._lock:
            if time.monotonic() - self._last < self.every:
                return
            self._last = time.monotonic()
            try:
                await asyncio.wait_for(self._read_all(), self.timeout)
            except Exception as exc:
                log.warning("table metrics not read", extra={"error": repr(exc)})

    async def _read_all(self) -> None:
        now = self.clock()
        async with self.pool.acquire() as conn:
            for reading in self.readings:
                try:
                    await reading(conn, self.service, now)
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                    raise
                except asyncpg.PostgresError as exc:
                    log.warning(
                        "a table metric was not read",
                        extra={"reading": reading.__name__, "error": repr(exc)},
                    )

    def read_pool(self) -> None:
        for state, value in pool_connections(
            self.pool.get_size(), self.pool.get_idle_size(), self.pool.get_max_size()
        ).items():
            POOL_CONNECTIONS.labels(self.service, state).set(value)


def set_lags(
    service: str,
    lags: Mapping[tuple[str, int], int],
    shown: set[tuple[str, int]],
) -> set[tuple[str, int]]:
    """Set the lag of each assigned partition; drop those this replica no longer holds
    (another replica reports them now). Returns the partitions shown."""
    for topic, partition in shown - set(lags):
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(service, topic, str(partition))
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(service, topic, str(partition)).set(lag)
    return set(lags)
