"""Durable timers: a moment in the future kept as a row, fired once in effect.

Every "due", "missed", "SLA at risk", "escalate" or "monthly sweep" moment is a row in the
service's ``timers`` table, written by :func:`schedule` in the transaction that decides it,
so it exists exactly when that decision commits. A :class:`TimerScheduler` on each
replica claims due rows with ``FOR UPDATE SKIP LOCKED`` and, in one transaction, runs the
handler (which writes its effects and outbox rows on the connection it is given) and marks
the rows fired. So:

- kill -9 at any point rolls back the whole firing (PostgreSQL aborts the dead client's
  transaction and frees its locks) and another scheduler fires it again: nothing lost;
- effects and ``fired_at`` commit together, and a fired row is never claimed again:
  nothing fired twice in effect;
- replicas skip each other's locked rows instead of queueing behind them;
- a scheduler sleeps until the earliest pending ``fire_at`` (at most ``max_sleep``), and a
  NOTIFY at the commit of every :func:`schedule` wakes it to re-evaluate that sleep.

"Now" always comes from the injected clock, never from SQL ``now()``: a test's fake clock
decides what is due.

A service gets one scheduler per replica from :mod:`regulars_runtime.service` as soon
as its message bus has timer handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from regulars_bus.supervise import keep_running

from .clock import Clock, system_clock

log = logging.getLogger(__name__)

NOTIFY_CHANNEL_PREFIX = "regulars_timers_"
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")

#: seconds to wait after the 1st, 2nd, ... failure; the last step repeats forever, so a
#: timer broken by a bug fires once the fix is deployed instead of being dropped.
RETRY_STEPS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0)


@dataclass(frozen=True)
class Timer:
    id: int
    key: str
    kind: str
    shop_id: uuid.UUID | None
    fire_at: datetime
    payload: dict[str, Any]
    #: failed firings before this one
    attempts: int


TimerHandler = Callable[[Timer, asyncpg.Connection], Awaitable[None]]
Backoff = Callable[[int], float]


def backoff(attempts: int) -> float:
    """Seconds until the next try of a timer whose handler has now failed ``attempts`` times."""
    if attempts < 1:
        raise ValueError(f"attempts counts failures so far and starts at 1, got {attempts}")
    return RETRY_STEPS[min(attempts, len(RETRY_STEPS)) - 1]


def _checked(schema: str) -> str:
    # Interpolated into SQL and NOTIFY (neither takes it as a parameter).
    if not _SCHEMA.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    return schema


def notify_channel(schema: str) -> str:
    return NOTIFY_CHANNEL_PREFIX + _checked(schema)


def _aware(at: datetime, name: str) -> datetime:
    # asyncpg would read a naive datetime as UTC; a shop-local wall time passed by mistake
    # would then fire hours off, silently.
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {at!r}")
    return at


async def schedule(
    conn: asyncpg.Connection,
    *,
    key: str,
    kind: str,
    shop_id: uuid.UUID | str | None,
    fire_at: datetime,
    payload: Mapping[str, Any] | None = None,
    schema: str,
    reschedule: bool = False,
) -> bool:
    """Add the timer ``key`` in the caller's transaction; True if this call wrote it.

    The key makes it idempotent: if ``key`` exists, nothing changes (False), unless
    ``reschedule`` is set, which moves an unfired timer to ``fire_at`` with ``payload``,
    reviving it if it was cancelled and forgetting its failures. A fired timer is never
    moved (False): a new occurrence needs a new key.
    """
    table = f"{_checked(schema)}.timers"
    fire_at = _aware(fire_at, "fire_at")
    on_conflict = (
        "DO UPDATE SET fire_at = EXCLUDED.fire_at, payload = EXCLUDED.payload,"
        " cancelled_at = NULL, attempts = 0, last_error = NULL"
        " WHERE t.fired_at IS NULL"
        if reschedule
        else "DO NOTHING"
    )
    # One round trip: the NOTIFY rides on the INSERT and is sent only if a row was
    # written. It is delivered at commit, once per transaction however many timers that
    # wrote, and wakes every scheduler sleeping toward a later moment to look again.
    written = await conn.fetchval(
        f"WITH w AS (INSERT INTO {table} AS t (key, kind, shop_id, fire_at, payload)"
        " VALUES ($1, $2, $3, $4, $5::text::jsonb)"
        f" ON CONFLICT (key) {on_conflict} RETURNING 1)"
        " SELECT true FROM w, LATERAL (SELECT pg_notify($6, '')) AS n",
        key,
        kind,
        shop_id,
        fire_at,
        orjson.dumps(dict(payload or {})).decode(),
        notify_channel(schema),
    )
    return bool(written)


@dataclass(frozen=True)
class NewTimer:
    key: str
    kind: str
    shop_id: uuid.UUID | str | None
    fire_at: datetime
    payload: Mapping[str, Any]


async def schedule_many(
    conn: asyncpg.Connection, timers: Sequence[NewTimer], *, schema: str
) -> int:
    """``schedule`` (without reschedule) for many timers in one statement; how many were new."""
    if not timers:
        return 0
    table = f"{_checked(schema)}.timers"
    written = await conn.fetchval(
        f"WITH w AS (INSERT INTO {table} AS t (key, kind, shop_id, fire_at, payload)"
        " SELECT key, kind, shop_id::uuid, fire_at, payload::jsonb FROM unnest($1::text[],"
        " $2::text[], $3::text[], $4::timestamptz[], $5::text[])"
        " AS n(key, kind, shop_id, fire_at, payload) ORDER BY key"
        " ON CONFLICT (key) DO NOTHING RETURNING 1)"
        " SELECT count(*) FROM w, LATERAL (SELECT pg_notify($6, '')) AS n",
        [t.key for t in timers],
        [t.kind for t in timers],
        [None if t.shop_id is None else str(t.shop_id) for t in timers],
        [_aware(t.fire_at, "fire_at") for t in timers],
        [orjson.dumps(dict(t.payload)).decode() for t in timers],
        notify_channel(schema),
    )
    return int(written or 0)


async def cancel(
    conn: asyncpg.Connection, key: str, *, schema: str | None = None, at: datetime | None = None
) -> bool:
    """Cancel the unfired timer ``key``; False if there is none, or it fired already.

    ``schema`` defaults to the connection's search path. A timer being fired right now
    holds its row lock, so this waits for that firing to commit and then answers False:
    the caller learns that the effect happened.
    """
    table = "timers" if schema is None else f"{_checked(schema)}.timers"
    status: str = await conn.execute(
        f"UPDATE {table} SET cancelled_at = coalesce($2, now())"
        " WHERE key = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
        key,
        None if at is None else _aware(at, "at"),
    )
    return status.split()[-1] != "0"


async def cancel_many(
    conn: asyncpg.Connection, keys: Sequence[str], *, schema: str, at: datetime | None = None
) -> int:
    """``cancel`` for many keys in one statement; how many were cancelled."""
    if not keys:
        return 0
    status: str = await conn.execute(
        f"UPDATE {_checked(schema)}.timers SET cancelled_at = coalesce($2, now())"
        " WHERE key = ANY($1::text[]) AND fired_at IS NULL AND cancelled_at IS NULL",
        list(keys),
        None if at is None else _aware(at, "at"),
    )
    return int(status.split()[-1])


class _Blame(Exception):
    """A handler raised: which timer, and what."""

    def __init__(self, timer: Timer, error: BaseException) -> None:
        super().__init__(repr(error))
        self.timer = timer
        self.error = error


class TimerScheduler:
    """Fires the due timers of one schema; run one per replica, as many replicas as you like."""

    def __init__(
        self,
        *,
        database_url: str,
        pool: asyncpg.Pool,
        schema: str,
        handle: TimerHandler,
        clock: Clock = system_clock,
        batch_size: int = 100,
        max_sleep: float = 1.0,
        retry_backoff: Backoff = backoff,
        handler_timeout: float | None = 30.0,
        retention: timedelta | None = timedelta(days=30),
        on_fired: Callable[[float], None] | None = None,
        on_failed: Callable[[Timer, BaseException], None] | None = None,
        alone: Collection[str] = (),
    ) -> None:
        """``alone``: timer kinds each fired in a transaction of its own, as the handler of
        a page of work needs (a batch of a hundred such pages would hold every lock they
        take until the last is done)."""
        self.database_url = database_url
        self.pool = pool
        self.schema = _checked(schema)
        self.handle = handle
        self.clock = clock
        self.batch_size = batch_size
        self.max_sleep = max_sleep
        self.retry_backoff = retry_backoff
        self.handler_timeout = handler_timeout
        self.retention = retention
        self.on_fired = on_fired
        self.on_failed = on_failed
        self.alone = frozenset(alone)
        #: the last batch stopped short at a timer that fires alone: more may be due
        self._cut_short = False
        self.channel = notify_channel(schema)
        self.running = False
        self._wake = asyncio.Event()
        t = f"{self.schema}.timers"
        self._claim = (
            "SELECT id, key, kind, shop_id, fire_at, payload::text AS payload, attempts"
            f" FROM {t} WHERE fired_at IS NULL AND cancelled_at IS NULL AND fire_at <= $1"
            " ORDER BY fire_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        )
        self._claim_one = (
            "SELECT id, key, kind, shop_id, fire_at, payload::text AS payload, attempts"
            f" FROM {t} WHERE id = $1 AND fired_at IS NULL AND cancelled_at IS NULL"
            " AND fire_at <= $2 FOR UPDATE SKIP LOCKED"
        )
        self._mark_fired = (
            f"UPDATE {t} AS t SET fired_at = f.at"
            " FROM unnest($1::bigint[], $2::timestamptz[]) AS f(id, at) WHERE t.id = f.id"
        )
        self._mark_failed = (
            f"UPDATE {t} SET attempts = attempts + 1, last_error = $2, fire_at = $3"
            " WHERE id = $1 AND fired_at IS NULL AND cancelled_at IS NULL"
        )
        # Rows that are due but not claimable are another replica's, in hand: only the
        # future matters for how long to sleep.
        self._next_due = (
            f"SELECT min(fire_at) FROM {t}"
            " WHERE fired_at IS NULL AND cancelled_at IS NULL AND fire_at > $1"
        )
        self._prune = (
            f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t}"
            " WHERE fired_at < $1 OR cancelled_at < $1 LIMIT 10000)"
        )

    def wake(self) -> None:
        """Look for due timers now (a test that moved its fake clock calls this)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("timer scheduler", self._run_once, stop)

    async def _run_once(self, stop: asyncio.Event) -> None:
        # Its own connection, not the pool's: LISTEN must outlive any one checkout.
        listen = await asyncpg.connect(self.database_url)
        try:
            await listen.add_listener(self.channel, self._notified)
            self.running = True
            await self._loop(stop, listen)
        finally:
            self.running = False
            with contextlib.suppress(Exception):
                await listen.close()

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _loop(self, stop: asyncio.Event, listen: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + 60
        while not stop.is_set():
            # Cleared before the claim, not after: a NOTIFY for a row committed after the
            # claim's snapshot then still cuts the coming sleep short.
            self._wake.clear()
            now = self.clock()
            if await self.fire_due(now) >= self.batch_size or self._cut_short:
                continue  # more is due
            if self.retention is not None and loop.time() >= next_prune:
                await self.prune()
                next_prune = loop.time() + 600
            # On the LISTEN connection, so a dead one is noticed here, not by a silence.
            next_at: datetime | None = await listen.fetchval(self._next_due, now)
            delay = self.max_sleep
            if next_at is not None:
                # asyncio may wake a hair early; 1 ms more saves a useless round.
                delay = min(delay, (next_at - self.clock()).total_seconds() + 0.001)
            if delay <= 0:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_first(self._wake.wait(), stop.wait()), delay)

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire one batch of timers due at ``now`` (default: the clock); returns how many
        were claimed (fired, or failed and pushed back)."""
        now = self.clock() if now is None else _aware(now, "now")
        claimed: list[Timer] = []
        fired: list[tuple[Timer, datetime]] = []
        self._cut_short = False
        try:
            # One transaction for the batch, and no savepoint per timer: one commit (one
            # WAL flush) for up to batch_size firings, and no pile of subtransactions
            # (past 64 in one transaction every other session's snapshot gets slower).
            async with self.pool.acquire() as conn, conn.transaction():
                await self._bound_idle(conn)
                claimed = [_timer(r) for r in await conn.fetch(self._claim, now, self.batch_size)]
                for timer in claimed:
                    if fired and timer.kind in self.alone:
                        # Left unfired: the commit frees it for the next batch to begin with.
                        self._cut_short = True
                        break
                    at = self.clock()
                    try:
                        async with asyncio.timeout(self.handler_timeout):
                            await self.handle(timer, conn)
                    except Exception as exc:
                        raise _Blame(timer, exc) from exc
                    fired.append((timer, at))
                    if timer.kind in self.alone:
                        self._cut_short = timer is not claimed[-1]
                        break
                if fired:
                    await conn.execute(
                        self._mark_fired, [t.id for t, _ in fired], [at for _, at in fired]
                    )
        except Exception as exc:
            if not claimed:
                raise  # the claim itself failed: the database, not a timer
            # The whole batch rolled back. The timer that raised gets its failure noted;
            # the others fire again one transaction each, so no other bad timer can take
            # them down with it (nor be blamed for a predecessor that swallowed an error
            # and left the transaction aborted).
            culprit: Timer | None = None
            if isinstance(exc, _Blame) and not isinstance(
                exc.error, asyncpg.InFailedSQLTransactionError
            ):
                culprit = exc.timer
                await self._failed(culprit, exc.error)
            await self._fire_each([t for t in claimed if t is not culprit], now)
            return len(claimed)
        self._observe(t for t, _ in fired)
        return len(fired)

    async def _fire_each(self, timers: list[Timer], now: datetime) -> None:
        for stale in timers:
            timer: Timer | None = None
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await self._bound_idle(conn)
                    row = await conn.fetchrow(self._claim_one, stale.id, now)
                    if row is None:
                        continue  # cancelled, or another replica took it meanwhile
                    timer = _timer(row)
                    at = self.clock()
                    async with asyncio.timeout(self.handler_timeout):
                        await self.handle(timer, conn)
                    await conn.execute(self._mark_fired, [timer.id], [at])
            except Exception as exc:
                if timer is None:
                    raise
                await self._failed(timer, exc)
                continue
            self._observe([timer])

    async def _failed(self, timer: Timer, error: BaseException) -> None:
        """Note a failure and push the timer back. Raises if the database is away, so
        an outage is not counted against every timer it touches."""
        attempts = timer.attempts + 1
        retry_at = self.clock() + timedelta(seconds=self.retry_backoff(attempts))
        async with self.pool.acquire() as conn:
            await conn.execute(self._mark_failed, timer.id, repr(error)[:2000], retry_at)
        log.warning(
            "timer handler failed; will retry",
            extra={
                "timer_key": timer.key,
                "kind": timer.kind,
                "attempts": attempts,
                "retry_at": retry_at.isoformat(),
                "error": repr(error),
            },
        )
        if self.on_failed is not None:
            self.on_failed(timer, error)

    async def _bound_idle(self, conn: asyncpg.Connection) -> None:
        # A client that vanishes without closing its socket (host lost, network cut)
        # would otherwise keep its claimed rows locked for as long as TCP keepalive takes.
        if self.handler_timeout is not None:
            ms = int((self.handler_timeout + 30) * 1000)
            await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {ms}")

    def _observe(self, timers: Iterable[Timer]) -> None:
        if self.on_fired is None:
            return
        # Measured after commit: the moment the effect exists for everyone else.
        done = self.clock()
        for t in timers:
            self.on_fired((done - t.fire_at).total_seconds())

    async def prune(self) -> int:
        """Forget timers fired or cancelled longer than ``retention`` ago. Their keys are
        then free again, so retention must outlast any redelivery of what scheduled them."""
        if self.retention is None:
            return 0
        async with self.pool.acquire() as conn:
            status = await conn.execute(self._prune, self.clock() - self.retention)
        return int(status.split()[-1])


def _timer(r: asyncpg.Record) -> Timer:
    return Timer(
        id=r["id"],
        key=r["key"],
        kind=r["kind"],
        shop_id=r["shop_id"],
        fire_at=r["fire_at"],
        payload=orjson.loads(r["payload"]),
        attempts=r["attempts"],
    )


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
