"""The OutboundMessage: one message to a customer (or a staff member), from the moment it
is asked for until it is sent, failed or suppressed. Pure.

Its status moves ``scheduled``/``held`` -> ``due`` (the budget let it go) -> ``sending``
(a dispatcher claimed it) -> ``sent`` or ``failed``, or back to ``scheduled`` to retry a
transient failure; ``suppressed`` when the budget or consent says never. A sent text then
moves once more when the carrier reports on it (the SMS provider's status callback):
``delivered``, ``undelivered`` or ``failed``, and never back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from regulars_events.base import Event
from regulars_events.catalogue import MessageFailed, MessageSent, ReminderSent
from regulars_shop.policy import Policy

from .customers import Customer
from .outreach import KIND_PRIORITY, Decision, Priority
from .templates import render

#: tries of a transient failure before the message is failed for good
MAX_SEND_ATTEMPTS = 5

#: message kinds whose sending is also a loyalty "reminder sent" fact
REMINDER_KINDS = {
    "reminder": "maintenance_due",
    "birthday": "birthday",
    "thank_you": "thank_you",
    "win_back": "win_back",
}

#: an interrupted email is not sent again: SMTP has no idempotency token, and a second
#: copy in the customer's inbox is worse than a missing survey
INTERRUPTED_EMAIL = "interrupted while sending; not sent again so the customer never gets it twice"


class MessageStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    DUE = "due"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    #: the carrier's last word on a sent text (the provider's status callback)
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    #: kept for rows written by earlier versions; nothing moves a message there now
    CANCELLED = "cancelled"


#: the provider's final statuses for a text, as ours; its others (queued, sending, sent,
#: accepted...) say no more than "sent", which we knew when it took the message
CARRIER_OUTCOMES = {
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
}

#: where a message ends: nothing the provider says later moves it again (a late "sent"
#: after "delivered" is an old report overtaken, not news)
FINAL = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.SUPPRESSED,
        MessageStatus.CANCELLED,
    }
)


_BY_DECISION = {
    "send": MessageStatus.SCHEDULED,
    "hold": MessageStatus.HELD,
    "suppress": MessageStatus.SUPPRESSED,
}


@dataclass
class OutboundMessage:
    id: uuid.UUID
    shop_id: uuid.UUID
    customer_id: str
    purpose: str  # one message per customer and purpose, ever
    kind: str
    channel: str | None
    priority: int
    status: MessageStatus
    reason: str | None = None
    send_at: datetime | None = None
    link: str | None = None
    repair_order_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    to_staff: str | None = None
    attempts: int = 0
    sent_at: datetime | None = None
    provider_id: str | None = None

    @classmethod
    def ask(
        cls,
        *,
        id: uuid.UUID,
        shop_id: uuid.UUID,
        customer_id: str,
        kind: str,
        purpose: str,
        channel: str | None,
        decision: Decision,
        channels: list[str],
        unsubscribe_token: str,
        link: str | None = None,
        repair_order_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> OutboundMessage:
        """A message to a customer as the budget decided it (``decision.at``: when it may go)."""
        return cls(
            id=id,
            shop_id=shop_id,
            customer_id=customer_id,
            purpose=purpose,
            kind=kind,
            channel=channel,
            priority=int(KIND_PRIORITY.get(kind, Priority.MARKETING)),
            status=_BY_DECISION[decision.action],
            reason=decision.reason,
            send_at=decision.at,
            link=link,
            repair_order_id=repair_order_id,
            context={
                **(context or {}),
                "unsubscribe_token": unsubscribe_token,
                "channels": list(channels),
            },
        )

    @classmethod
    def to_staff_member(
        cls,
        *,
        id: uuid.UUID,
        shop_id: uuid.UUID,
        customer_id: str,
        purpose: str,
        staff: str | None,
        staff_name: str,
        has_email: bool,
        summary: str,
        now: datetime,
    ) -> OutboundMessage:
        """An email to staff about work: no consent or quiet hours apply; without an
        address in the policy it is suppressed, so the shop can see why it did not go."""
        reason = None if has_email else f"no email for staff {staff!r} in the policy"
        return cls(
            id=id,
            shop_id=shop_id,
            customer_id=customer_id,
            purpose=purpose,
            kind="staff_notification",
            channel="email",
            priority=int(Priority.SERVICE),
            status=MessageStatus.SUPPRESSED if reason else MessageStatus.SCHEDULED,
            reason=reason,
            send_at=None if reason else now,
            to_staff=staff,
            context={"summary": summary, "staff_name": staff_name},
        )

    @property
    def waiting(self) -> bool:
        """Not yet handed to a dispatcher: its moment may come."""
        return self.status in (MessageStatus.SCHEDULED, MessageStatus.HELD)

    @property
    def channels(self) -> list[str]:
        """The channels it may go by, best first (a hold may have moved it to another)."""
        return list(self.context.get("channels") or [self.channel])

    def release(self, now: datetime) -> None:
        """To the dispatcher as it is (staff messages: the customer's budget is not theirs)."""
        self.status, self.send_at = MessageStatus.DUE, now

    def decide(self, channel: str | None, decision: Decision, now: datetime) -> None:
        """The budget's decision taken again at the message's moment."""
        if decision.action == "suppress":
            self.status, self.reason = MessageStatus.SUPPRESSED, decision.reason
        elif decision.action == "hold":
            assert decision.at is not None
            self.status, self.reason = MessageStatus.HELD, decision.reason
            self.send_at, self.channel = decision.at, channel
        else:
            self.status, self.reason = MessageStatus.DUE, None
            self.send_at, self.channel = now, channel

    def delivered(self, now: datetime, provider_id: str | None) -> list[Event]:
        self.status, self.sent_at, self.provider_id, self.reason = (
            MessageStatus.SENT,
            now,
            provider_id,
            None,
        )
        assert self.channel is not None
        events: list[Event] = [
            MessageSent(
                message_id=str(self.id),
                customer_id=self.customer_id,
                channel=self.channel,
                kind=self.kind,
                purpose=self.purpose,
                repair_order_id=self.repair_order_id,
                sent_at=now,
            )
        ]
        if self.kind in REMINDER_KINDS:
            events.append(
                ReminderSent(
                    message_id=str(self.id),
                    customer_id=self.customer_id,
                    kind=REMINDER_KINDS[self.kind],
                    channel=self.channel,
                    sent_at=now,
                )
            )
        early = self.context.pop("carrier_report", None)
        if isinstance(early, dict):
            # The carrier answered before our record of the hand-over was saved.
            events += self.carrier_report(str(early.get("status")), early.get("error_code"), now)
        return events

    def carrier_report(
        self, provider_status: str, error_code: int | None, now: datetime
    ) -> list[Event]:
        """The provider's status callback for this text: delivered, undelivered or failed
        moves it (once; never backwards); any other status changes nothing.

        A carrier failure after the provider took the text is a MessageFailed too: the
        customer did not get it, whatever MessageSent said at hand-over.
        """
        outcome = CARRIER_OUTCOMES.get(provider_status)
        if outcome is None or self.channel != "sms" or self.status in FINAL:
            return []
        if self.status is MessageStatus.SENDING:
            # Our own "sent" is still being recorded (the callback can overtake it): kept
            # for :meth:`delivered` to apply once it is.
            self.context["carrier_report"] = {"status": provider_status, "error_code": error_code}
            return []
        if self.status is not MessageStatus.SENT:
            return []
        self.status = outcome
        if outcome is MessageStatus.DELIVERED:
            self.reason = None
            return []
        error = f"the carrier reported the text {provider_status}"
        if error_code:
            error += f" (provider error {error_code})"
        self.reason = error
        return [
            MessageFailed(
                message_id=str(self.id),
                customer_id=self.customer_id,
                channel=self.channel,
                kind=self.kind,
                purpose=self.purpose,
                error=error,
                repair_order_id=self.repair_order_id,
                failed_at=now,
            )
        ]

    def not_delivered(self, now: datetime, error: str, *, permanent: bool) -> list[Event]:
        """A transient failure is tried again with backoff (``send_at``, status scheduled)
        until its tries run out; a permanent one fails the message at once."""
        if not permanent and self.attempts < MAX_SEND_ATTEMPTS:
            self.status = MessageStatus.SCHEDULED
            self.send_at = now + timedelta(seconds=30 * 2**self.attempts)
            self.reason = f"retrying: {error}"[:500]
            return []
        self.status, self.reason = MessageStatus.FAILED, error[:500]
        assert self.channel is not None
        return [
            MessageFailed(
                message_id=str(self.id),
                customer_id=self.customer_id,
                channel=self.channel,
                kind=self.kind,
                purpose=self.purpose,
                error=error[:2000] or "failed",
                repair_order_id=self.repair_order_id,
                failed_at=now,
            )
        ]

    def interrupted(self, now: datetime) -> list[Event]:
        """Found 'sending' long after its claim: the dispatcher died mid-send. An SMS goes
        again (the gateway drops a copy with the same idempotency key); an email fails."""
        if self.channel == "sms":
            self.status = MessageStatus.DUE
            return []
        return self.not_delivered(now, INTERRUPTED_EMAIL, permanent=True)

    @property
    def idempotency_key(self) -> str:
        return f"{self.shop_id}:{self.customer_id}:{self.purpose}"


class Undeliverable(Exception):
    """What a message needs to be sent is missing: it fails, and is not retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Outgoing:
    """A message as its channel takes it: the address and the rendered words."""

    channel: str
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def compose(
    message: OutboundMessage, customer: Customer | None, policy: Policy | None, public_url: str
) -> Outgoing:
    """The message in its channel's words, for its recipient (raises :class:`Undeliverable`)."""
    if customer is None or policy is None:
        raise Undeliverable("customer or shop unknown")
    contact = policy.contact
    if message.to_staff:
        member = policy.staff_member(message.to_staff)
        if member is None or not member.email:
            raise Undeliverable(f"no email for staff {message.to_staff!r} in the policy")
        rendered = render(
            "staff_notification",
            "email",
            {**message.context, "shop_name": contact.name or "the shop"},
        )
        return Outgoing(
            "email", member.email, rendered.text, rendered.subject or "Regulars", rendered.html
        )
    unsubscribe = f"{public_url.rstrip('/')}/u/{message.context.get('unsubscribe_token', '')}"
    context = {
        **message.context,
        "customer_name": customer.name,
        "shop_name": contact.name or "your service shop",
        "shop_phone": contact.phone,
        "shop_address": contact.postal_address,
        "link": message.link,
        "unsubscribe_url": unsubscribe,
    }
    assert message.channel is not None
    rendered = render(message.kind, message.channel, context)
    if message.channel == "sms":
        return Outgoing("sms", customer.phone or "", rendered.text)
    return Outgoing(
        "email",
        customer.email or "",
        rendered.text,
        rendered.subject or contact.name or "Your visit",
        rendered.html,
        {"List-Unsubscribe-URL": unsubscribe},
    )
