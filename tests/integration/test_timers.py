"""Durable timers on a real PostgreSQL: on time, idempotent, cancellable, movable, retried
without blocking others, shared by replicas, and exactly once in effect across kill -9.

Each test gets a scratch schema with the library migrations (so the same ``timers`` table
every service has) plus an ``effects`` table the handlers write to in the firing
transaction. ``effects`` has no unique constraint on purpose: a timer fired twice in
effect shows as two rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from harness import SERVICES, System, wait_for
from regulars_runtime.clock import system_clock
from regulars_runtime.db import connect, create_pool
from regulars_runtime.migrations import apply, library_migrations
from regulars_runtime.timers import Timer, TimerHandler, TimerScheduler, cancel, schedule

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
PROC = Path(__file__).with_name("timer_worker_proc.py")


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Scratch:
    database_url: str
    schema: str
    pool: asyncpg.Pool

    async def schedule(self, key: str, fire_at: datetime, **kw: Any) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await schedule(
                conn,
                key=key,
                kind=kw.pop("kind", "test"),
                shop_id=kw.pop("shop_id", uuid.uuid4()),
                fire_at=fire_at,
                payload=kw.pop("payload", {"key": key}),
                schema=self.schema,
                **kw,
            )

    async def cancel(self, key: str) -> bool:
        async with self.pool.acquire() as conn:
            # No schema: the pool's search path is the scratch schema, as in a service.
            return await cancel(conn, key)

    async def effects(self) -> dict[str, int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT timer_key, count(*) AS n FROM effects GROUP BY 1")
        return {r["timer_key"]: r["n"] for r in rows}

    async def timer(self, key: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM timers WHERE key = $1", key)
        assert row is not None
        return row

    async def fired(self) -> int:
        async with self.pool.acquire() as conn:
            n: int = await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL")
        return n

    def scheduler(self, handle: TimerHandler | None = None, **kw: Any) -> TimerScheduler:
        return TimerScheduler(
            database_url=self.database_url,
            pool=kw.pop("pool", self.pool),
            schema=self.schema,
            handle=handle or record(),
            **kw,
        )


def record(by: str = "", fail: Callable[[Timer], Awaitable[None]] | None = None) -> TimerHandler:
    """A handler writing one effect row in the firing transaction."""

    async def handle(timer: Timer, conn: asyncpg.Connection) -> None:
        if fail is not None:
            await fail(timer)
        await conn.execute(
            "INSERT INTO effects (timer_key, fired_by, payload) VALUES ($1, $2, $3::text::jsonb)",
            timer.key,
            by,
            _json(timer.payload),
        )

    return handle


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


@pytest.fixture
async def scratch(system: System) -> AsyncIterator[Scratch]:
    schema = f"timers_test_{uuid.uuid4().hex[:8]}"
    admin = await connect(system.database_url)
    await apply(admin, schema, library_migrations())
    await admin.execute(
        f"CREATE TABLE {schema}.effects (timer_key text NOT NULL, fired_by text, pid int,"
        " payload jsonb, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    pool = await create_pool(system.database_url, schema, min_size=1, max_size=6)
    try:
        yield Scratch(system.database_url, schema, pool)
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@contextlib.asynccontextmanager
async def running(*schedulers: TimerScheduler) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in schedulers]
    try:
        while not all(s.running for s in schedulers):
            assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()]
            await asyncio.sleep(0.01)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_every_service_schema_has_the_timers_table(system: System) -> None:
    for service in SERVICES:
        rows = await system.fetch("SELECT to_regclass($1) AS t", f"{service}.timers")
        assert rows[0]["t"] is not None, service


async def test_fires_within_a_second_of_its_moment_on_the_real_clock(scratch: Scratch) -> None:
    lags: list[float] = []
    # A 30 s cap on the sleep: only the computed sleep and the NOTIFY can be on time.
    scheduler = scratch.scheduler(max_sleep=30.0, on_fired=lags.append)
    async with running(scheduler):
        await asyncio.sleep(0.3)  # it is asleep now, with nothing pending
        soon = system_clock() + timedelta(seconds=0.5)
        later = system_clock() + timedelta(seconds=1.5)
        assert await scratch.schedule("soon", soon)
        assert await scratch.schedule("later", later)
        await wait_for(lambda: _fired_count(scratch, 2), timeout=5, every=0.02)
    for key, moment in (("soon", soon), ("later", later)):
        row = await scratch.timer(key)
        async with scratch.pool.acquire() as conn:
            effect_at = await conn.fetchval("SELECT at FROM effects WHERE timer_key = $1", key)
        assert effect_at >= moment, "fired early"
        assert (effect_at - moment).total_seconds() < 1.0
        assert row["fired_at"] >= moment
    assert len(lags) == 2 and all(0 <= lag < 1.0 for lag in lags), lags


async def _fired_count(scratch: Scratch, n: int) -> bool:
    return await scratch.fired() >= n


async def test_a_fake_clock_that_jumps_fires_only_what_is_due(scratch: Scratch) -> None:
    clock = FakeClock()
    await scratch.schedule("a", T0 + timedelta(seconds=10))
    await scratch.schedule("b", T0 + timedelta(seconds=20))
    await scratch.schedule("c", T0 + timedelta(hours=1))
    scheduler = scratch.scheduler(clock=clock, max_sleep=0.05)
    async with running(scheduler):
        await asyncio.sleep(0.2)
        assert await scratch.effects() == {}
        clock.advance(seconds=15)
        scheduler.wake()
        await wait_for(scratch.effects)
        await asyncio.sleep(0.2)
        assert await scratch.effects() == {"a": 1}
        clock.advance(seconds=5)  # exactly b's moment: due
        await wait_for(lambda: _fired_count(scratch, 2))
        await asyncio.sleep(0.2)
        assert await scratch.effects() == {"a": 1, "b": 1}
    assert (await scratch.timer("b"))["fired_at"] == T0 + timedelta(seconds=20)
    assert (await scratch.timer("c"))["fired_at"] is None


async def test_scheduling_the_same_key_again_changes_nothing(scratch: Scratch) -> None:
    clock = FakeClock()
    at = T0 + timedelta(seconds=10)
    assert await scratch.schedule("once", at, payload={"v": 1})
    assert not await scratch.schedule("once", at + timedelta(hours=1), payload={"v": 2})
    row = await scratch.timer("once")
    assert row["fire_at"] == at
    clock.advance(seconds=10)
    scheduler = scratch.scheduler(clock=clock)
    assert await scheduler.fire_due() == 1
    assert not await scratch.schedule("once", at, payload={"v": 3})  # redelivered, after firing
    clock.advance(hours=2)
    assert await scheduler.fire_due() == 0
    async with scratch.pool.acquire() as conn:
        payloads = await conn.fetch("SELECT payload::text AS p FROM effects")
    assert [r["p"] for r in payloads] == ['{"v": 1}']


async def test_cancel_prevents_firing(scratch: Scratch) -> None:
    clock = FakeClock()
    await scratch.schedule("kept", T0 + timedelta(seconds=10))
    await scratch.schedule("dropped", T0 + timedelta(seconds=10))
    assert await scratch.cancel("dropped")
    assert not await scratch.cancel("dropped")
    assert not await scratch.cancel("never-scheduled")
    assert not await scratch.schedule("dropped", T0 + timedelta(seconds=10))  # stays cancelled
    clock.advance(minutes=1)
    assert await scratch.scheduler(clock=clock).fire_due() == 1
    assert await scratch.effects() == {"kept": 1}
    assert not await scratch.cancel("kept"), "a fired timer cannot be cancelled"
    assert (await scratch.timer("dropped"))["cancelled_at"] is not None


async def test_reschedule_moves_an_unfired_timer(scratch: Scratch) -> None:
    clock = FakeClock()
    scheduler = scratch.scheduler(clock=clock)
    await scratch.schedule("moved", T0 + timedelta(seconds=10), payload={"v": 1})
    assert await scratch.schedule(
        "moved", T0 + timedelta(seconds=100), payload={"v": 2}, reschedule=True
    )
    clock.advance(seconds=50)
    assert await scheduler.fire_due() == 0
    clock.advance(seconds=50)
    assert await scheduler.fire_due() == 1
    async with scratch.pool.acquire() as conn:
        assert await conn.fetchval("SELECT payload->>'v' FROM effects") == "2"
    # A fired timer is never moved: a new occurrence needs a new key.
    assert not await scratch.schedule("moved", T0 + timedelta(hours=1), reschedule=True)

    # A cancelled one is revived by an explicit reschedule.
    await scratch.schedule("revived", T0 + timedelta(seconds=200))
    assert await scratch.cancel("revived")
    assert await scratch.schedule("revived", T0 + timedelta(seconds=300), reschedule=True)
    clock.advance(seconds=300)
    assert await scheduler.fire_due() == 1
    assert await scratch.effects() == {"moved": 1, "revived": 1}


async def test_a_failing_handler_backs_off_and_blocks_no_other_timer(scratch: Scratch) -> None:
    clock = FakeClock()
    broken = {"bad"}

    async def fail(timer: Timer) -> None:
        if timer.key in broken:
            raise RuntimeError(f"boom on {timer.key}")

    failures: list[str] = []
    scheduler = scratch.scheduler(
        record(fail=fail), clock=clock, on_failed=lambda t, _e: failures.append(t.key)
    )
    for i in range(25):
        await scratch.schedule(f"good-{i}", T0)
    await scratch.schedule("bad", T0)  # mid-batch: 25 due before it by id, 25 after
    for i in range(25, 50):
        await scratch.schedule(f"good-{i}", T0)

    assert await scheduler.fire_due() == 51
    effects = await scratch.effects()
    assert effects == {f"good-{i}": 1 for i in range(50)}
    bad = await scratch.timer("bad")
    assert (bad["attempts"], bad["fired_at"]) == (1, None)
    assert "boom on bad" in bad["last_error"]
    assert bad["fire_at"] == T0 + timedelta(seconds=1)

    clock.advance(seconds=0.5)
    assert await scheduler.fire_due() == 0, "retried before its backoff"
    clock.advance(seconds=0.5)
    assert await scheduler.fire_due() == 1
    bad = await scratch.timer("bad")
    assert bad["attempts"] == 2
    assert bad["fire_at"] == T0 + timedelta(seconds=1 + 5)

    broken.clear()  # the fix is deployed
    clock.advance(seconds=5)
    assert await scheduler.fire_due() == 1
    bad = await scratch.timer("bad")
    assert bad["fired_at"] == T0 + timedelta(seconds=6)
    assert (await scratch.effects())["bad"] == 1
    assert failures == ["bad", "bad"]


async def test_a_handler_that_swallows_a_database_error_is_the_one_blamed(
    scratch: Scratch,
) -> None:
    clock = FakeClock()

    async def sloppy(timer: Timer, conn: asyncpg.Connection) -> None:
        if timer.key == "sloppy":
            # Leaves the firing transaction aborted without raising.
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SELECT 1 / 0")
            return
        await record()(timer, conn)

    await scratch.schedule("sloppy", T0 - timedelta(seconds=1))  # first in the batch
    for i in range(5):
        await scratch.schedule(f"next-{i}", T0)
    clock.advance(seconds=1)
    assert await scratch.scheduler(sloppy, clock=clock).fire_due() == 6
    assert await scratch.effects() == {f"next-{i}": 1 for i in range(5)}
    row = await scratch.timer("sloppy")
    assert (row["attempts"], row["fired_at"]) == (1, None)
    for i in range(5):
        assert (await scratch.timer(f"next-{i}"))["attempts"] == 0, "a neighbour was blamed"


async def test_a_hanging_handler_times_out_and_is_retried_later(scratch: Scratch) -> None:
    clock = FakeClock()

    async def hang(timer: Timer) -> None:
        if timer.key == "hangs":
            await asyncio.sleep(30)

    await scratch.schedule("hangs", T0)
    await scratch.schedule("quick", T0)
    scheduler = scratch.scheduler(record(fail=hang), clock=clock, handler_timeout=0.2)
    assert await asyncio.wait_for(scheduler.fire_due(), 5) == 2
    assert await scratch.effects() == {"quick": 1}
    row = await scratch.timer("hangs")
    assert row["attempts"] == 1 and "TimeoutError" in row["last_error"]


async def test_two_schedulers_fire_2000_timers_each_exactly_once(
    scratch: Scratch, system: System
) -> None:
    other_pool = await create_pool(system.database_url, scratch.schema, min_size=1, max_size=4)
    try:
        a = scratch.scheduler(record("a"))
        b = scratch.scheduler(record("b"), pool=other_pool)
        async with running(a, b):
            start = system_clock() + timedelta(seconds=0.5)
            async with scratch.pool.acquire() as conn, conn.transaction():
                for i in range(2000):
                    await schedule(
                        conn,
                        key=f"t-{i}",
                        kind="test",
                        shop_id=None,
                        fire_at=start + timedelta(milliseconds=i // 2),
                        payload={},
                        schema=scratch.schema,
                    )
            await wait_for(lambda: _fired_count(scratch, 2000), timeout=60)
    finally:
        await other_pool.close()
    effects = await scratch.effects()
    assert len(effects) == 2000
    assert {k for k, n in effects.items() if n != 1} == set()
    async with scratch.pool.acquire() as conn:
        by = {
            r["fired_by"]: r["n"]
            for r in await conn.fetch("SELECT fired_by, count(*) AS n FROM effects GROUP BY 1")
        }
    assert set(by) == {"a", "b"}, f"one scheduler did everything: {by}"


async def test_kill_9_mid_way_loses_no_timer_and_fires_none_twice(
    scratch: Scratch, tmp_path: Path
) -> None:
    n = 1000
    start = system_clock() + timedelta(seconds=1)
    async with scratch.pool.acquire() as conn, conn.transaction():
        for i in range(n):
            await schedule(
                conn,
                key=f"k-{i}",
                kind="test",
                shop_id=None,
                fire_at=start + timedelta(seconds=3 * i / n),
                payload={},
                schema=scratch.schema,
            )

    def spawn(name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, str(PROC), scratch.database_url, scratch.schema],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def effect_count() -> int:
        return sum((await scratch.effects()).values())

    first = spawn("first")
    try:
        await wait_for(lambda: _at_least(effect_count, 300), timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    # Once PostgreSQL has aborted the dead client's transaction, what committed is whole:
    # every effect has its fired row and the other way round.
    await wait_for(lambda: _backend_gone(scratch), timeout=10)
    async with scratch.pool.acquire() as conn:
        mid_fired = await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL")
        mid_effects = await conn.fetchval("SELECT count(*) FROM effects")
    assert mid_fired == mid_effects
    assert 300 <= mid_fired < n, "the kill came too late to prove anything"

    second = spawn("second")
    try:
        await wait_for(lambda: _fired_count(scratch, n), timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(10)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()

    effects = await scratch.effects()
    assert set(effects) == {f"k-{i}" for i in range(n)}, "a timer was lost"
    assert {k: c for k, c in effects.items() if c != 1} == {}, "a timer fired twice"
    async with scratch.pool.acquire() as conn:
        pids = {r["pid"] for r in await conn.fetch("SELECT DISTINCT pid FROM effects")}
    assert pids == {first.pid, second.pid}


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def _backend_gone(scratch: Scratch) -> bool:
    # The dead worker's pool sessions share our application_name (regulars-<schema>), but
    # ours sit idle between checkouts: anything else busy is the dead one's.
    async with scratch.pool.acquire() as conn:
        busy = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND pid <> pg_backend_pid() AND state <> 'idle'",
            f"regulars-{scratch.schema}",
        )
    return bool(busy == 0)


async def test_a_kind_that_fires_alone_gets_a_transaction_of_its_own(scratch: Scratch) -> None:
    # A page of work (the monthly check's) must not share its transaction, and so its
    # locks, with a batch of other timers; the timers around it still batch together.
    async def in_transaction(timer: Timer, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO effects (timer_key, fired_by) VALUES ($1, txid_current()::text)",
            timer.key,
        )

    clock = FakeClock(T0 + timedelta(seconds=3))
    await scratch.schedule("light-0", T0)
    await scratch.schedule("page", T0 + timedelta(seconds=1), kind="page")
    await scratch.schedule("light-1", T0 + timedelta(seconds=2))
    await scratch.schedule("light-2", T0 + timedelta(seconds=2))
    scheduler = scratch.scheduler(in_transaction, clock=clock, alone={"page"})
    assert [await scheduler.fire_due() for _ in range(4)] == [1, 1, 2, 0]
    async with scratch.pool.acquire() as conn:
        rows = await conn.fetch("SELECT timer_key, fired_by FROM effects")
    tx = {r["timer_key"]: r["fired_by"] for r in rows}
    assert len(rows) == 4 and tx["light-1"] == tx["light-2"]
    assert len({tx["light-0"], tx["page"], tx["light-1"]}) == 3
