"""Every SQL statement of loyalty, on the caller's connection and transaction."""

from __future__ import annotations

import uuid

import asyncpg
from regulars_events.envelope import Envelope


class LoyaltyRepository:
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
