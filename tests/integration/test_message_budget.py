"""The message budget and the monthly check on a real PostgreSQL, with followup's own bus,
timers and repositories in this process (two timer schedulers: two replicas).

- The budget counts what is already decided: a second marketing ask, in one run or from
  another replica at the same moment, waits a week behind the first even though that
  one has not been sent yet.
- The monthly check goes in pages, each its own transaction and timer: a page that fails
  once is retried alone, and every customer owed something is decided once.

The 100,000-customer shop is bench/monthly_check_bench.py (`make bench`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from harness import System, wait_for
from monthly_check_run import (
    CHECK_AT,
    MARKETING,
    MONTH,
    Shop,
    check_the_month,
    finish_the_month,
    followup_database,
    new_shop,
    owed,
    start_the_month,
)
from regulars_followup.handlers.outreach import request_message
from regulars_followup.handlers.sweep import MONTHLY_CHECK_PAGE, run_monthly_check

WORKER = Path(__file__).with_name("monthly_check_worker.py")


@pytest.fixture(scope="module")
def database_url(system: System) -> str:
    return asyncio.run(followup_database(system.database_url))


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[Shop]:
    shop = await new_shop(database_url)
    try:
        yield shop
    finally:
        await shop.pool.close()


def marketing(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    return [r for r in rows if r["kind"] in MARKETING]


# -- the budget counts what is already decided -----------------------------------------


async def test_one_run_gives_a_loyal_customer_with_a_birthday_one_marketing_message(
    shop: Shop,
) -> None:
    await shop.customers(
        "SELECT 'c-loyal'::text AS customer_id, date '1980-12-24' AS birthday,"
        " 'loyal'::text AS stage, 30 AS last_visit_days_ago"
    )
    bus = shop.bus()
    await run_monthly_check(bus.unit_of_work, shop.clock, shop.shop_id, MONTH)
    (only,) = marketing(await shop.messages("c-loyal"))
    assert (only["kind"], only["status"]) == ("birthday", "scheduled")


async def test_a_lapsed_customer_whose_birthday_is_this_month_gets_one_message_this_week(
    shop: Shop,
) -> None:
    # The month's run asked for the birthday note while loyalty still had them as a
    # customer; loyalty then moved them to lapsed, and the check ran again (regulars
    # sweep): the win-back waits a week behind the birthday note, not yet sent.
    await shop.customers(
        "SELECT 'c-lapsing'::text AS customer_id, date '1975-12-03' AS birthday,"
        " 'customer'::text AS stage, 364 AS last_visit_days_ago"
    )
    bus = shop.bus()
    await run_monthly_check(bus.unit_of_work, shop.clock, shop.shop_id, MONTH)
    async with shop.pool.acquire() as conn:
        await conn.execute("UPDATE customers SET stage = 'lapsed' WHERE shop_id = $1", shop.shop_id)
    shop.clock.now = CHECK_AT + timedelta(hours=3)
    await run_monthly_check(bus.unit_of_work, shop.clock, shop.shop_id, MONTH)
    birthday, win_back = marketing(await shop.messages("c-lapsing"))
    assert (birthday["kind"], birthday["status"]) == ("birthday", "scheduled")
    assert (win_back["kind"], win_back["status"]) == ("win_back", "held")
    assert win_back["send_at"] >= birthday["send_at"] + timedelta(days=7)


async def test_two_replicas_deciding_for_one_customer_at_once_take_turns(shop: Shop) -> None:
    # The first decision holds the customer until it commits: the second, on another
    # connection (another replica), waits for it and then counts it.
    await shop.customers(
        "SELECT 'c-both'::text AS customer_id, NULL::date AS birthday,"
        " 'repeat'::text AS stage, 40 AS last_visit_days_ago"
    )
    bus = shop.bus()
    first_decided, commit_first = asyncio.Event(), asyncio.Event()

    async def ask(kind: str, hold_open: bool) -> uuid.UUID | None:
        async with bus.unit_of_work() as uow:
            asked = await request_message(
                uow,
                shop.clock,
                shop_id=shop.shop_id,
                customer_id="c-both",
                kind=kind,
                purpose=f"{kind}:2030",
                channels=["email"],
            )
            if hold_open:
                first_decided.set()
                await commit_first.wait()
        return asked

    first = asyncio.create_task(ask("referral_request", hold_open=True))
    await first_decided.wait()
    second = asyncio.create_task(ask("birthday", hold_open=False))
    try:
        await asyncio.sleep(0.5)
        waited = not second.done()
    finally:
        commit_first.set()
    assert None not in await asyncio.wait_for(asyncio.gather(first, second), 30)
    assert waited, "the second decision did not wait for the first"
    referral, birthday = marketing(await shop.messages("c-both"))
    assert (referral["kind"], referral["status"]) == ("referral_request", "scheduled")
    assert (birthday["kind"], birthday["status"]) == ("birthday", "held")
    assert birthday["send_at"] == referral["send_at"] + timedelta(days=7)


# -- large shops: the monthly check in pages --------------------------------------------


async def assert_each_decided_once(shop: Shop, customers: int) -> None:
    async with shop.pool.acquire() as conn:
        per_customer = await conn.fetch(
            "SELECT customer_id, count(*) AS n FROM messages WHERE shop_id = $1"
            " AND kind = ANY($2::text[]) GROUP BY customer_id",
            shop.shop_id,
            list(MARKETING),
        )
        lost_asked = await conn.fetchval(
            "SELECT count(*) FROM messages m JOIN customers c USING (shop_id, customer_id)"
            " WHERE m.shop_id = $1 AND c.stage = 'lost'",
            shop.shop_id,
        )
    assert lost_asked == 0
    assert all(r["n"] == 1 for r in per_customer), [r for r in per_customer if r["n"] != 1][:5]
    assert len(per_customer) == owed(customers)


async def test_a_shop_is_checked_in_pages_and_a_failing_page_is_retried_alone(
    shop: Shop,
) -> None:
    customers, page = 5_000, 200
    # The first message of customer 2,453 (page 13) fails once: a fault the database
    # raises, as a lost connection or a deadlock would be.
    fault = f"budget_fault_{uuid.uuid4().hex[:8]}"
    async with shop.pool.acquire() as conn:
        await conn.execute(f"CREATE SEQUENCE {fault}")
        await conn.execute(
            f"CREATE FUNCTION {fault}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.shop_id = '{shop.shop_id}' AND NEW.customer_id = 'c002453'"
            f" AND nextval('{fault}') = 1 THEN RAISE EXCEPTION 'injected fault'; END IF;"
            " RETURN NEW; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {fault} BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION"
            f" {fault}()"
        )
    try:
        took = await check_the_month(shop, customers, page)
    finally:
        async with shop.pool.acquire() as conn:
            tries = await conn.fetchval(f"SELECT last_value FROM {fault}")
            await conn.execute(f"DROP TRIGGER {fault} ON messages")
            await conn.execute(f"DROP FUNCTION {fault}()")
            await conn.execute(f"DROP SEQUENCE {fault}")
    print(f"monthly check: {customers} customers in pages of {page}: {took:.1f} s")
    await assert_each_decided_once(shop, customers)
    async with shop.pool.acquire() as conn:
        pages = await conn.fetch(
            "SELECT (payload->>'page')::int AS page, attempts, last_error FROM timers"
            " WHERE shop_id = $1 AND kind = $2 ORDER BY 1",
            shop.shop_id,
            MONTHLY_CHECK_PAGE,
        )
        failed = await conn.fetch(
            "SELECT key, attempts, last_error FROM timers WHERE shop_id = $1 AND attempts > 0",
            shop.shop_id,
        )
    # pages 2..26 (the 25th is full, so a 26th finds no one), each once
    assert [p["page"] for p in pages] == list(range(2, 27))
    # page 13 failed once and went again; nothing else failed. Its failure is noted
    # unless the other replica took the page and finished it first (then the note,
    # for a timer fired meanwhile, is dropped)
    assert tries == 2, tries
    assert [r["key"] for r in failed] in ([], [f"{MONTHLY_CHECK_PAGE}:{shop.shop_id}:2030-12:13"])
    assert all("injected fault" in r["last_error"] for r in failed)


async def test_a_check_killed_mid_run_resumes_at_its_page(shop: Shop) -> None:
    # A replica killed -9 while it works through the pages (a page is nearly all of its
    # time, so most likely inside one): PostgreSQL rolls that page back, and the other
    # replicas go on from it, neither from the start nor past it.
    customers, page = 3_000, 100
    await start_the_month(shop, customers)
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), shop.database_url, str(page)],
        cwd=WORKER.parent,
        stdout=subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"

        async def pages_fired() -> int:
            async with shop.pool.acquire() as conn:
                n: int = await conn.fetchval(
                    "SELECT count(*) FROM timers WHERE shop_id = $1 AND kind = $2"
                    " AND fired_at IS NOT NULL",
                    shop.shop_id,
                    MONTHLY_CHECK_PAGE,
                )
            return n

        await wait_for(lambda: _at_least(pages_fired, 5), timeout=120, every=0.05)
    finally:
        worker.kill()
        worker.wait(30)
    fired_before = await pages_fired()
    assert fired_before < customers // page, "the worker finished before it was killed"
    await finish_the_month(shop, page)  # the rest, by the replicas in this process
    await assert_each_decided_once(shop, customers)
    async with shop.pool.acquire() as conn:
        pages = await conn.fetch(
            "SELECT (payload->>'page')::int AS page FROM timers WHERE shop_id = $1"
            " AND kind = $2 AND fired_at IS NOT NULL ORDER BY 1",
            shop.shop_id,
            MONTHLY_CHECK_PAGE,
        )
    assert [p["page"] for p in pages] == list(range(2, customers // page + 2))


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)
