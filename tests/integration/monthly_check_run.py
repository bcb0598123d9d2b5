"""A shop for the monthly check and its message budget, straight in followup's tables, and
the month's check run to its end by timer schedulers on a fake clock: shared by
tests/integration/test_message_budget.py and bench/monthly_check_bench.py.

Each run gets a database of its own (followup's schema only) on the given PostgreSQL: its
schedulers run on a fake clock, and must neither fire anyone else's followup timers nor
have theirs fired by a followup process on the real clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg
from regulars_followup import bootstrap
from regulars_followup.handlers import Deps
from regulars_followup.handlers.sweep import MONTHLY_CHECK, MONTHLY_CHECK_PAGE
from regulars_runtime.db import connect, create_pool
from regulars_runtime.migrations import apply
from regulars_runtime.timers import TimerScheduler
from regulars_shop.policy import Policy

NY = ZoneInfo("America/New_York")
MONTH = date(2030, 12, 1)
CHECK_AT = datetime(2030, 12, 1, 8, 0, tzinfo=NY)
MARKETING = ("birthday", "thank_you", "win_back", "referral_request")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def followup_database(server_url: str) -> str:
    """A new database on ``server_url``'s server with followup's schema migrated: its URL."""
    name = f"budget_{uuid.uuid4().hex[:8]}"
    ours = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    admin = await connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    conn = await connect(ours)
    try:
        await apply(conn, "followup", bootstrap.migrations())
    finally:
        await conn.close()
    return ours


@dataclass
class Shop:
    database_url: str
    pool: asyncpg.Pool
    shop_id: uuid.UUID
    clock: FakeClock

    def bus(self, page: int = 500) -> Any:
        return bootstrap.bus(Deps(clock=self.clock, monthly_check_page=page), self.pool)

    async def customers(self, sql: str, *args: Any) -> None:
        """Customers (and their visits) straight in SQL, as a shop's import would leave
        them: ``sql`` selects (customer_id, birthday, stage, last_visit_days_ago)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE seed ON COMMIT DROP AS " + sql,
                *args,
            )
            await conn.execute(
                "INSERT INTO customers (shop_id, customer_id, name, email, birthday, stage,"
                " stage_at) SELECT $1, customer_id, 'Customer ' || customer_id,"
                " customer_id || '@example.com', birthday, stage, $2 FROM seed",
                self.shop_id,
                CHECK_AT - timedelta(days=1),
            )
            await conn.execute(
                "INSERT INTO visits (shop_id, repair_order_id, customer_id, completed_at,"
                " status, data, first_event_id) SELECT $1, 'ro-' || customer_id, customer_id,"
                " $2::timestamptz - make_interval(days => last_visit_days_ago), 'completed',"
                ' \'{"work_performed": "diagnosis"}\', gen_random_uuid() FROM seed'
                " WHERE last_visit_days_ago IS NOT NULL",
                self.shop_id,
                CHECK_AT,
            )

    async def messages(self, customer_id: str | None = None) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    "SELECT customer_id, kind, purpose, status, send_at, reason FROM messages"
                    " WHERE shop_id = $1 AND ($2::text IS NULL OR customer_id = $2)"
                    " ORDER BY seq",
                    self.shop_id,
                    customer_id,
                )
            )


async def new_shop(database_url: str) -> Shop:
    """A shop with a policy (New York time; commercial email carries its postal address,
    as CAN-SPAM asks); close its ``pool`` when done."""
    shop_id = uuid.uuid4()
    policy = Policy.defaults().merged(
        {
            "timezone": "America/New_York",
            "contact": {"name": "Budget Garage", "postal_address": "1 Main St, Albany, NY"},
        }
    )
    pool = await create_pool(database_url, "followup", min_size=2, max_size=8)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO shop_policies (shop_id, version, policy) VALUES ($1, 1, $2)",
            shop_id,
            policy.model_dump(mode="json"),
        )
    return Shop(database_url, pool, shop_id, FakeClock(CHECK_AT))


#: customer i: a December birthday when i % 12 == 11; lapsed (a visit 400 days ago) when
#: i % 10 == 3; loyal (a visit 30 days ago) when i % 10 == 5; lost when i % 10 == 7
SEED = """
SELECT 'c' || lpad(i::text, 6, '0') AS customer_id,
       make_date(1970 + i % 30, i % 12 + 1, 1 + i % 28) AS birthday,
       CASE i % 10 WHEN 3 THEN 'lapsed' WHEN 5 THEN 'loyal' WHEN 7 THEN 'lost'
            ELSE 'customer' END AS stage,
       CASE i % 10 WHEN 3 THEN 400 WHEN 5 THEN 30 WHEN 7 THEN 800 ELSE NULL END
           AS last_visit_days_ago
FROM generate_series(1, $1::int) AS i
"""


def owed(n: int) -> int:
    """How many of the seeded customers are owed one marketing message this December."""
    return sum(
        1 for i in range(1, n + 1) if i % 10 == 3 or (i % 10 != 7 and (i % 12 == 11 or i % 10 == 5))
    )


async def check_the_month(shop: Shop, customers: int, page: int) -> float:
    """Seed, then let two schedulers (replicas) fire the month's check on the fake clock
    until its last page is done; the seconds the check took."""
    await start_the_month(shop, customers)
    return await finish_the_month(shop, page)


async def start_the_month(shop: Shop, customers: int) -> None:
    """``customers`` seeded (see :data:`SEED`) and the month's check on the calendar, due."""
    await shop.customers(SEED, customers)
    async with shop.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO timers (key, kind, shop_id, fire_at, payload) VALUES ($1, $2, $3, $4, $5)",
            f"{MONTHLY_CHECK}:{shop.shop_id}:{MONTH:%Y-%m}",
            MONTHLY_CHECK,
            shop.shop_id,
            CHECK_AT,
            {"shop_id": str(shop.shop_id), "month": MONTH.isoformat()},
        )


async def finish_the_month(shop: Shop, page: int) -> float:
    """Two schedulers (replicas) fire the month's check on the fake clock until its last
    page is done: the seconds that took."""
    bus = shop.bus(page)
    replicas = [
        TimerScheduler(
            database_url=shop.database_url,
            pool=shop.pool,
            schema="followup",
            handle=bus.handle_timer,
            clock=shop.clock,
            alone=bus.timers_alone,
        )
        for _ in range(2)
    ]
    started = time.monotonic()

    async def fire(scheduler: TimerScheduler) -> None:
        while await pages_left(shop):
            if not await scheduler.fire_due():
                # nothing due now: a failed page waits for its retry, so time moves on
                await asyncio.sleep(0.05)
                shop.clock.now += timedelta(seconds=1)

    await asyncio.wait_for(asyncio.gather(*(fire(s) for s in replicas)), 600)
    return time.monotonic() - started


async def pages_left(shop: Shop) -> bool:
    async with shop.pool.acquire() as conn:
        left: int = await conn.fetchval(
            "SELECT count(*) FROM timers WHERE shop_id = $1 AND kind = ANY($2::text[])"
            " AND fired_at IS NULL AND payload->>'month' = $3",
            shop.shop_id,
            [MONTHLY_CHECK, MONTHLY_CHECK_PAGE],
            MONTH.isoformat(),
        )
    return left > 0
