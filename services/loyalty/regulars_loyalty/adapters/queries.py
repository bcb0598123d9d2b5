"""What loyalty's API reads, straight from its tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


async def journey_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    customer_id: str,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A customer's events, oldest first, from ``after`` on (keyset on time, then id)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id AS id, type, occurred_at, data FROM timeline"
            " WHERE shop_id = $1 AND customer_id = $2"
            " AND ($3::timestamptz IS NULL OR (occurred_at, event_id) > ($3, $4::uuid))"
            " ORDER BY occurred_at, event_id LIMIT $5",
            shop_id,
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    return [dict(r) for r in rows]
