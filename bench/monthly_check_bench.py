"""A large shop's monthly check: 100,000 customers seeded in SQL, the month's check fired
by two timer schedulers (two replicas) on a fake clock, in pages of 500, each page its own
transaction and timer, the messages' own due timers firing beside them. Measures how
long the whole check takes and checks that every customer owed a marketing message got
exactly one.

    .venv/bin/python bench/monthly_check_bench.py [customers] [page]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from monthly_check_run import (  # noqa: E402
    MARKETING,
    check_the_month,
    followup_database,
    new_shop,
    owed,
)

CUSTOMERS = 100_000
PAGE = 500


async def measure(server_url: str, customers: int = CUSTOMERS, page: int = PAGE) -> dict[str, Any]:
    database_url = await followup_database(server_url)
    shop = await new_shop(database_url)
    try:
        seeded = time.monotonic()
        seconds = await check_the_month(shop, customers, page)
        async with shop.pool.acquire() as conn:
            per_customer = await conn.fetch(
                "SELECT customer_id, count(*) AS n FROM messages WHERE shop_id = $1"
                " AND kind = ANY($2::text[]) GROUP BY customer_id",
                shop.shop_id,
                list(MARKETING),
            )
            longest = await conn.fetchval(
                "SELECT max(fired_at - fire_at) FROM timers WHERE shop_id = $1", shop.shop_id
            )
        expected = owed(customers)
        return {
            "customers": customers,
            "page": page,
            "seconds": seconds,
            "with_seeding_seconds": time.monotonic() - seeded,
            "owed": expected,
            "decided": len(per_customer),
            "decided_twice": sum(1 for r in per_customer if r["n"] != 1),
            "messages": sum(r["n"] for r in per_customer),
            "ok": len(per_customer) == expected and all(r["n"] == 1 for r in per_customer),
            "longest_wait_s": longest.total_seconds() if longest is not None else 0.0,
        }
    finally:
        await shop.pool.close()


def line(r: dict[str, Any]) -> str:
    return (
        f"followup.monthly_check seconds={r['seconds']:.1f} customers={r['customers']}"
        f" page={r['page']} owed={r['owed']} decided={r['decided']}"
        f" decided_twice={r['decided_twice']} ok={r['ok']}"
    )


def main() -> int:
    from harness import start_postgres, workdir

    customers = int(sys.argv[1]) if len(sys.argv) > 1 else CUSTOMERS
    page = int(sys.argv[2]) if len(sys.argv) > 2 else PAGE
    url, pg = start_postgres(workdir())
    try:
        result = asyncio.run(measure(url, customers, page))
    finally:
        if pg is not None:
            pg.cleanup()
    print(line(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
