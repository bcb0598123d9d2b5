"""followup's reactions to events and timers: the message bus that routes them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from regulars_events.catalogue import (
    ConsentChanged,
    CustomerReplied,
    CustomerUpserted,
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    RecoveryCaseSlaAtRisk,
    ReferralRequested,
    ReviewRequested,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
    ShopPolicyChanged,
    StaffPraised,
    SurveyRequested,
)
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.shop_directory import apply_shop_event, is_shop_event
from regulars_runtime.timers import Timer

from . import outreach, recovery, sweep, tasks
from .base import SCHEMA, EventHandler, FollowUpUnitOfWork

HANDLERS: dict[str, EventHandler] = {
    CustomerUpserted.type: outreach.on_customer_upserted,
    ConsentChanged.type: outreach.on_consent_changed,
    CustomerReplied.type: outreach.on_customer_replied,
    ServiceCompleted.type: tasks.on_service_completed,
    ServiceVoided.type: tasks.on_service_voided,
    ServiceReopened.type: tasks.on_service_reopened,
    SurveyRequested.type: outreach.on_survey_requested,
    RecoveryCaseOpened.type: recovery.on_case_opened,
    RecoveryCaseSlaAtRisk.type: recovery.on_case_at_risk,
    RecoveryCaseEscalated.type: recovery.on_case_escalated,
    RecoveryCaseResolved.type: recovery.on_case_resolved,
    ReviewRequested.type: recovery.on_review_requested,
    ReferralRequested.type: recovery.on_referral_requested,
    StaffPraised.type: recovery.on_staff_praised,
}

TOPICS = [
    "regulars.shop",
    "regulars.customer",
    "regulars.consent",
    "regulars.service",
    "regulars.survey",
    "regulars.recovery_case",
    "regulars.review",
    "regulars.referral",
    "regulars.staff",
]


def handles(event_type: str) -> bool:
    return event_type in HANDLERS or is_shop_event(event_type)


def message_bus(clock: Clock) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    """The consumer's handler: dispatches an event to its handler in one unit of work."""

    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            if envelope.type == ShopPolicyChanged.type:
                uow = FollowUpUnitOfWork(conn, cause=envelope)
                await sweep.plan_next_check(uow, uuid.UUID(envelope.shop_id), clock())
            return
        uow = FollowUpUnitOfWork(conn, cause=envelope)
        await HANDLERS[envelope.type](envelope.event(), envelope, uow, clock)
        await uow.flush()

    return handle


def message_bus_many(
    clock: Clock,
) -> Callable[[Sequence[Envelope], asyncpg.Connection], Awaitable[None]]:
    """The consumer's handler for several new events in one transaction, in order.

    Runs of visits (each repair order once) are scheduled set-based; every other event,
    and a visit whose repair order the run already has, goes through ``message_bus``.
    """
    handle = message_bus(clock)

    async def handle_many(envelopes: Sequence[Envelope], conn: asyncpg.Connection) -> None:
        run: list[tuple[ServiceCompleted, Envelope]] = []
        orders: set[tuple[str, str]] = set()

        async def flush() -> None:
            if run:
                uow = FollowUpUnitOfWork(conn)
                await tasks.on_services_completed(run, uow, clock)
                await uow.flush()
                run.clear()
                orders.clear()

        for envelope in envelopes:
            if envelope.type == ServiceCompleted.type:
                event = envelope.event()
                assert isinstance(event, ServiceCompleted)
                order = (envelope.shop_id, event.repair_order_id)
                if order in orders:
                    await flush()
                run.append((event, envelope))
                orders.add(order)
                continue
            await flush()
            await handle(envelope, conn)
        await flush()

    return handle_many


TIMER_HANDLERS = {
    outreach.MESSAGE_DUE: outreach.on_message_due,
    tasks.FOLLOW_UP_MISSED: tasks.on_missed_timer,
    sweep.MONTHLY_CHECK: sweep.on_monthly_check_timer,
    recovery.RECOVERY_CHECK_IN: recovery.on_check_in_timer,
}


def timer_bus(clock: Clock) -> Callable[[Timer, asyncpg.Connection], Awaitable[None]]:
    """The timer scheduler's handler: a fired timer's effects in its own unit of work."""

    async def handle(timer: Timer, conn: asyncpg.Connection) -> None:
        uow = FollowUpUnitOfWork(conn)
        await TIMER_HANDLERS[timer.kind](uow, clock, timer.payload)
        await uow.flush()

    return handle


__all__ = [
    "HANDLERS",
    "SCHEMA",
    "TOPICS",
    "FollowUpUnitOfWork",
    "handles",
    "message_bus",
    "timer_bus",
]
