"""loyalty's reactions to events. Every write of loyalty's state happens here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from regulars_events.envelope import Envelope
from regulars_events.topics import FAMILIES
from regulars_runtime.clock import Clock
from regulars_runtime.shop_directory import apply_shop_event, is_shop_event
from regulars_runtime.unit_of_work import UnitOfWork

SCHEMA = "loyalty"
TOPICS: list[str] = [f"regulars.{family}" for family in FAMILIES]


class LoyaltyUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)


async def record_timeline(envelope: Envelope, uow: LoyaltyUnitOfWork) -> None:
    """Every event about a customer, kept in the order it happened."""
    if envelope.subject is None:
        return
    await uow.conn.execute(
        "INSERT INTO timeline (shop_id, customer_id, event_id, type, occurred_at, data)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        envelope.shop_id,
        envelope.subject,
        envelope.id,
        envelope.type,
        envelope.time,
        envelope.data,
    )


def handles(event_type: str) -> bool:
    return True


def message_bus(clock: Clock) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            return
        uow = LoyaltyUnitOfWork(conn, cause=envelope)
        await record_timeline(envelope, uow)
        await uow.flush()

    return handle
