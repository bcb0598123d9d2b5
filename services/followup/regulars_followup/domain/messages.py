"""The OutboundMessage: one message to a customer (or a staff member), from the moment it
is asked for until it is sent, failed or suppressed. Pure.

Its status moves ``scheduled``/``held`` -> ``due`` (the budget let it go) -> ``sending``
(a dispatcher claimed and leased it) -> ``sent`` or ``failed``, or back to ``scheduled``
to retry a transient failure; ``suppressed`` when the budget or consent says never. An
interrupted ``sending`` goes back to ``due`` only when nothing can have reached the
customer (an email before DATA, a text the provider does not list). A sent text then
moves once more when the carrier reports on it (the SMS provider's status callback):
``delivered``, ``undelivered`` or ``failed``, and never back.
"""

from __future__ import annotations

import hashlib
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

#: an email whose sender died or heard nothing after DATA began is not sent again: SMTP
#: has no idempotency token, and a second copy in the customer's inbox is worse than a
#: missing survey
INTERRUPTED_EMAIL = (
    "not confirmed: interrupted after the SMTP server began taking it; not sent again so"
    " the customer never gets it twice"
)
#: a text whose send was not answered, kept 'sending' until the provider is asked
UNCONFIRMED_TEXT = "not confirmed by the SMS provider; looked up there once the request is over"


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
    #: the in-flight attempt's lease, as the database keeps it: which dispatcher holds
    #: it and since when (the repository renews and ends it, in database time)
    lease_owner: str | None = None
    claimed_at: datetime | None = None
    #: an email's sender began DATA in this attempt: the server may have it
    data_started_at: datetime | None = None

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
        self.context.pop("provider_sid", None)
        self.context.pop("outgoing", None)
        early = self.context.pop("carrier_report", None)
        if isinstance(early, dict):
            # The carrier answered before our record of the hand-over was saved.
            events += self.carrier_report(str(early.get("status")), early.get("error_code"), now)
        return events

    def carrier_report(
        self,
        provider_status: str,
        error_code: int | None,
        now: datetime,
        sid: str | None = None,
    ) -> list[Event]:
        """The provider's status callback for this text: delivered, undelivered or failed
        moves it (once; never backwards); any other status changes nothing.

        A carrier failure after the provider took the text is a MessageFailed too: the
        customer did not get it, whatever MessageSent said at hand-over.

        While it is 'sending', any callback is the provider's word that the text exists
        (its ``sid``): kept, so a sender that died before recording it is settled by it.
        """
        outcome = CARRIER_OUTCOMES.get(provider_status)
        if self.channel != "sms" or self.status in FINAL:
            return []
        if self.status is MessageStatus.SENDING:
            if sid:
                self.context["provider_sid"] = sid
            if outcome is not None:
                # Our own "sent" is still being recorded (the callback can overtake it):
                # kept for :meth:`delivered` to apply once it is.
                self.context["carrier_report"] = {
                    "status": provider_status,
                    "error_code": error_code,
                }
            return []
        if outcome is None:
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

    def claimed(self, outgoing: Outgoing) -> None:
        """Taken by a dispatcher to send as ``outgoing``: one more attempt. A text's
        address and the digest of its words are kept, to find it at the provider if its
        sender dies (the customer's name or the shop's words may change meanwhile)."""
        self.status, self.attempts = MessageStatus.SENDING, self.attempts + 1
        self.context.pop("provider_sid", None)
        if outgoing.channel == "sms":
            self.context["outgoing"] = {"to": outgoing.to, "sha256": text_digest(outgoing.text)}

    @property
    def sent_text(self) -> tuple[str, str] | None:
        """The address and the body's digest of the text in flight, when known."""
        kept = self.context.get("outgoing")
        if self.channel != "sms" or not isinstance(kept, dict):
            return None
        to, digest = kept.get("to"), kept.get("sha256")
        return (to, digest) if isinstance(to, str) and isinstance(digest, str) else None

    @property
    def needs_provider_lookup(self) -> bool:
        """Interrupted, this text may or may not be at the provider: only asking it tells."""
        return self.channel == "sms" and not self.context.get("provider_sid")

    def interrupted(self, now: datetime) -> list[Event]:
        """Found 'sending' with its lease expired in database time: its sender died, or
        heard nothing from the provider. An email whose DATA never began goes again (no
        server has it); one whose DATA began is failed as not confirmed, never re-sent.
        A text the provider's status callback named is sent; any other text is for
        :meth:`looked_up` once the provider has been asked."""
        if self.channel == "sms":
            sid = self.context.get("provider_sid")
            assert isinstance(sid, str), "a text with nothing known is looked up first"
            return self.delivered(now, sid)
        if self.data_started_at is not None:
            return self.not_delivered(now, INTERRUPTED_EMAIL, permanent=True)
        self.status, self.reason = MessageStatus.DUE, "interrupted before the SMTP server had it"
        return []

    def looked_up(self, now: datetime, sid: str | None) -> list[Event]:
        """What the provider holds of an interrupted text: found, it was sent (with the
        provider's sid); not found, it never left, and it goes again. A status callback
        that named it meanwhile is the provider's word too, whatever its list said."""
        named = self.context.get("provider_sid")
        sid = sid or (named if isinstance(named, str) else None)
        if sid is not None:
            return self.delivered(now, sid)
        self.status, self.reason = MessageStatus.DUE, "not at the SMS provider: sent again"
        self.context.pop("outgoing", None)
        return []

    def unconfirmed(self, now: datetime, error: str) -> list[Event]:
        """The provider or the SMTP server may have it and did not say. A text stays
        'sending' to be looked up at the provider; an email fails as not confirmed."""
        if self.channel == "sms":
            self.reason = f"{UNCONFIRMED_TEXT} ({error})"[:500]
            return []
        return self.not_delivered(now, f"{INTERRUPTED_EMAIL} ({error})", permanent=True)


def text_digest(body: str) -> str:
    """How a text's words are kept while it is in flight: their SHA-256."""
    return hashlib.sha256(body.encode()).hexdigest()


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
