"""followup's timer scheduler alone in a process on a fake clock stopped at the month's
check, for test_message_budget's kill -9 test.

    python monthly_check_worker.py DATABASE_URL PAGE_SIZE
"""

from __future__ import annotations

import asyncio
import signal
import sys

from monthly_check_run import CHECK_AT, FakeClock
from regulars_followup import bootstrap
from regulars_followup.handlers import Deps
from regulars_runtime.db import create_pool
from regulars_runtime.timers import TimerScheduler


async def main(database_url: str, page: int) -> None:
    pool = await create_pool(database_url, "followup", min_size=1, max_size=2)
    clock = FakeClock(CHECK_AT)
    bus = bootstrap.bus(Deps(clock=clock, monthly_check_page=page), pool)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler = TimerScheduler(
        database_url=database_url,
        pool=pool,
        schema="followup",
        handle=bus.handle_timer,
        clock=clock,
        alone=bus.timers_alone,
        max_sleep=0.05,
    )
    print("ready", flush=True)
    await scheduler.run(stop)
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
