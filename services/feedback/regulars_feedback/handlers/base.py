"""What every feedback handler shares: its unit of work, its dependencies, the policy."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from regulars_events.consumer import RetryLater
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.policy import Policy
from regulars_runtime.shop_directory import policy_for
from regulars_runtime.unit_of_work import UnitOfWork

from ..adapters.repository import FeedbackRepository

SCHEMA = "feedback"


class FeedbackUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)
        self.repo = FeedbackRepository(conn)


@dataclass(frozen=True)
class Deps:
    """What handlers need besides the unit of work: the time, and the public survey URL."""

    clock: Clock
    public_url: str


EventHandler = Callable[[Any, Envelope, FeedbackUnitOfWork, Deps], Awaitable[None]]


async def shop_policy(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """The shop's policy; RetryLater while it has not arrived (it travels on another topic)."""
    known = await policy_for(uow.conn, shop_id)
    if known is None:
        raise RetryLater(f"no policy yet for shop {shop_id}")
    return known[1]


async def policy_or_defaults(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """For an API command, which cannot wait: the defaults stand in for a missing policy."""
    known = await policy_for(uow.conn, shop_id)
    return Policy.defaults() if known is None else known[1]
