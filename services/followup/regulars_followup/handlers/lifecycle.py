"""What loyalty tells followup about a customer: their lifecycle stage (which decides the
monthly check's win-back), and that their churn risk crossed the shop's threshold (which
asks the advisor of their last visit to call them)."""

from __future__ import annotations

import uuid

from regulars_events.catalogue import CustomerAtRisk, LifecycleStageChanged
from regulars_runtime.bus import Received

from ..domain.follow_up import AT_RISK_CALL, FollowUpTask
from .base import Deps, FollowUpUnitOfWork
from .outreach import known_customer
from .tasks import miss_timer, terms


async def on_stage_changed(
    message: Received[LifecycleStageChanged], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    customer = await known_customer(uow, message.shop_id, event.customer_id)
    moved = customer.moved_to(event.to_stage, event.from_stage, envelope.time)
    if moved is None:
        return  # an older change than the one applied: it must not move the stage back
    await uow.customers.save_stage(message.shop_id, moved)


async def on_customer_at_risk(
    message: Received[CustomerAtRisk], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """One call per crossing of the threshold, keyed by the event that reports it. None
    while a recovery case is open (the case is already the shop's answer to them), none
    for a customer who never had a visit (no advisor to ask, nothing to call about), and
    none for a lapsed or lost one: the win-back is theirs, and an imported history must
    not fill the advisors' lists with calls to customers gone for years."""
    event, envelope = message.event, message.envelope
    shop_id = message.shop_id
    customer = await known_customer(uow, shop_id, event.customer_id)
    if customer.stage in ("lapsed", "lost"):
        return
    if await uow.cases.has_open(shop_id, event.customer_id):
        return
    last = await uow.visits.last_of(shop_id, event.customer_id)
    if last is None:
        return
    scheduled = FollowUpTask.at_risk_call(
        uuid.uuid4(),
        envelope.id,
        last,
        event.reasons,
        event.score,
        terms(await uow.policy(shop_id)),
        deps.clock(),
    )
    if not await uow.tasks.add(scheduled.task):
        return  # this crossing already has its call
    uow.emit(scheduled.event, shop_id=shop_id)
    await uow.timers.schedule(miss_timer(scheduled.miss))


async def withdraw_at_risk_calls(
    uow: FollowUpUnitOfWork, shop_id: uuid.UUID, customer_id: str, reason: str
) -> None:
    """A recovery case opened: an at-risk call not made yet is off, as it would never have
    been asked for had the case come first (the two travel on different topics)."""
    for task in await uow.tasks.open_calls(shop_id, customer_id, AT_RISK_CALL):
        cancelled = task.cancel(reason)
        if cancelled is not None:
            await uow.tasks.save(task)
            uow.emit(cancelled, shop_id=shop_id)
