"""What intake's API reads: a shop's policy and a customer, straight from the tables.

Reads change nothing, so they skip the unit of work and take a connection of the pool.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg


async def latest_policy(pool: asyncpg.Pool, shop_id: uuid.UUID) -> dict[str, Any] | None:
    """The shop's current policy: its version, document and who changed it; or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT version, policy, changed_by FROM policies WHERE shop_id = $1"
            " ORDER BY version DESC LIMIT 1",
            shop_id,
        )
    if row is None:
        return None
    return {
        "version": int(row["version"]),
        "policy": row["policy"],
        "changed_by": row["changed_by"],
    }


async def customer(
    pool: asyncpg.Pool, shop_id: uuid.UUID, customer_id: str
) -> dict[str, Any] | None:
    """The customer as the API shows them (dates as ISO-8601 text), or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT customer_id, name, phone, email, state, timezone, birthday, consent, data,"
            " updated_at FROM customers WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
        )
    if row is None:
        return None
    found = dict(row)
    birthday: date | None = row["birthday"]
    updated_at: datetime = row["updated_at"]
    found["birthday"] = birthday.isoformat() if birthday else None
    found["updated_at"] = updated_at.isoformat()
    return found


#: what is still waiting this long is listed (GET /v1/waiting, ``regulars status``)
WAITING_LISTED_AFTER = timedelta(days=7)


async def waiting_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The shop's postings held for 7 days or more for what they need, oldest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id AS id, client_id, type, occurred_at, needs_kind, needs_id,"
            " received_at FROM waiting_events WHERE shop_id = $1"
            " AND received_at <= now() - $2::interval"
            " AND ($3::timestamptz IS NULL OR (received_at, event_id) > ($3, $4))"
            " ORDER BY received_at, event_id LIMIT $5",
            shop_id,
            WAITING_LISTED_AFTER,
            None if after is None else after[0],
            None if after is None else after[1],
            limit,
        )
    return [dict(r) for r in rows]


async def waiting_counts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per shop: how many postings wait for 7 days or more, and since when."""
    rows = await conn.fetch(
        "SELECT shop_id, count(*) AS waiting, min(received_at) AS oldest FROM waiting_events"
        " WHERE received_at <= now() - $1::interval GROUP BY shop_id ORDER BY shop_id",
        WAITING_LISTED_AFTER,
    )
    return [dict(r) for r in rows]
