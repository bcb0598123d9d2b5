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

from .adapters.repository import LoyaltyRepository

SCHEMA = "loyalty"
TOPICS: list[str] = [f"regulars.{family}" for family in FAMILIES]


class LoyaltyUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)
        self.repo = LoyaltyRepository(conn)


def handles(event_type: str) -> bool:
    return True


def message_bus(clock: Clock) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            return
        uow = LoyaltyUnitOfWork(conn, cause=envelope)
        if envelope.subject is not None:
            await uow.repo.add_to_timeline(envelope)
        await uow.flush()

    return handle
