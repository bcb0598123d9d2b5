"""followup's reactions to events. Every write of followup's state happens here."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from regulars_events.catalogue import (
    CustomerUpserted,
    FollowUpAttempted,
    FollowUpCancelled,
    FollowUpCompleted,
    FollowUpMissed,
    FollowUpScheduled,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
)
from regulars_events.consumer import RetryLater
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.policy import parse_duration
from regulars_runtime.shop_directory import apply_shop_event, is_shop_event, policy_for
from regulars_runtime.unit_of_work import UnitOfWork

from .adapters.repository import FollowUpRepository
from .domain.attempts import Attempt, AttemptResult, record_attempt
from .domain.tasks import OPEN_STATUSES, TaskStatus, call_script, plan_follow_up

SCHEMA = "followup"


class FollowUpUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)
        self.repo = FollowUpRepository(conn)


EventHandler = Callable[[Any, Envelope, FollowUpUnitOfWork, Clock], Awaitable[None]]


async def on_customer_upserted(
    event: CustomerUpserted, envelope: Envelope, uow: FollowUpUnitOfWork, clock: Clock
) -> None:
    await uow.repo.upsert_customer(uuid.UUID(envelope.shop_id), event.model_dump(mode="json"))


async def on_service_completed(
    event: ServiceCompleted, envelope: Envelope, uow: FollowUpUnitOfWork, clock: Clock
) -> None:
    shop_id = uuid.UUID(envelope.shop_id)
    known = await policy_for(uow.conn, shop_id)
    if known is None:
        # The shop's policy travels on another topic and may not be here yet.
        raise RetryLater(f"no policy yet for shop {shop_id}")
    version, policy = known
    data = event.model_dump(mode="json")
    added = await uow.repo.add_visit(
        shop_id, event.repair_order_id, event.customer_id, event.completed_at, data, envelope.id
    )
    if not added:
        visit = await uow.repo.visit(shop_id, event.repair_order_id)
        if visit is None or visit["status"] != "reopened":
            return  # one truth per visit: a repeat is acknowledged and ignored
        await uow.repo.set_visit_status(
            shop_id, event.repair_order_id, "completed", event.completed_at
        )
    plan = plan_follow_up(
        event.completed_at,
        policy.calendar(),
        parse_duration(policy.follow_up_delay),
        parse_duration(policy.follow_up_missed_after),
        clock(),
    )
    if plan.due_at is None:
        return
    name = await uow.repo.customer_name(shop_id, event.customer_id)
    script = call_script(name, data)
    existing = await uow.repo.task_for_visit(shop_id, event.repair_order_id)
    if existing is not None:
        task_id = existing["id"]
        await uow.repo.reschedule_task(task_id, plan.due_at, version, script)
    else:
        task_id = uuid.uuid4()
        await uow.repo.add_task(
            {
                "id": task_id,
                "shop_id": shop_id,
                "customer_id": event.customer_id,
                "repair_order_id": event.repair_order_id,
                "assignee": event.advisor,
                "status": TaskStatus.SCHEDULED.value,
                "due_at": plan.due_at,
                "script": script,
                "policy_version": version,
            }
        )
    uow.emit(
        FollowUpScheduled(
            task_id=str(task_id),
            customer_id=event.customer_id,
            repair_order_id=event.repair_order_id,
            assignee=event.advisor,
            due_at=plan.due_at,
        ),
        shop_id=shop_id,
    )


async def _cancel(
    shop_id: uuid.UUID, repair_order_id: str, status: str, uow: FollowUpUnitOfWork
) -> None:
    visit = await uow.repo.visit(shop_id, repair_order_id)
    if visit is None or visit["status"] == "voided":
        return
    await uow.repo.set_visit_status(shop_id, repair_order_id, status)
    task = await uow.repo.task_for_visit(shop_id, repair_order_id)
    if task is None or task["status"] not in OPEN_STATUSES:
        return  # the call already happened (or was missed): nothing to cancel
    reason = f"service {status}"
    await uow.repo.set_task_status(task["id"], TaskStatus.CANCELLED.value, reason)
    uow.emit(
        FollowUpCancelled(
            task_id=str(task["id"]),
            customer_id=task["customer_id"],
            repair_order_id=repair_order_id,
            reason=reason,
        ),
        shop_id=shop_id,
    )


async def on_service_voided(
    event: ServiceVoided, envelope: Envelope, uow: FollowUpUnitOfWork, clock: Clock
) -> None:
    await _cancel(uuid.UUID(envelope.shop_id), event.repair_order_id, "voided", uow)


async def on_service_reopened(
    event: ServiceReopened, envelope: Envelope, uow: FollowUpUnitOfWork, clock: Clock
) -> None:
    await _cancel(uuid.UUID(envelope.shop_id), event.repair_order_id, "reopened", uow)


class UnknownTask(LookupError):
    pass


async def record_call_attempt(
    uow: FollowUpUnitOfWork, shop_id: uuid.UUID, task_id: uuid.UUID, attempt: Attempt
) -> AttemptResult:
    """Staff recorded a call: keep it, and complete or miss the task when that follows."""
    task = await uow.repo.task(shop_id, task_id)
    if task is None:
        raise UnknownTask(f"no follow-up {task_id} in this shop")
    known = await policy_for(uow.conn, shop_id)
    max_attempts = known[1].follow_up_max_attempts if known else 3
    result = record_attempt(task["status"], task["attempts"], max_attempts, attempt)
    await uow.repo.add_attempt(task_id, shop_id, result.number, attempt)
    ids = {
        "task_id": str(task_id),
        "customer_id": task["customer_id"],
        "repair_order_id": task["repair_order_id"],
    }
    uow.emit(
        FollowUpAttempted(
            **ids,
            attempt=result.number,
            outcome=attempt.outcome.value,
            by=attempt.by,
            at=attempt.at,
        ),
        shop_id=shop_id,
    )
    if result.status is TaskStatus.COMPLETED:
        await uow.repo.set_task_status(task_id, result.status.value, "reached")
        assert attempt.satisfied is not None
        uow.emit(
            FollowUpCompleted(
                **ids,
                assignee=task["assignee"],
                satisfied=attempt.satisfied,
                score=attempt.score,
                notes=attempt.notes,
                completed_at=attempt.at,
            ),
            shop_id=shop_id,
        )
    elif result.status is TaskStatus.MISSED:
        await miss(uow, shop_id, task, "max_attempts", attempt.at)
    return result


async def miss(
    uow: FollowUpUnitOfWork, shop_id: uuid.UUID, task: Any, reason: str, at: datetime
) -> None:
    await uow.repo.set_task_status(task["id"], TaskStatus.MISSED.value, reason)
    uow.emit(
        FollowUpMissed(
            task_id=str(task["id"]),
            customer_id=task["customer_id"],
            repair_order_id=task["repair_order_id"],
            reason=reason,
            missed_at=at,
        ),
        shop_id=shop_id,
    )


HANDLERS: dict[str, EventHandler] = {
    CustomerUpserted.type: on_customer_upserted,
    ServiceCompleted.type: on_service_completed,
    ServiceVoided.type: on_service_voided,
    ServiceReopened.type: on_service_reopened,
}

TOPICS = ["regulars.shop", "regulars.customer", "regulars.service"]


def handles(event_type: str) -> bool:
    return event_type in HANDLERS or is_shop_event(event_type)


def message_bus(clock: Clock) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    """The consumer's handler: dispatches an event to its handler in one unit of work."""

    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            return
        uow = FollowUpUnitOfWork(conn, cause=envelope)
        await HANDLERS[envelope.type](envelope.event(), envelope, uow, clock)
        await uow.flush()

    return handle
