"""Follow-up call tasks: scheduled from visits, cancelled by voids, worked by staff."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from regulars_events.catalogue import (
    FollowUpAttempted,
    FollowUpCancelled,
    FollowUpCompleted,
    FollowUpMissed,
    FollowUpScheduled,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
)
from regulars_runtime import timers
from regulars_runtime.bus import Received
from regulars_runtime.timers import Timer
from regulars_shop.policy import parse_duration

from ..adapters.repository import NewVisit
from ..domain.attempts import Attempt, AttemptResult, record_attempt
from ..domain.tasks import OPEN_STATUSES, TaskStatus, call_script, plan_follow_up
from .base import Deps, FollowUpUnitOfWork, shop_policy


async def on_service_completed(
    message: Received[ServiceCompleted], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    version, policy = await shop_policy(uow, shop_id)
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
    script = call_script(data, policy.contact.name)
    # A visit recorded just now has no task yet: the lookup is for a reopened one.
    existing = None if added else await uow.repo.task_for_visit(shop_id, event.repair_order_id)
    if existing is not None:
        task_id = existing["id"]
        await uow.repo.reschedule_task(task_id, plan.due_at, version, script)
    else:
        task_id = uuid.uuid4()
        await uow.repo.add_task(_new_task(task_id, shop_id, event, plan.due_at, script, version))
    await _miss_unless_attempted(
        uow,
        shop_id,
        task_id,
        0,
        plan.due_at,
        plan.due_at + parse_duration(policy.follow_up_missed_after),
    )
    uow.emit(_scheduled(event, task_id, plan.due_at), shop_id=shop_id)


def _new_task(
    task_id: uuid.UUID,
    shop_id: uuid.UUID,
    event: ServiceCompleted,
    due_at: datetime,
    script: dict[str, Any],
    policy_version: int,
) -> dict[str, Any]:
    return {
        "id": task_id,
        "shop_id": shop_id,
        "customer_id": event.customer_id,
        "repair_order_id": event.repair_order_id,
        "assignee": event.advisor,
        "status": TaskStatus.SCHEDULED.value,
        "due_at": due_at,
        "script": script,
        "policy_version": policy_version,
    }


def _scheduled(event: ServiceCompleted, task_id: uuid.UUID, due_at: datetime) -> FollowUpScheduled:
    return FollowUpScheduled(
        task_id=str(task_id),
        customer_id=event.customer_id,
        repair_order_id=event.repair_order_id,
        assignee=event.advisor,
        due_at=due_at,
    )


async def on_services_completed(
    messages: Sequence[Received[ServiceCompleted]], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """``on_service_completed`` for many visits, each repair order once, set-based.

    New visits get their tasks, miss timers and FollowUpScheduled with one statement per
    table; a visit already known (a repeat, a reopened one) goes through
    ``on_service_completed``, which tells which. One visit alone comes this way too.
    """
    clock = deps.clock
    completed = [(m.event, m.envelope) for m in messages]
    policies = {}
    for shop in {uuid.UUID(envelope.shop_id) for _e, envelope in completed}:
        policies[shop] = await shop_policy(uow, shop)
    data = [event.model_dump(mode="json") for event, _envelope in completed]
    added = await uow.repo.add_visits(
        [
            NewVisit(
                uuid.UUID(envelope.shop_id),
                event.repair_order_id,
                event.customer_id,
                event.completed_at,
                visit,
                envelope.id,
            )
            for (event, envelope), visit in zip(completed, data, strict=True)
        ]
    )
    new_tasks: list[dict[str, Any]] = []
    miss_timers: list[timers.NewTimer] = []
    now = clock()
    for (event, envelope), visit in zip(completed, data, strict=True):
        shop_id = uuid.UUID(envelope.shop_id)
        if (shop_id, event.repair_order_id) not in added:
            await on_service_completed(Received(event, envelope), uow, deps)
            continue
        version, policy = policies[shop_id]
        missed_after = parse_duration(policy.follow_up_missed_after)
        plan = plan_follow_up(
            event.completed_at,
            policy.calendar(),
            parse_duration(policy.follow_up_delay),
            missed_after,
            now,
        )
        if plan.due_at is None:
            continue
        task_id = uuid.uuid4()
        script = call_script(visit, policy.contact.name)
        new_tasks.append(_new_task(task_id, shop_id, event, plan.due_at, script, version))
        miss_timers.append(
            _miss_timer(shop_id, task_id, 0, plan.due_at, plan.due_at + missed_after)
        )
        uow.emit(_scheduled(event, task_id, plan.due_at), shop_id=shop_id, cause=envelope)
    if new_tasks:
        await uow.repo.add_tasks(new_tasks)
        await uow.timers.schedule_many(miss_timers)


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
    message: Received[ServiceVoided], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    await _cancel(uuid.UUID(envelope.shop_id), event.repair_order_id, "voided", uow)


async def on_service_reopened(
    message: Received[ServiceReopened], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
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
    known = await uow.shops.policy(shop_id)
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
    else:
        # Staff are still trying: the task is missed only if they then stop trying.
        missed_after = (
            parse_duration(known[1].follow_up_missed_after) if known else timedelta(hours=24)
        )
        await _miss_unless_attempted(
            uow, shop_id, task_id, result.number, task["due_at"], attempt.at + missed_after
        )
    return result


FOLLOW_UP_MISSED = "followup.missed"


async def _miss_unless_attempted(
    uow: FollowUpUnitOfWork,
    shop_id: uuid.UUID,
    task_id: uuid.UUID,
    attempts: int,
    due_at: datetime,
    at: datetime,
) -> None:
    """Miss the task at ``at`` if by then it still has ``attempts`` and the same due time
    (a reopened-and-completed visit gets a new due time, so an older timer stands down)."""
    timer = _miss_timer(shop_id, task_id, attempts, due_at, at)
    await uow.timers.schedule(timer)


def _miss_timer(
    shop_id: uuid.UUID, task_id: uuid.UUID, attempts: int, due_at: datetime, at: datetime
) -> timers.NewTimer:
    return timers.NewTimer(
        key=f"{FOLLOW_UP_MISSED}:{task_id}:{attempts}:{at.isoformat()}",
        kind=FOLLOW_UP_MISSED,
        shop_id=shop_id,
        fire_at=at,
        payload={"task_id": str(task_id), "attempts": attempts, "due_at": due_at.isoformat()},
    )


async def on_missed_timer(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """No attempt was recorded in time: the follow-up is missed (unless it moved on)."""
    payload, clock = timer.payload, deps.clock
    task = await uow.repo.task_by_id(uuid.UUID(payload["task_id"]))
    if (
        task is None
        or task["status"] != TaskStatus.SCHEDULED
        or task["attempts"] != payload["attempts"]
        or task["due_at"] != datetime.fromisoformat(payload["due_at"])
    ):
        return  # completed, cancelled, or an attempt since: a later timer governs it
    await miss(uow, task["shop_id"], task, "no_attempt_in_time", clock())


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
