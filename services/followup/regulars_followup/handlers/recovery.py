"""followup's part in service recovery: staff hear about their cases, open cases hold
back asks, a resolved case gets its check-in call, and review and referral asks go out
under the one budget."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from regulars_events.catalogue import (
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    RecoveryCaseSlaAtRisk,
    ReferralRequested,
    ReviewRequested,
    StaffPraised,
)
from regulars_runtime import timers
from regulars_runtime.bus import Received
from regulars_runtime.clock import Clock
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy, StaffMember, parse_duration

from ..domain.follow_up import FollowUpTask
from ..domain.messages import OutboundMessage
from .base import Deps, FollowUpUnitOfWork
from .lifecycle import withdraw_at_risk_calls
from .outreach import request_message, wake_at

RECOVERY_CHECK_IN = "followup.recovery_check_in"


def staff_member(policy: Policy, ref: str | None) -> StaffMember | None:
    """The staff member an event names, by id or by name (shop systems send either)."""
    if not ref:
        return None
    found = policy.staff_member(ref)
    if found is not None:
        return found
    lowered = ref.strip().lower()
    return next((m for m in policy.staff if m.name.lower() == lowered), None)


async def notify_staff(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    shop_id: uuid.UUID,
    ref: str | None,
    customer_id: str,
    purpose: str,
    summary: str,
) -> None:
    """An email to a staff member (not the customer): no consent or quiet hours apply."""
    _version, policy = await uow.policy(shop_id)
    member = staff_member(policy, ref)
    message = OutboundMessage.to_staff_member(
        id=uuid.uuid4(),
        shop_id=shop_id,
        customer_id=customer_id,
        purpose=f"{purpose}:{member.id if member else ref}",
        staff=member.id if member else ref,
        staff_name=member.name if member else (ref or ""),
        has_email=bool(member and member.email),
        summary=summary,
        now=clock(),
    )
    if await uow.messages.add(message) and message.send_at is not None:
        await wake_at(uow, message)


def _local(at: datetime, policy: Policy) -> str:
    return f"{at.astimezone(ZoneInfo(policy.timezone)):%a %d %b %H:%M}"


async def on_case_opened(
    message: Received[RecoveryCaseOpened], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    await uow.cases.open(shop_id, event.customer_id, event.case_id, envelope.time)
    await withdraw_at_risk_calls(uow, shop_id, event.customer_id, "recovery case opened")
    _v, policy = await uow.policy(shop_id)
    await notify_staff(
        uow,
        clock,
        shop_id,
        event.assignee,
        event.customer_id,
        f"case_opened:{event.case_id}",
        f"New {event.severity} recovery case for customer {event.customer_id}: "
        f"acknowledge by {_local(event.ack_due_at, policy)}",
    )


async def on_case_at_risk(
    message: Received[RecoveryCaseSlaAtRisk], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    _v, policy = await uow.policy(shop_id)
    await notify_staff(
        uow,
        clock,
        shop_id,
        event.assignee,
        event.customer_id,
        f"case_at_risk:{event.case_id}:{event.clock}:{event.due_at.isoformat()}",
        f"Recovery case for customer {event.customer_id} must be "
        f"{'acknowledged' if event.clock == 'acknowledge' else 'resolved'} by "
        f"{_local(event.due_at, policy)}",
    )


async def on_case_escalated(
    message: Received[RecoveryCaseEscalated], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    await notify_staff(
        uow,
        clock,
        uuid.UUID(envelope.shop_id),
        event.assignee,
        event.customer_id,
        f"case_escalated:{event.case_id}:{event.to_level}",
        f"Escalated to you: recovery case for customer {event.customer_id} "
        f"was not {'acknowledged' if event.clock == 'acknowledge' else 'resolved'}"
        f" in time by the {event.from_level.replace('_', ' ')}",
    )


async def on_case_resolved(
    message: Received[RecoveryCaseResolved], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    shop_id = uuid.UUID(envelope.shop_id)
    await uow.cases.close(shop_id, event.case_id)
    _v, policy = await uow.policy(shop_id)
    at = event.resolved_at + parse_duration(policy.recovery_check_in_after)
    repair_order = envelope.data.get("repair_order_id") or f"case:{event.case_id}"
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{RECOVERY_CHECK_IN}:{event.case_id}",
            kind=RECOVERY_CHECK_IN,
            shop_id=shop_id,
            fire_at=at,
            payload={
                "shop_id": str(shop_id),
                "case_id": event.case_id,
                "customer_id": event.customer_id,
                "repair_order_id": repair_order,
                "assignee": envelope.data.get("resolved_by"),
            },
        )
    )


async def on_check_in_timer(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """A week after resolution: a call to make sure the fix held."""
    payload, clock = timer.payload, deps.clock
    shop_id = uuid.UUID(payload["shop_id"])
    version, _policy = await uow.policy(shop_id)
    await uow.tasks.add(
        FollowUpTask.check_in(
            uuid.uuid4(),
            shop_id,
            payload["customer_id"],
            payload["repair_order_id"],
            payload.get("assignee"),
            clock(),
            version,
        )
    )


async def on_review_requested(
    message: Received[ReviewRequested], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    _v, policy = await uow.policy(shop_id)
    link = policy.contact.review_url
    await request_message(
        uow,
        clock,
        shop_id=shop_id,
        customer_id=event.customer_id,
        kind="review_request",
        purpose=f"review_request:{event.repair_order_id or event.survey_id or envelope.id}",
        channels=["email", "sms"],
        link=link,
        repair_order_id=event.repair_order_id,
        unavailable=None if link else "no review link: set contact.review_url in the policy",
    )


async def on_referral_requested(
    message: Received[ReferralRequested], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    await request_message(
        uow,
        clock,
        shop_id=uuid.UUID(envelope.shop_id),
        customer_id=event.customer_id,
        kind="referral_request",
        purpose=f"referral_request:{event.repair_order_id or event.survey_id or envelope.id}",
        channels=["email", "sms"],
        repair_order_id=event.repair_order_id,
    )


async def on_staff_praised(
    message: Received[StaffPraised], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    summary = f"A customer praised you: \u201c{event.text[:300]}\u201d"
    for ref in {event.staff_id or event.staff_name, event.manager} - {None}:
        await notify_staff(
            uow, clock, shop_id, ref, event.customer_id, f"praise:{envelope.id}", summary
        )
