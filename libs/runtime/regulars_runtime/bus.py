"""The message bus: events, timers and commands to their handlers, each in a unit of work.

Every handler has one signature, ``async def handler(message, uow, deps)``: the message
(a :class:`Received` event, a fired :class:`~regulars_runtime.timers.Timer`, or a
command object), the service's unit of work, and the service's typed dependencies. The
bus opens nothing but the unit of work and commits nothing but its outbox; the
transaction belongs to whoever calls it (the consumer with its inbox, the timer
scheduler with its claim, or :meth:`MessageBus.handle` for a command).

A service's bootstrap builds one bus with its maps of handlers; the consumer, the timer
worker and the API call it. Shop facts (``regulars.shop.*``) are applied to the
service's copy before any handler of theirs runs, so every service keeps them alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import asyncpg
from regulars_events import catalogue as _catalogue  # noqa: F401 - registers every event type
from regulars_events.base import Event
from regulars_events.envelope import Envelope

from .shop_directory import is_shop_event
from .timers import Timer
from .unit_of_work import UnitOfWork, UnitOfWorkFactory, unit_of_work

U = TypeVar("U", bound=UnitOfWork)
D = TypeVar("D")
E = TypeVar("E", bound=Event)
R = TypeVar("R")
C = TypeVar("C")


class Received(Generic[E]):
    """An event as a handler gets it: the typed event and the envelope it came in.

    The event is parsed when a handler first asks for it: a handler of every event (the
    timeline) reads the envelope alone, and must not fail on a type newer than this
    service's catalogue.
    """

    __slots__ = ("_event", "envelope")

    def __init__(self, event: E | None, envelope: Envelope) -> None:
        self._event = event
        self.envelope = envelope

    @property
    def event(self) -> E:
        if self._event is None:
            self._event = cast(E, self.envelope.event())
        return self._event

    @property
    def shop_id(self) -> uuid.UUID:
        return uuid.UUID(self.envelope.shop_id)

    @classmethod
    def of(cls, envelope: Envelope) -> Received[Any]:
        return Received(None, envelope)


class Command(Generic[R]):
    """A command whose handler answers with an ``R``: ``bus.handle(command)`` is typed by
    it. Commands are frozen dataclasses naming what staff or a system asked for."""

    __slots__ = ()


#: ``async def handler(message, uow, deps) -> result``: the one handler signature
Handler = Callable[[Any, U, D], Awaitable[Any]]
#: ``async def handler(messages, uow, deps)``: every event of a transaction, in order
RunHandler = Callable[[Sequence["Received[Any]"], U, D], Awaitable[None]]


@dataclass(frozen=True)
class Batch(Generic[U, D]):
    """A handler for a run of same-type events applied together, set-based.

    ``handle`` gets the run, in order; the one-event path calls it with a run of one, so
    both paths share one decision. ``key`` says which events may not share a run (a
    second event with a key already in the run starts a new one: a repeat must see the
    first one applied).
    """

    handle: Callable[[Sequence[Received[Any]], U, D], Awaitable[None]]
    key: Callable[[Received[Any]], Hashable] = field(default=lambda m: m.envelope.id)


class MessageBus(Generic[U, D]):
    def __init__(
        self,
        *,
        unit_of_work: UnitOfWorkFactory[U],
        deps: D,
        events: Mapping[str, Handler[U, D]] | None = None,
        batches: Mapping[str, Batch[U, D]] | None = None,
        timers: Mapping[str, Handler[U, D]] | None = None,
        commands: Mapping[type, Handler[U, D]] | None = None,
        every_event: Handler[U, D] | None = None,
        every_run: RunHandler[U, D] | None = None,
        pool: asyncpg.Pool | None = None,
        transaction: Callable[[], AbstractAsyncContextManager[U]] | None = None,
        timers_alone: frozenset[str] = frozenset(),
    ) -> None:
        """``every_event`` sees each event, one at a time; ``every_run`` sees every event
        of a transaction at once, in order, after the shop facts among them are applied
        (a projection of everything, set-based). ``pool`` gives commands their
        transactions; ``transaction`` stands in for it (a test's unit of work in memory).
        ``timers_alone``: timer kinds that each fire in a transaction of their own (a page
        of work), never batched with other due timers."""
        self.make_uow = unit_of_work
        self.deps = deps
        self.events = dict(events or {})
        self.batches = dict(batches or {})
        self.timers = dict(timers or {})
        self.commands = dict(commands or {})
        self.every_event = every_event
        self.every_run = every_run
        self.pool = pool
        self.transaction = transaction
        self.timers_alone = timers_alone

    # -- events (the consumer's handler, inside its transaction with the inbox) ----------

    def handles(self, event_type: str) -> bool:
        return (
            self.every_event is not None
            or self.every_run is not None
            or is_shop_event(event_type)
            or event_type in self.events
            or event_type in self.batches
        )

    async def handle_event(self, envelope: Envelope, conn: asyncpg.Connection) -> None:
        uow = self.make_uow(conn, envelope)
        message = Received.of(envelope)
        await self._dispatch([message], uow)
        if self.every_run is not None:
            uow.cause = envelope
            await self.every_run([message], uow, self.deps)
        await uow.flush()

    async def handle_events(self, envelopes: Sequence[Envelope], conn: asyncpg.Connection) -> None:
        """Several new events in one transaction, in order: runs of a batched type go to
        their :class:`Batch` together, everything else one by one."""
        uow = self.make_uow(conn, None)
        run: list[Received[Any]] = []
        keys: set[Hashable] = set()
        every: list[Received[Any]] = []

        async def flush_run() -> None:
            if run:
                await self._dispatch(list(run), uow)
                run.clear()
                keys.clear()

        for envelope in envelopes:
            message = Received.of(envelope)
            every.append(message)
            batch = self.batches.get(envelope.type)
            if batch is None:
                await flush_run()
                await self._dispatch([message], uow)
                continue
            key = batch.key(message)
            if run and (run[0].envelope.type != envelope.type or key in keys):
                await flush_run()
            run.append(message)
            keys.add(key)
        await flush_run()
        if self.every_run is not None:
            uow.cause = None
            await self.every_run(every, uow, self.deps)
        await uow.flush()

    async def _dispatch(self, messages: list[Received[Any]], uow: U) -> None:
        """One event, or a run of one batched type, with ``uow.cause`` set when single."""
        kind = messages[0].envelope.type
        uow.cause = messages[0].envelope if len(messages) == 1 else None
        if is_shop_event(kind):
            await uow.shops.apply(messages[0].envelope)
        if self.every_event is not None:
            for message in messages:
                await self.every_event(message, uow, self.deps)
        batch = self.batches.get(kind)
        if batch is not None:
            await batch.handle(messages, uow, self.deps)
            return
        handler = self.events.get(kind)
        if handler is not None:
            await handler(messages[0], uow, self.deps)

    # -- timers (the scheduler's handler, inside its claim) -------------------------------

    async def handle_timer(self, timer: Timer, conn: asyncpg.Connection) -> None:
        uow = self.make_uow(conn, None)
        await self.timers[timer.kind](timer, uow, self.deps)
        await uow.flush()

    # -- commands (from the API and the CLI: a transaction of their own) ------------------

    async def handle(self, command: Command[R]) -> R:
        """Run ``command``'s handler in a new unit of work and commit; its answer."""
        handler = self.commands[type(command)]
        async with self.unit_of_work() as uow:
            return cast(R, await handler(command, uow, self.deps))

    def unit_of_work(self) -> AbstractAsyncContextManager[U]:
        """A new transaction on the pool, for a command's handler."""
        if self.transaction is not None:
            return self.transaction()
        if self.pool is None:
            raise RuntimeError("this bus has no pool: it was built for events only")
        return unit_of_work(self.pool, self.make_uow)
