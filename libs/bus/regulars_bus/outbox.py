"""The transactional outbox: events are rows written in the caller's transaction.

No dual writes: the state change and the events it causes commit together; the relay
publishes them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from regulars_events.envelope import Envelope

NOTIFY_CHANNEL_PREFIX = "regulars_outbox_"


def notify_channel(schema: str) -> str:
    return NOTIFY_CHANNEL_PREFIX + schema


def rows(envelopes: Sequence[Envelope]) -> list[tuple[Any, ...]]:
    return [
        (
            e.id,
            e.topic,
            e.key,
            orjson.dumps([[k, v.decode()] for k, v in e.headers]).decode(),
            e.value,
        )
        for e in envelopes
    ]


async def write(conn: asyncpg.Connection, envelopes: Sequence[Envelope], schema: str) -> None:
    """Add events to the outbox inside the caller's open transaction."""
    if not envelopes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.write needs the caller's transaction")
    columns = list(zip(*rows(envelopes), strict=True))
    # One round trip for the rows and the wake-up. The notification is delivered at
    # commit, so the relay wakes exactly when the rows become visible.
    await conn.execute(
        "WITH ins AS (INSERT INTO outbox (event_id, topic, key, headers, value)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[]::jsonb[],"
        " $5::bytea[]) RETURNING 1)"
        " SELECT pg_notify($6, '') WHERE EXISTS (SELECT 1 FROM ins)",
        *[list(c) for c in columns],
        notify_channel(schema),
    )
