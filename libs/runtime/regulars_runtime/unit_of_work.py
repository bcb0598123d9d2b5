"""The unit of work: one transaction holding a state change and the events it causes.

Handlers change state through the repositories of a unit of work and ``emit()`` the
events it causes; both commit together (the events as outbox rows), or neither does.
A handler sees only this and its service's dependencies: the shop's policy, durable
timers and the outbox are reached through it, never through a connection.

:class:`UnitOfWork` is what handlers are written against; :class:`PostgresUnitOfWork`
is the real one (a service's bootstrap builds it with its repositories), and a test's
fake subclasses :class:`UnitOfWork` with repositories in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar

import asyncpg
from regulars_bus import outbox
from regulars_bus.consumer import RetryLater
from regulars_events.base import Event
from regulars_events.envelope import Envelope
from regulars_shop.policy import Policy

from . import shop_directory, telemetry, timers
from .logging import work

U = TypeVar("U", bound="UnitOfWork")


class Waiting(RetryLater):
    """What this message needs travels on another topic and has not been applied yet:
    the consumer parks the partition and tries again, while the others go on."""


class ShopPolicy(NamedTuple):
    version: int
    policy: Policy


class TimerBook(Protocol):
    """The durable timers of a service (see :mod:`regulars_runtime.timers`)."""

    async def schedule(self, timer: timers.NewTimer, *, reschedule: bool = False) -> bool:
        """Add ``timer`` (idempotent by key); ``reschedule`` moves an unfired one."""
        ...

    async def schedule_many(self, new: Sequence[timers.NewTimer]) -> int: ...

    async def cancel(self, key: str, *, at: datetime | None = None) -> bool:
        """Cancel the unfired timer ``key``; False if there is none or it fired."""
        ...

    async def cancel_many(self, keys: Sequence[str]) -> int:
        """Cancel every unfired timer of ``keys``; how many were."""
        ...


class ShopBook(Protocol):
    """A service's copy of the shop facts it needs, kept from the ``regulars.shop`` topic."""

    async def apply(self, envelope: Envelope) -> None: ...

    async def policy(self, shop_id: uuid.UUID) -> ShopPolicy | None: ...


class UnitOfWork:
    """What every handler may touch: the outbox, timers, the shops' policies."""

    timers: TimerBook
    shops: ShopBook

    def __init__(self, *, source: str, cause: Envelope | None = None) -> None:
        self.source = source
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
        traceparent: str | None = None,
    ) -> Envelope:
        """``cause``: the event this one answers, when a unit of work spans several.
        ``traceparent``: the context the event comes from, when it is not the one at
        hand (a posting committed with others by a writer of its own)."""
        cause = cause or self.cause
        if traceparent is None:
            request = work.get()
            traceparent = telemetry.traceparent_for_event(
                cause, request.traceparent if request is not None else None
            )
        envelope = Envelope.wrap(
            event,
            source=self.source,
            shop_id=str(shop_id),
            id=id,
            time=time,
            cause=cause,
            correlation_id=correlation_id,
            traceparent=traceparent,
        )
        self.pending.append(envelope)
        return envelope

    async def policy(self, shop_id: uuid.UUID) -> ShopPolicy:
        """The shop's policy; :class:`Waiting` while it has not arrived (it travels on
        another topic, and a shop's first events can come before it)."""
        known = await self.shops.policy(shop_id)
        if known is None:
            raise Waiting(f"no policy yet for shop {shop_id}")
        return known

    async def policy_or_defaults(self, shop_id: uuid.UUID) -> ShopPolicy:
        """For a staff command, which cannot wait: the defaults stand in for a missing policy."""
        known = await self.shops.policy(shop_id)
        return known if known is not None else ShopPolicy(0, Policy.defaults())

    async def flush(self) -> None:
        """Write what was emitted to the outbox (inside the open transaction)."""
        pending, self.pending = self.pending, []
        await self._write_outbox(pending)

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        raise NotImplementedError


class PostgresTimers:
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn, self.schema = conn, schema

    async def schedule(self, timer: timers.NewTimer, *, reschedule: bool = False) -> bool:
        return await timers.schedule(
            self.conn,
            key=timer.key,
            kind=timer.kind,
            shop_id=timer.shop_id,
            fire_at=timer.fire_at,
            payload=timer.payload,
            schema=self.schema,
            reschedule=reschedule,
        )

    async def schedule_many(self, new: Sequence[timers.NewTimer]) -> int:
        return await timers.schedule_many(self.conn, list(new), schema=self.schema)

    async def cancel(self, key: str, *, at: datetime | None = None) -> bool:
        return await timers.cancel(self.conn, key, schema=self.schema, at=at)

    async def cancel_many(self, keys: Sequence[str]) -> int:
        return await timers.cancel_many(self.conn, keys, schema=self.schema)


class PostgresShops:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def apply(self, envelope: Envelope) -> None:
        await shop_directory.apply_shop_event(envelope, self.conn)

    async def policy(self, shop_id: uuid.UUID) -> ShopPolicy | None:
        known = await shop_directory.policy_for(self.conn, shop_id)
        return None if known is None else ShopPolicy(*known)


class PostgresUnitOfWork(UnitOfWork):
    """A unit of work on one PostgreSQL connection, inside the caller's transaction."""

    def __init__(
        self, conn: asyncpg.Connection, *, schema: str, cause: Envelope | None = None
    ) -> None:
        super().__init__(source=schema, cause=cause)
        self.conn = conn
        self.schema = schema
        self.timers = PostgresTimers(conn, schema)
        self.shops = PostgresShops(conn)

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        await outbox.write(self.conn, envelopes, self.schema)


#: how a service's bootstrap makes its unit of work on a connection (and a cause)
UnitOfWorkFactory = Callable[[asyncpg.Connection, Envelope | None], U]


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, make: UnitOfWorkFactory[U]) -> AsyncIterator[U]:
    """A transaction for a command: commits state and outbox rows together."""
    async with pool.acquire() as conn, conn.transaction():
        uow = make(conn, None)
        yield uow
        await uow.flush()
