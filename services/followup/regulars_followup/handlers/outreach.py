"""Customers, consent and outbound messages: every write of them happens here.

A message is asked for with a purpose (its idempotency key: one message per customer and
purpose, ever). The budget decides at once whether it is sent, held (quiet hours, the
marketing interval) or suppressed (consent, an open case), and a durable timer brings a
held one back when the hold lifts, when the decision is taken again with what is true
then. A due message goes to a dispatcher, which claims it, sends it and reports back
(the commands at the end of this file).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from regulars_events.catalogue import (
    ConsentChanged,
    CustomerReplied,
    CustomerUpserted,
    SurveyRequested,
)
from regulars_runtime import timers
from regulars_runtime.bus import Command, Received
from regulars_runtime.clock import Clock
from regulars_runtime.timers import Timer
from regulars_runtime.unit_of_work import Waiting
from regulars_shop.policy import Policy
from regulars_shop.survey_links import survey_link, survey_token

from ..domain.consent import (
    ConsentChange,
    from_carrier_refusal,
    from_customer_record,
    from_reply,
)
from ..domain.customers import Customer
from ..domain.messages import (
    MessageStatus,
    OutboundMessage,
    Outgoing,
    Undeliverable,
    compose,
    text_digest,
)
from ..domain.outreach import Decision, answered_by_provider, best_channel, budget_since
from .base import Deps, FollowUpUnitOfWork

MESSAGE_DUE = "message.due"

log = logging.getLogger(__name__)


async def on_customer_upserted(
    message: Received[CustomerUpserted], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    shop_id = message.shop_id
    data = event.model_dump(mode="json")
    await uow.customers.upsert(shop_id, data)
    customer = await uow.customers.get(shop_id, event.customer_id)
    assert customer is not None
    for change in from_customer_record(data.get("consent"), customer.consent):
        await uow.customers.record_consent(
            shop_id, event.customer_id, change, envelope.id, envelope.time
        )


async def known_customer(uow: FollowUpUnitOfWork, shop_id: uuid.UUID, customer_id: str) -> Customer:
    customer = await uow.customers.get(shop_id, customer_id)
    if customer is None:
        # The customer's record travels on its own topic: wait for it.
        raise Waiting(f"customer {customer_id} not known yet")
    return customer


async def on_consent_changed(
    message: Received[ConsentChanged], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    event, envelope = message.event, message.envelope
    await known_customer(uow, message.shop_id, event.customer_id)
    change = ConsentChange(event.channel, event.granted, "consent.changed")
    await uow.customers.record_consent(
        message.shop_id, event.customer_id, change, envelope.id, envelope.time
    )


async def on_customer_replied(
    message: Received[CustomerReplied], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """A reply the shop's system relayed (or our own SMS hook emitted, which applied it
    already and marked it applied here)."""
    event, envelope = message.event, message.envelope
    await apply_reply(
        uow,
        deps.clock,
        shop_id=message.shop_id,
        customer_id=event.customer_id,
        channel=event.channel,
        text=event.text,
        event_id=envelope.id,
    )


async def apply_reply(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    channel: str,
    text: str,
    event_id: uuid.UUID,
    provider_answered: bool = False,
) -> None:
    """STOP and its plain-word forms revoke at once; START restores; HELP gets the contact.

    ``provider_answered``: the text reached our SMS provider, whose own keyword handling
    answers STOP and HELP; our answer to those keywords is then kept as suppressed, with why.
    Anything else is feedback's to classify (a complaint opens a case) and stays on the
    customer's timeline; nothing here acts on it.
    """
    customer = await known_customer(uow, shop_id, customer_id)
    meaning = from_reply(text, channel, after_confirmation=customer.awaiting_opt_out_answer)
    now = clock()
    for change in meaning.changes:
        await uow.customers.record_consent(shop_id, customer_id, change, event_id, now)
    if channel != "sms" or meaning.kind not in ("opt_out", "help"):
        return
    kind = "opt_out_confirmation" if meaning.kind == "opt_out" else "help"
    await request_message(
        uow,
        clock,
        shop_id=shop_id,
        customer_id=customer_id,
        kind=kind,
        purpose=f"{kind}:{event_id}",
        channels=["sms"],
        unavailable=answered_by_provider(kind, text) if provider_answered else None,
    )


async def on_survey_requested(
    message: Received[SurveyRequested], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """feedback made a survey: send its link by text or email, as consent and budget allow."""
    event, envelope, clock = message.event, message.envelope, deps.clock
    link = survey_link_of(event, message.shop_id, deps.survey_key)
    if link is None:
        return  # nothing a customer could open yet
    channels = [event.channel] if event.channel else ["sms", "email"]
    await request_message(
        uow,
        clock,
        shop_id=message.shop_id,
        customer_id=event.customer_id,
        kind="survey",
        purpose=f"survey:{event.survey_id or envelope.id}",
        channels=channels,
        link=link,
        repair_order_id=event.repair_order_id,
    )


def survey_link_of(event: SurveyRequested, shop_id: uuid.UUID, key: bytes | None) -> str | None:
    """The link the customer gets: made here from the survey's id (the event carries no
    token), or an older event's whole link."""
    if event.survey_page and event.survey_id and key is not None:
        return survey_link(event.survey_page, survey_token(key, shop_id, event.survey_id))
    return event.survey_url or None


async def _decide_again(
    uow: FollowUpUnitOfWork,
    message: OutboundMessage,
    customer: Customer,
    policy: Policy,
    now: datetime,
) -> None:
    """The budget's decision for an existing message, at its moment or as it is sent."""
    channel, decision = await _best_channel(
        uow,
        message.kind,
        message.channels,
        customer,
        message.shop_id,
        policy,
        now,
        deciding=message.id,
    )
    message.decide(channel, decision, now)


async def _best_channel(
    uow: FollowUpUnitOfWork,
    kind: str,
    channels: Sequence[str],
    customer: Customer,
    shop_id: uuid.UUID,
    policy: Policy,
    now: datetime,
    *,
    deciding: uuid.UUID | None,
) -> tuple[str | None, Decision]:
    """The budget's decision for a message of ``kind``. ``deciding`` is the message when
    it exists and is decided again (at its moment, or as it is sent): it must not count
    against itself, nor yield to messages decided after it. None for a new one.

    ``customer`` was loaded locked (``customers.get``): whoever else decides for this
    customer, on any replica, waits for this transaction, then counts what it decided.
    Each message yields to those decided before it, never to later ones, so two held
    messages cannot keep pushing each other back.
    """
    facts = await uow.messages.budget_facts(
        shop_id, customer.customer_id, budget_since(policy, now), decided_before=deciding
    )
    return best_channel(kind, channels, now, customer, policy, facts)


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
    _version, policy = await uow.policy(shop_id)
    customer = await known_customer(uow, shop_id, customer_id)
    now = clock()
    channel, decision = await _best_channel(
        uow, kind, channels, customer, shop_id, policy, now, deciding=None
    )
    if unavailable is not None:
        channel, decision = None, Decision("suppress", unavailable)
    message = OutboundMessage.ask(
        id=uuid.uuid4(),
        shop_id=shop_id,
        customer_id=customer_id,
        kind=kind,
        purpose=purpose,
        channel=channel,
        decision=decision,
        channels=list(channels),
        unsubscribe_token=secrets.token_urlsafe(24),
        link=link,
        repair_order_id=repair_order_id,
        context=context,
    )
    if not await uow.messages.add(message):
        return None
    if message.send_at is not None:
        await wake_at(uow, message)
    return message.id


async def wake_at(uow: FollowUpUnitOfWork, message: OutboundMessage) -> None:
    """Bring ``message`` back at its ``send_at``, to decide again then."""
    assert message.send_at is not None
    at = message.send_at
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{MESSAGE_DUE}:{message.id}:{at.isoformat()}",
            kind=MESSAGE_DUE,
            shop_id=message.shop_id,
            fire_at=at,
            payload={"message_id": str(message.id)},
        )
    )


async def on_message_due(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """A message's moment came: decide again with what is true now (consent may have
    changed, a case may have opened), then hand it to the dispatcher or hold it again."""
    clock = deps.clock
    message = await uow.messages.get(uuid.UUID(timer.payload["message_id"]))
    if message is None or not message.waiting:
        return
    if message.to_staff:
        # To staff, about work: the customer's consent and quiet hours do not apply.
        message.release(clock())
    else:
        _version, policy = await uow.policy(message.shop_id)
        customer = await uow.customers.get(message.shop_id, message.customer_id)
        assert customer is not None
        await _decide_again(uow, message, customer, policy, clock())
    await uow.messages.save(message)
    if message.status is MessageStatus.HELD:
        await wake_at(uow, message)
    elif message.status is MessageStatus.DUE:
        await uow.messages.wake_dispatcher()


@dataclass(frozen=True)
class Unsubscribe(Command[str | None]):
    """The email's unsubscribe link (or RFC 8058 one-click POST) was followed."""

    token: str


async def unsubscribe(command: Unsubscribe, uow: FollowUpUnitOfWork, deps: Deps) -> str | None:
    """Email stops at once. The shop's name for the confirmation page, or None for a link
    this service never gave out."""
    message = await uow.messages.by_unsubscribe_token(command.token)
    if message is None:
        return None
    shop_id, customer_id = message.shop_id, message.customer_id
    customer = await uow.customers.get(shop_id, customer_id)
    if customer is not None and customer.consents_to("email") is not False:
        change = ConsentChange("email", False, "unsubscribe_link", f"message {message.id}")
        await uow.customers.record_consent(shop_id, customer_id, change, None, deps.clock())
    known = await uow.policy(shop_id)
    return known[1].contact.name or "the shop"


# -- the dispatcher's commands: claim, renew, report, recover ------------------------

#: how long a dispatcher holds a message it sends, in database time, unless it renews
#: the lease: well over the senders' own deadlines (the dispatcher gives a send 20 s),
#: so an interrupted text is looked up at the provider only once its request is over
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Lease:
    """Who holds a message in flight: a dispatcher (its replica id) and the attempt it
    claimed. Every write about the send names it, and counts only while it still holds."""

    owner: str
    attempt: int


@dataclass(frozen=True)
class ClaimDueMessages(Command["list[Claimed]"]):
    """Take up to ``limit`` due messages to send, leased to ``owner`` (committed before
    anything leaves, so two dispatchers never send the same one). Consent, quiet hours
    and open cases are decided again here, at the moment of sending."""

    limit: int
    owner: str
    public_url: str
    lease_seconds: float = LEASE_SECONDS


@dataclass(frozen=True)
class Claimed:
    """A claimed message with what sending it needs: its words, and its lease."""

    message: OutboundMessage
    recipient: Customer | None
    policy: Policy | None
    outgoing: Outgoing
    lease: Lease


async def claim_due_messages(
    command: ClaimDueMessages, uow: FollowUpUnitOfWork, deps: Deps
) -> list[Claimed]:
    claimed = []
    due = await uow.messages.due(command.limit)
    # customers locked in one order by every replica's claim: two never wait on each other
    for message in sorted(due, key=lambda m: (str(m.shop_id), m.customer_id)):
        now = deps.clock()
        known = await uow.shops.policy(message.shop_id)
        policy = known.policy if known else None
        if message.to_staff:
            customer = await uow.customers.contact(message.shop_id, message.customer_id)
        else:
            # Locked: a consent change being recorded now is either seen here or waits.
            customer = await uow.customers.get(message.shop_id, message.customer_id)
            if customer is not None and policy is not None:
                await _decide_again(uow, message, customer, policy, now)
                if message.status is not MessageStatus.DUE:
                    # Consent revoked, quiet hours begun or a case opened since it was due.
                    await uow.messages.save(message)
                    if message.status is MessageStatus.HELD:
                        await wake_at(uow, message)
                    continue
        try:
            outgoing = compose(message, customer, policy, command.public_url)
        except Undeliverable as exc:
            await _fail(uow, message, exc.message, now)
            continue
        except Exception as exc:  # a template's or a rule's bug: this message's own error
            log.exception("message could not be composed", extra={"message_id": str(message.id)})
            await _fail(uow, message, f"{type(exc).__name__}: {exc}", now)
            continue
        message.claimed(outgoing)
        await uow.messages.save(message)
        await uow.messages.lease(message.id, command.owner, command.lease_seconds, new_attempt=True)
        lease = Lease(command.owner, message.attempts)
        claimed.append(Claimed(message, customer, policy, outgoing, lease))
    return claimed


async def _fail(
    uow: FollowUpUnitOfWork, message: OutboundMessage, error: str, now: datetime
) -> None:
    for event in message.not_delivered(now, error, permanent=True):
        uow.emit(event, shop_id=message.shop_id)
    await uow.messages.save(message)


def _holds(message: OutboundMessage | None, lease: Lease) -> bool:
    return (
        message is not None
        and message.status is MessageStatus.SENDING
        and message.lease_owner == lease.owner
        and message.attempts == lease.attempt
    )


@dataclass(frozen=True)
class RenewLease(Command[bool]):
    """The sender is alive and still sending: hold the message ``seconds`` more (database
    time). False: another dispatcher took it over, and this one must not go on."""

    message_id: uuid.UUID
    lease: Lease
    seconds: float = LEASE_SECONDS


async def renew_lease(command: RenewLease, uow: FollowUpUnitOfWork, deps: Deps) -> bool:
    lease = command.lease
    return await uow.messages.renew(command.message_id, lease.owner, lease.attempt, command.seconds)


@dataclass(frozen=True)
class MarkDataStarted(Command[bool]):
    """An email's sender is about to begin DATA: from now on the server may have it, so
    an interruption is never followed by a second copy. False: the lease is lost."""

    message_id: uuid.UUID
    lease: Lease


async def mark_data_started(command: MarkDataStarted, uow: FollowUpUnitOfWork, deps: Deps) -> bool:
    lease = command.lease
    return await uow.messages.data_started(command.message_id, lease.owner, lease.attempt)


@dataclass(frozen=True)
class RecordDelivery(Command[bool]):
    """What came of handing a claimed message to its channel; recorded only while
    ``lease`` still holds it (False otherwise: what the dispatcher that took it over
    records stands)."""

    message_id: uuid.UUID
    lease: Lease
    provider_id: str | None = None
    error: str | None = None
    permanent: bool = True
    #: the provider's own code for the failure (e.g. Twilio 21610: the number opted out)
    code: int | None = None
    #: the request went out and no answer came: the provider may have the message
    unconfirmed: bool = False
    #: an unconfirmed text is looked up at the provider this long after (database time)
    look_up_after: float = LEASE_SECONDS


async def record_delivery(command: RecordDelivery, uow: FollowUpUnitOfWork, deps: Deps) -> bool:
    """Sent, failed, due again later (a transient failure, with backoff), or, when not
    confirmed, left for recovery (a text) or failed as not confirmed (an email)."""
    message = await uow.messages.get(command.message_id)
    if message is None or not _holds(message, command.lease):
        return False
    now = deps.clock()
    if command.unconfirmed:
        events = message.unconfirmed(now, command.error or "no answer")
    elif command.error is None:
        events = message.delivered(now, command.provider_id)
    else:
        events = message.not_delivered(now, command.error, permanent=command.permanent)
    await uow.messages.save(message)
    for event in events:
        uow.emit(event, shop_id=message.shop_id)
    if message.status is MessageStatus.SENDING:  # a text to look up once its request is over
        await uow.messages.release(message.id, command.look_up_after)
    if message.status is MessageStatus.SCHEDULED:  # a transient failure, to retry
        await wake_at(uow, message)
    if command.error is not None and message.channel == "sms" and message.to_staff is None:
        customer = await uow.customers.get(message.shop_id, message.customer_id)
        change = from_carrier_refusal(command.code, customer.consent) if customer else None
        if change is not None:
            await uow.customers.record_consent(
                message.shop_id, message.customer_id, change, None, now
            )
    return True


@dataclass(frozen=True)
class RecoverInterruptedMessages(Command["list[ProviderLookup]"]):
    """Messages whose lease expired in database time: their dispatcher died, or heard
    nothing from the provider. Settled here when the answer is known (an email, a text
    the status callback named); a text otherwise is leased to ``owner`` to ask the
    provider (:class:`ProviderLookup`)."""

    owner: str
    public_url: str
    lease_seconds: float = LEASE_SECONDS
    limit: int = 50


@dataclass(frozen=True)
class ProviderLookup:
    """An interrupted text to look for at the provider: same number and words, created
    at or after its claim."""

    message_id: uuid.UUID
    lease: Lease
    to: str
    body_sha256: str
    since: datetime


async def recover_interrupted_messages(
    command: RecoverInterruptedMessages, uow: FollowUpUnitOfWork, deps: Deps
) -> list[ProviderLookup]:
    lookups = []
    for message in await uow.messages.interrupted(command.limit):
        now = deps.clock()
        if message.needs_provider_lookup:
            sent = message.sent_text or await _composed_text(uow, message, command.public_url)
            if sent is None:
                # Never re-sent blindly: the provider may have it and nothing can tell.
                await _fail(uow, message, UNKNOWN_TEXT, now)
                continue
            await uow.messages.lease(
                message.id, command.owner, command.lease_seconds, new_attempt=False
            )
            since = message.claimed_at or now - timedelta(days=1)
            lease = Lease(command.owner, message.attempts)
            lookups.append(ProviderLookup(message.id, lease, sent[0], sent[1], since))
            continue
        events = message.interrupted(now)
        await uow.messages.save(message)
        for event in events:
            uow.emit(event, shop_id=message.shop_id)
        if message.status is MessageStatus.DUE:
            await uow.messages.wake_dispatcher()
    return lookups


#: an interrupted text whose words cannot be known again (its customer or shop is gone)
UNKNOWN_TEXT = "interrupted while sending; not sent again: the provider may have it"


async def _composed_text(
    uow: FollowUpUnitOfWork, message: OutboundMessage, public_url: str
) -> tuple[str, str] | None:
    """A text claimed before its words were kept (an earlier version): composed again."""
    customer = await uow.customers.contact(message.shop_id, message.customer_id)
    known = await uow.shops.policy(message.shop_id)
    try:
        out = compose(message, customer, known.policy if known else None, public_url)
    except Exception:  # its customer, shop or template is gone: it cannot be looked up
        return None
    return out.to, text_digest(out.text)


@dataclass(frozen=True)
class SettleLookup(Command[bool]):
    """What the provider holds of an interrupted text (the sids it listed, newest first):
    one not recorded for another message of ours -> sent with it; none -> it never left,
    and it is due again."""

    message_id: uuid.UUID
    lease: Lease
    sids: tuple[str, ...]


async def settle_lookup(command: SettleLookup, uow: FollowUpUnitOfWork, deps: Deps) -> bool:
    message = await uow.messages.get(command.message_id)
    if message is None or not _holds(message, command.lease):
        return False
    found = None
    for sid in command.sids:
        if not await uow.messages.provider_id_taken(sid, message.id):
            found = sid
            break
    events = message.looked_up(deps.clock(), found)
    await uow.messages.save(message)
    for event in events:
        uow.emit(event, shop_id=message.shop_id)
    if message.status is MessageStatus.DUE:
        await uow.messages.wake_dispatcher()
    return True


COMMANDS: dict[type, Any] = {
    ClaimDueMessages: claim_due_messages,
    RenewLease: renew_lease,
    MarkDataStarted: mark_data_started,
    RecordDelivery: record_delivery,
    RecoverInterruptedMessages: recover_interrupted_messages,
    SettleLookup: settle_lookup,
    Unsubscribe: unsubscribe,
}
