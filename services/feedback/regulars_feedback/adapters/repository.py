"""Every SQL statement of feedback, on the caller's connection and transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from regulars_events.envelope import Envelope


class FeedbackRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_to_timeline(self, envelope: Envelope) -> None:
        await self.conn.execute(
            "INSERT INTO timeline (shop_id, customer_id, event_id, type, occurred_at, data)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            uuid.UUID(envelope.shop_id),
            envelope.subject,
            envelope.id,
            envelope.type,
            envelope.time,
            envelope.data,
        )

    async def add_survey(self, survey: dict[str, Any]) -> bool:
        """False when this visit already has its survey for this reason."""
        added = await self.conn.fetchval(
            "INSERT INTO surveys (id, shop_id, customer_id, repair_order_id, reason, token,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (shop_id, customer_id, repair_order_id, reason) DO NOTHING"
            " RETURNING true",
            survey["id"],
            survey["shop_id"],
            survey["customer_id"],
            survey["repair_order_id"],
            survey["reason"],
            survey["token"],
            survey["expires_at"],
        )
        return bool(added)

    async def list_surveys(
        self, shop_id: uuid.UUID, customer_id: str | None, limit: int
    ) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT id, customer_id, repair_order_id, reason, token, status, created_at,"
                " expires_at FROM surveys WHERE shop_id = $1"
                " AND ($2::text IS NULL OR customer_id = $2) ORDER BY created_at DESC LIMIT $3",
                shop_id,
                customer_id,
                limit,
            )
        )

    async def has_survey(self, shop_id: uuid.UUID, customer_id: str, since: datetime) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM surveys WHERE shop_id = $1 AND customer_id = $2"
                " AND created_at >= $3 LIMIT 1",
                shop_id,
                customer_id,
                since,
            )
        )
