"""The transactional outbox: events are rows written in the caller's transaction.

No dual writes: the state change and the events it causes commit together; the relay
publishes them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from .envelope import Envelope

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
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, headers, value)"
        " VALUES ($1, $2, $3, $4::text::jsonb, $5)",
        rows(envelopes),
    )
    # Delivered at commit, so the relay wakes exactly when the rows become visible.
    await conn.execute(f"NOTIFY {notify_channel(schema)}")
