"""The unit of work: one PostgreSQL transaction holding a state change and its events.

Handlers change state through the repositories of a unit of work and ``emit()`` the events
it causes; both commit together (the events as outbox rows), or neither does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from regulars_events import outbox
from regulars_events.base import Event
from regulars_events.envelope import Envelope

U = TypeVar("U", bound="UnitOfWork")


class UnitOfWork:
    def __init__(
        self, conn: asyncpg.Connection, *, schema: str, cause: Envelope | None = None
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.cause = cause
        self.pending: list[Envelope] = []

    def emit(
        self,
        event: Event,
        *,
        shop_id: uuid.UUID | str,
        id: uuid.UUID | None = None,
        time: datetime | None = None,
        correlation_id: str | None = None,
        cause: Envelope | None = None,
    ) -> Envelope:
        """``cause``: the event this one answers, when a unit of work spans several."""
        envelope = Envelope.wrap(
            event,
            source=self.schema,
            shop_id=str(shop_id),
            id=id,
            time=time,
            cause=cause or self.cause,
            correlation_id=correlation_id,
        )
        self.pending.append(envelope)
        return envelope

    async def flush(self) -> None:
        """Write what was emitted to the outbox (inside the open transaction)."""
        pending, self.pending = self.pending, []
        await outbox.write(self.conn, pending, self.schema)


@asynccontextmanager
async def unit_of_work(
    pool: asyncpg.Pool, cls: type[U], *, schema: str, **kwargs: Any
) -> AsyncIterator[U]:
    """A transaction for an API command: commits state and outbox rows together."""
    async with pool.acquire() as conn, conn.transaction():
        uow = cls(conn, schema=schema, **kwargs)
        yield uow
        await uow.flush()
