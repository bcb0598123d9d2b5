"""What every followup handler shares: its unit of work and the shop's policy."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from regulars_events.consumer import RetryLater
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.policy import Policy
from regulars_runtime.shop_directory import policy_for
from regulars_runtime.unit_of_work import UnitOfWork

from ..adapters.repository import FollowUpRepository

SCHEMA = "followup"


class FollowUpUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)
        self.repo = FollowUpRepository(conn)


EventHandler = Callable[[Any, Envelope, FollowUpUnitOfWork, Clock], Awaitable[None]]


async def shop_policy(uow: FollowUpUnitOfWork, shop_id: uuid.UUID) -> tuple[int, Policy]:
    known = await policy_for(uow.conn, shop_id)
    if known is None:
        # The shop's policy travels on another topic and may not be here yet.
        raise RetryLater(f"no policy yet for shop {shop_id}")
    return known
