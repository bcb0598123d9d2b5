"""A customer's timeline: every event about them, as the service that keeps one saw it.

feedback and loyalty each keep their own copy (``timeline`` in their schema, created by
their first migration): each service owns its data. This is the one way to add to it.
"""

from __future__ import annotations

import uuid

import asyncpg
from regulars_events.envelope import Envelope


async def add_to_timeline(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """Record the event in the timeline on the connection's search path (once per event)."""
    await conn.execute(
        "INSERT INTO timeline (shop_id, customer_id, event_id, type, occurred_at, data)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        uuid.UUID(envelope.shop_id),
        envelope.subject,
        envelope.id,
        envelope.type,
        envelope.time,
        envelope.data,
    )
