"""Customers, consent and outbound messages: every write of them happens here.

A message is asked for with a purpose (its idempotency key: one message per customer and
purpose, ever). The budget decides at once whether it is sent, held (quiet hours, the
marketing interval) or suppressed (consent, an open case), and a durable timer brings a
held one back when the hold lifts, when the decision is taken again with what is true
then. A due message goes to the dispatcher, which sends it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from regulars_bus.consumer import RetryLater
from regulars_events.catalogue import (
    ConsentChanged,
    CustomerReplied,
    CustomerUpserted,
    MessageFailed,
    MessageSent,
    ReminderSent,
    SurveyRequested,
)
from regulars_runtime import timers
from regulars_runtime.bus import Received
from regulars_runtime.clock import Clock
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy, parse_duration

from ..domain.consent import ConsentChange, from_customer_record, from_reply
from ..domain.outreach import (
    KIND_PRIORITY,
    Budget,
    Decision,
    Priority,
    Recipient,
    ShopRules,
    decide,
)
from ..domain.templates import ALWAYS_COMMERCIAL
from .base import Deps, FollowUpUnitOfWork, shop_policy

MESSAGE_DUE = "message.due"
DISPATCH_CHANNEL = "regulars_messages_due"


async def on_customer_upserted(
    message: Received[CustomerUpserted], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    shop_id = uuid.UUID(envelope.shop_id)
    data = event.model_dump(mode="json")
    await uow.repo.upsert_customer(shop_id, data)
    customer = await uow.repo.customer(shop_id, event.customer_id)
    assert customer is not None
    for change in from_customer_record(data.get("consent"), customer["consent"]):
        await uow.repo.record_consent(
            shop_id, event.customer_id, change, envelope.id, envelope.time
        )


async def on_consent_changed(
    message: Received[ConsentChanged], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    shop_id = uuid.UUID(envelope.shop_id)
    if await uow.repo.customer(shop_id, event.customer_id) is None:
        raise RetryLater(f"customer {event.customer_id} not known yet")
    change = ConsentChange(event.channel, event.granted, "consent.changed")
    await uow.repo.record_consent(shop_id, event.customer_id, change, envelope.id, envelope.time)


async def on_customer_replied(
    message: Received[CustomerReplied], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """STOP and its plain-word forms revoke at once; START restores; HELP gets the contact.

    Anything else is feedback's to classify (a complaint opens a case) and stays on the
    customer's timeline; nothing here acts on it.
    """
    event, envelope, clock = message.event, message.envelope, deps.clock
    shop_id = uuid.UUID(envelope.shop_id)
    customer = await uow.repo.customer(shop_id, event.customer_id)
    if customer is None:
        raise RetryLater(f"customer {event.customer_id} not known yet")
    meaning = from_reply(
        event.text, event.channel, after_confirmation=bool(customer["awaiting_opt_out_answer"])
    )
    now = clock()
    for change in meaning.changes:
        await uow.repo.record_consent(shop_id, event.customer_id, change, envelope.id, now)
    if event.channel != "sms":
        return
    if meaning.kind == "opt_out":
        await request_message(
            uow,
            clock,
            shop_id=shop_id,
            customer_id=event.customer_id,
            kind="opt_out_confirmation",
            purpose=f"opt_out_confirmation:{envelope.id}",
            channels=["sms"],
        )
    elif meaning.kind == "help":
        await request_message(
            uow,
            clock,
            shop_id=shop_id,
            customer_id=event.customer_id,
            kind="help",
            purpose=f"help:{envelope.id}",
            channels=["sms"],
        )


async def on_survey_requested(
    message: Received[SurveyRequested], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """feedback made a survey: send its link by text or email, as consent and budget allow."""
    event, envelope, clock = message.event, message.envelope, deps.clock
    if not event.survey_url:
        return  # nothing a customer could open yet
    channels = [event.channel] if event.channel else ["sms", "email"]
    await request_message(
        uow,
        clock,
        shop_id=uuid.UUID(envelope.shop_id),
        customer_id=event.customer_id,
        kind="survey",
        purpose=f"survey:{event.survey_id or envelope.id}",
        channels=channels,
        link=event.survey_url,
        repair_order_id=event.repair_order_id,
    )


def _recipient(customer: Any, policy: Policy) -> Recipient:
    try:
        zone = ZoneInfo(customer["timezone"] or policy.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo(policy.timezone)
    return Recipient(
        customer["state"],
        zone,
        customer["phone"],
        customer["email"],
        dict(customer["consent"] or {}),
    )


def _shop_rules(policy: Policy) -> ShopRules:
    on = frozenset(c for c in ("sms", "email") if policy.channel_enabled(c))
    return ShopRules(
        on,
        parse_duration(policy.marketing_min_interval),
        frozenset(policy.holidays),
        policy.quiet_hours.apply_state_rules_to_all,
    )


async def _budget(
    uow: FollowUpUnitOfWork, shop_id: uuid.UUID, customer: Any, policy: Policy, now: datetime
) -> Budget:
    facts = await uow.repo.budget_facts(shop_id, customer["customer_id"], now - timedelta(hours=24))
    visit = await uow.repo.last_visit(shop_id, customer["customer_id"])
    comeback = bool(
        visit is not None
        and visit["data"].get("comeback")
        and now - visit["completed_at"] <= parse_duration(policy.comeback_window)
    )
    return Budget(
        facts["last_marketing_at"],
        int(facts["sms_last_24h"]),
        bool(facts["open_case"]),
        comeback,
        customer["sms_opted_out_at"],
    )


def _decide(
    kind: str,
    channel: str,
    now: datetime,
    who: Recipient,
    rules: ShopRules,
    budget: Budget,
    policy: Policy,
) -> Decision:
    if channel == "email" and kind in ALWAYS_COMMERCIAL and not policy.contact.postal_address:
        # CAN-SPAM: commercial email must carry the shop's postal address.
        return Decision("suppress", "commercial email needs contact.postal_address in the policy")
    return decide(kind, channel, now, who, rules, budget)  # type: ignore[arg-type]


def _choose(decisions: Sequence[tuple[str, Decision]]) -> tuple[str | None, Decision]:
    """The first channel that can send now; else the one whose hold lifts first; else why not."""
    sendable = [(c, d) for c, d in decisions if d.action == "send"]
    if sendable:
        return sendable[0]
    held = sorted(
        ((c, d) for c, d in decisions if d.action == "hold"),
        key=lambda cd: cd[1].at or datetime.max,
    )
    if held:
        return held[0]
    reasons = "; ".join(f"{c}: {d.reason}" for c, d in decisions)
    return None, Decision("suppress", reasons or "no channel")


async def request_message(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    kind: str,
    purpose: str,
    channels: Sequence[str],
    link: str | None = None,
    repair_order_id: str | None = None,
    context: dict[str, Any] | None = None,
    unavailable: str | None = None,
) -> uuid.UUID | None:
    """Ask for one message; None when this purpose already had its message.

    ``unavailable`` records the message as suppressed with that reason (something it
    needs is missing), so staff can see why it did not go.
    """
    _version, policy = await shop_policy(uow, shop_id)
    customer = await uow.repo.customer(shop_id, customer_id)
    if customer is None:
        raise RetryLater(f"customer {customer_id} not known yet")
    now = clock()
    who, rules = _recipient(customer, policy), _shop_rules(policy)
    budget = await _budget(uow, shop_id, customer, policy, now)
    channel, decision = _choose(
        [(c, _decide(kind, c, now, who, rules, budget, policy)) for c in channels]
    )
    if unavailable is not None:
        channel, decision = None, Decision("suppress", unavailable)
    message_id = uuid.uuid4()
    status = {"send": "scheduled", "hold": "held", "suppress": "suppressed"}[decision.action]
    added = await uow.repo.add_message(
        {
            "id": message_id,
            "shop_id": shop_id,
            "customer_id": customer_id,
            "purpose": purpose,
            "kind": kind,
            "channel": channel,
            "priority": int(KIND_PRIORITY.get(kind, Priority.MARKETING)),
            "status": status,
            "reason": decision.reason,
            "send_at": decision.at,
            "link": link,
            "repair_order_id": repair_order_id,
            "context": {
                **(context or {}),
                "unsubscribe_token": secrets.token_urlsafe(24),
                "channels": list(channels),
            },
        }
    )
    if not added:
        return None
    if decision.at is not None:
        await _wake_at(uow, shop_id, message_id, decision.at)
    return message_id


async def _wake_at(
    uow: FollowUpUnitOfWork, shop_id: uuid.UUID, message_id: uuid.UUID, at: datetime
) -> None:
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{MESSAGE_DUE}:{message_id}:{at.isoformat()}",
            kind=MESSAGE_DUE,
            shop_id=shop_id,
            fire_at=at,
            payload={"message_id": str(message_id)},
        )
    )


async def on_message_due(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """A message's moment came: decide again with what is true now (consent may have
    changed, a case may have opened), then hand it to the dispatcher or hold it again."""
    payload, clock = timer.payload, deps.clock
    message = await uow.repo.message(uuid.UUID(payload["message_id"]))
    if message is None or message["status"] not in ("scheduled", "held"):
        return
    shop_id = message["shop_id"]
    if message["to_staff"]:
        # To staff, about work: the customer's consent and quiet hours do not apply.
        await uow.repo.set_message(message["id"], status="due", send_at=clock())
        await uow.repo.notify(DISPATCH_CHANNEL)
        return
    _version, policy = await shop_policy(uow, shop_id)
    customer = await uow.repo.customer(shop_id, message["customer_id"])
    assert customer is not None
    now = clock()
    who, rules = _recipient(customer, policy), _shop_rules(policy)
    budget = await _budget(uow, shop_id, customer, policy, now)
    channels = message["context"].get("channels") or [message["channel"]]
    channel, decision = _choose(
        [(c, _decide(message["kind"], c, now, who, rules, budget, policy)) for c in channels]
    )
    if decision.action == "suppress":
        await uow.repo.set_message(message["id"], status="suppressed", reason=decision.reason)
    elif decision.action == "hold":
        assert decision.at is not None
        await uow.repo.set_message(
            message["id"],
            status="held",
            reason=decision.reason,
            send_at=decision.at,
            channel=channel,
        )
        await _wake_at(uow, shop_id, message["id"], decision.at)
    else:
        await uow.repo.set_message(
            message["id"], status="due", reason=None, send_at=now, channel=channel
        )
        await uow.repo.notify(DISPATCH_CHANNEL)


REMINDER_KINDS = {
    "reminder": "maintenance_due",
    "birthday": "birthday",
    "thank_you": "thank_you",
    "win_back": "win_back",
}


async def record_delivery(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    message: Any,
    *,
    provider_id: str | None = None,
    error: str | None = None,
    permanent: bool = True,
) -> None:
    """What came of handing a message to its channel: sent, failed, or due again later."""
    now = clock()
    ids = {
        "message_id": str(message["id"]),
        "customer_id": message["customer_id"],
        "channel": message["channel"],
        "kind": message["kind"],
    }
    if error is None:
        await uow.repo.set_message(
            message["id"], status="sent", sent_at=now, provider_id=provider_id, reason=None
        )
        uow.emit(
            MessageSent(
                **ids,
                purpose=message["purpose"],
                repair_order_id=message["repair_order_id"],
                sent_at=now,
            ),
            shop_id=message["shop_id"],
        )
        if message["kind"] in REMINDER_KINDS:
            uow.emit(
                ReminderSent(
                    message_id=ids["message_id"],
                    customer_id=ids["customer_id"],
                    kind=REMINDER_KINDS[message["kind"]],
                    channel=ids["channel"],
                    sent_at=now,
                ),
                shop_id=message["shop_id"],
            )
        return
    if not permanent and message["attempts"] < MAX_SEND_ATTEMPTS:
        retry_at = now + timedelta(seconds=30 * 2 ** message["attempts"])
        await uow.repo.set_message(
            message["id"], status="scheduled", send_at=retry_at, reason=f"retrying: {error}"[:500]
        )
        await _wake_at(uow, message["shop_id"], message["id"], retry_at)
        return
    await uow.repo.set_message(message["id"], status="failed", reason=error[:500])
    uow.emit(
        MessageFailed(
            **ids,
            purpose=message["purpose"],
            error=error[:2000] or "failed",
            repair_order_id=message["repair_order_id"],
            failed_at=now,
        ),
        shop_id=message["shop_id"],
    )


MAX_SEND_ATTEMPTS = 5


async def unsubscribe(uow: FollowUpUnitOfWork, clock: Clock, token: str) -> str | None:
    """The email's unsubscribe link (or RFC 8058 one-click POST): email stops at once.

    Returns the shop's name for the confirmation page, or None for an unknown link.
    """
    message = await uow.repo.message_by_unsubscribe_token(token)
    if message is None:
        return None
    shop_id, customer_id = message["shop_id"], message["customer_id"]
    customer = await uow.repo.customer(shop_id, customer_id)
    if customer is not None and (customer["consent"] or {}).get("email") is not False:
        change = ConsentChange("email", False, "unsubscribe_link", f"message {message['id']}")
        await uow.repo.record_consent(shop_id, customer_id, change, None, clock())
    known = await shop_policy(uow, shop_id)
    return known[1].contact.name or "the shop"
