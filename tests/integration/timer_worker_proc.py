"""A TimerScheduler alone in a process, for test_timers' kill -9 test.

    python timer_worker_proc.py DATABASE_URL SCHEMA

Each firing inserts a plain row (timer key, this pid) into SCHEMA.effects, with no unique
constraint, so a timer fired twice in effect shows as two rows instead of being hidden.
The handler dawdles a little so that a kill lands inside an open firing transaction.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg
from regulars_runtime.db import create_pool
from regulars_runtime.timers import Timer, TimerScheduler


async def main(database_url: str, schema: str) -> None:
    pool = await create_pool(database_url, schema, min_size=1, max_size=2)
    pid = os.getpid()

    async def effect(timer: Timer, conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO effects (timer_key, pid) VALUES ($1, $2)", timer.key, pid)
        await conn.execute("SELECT pg_sleep(0.002)")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler = TimerScheduler(database_url=database_url, pool=pool, schema=schema, handle=effect)
    print("ready", flush=True)
    await scheduler.run(stop)
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
