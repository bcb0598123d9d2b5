"""feedback's reactions to events and timers: the message bus that routes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from regulars_events.catalogue import (
    CustomerReplied,
    FollowUpCompleted,
    FollowUpMissed,
    ServiceCompleted,
)
from regulars_events.envelope import Envelope
from regulars_runtime.shop_directory import apply_shop_event, is_shop_event
from regulars_runtime.timers import Timer

from . import cases, signals, surveys
from .base import SCHEMA, Deps, EventHandler, FeedbackUnitOfWork

HANDLERS: dict[str, EventHandler] = {
    ServiceCompleted.type: signals.on_service_completed,
    CustomerReplied.type: signals.on_customer_replied,
    FollowUpCompleted.type: surveys.on_followup_completed,
    FollowUpMissed.type: surveys.on_followup_missed,
}

TOPICS: list[str] = ["regulars.shop", "regulars.customer", "regulars.service", "regulars.followup"]


def handles(event_type: str) -> bool:
    # Every event of these topics goes on the customer's timeline, so all are wanted.
    return True


def message_bus(deps: Deps) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    """The consumer's handler: an event's effects in one unit of work (with the inbox)."""

    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            return
        uow = FeedbackUnitOfWork(conn, cause=envelope)
        if envelope.subject is not None:
            await uow.repo.add_to_timeline(envelope)
        handler = HANDLERS.get(envelope.type)
        if handler is not None:
            await handler(envelope.event(), envelope, uow, deps)
        await uow.flush()

    return handle


TIMER_HANDLERS = {
    cases.SLA: cases.on_sla_timer,
    cases.RESURVEY: surveys.on_resurvey_timer,
}


def timer_bus(deps: Deps) -> Callable[[Timer, asyncpg.Connection], Awaitable[None]]:
    """The timer scheduler's handler: a fired timer's effects in its own unit of work."""

    async def handle(timer: Timer, conn: asyncpg.Connection) -> None:
        uow = FeedbackUnitOfWork(conn)
        await TIMER_HANDLERS[timer.kind](uow, deps, timer.payload)
        await uow.flush()

    return handle


__all__ = [
    "HANDLERS",
    "SCHEMA",
    "TOPICS",
    "Deps",
    "FeedbackUnitOfWork",
    "handles",
    "message_bus",
    "timer_bus",
]
