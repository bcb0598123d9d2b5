"""Follow-up call tasks: scheduled from visits, cancelled by voids, worked by staff.

Each handler loads the FollowUpTask, lets it decide, saves it and emits what it returned;
the miss timers it asks for are how "nothing happened in time" comes back to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from regulars_events.catalogue import ServiceCompleted, ServiceReopened, ServiceVoided
from regulars_runtime import timers
from regulars_runtime.bus import Command, Received
from regulars_runtime.timers import Timer
from regulars_runtime.unit_of_work import ShopPolicy
from regulars_shop.policy import parse_duration

from ..domain.attempts import Attempt, AttemptResult
from ..domain.follow_up import CompletedVisit, FollowUpTask, FollowUpTerms, MissCheck, Scheduled
from ..domain.visits import VisitStatus
from .base import Deps, FollowUpUnitOfWork

FOLLOW_UP_MISSED = "followup.missed"


def terms(known: ShopPolicy) -> FollowUpTerms:
    version, policy = known
    return FollowUpTerms(
        calendar=policy.calendar(),
        delay=parse_duration(policy.follow_up_delay),
        missed_after=parse_duration(policy.follow_up_missed_after),
        max_attempts=policy.follow_up_max_attempts,
        shop_name=policy.contact.name,
        policy_version=version,
    )


def completed_visit(message: Received[ServiceCompleted]) -> CompletedVisit:
    event = message.event
    return CompletedVisit(
        shop_id=message.shop_id,
        repair_order_id=event.repair_order_id,
        customer_id=event.customer_id,
        completed_at=event.completed_at,
        advisor=event.advisor,
        data=event.model_dump(mode="json"),
        event_id=message.envelope.id,
    )


async def on_services_completed(
    messages: Sequence[Received[ServiceCompleted]], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """Visits completed (each repair order once in a run; one visit alone comes as a run
    of one): each new visit gets its call, a repeat is ignored, a reopened one starts over.

    New visits' tasks and miss timers are written with one statement per table.
    """
    shops = {m.shop_id for m in messages}
    policies = {shop: terms(await uow.policy(shop)) for shop in shops}
    visits = [completed_visit(m) for m in messages]
    added = await uow.visits.add_new(visits)
    now = deps.clock()
    new: list[Scheduled] = []
    for message, visit in zip(messages, visits, strict=True):
        key = (visit.shop_id, visit.repair_order_id)
        if key in added:
            scheduled = FollowUpTask.schedule(visit, policies[visit.shop_id], now, uuid.uuid4())
            if scheduled is not None:
                new.append(scheduled)
        else:
            scheduled = await _completed_again(uow, visit, policies[visit.shop_id], now)
        if scheduled is not None:
            uow.emit(scheduled.event, shop_id=visit.shop_id, cause=message.envelope)
    if new:
        await uow.tasks.add_many([s.task for s in new])
        await uow.timers.schedule_many([miss_timer(s.miss) for s in new])


async def _completed_again(
    uow: FollowUpUnitOfWork, visit: CompletedVisit, terms: FollowUpTerms, now: datetime
) -> Scheduled | None:
    """A visit already known: a reopened one completed again, or a repeat (None)."""
    known = await uow.visits.get(visit.shop_id, visit.repair_order_id)
    if known is None or not known.complete_again(visit.completed_at):
        return None  # one truth per visit: a repeat is acknowledged and ignored
    await uow.visits.save(known)
    task = await uow.tasks.for_visit(visit.shop_id, visit.repair_order_id)
    if task is None:
        scheduled = FollowUpTask.schedule(visit, terms, now, uuid.uuid4())
        if scheduled is not None:
            await uow.tasks.add(scheduled.task)
    else:
        scheduled = task.reschedule(visit, terms, now)
        if scheduled is not None:
            await uow.tasks.save(task)
    if scheduled is not None:
        await uow.timers.schedule(miss_timer(scheduled.miss))
    return scheduled


async def _withdraw(
    shop_id: uuid.UUID, repair_order_id: str, status: VisitStatus, uow: FollowUpUnitOfWork
) -> None:
    visit = await uow.visits.get(shop_id, repair_order_id)
    if visit is None or not visit.withdraw(status):
        return
    await uow.visits.save(visit)
    task = await uow.tasks.for_visit(shop_id, repair_order_id)
    if task is None:
        return
    cancelled = task.cancel(f"service {status}")
    if cancelled is None:
        return  # the call already happened (or was missed): nothing to cancel
    await uow.tasks.save(task)
    uow.emit(cancelled, shop_id=shop_id)


async def on_service_voided(
    message: Received[ServiceVoided], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    await _withdraw(message.shop_id, message.event.repair_order_id, VisitStatus.VOIDED, uow)


async def on_service_reopened(
    message: Received[ServiceReopened], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    await _withdraw(message.shop_id, message.event.repair_order_id, VisitStatus.REOPENED, uow)


class UnknownTask(LookupError):
    pass


@dataclass(frozen=True)
class RecordCallAttempt(Command[AttemptResult]):
    """Staff recorded a call on a follow-up task."""

    shop_id: uuid.UUID
    task_id: uuid.UUID
    attempt: Attempt


async def record_call_attempt(
    command: RecordCallAttempt, uow: FollowUpUnitOfWork, deps: Deps
) -> AttemptResult:
    """Keep the attempt, and complete or miss the task when that follows (raises
    :class:`UnknownTask`, or ``TaskFinished`` for a task no longer open)."""
    task = await uow.tasks.get(command.shop_id, command.task_id)
    if task is None:
        raise UnknownTask(f"no follow-up {command.task_id} in this shop")
    # Staff cannot wait for a policy that has not arrived: the defaults stand in.
    rules = terms(await uow.policy_or_defaults(command.shop_id))
    recorded = task.record_attempt(command.attempt, rules.max_attempts, rules.missed_after)
    await uow.tasks.save(task)
    for event in recorded.events:
        uow.emit(event, shop_id=command.shop_id)
    if recorded.miss is not None:
        await uow.timers.schedule(miss_timer(recorded.miss))
    return recorded.result


def miss_timer(check: MissCheck) -> timers.NewTimer:
    return timers.NewTimer(
        key=f"{FOLLOW_UP_MISSED}:{check.task_id}:{check.attempts}:{check.at.isoformat()}",
        kind=FOLLOW_UP_MISSED,
        shop_id=check.shop_id,
        fire_at=check.at,
        payload={
            "task_id": str(check.task_id),
            "attempts": check.attempts,
            "due_at": check.due_at.isoformat(),
        },
    )


def miss_check(timer: Timer) -> MissCheck:
    payload = timer.payload
    return MissCheck(
        task_id=uuid.UUID(payload["task_id"]),
        shop_id=timer.shop_id or uuid.UUID(int=0),
        attempts=payload["attempts"],
        due_at=datetime.fromisoformat(payload["due_at"]),
        at=timer.fire_at,
    )


async def on_missed_timer(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """No attempt was recorded in time: the follow-up is missed (unless it moved on)."""
    check = miss_check(timer)
    task = await uow.tasks.by_id(check.task_id)
    if task is None or not task.governed_by(check):
        return  # completed, cancelled, or an attempt since: a later timer governs it
    missed = task.miss("no_attempt_in_time", deps.clock())
    await uow.tasks.save(task)
    uow.emit(missed, shop_id=task.shop_id)
