"""feedback's reactions to events and timers: the message bus that routes them."""

from __future__ import annotations

from typing import Any

from regulars_events.catalogue import (
    CustomerReplied,
    FollowUpCompleted,
    FollowUpMissed,
    ServiceCompleted,
)
from regulars_runtime.bus import Handler, Received

from . import cases, signals, surveys
from .base import SCHEMA, Deps, FeedbackUnitOfWork

EVENTS: dict[str, Handler[FeedbackUnitOfWork, Deps]] = {
    ServiceCompleted.type: signals.on_service_completed,
    CustomerReplied.type: signals.on_customer_replied,
    FollowUpCompleted.type: surveys.on_followup_completed,
    FollowUpMissed.type: surveys.on_followup_missed,
}

TOPICS: list[str] = ["regulars.shop", "regulars.customer", "regulars.service", "regulars.followup"]


async def remember(message: Received[Any], uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """Every event about a customer goes on their timeline (a case shows its signals)."""
    if message.envelope.subject is not None:
        await uow.timeline.add(message.envelope)


TIMERS: dict[str, Handler[FeedbackUnitOfWork, Deps]] = {
    cases.SLA: cases.on_sla_timer,
    cases.RESURVEY: surveys.on_resurvey_timer,
}


__all__ = ["EVENTS", "SCHEMA", "TIMERS", "TOPICS", "Deps", "FeedbackUnitOfWork", "remember"]
