"""How late do durable timers fire? 10,000 timers, one TimerScheduler, the real clock.

``fire_lag`` spreads the timers evenly over 5 s starting 3 s from now (2,000 due per
second, the same minute; the 3 s leave room to schedule them all first, through
``schedule()`` on four connections); ``burst_lag`` makes all of them due at the same
instant, which measures throughput rather than punctuality. Lag is the scheduler's own ``on_fired``
observation: the clock after the firing transaction committed minus ``fire_at``. Each
handler writes one effect row in the firing transaction, as a real one would.

    .venv/bin/python bench/timers_bench.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from regulars_runtime.clock import system_clock
from regulars_runtime.db import connect, create_pool
from regulars_runtime.migrations import apply, library_migrations
from regulars_runtime.timers import Timer, TimerScheduler, schedule

N = 10_000


async def fire_lag(database_url: str) -> dict[str, Any]:
    """10,000 timers due evenly over 5 s from 3 s from now: p50/p99/max lag in ms."""
    return await _run(database_url, n=N, lead=3.0, spread=5.0)


async def burst_lag(database_url: str) -> dict[str, Any]:
    """10,000 timers due at the same instant, 3 s from now: how fast the backlog drains."""
    return await _run(database_url, n=N, lead=3.0, spread=0.0)


async def _run(database_url: str, *, n: int, lead: float, spread: float) -> dict[str, Any]:
    schema = f"timers_bench_{uuid.uuid4().hex[:8]}"
    admin = await connect(database_url)
    try:
        await apply(admin, schema, library_migrations())
        await admin.execute(
            f"CREATE TABLE {schema}.effects (timer_key text NOT NULL, at timestamptz NOT NULL)"
        )
        pool = await create_pool(database_url, schema, min_size=2, max_size=4)
        try:
            return await _measure(database_url, pool, schema, n=n, lead=lead, spread=spread)
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def _measure(
    database_url: str, pool: asyncpg.Pool, schema: str, *, n: int, lead: float, spread: float
) -> dict[str, Any]:
    start = system_clock() + timedelta(seconds=lead)
    step = spread / n
    t0 = time.perf_counter()

    async def schedule_share(share: range) -> None:
        async with pool.acquire() as conn, conn.transaction():
            for i in share:
                await schedule(
                    conn,
                    key=f"bench:{i}",
                    kind="bench",
                    shop_id=None,
                    fire_at=start + timedelta(seconds=i * step),
                    payload={"i": i},
                    schema=schema,
                )

    await asyncio.gather(*(schedule_share(range(k, n, 4)) for k in range(4)))
    scheduling_s = time.perf_counter() - t0
    if system_clock() >= start:
        raise RuntimeError(f"scheduling took {scheduling_s:.2f} s, past the first moment")

    lags: list[float] = []
    done = asyncio.Event()
    last: list[datetime] = []

    def fired(lag: float) -> None:
        lags.append(lag)
        if len(lags) >= n:
            last.append(system_clock())
            done.set()

    async def effect(timer: Timer, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO effects (timer_key, at) VALUES ($1, $2)", timer.key, system_clock()
        )

    scheduler = TimerScheduler(
        database_url=database_url, pool=pool, schema=schema, handle=effect, on_fired=fired
    )
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await asyncio.wait_for(done.wait(), lead + spread + 120)
    finally:
        stop.set()
        await task
    async with pool.acquire() as conn:
        effects = await conn.fetchval("SELECT count(*) FROM effects")
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY timer_key HAVING count(*) > 1) d"
        )
    if effects != n or twice:
        raise RuntimeError(f"{effects} effects for {n} timers, {twice} keys more than once")
    ms = sorted(lag * 1000 for lag in lags)
    window = (last[0] - start).total_seconds()
    return {
        "n": n,
        "spread_s": spread,
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 1),
        "max_ms": round(ms[-1], 1),
        "fired_per_s": round(n / window) if window > 0 else None,
        "scheduling_s": round(scheduling_s, 2),
    }


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name} p50_ms={r['p50_ms']} p99_ms={r['p99_ms']} max_ms={r['max_ms']} n={r['n']}"
        f" fired_per_s={r['fired_per_s']} spread_s={r['spread_s']}"
    )


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests" / "integration"))
    from harness import start_postgres, workdir

    database_url, server = start_postgres(workdir())
    try:
        print(_line("timers.fire_lag", asyncio.run(fire_lag(database_url))), flush=True)
        print(_line("timers.burst_lag", asyncio.run(burst_lag(database_url))), flush=True)
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
