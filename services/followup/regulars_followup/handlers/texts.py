"""What the SMS provider tells us: a customer's text to our number, and what became of
the texts we sent (its status callbacks). Every write they cause happens here.

A text becomes the same CustomerReplied a shop's system would relay, emitted for the
other services (feedback classifies it, loyalty keeps it on the timeline) and applied
here in the same transaction, so a STOP holds from the moment the provider is answered;
the event is marked applied in this service's inbox, so its consumer does not apply it
twice when it comes back from the topic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from regulars_events.catalogue import CustomerReplied
from regulars_runtime.bus import Command

from ..domain.inbound_texts import MAX_REPLY, InboundText, addressed_to
from .base import Deps, FollowUpUnitOfWork
from .outreach import apply_reply


@dataclass(frozen=True)
class ReceiveText(Command["TextReceived"]):
    text: InboundText


@dataclass(frozen=True)
class TextReceived:
    #: the provider sent this message sid before: nothing was done again
    duplicate: bool
    #: (shop, customer) whose reply it became; empty when no shop's customer has the number
    replied: list[tuple[uuid.UUID, str]]


async def receive_text(command: ReceiveText, uow: FollowUpUnitOfWork, deps: Deps) -> TextReceived:
    text = command.text
    if not await uow.texts.record(text):
        return TextReceived(duplicate=True, replied=[])
    known = await uow.texts.known_numbers(text.from_number)
    replied = []
    body = text.body[:MAX_REPLY]
    for reply in addressed_to(body, known):
        envelope = uow.emit(
            CustomerReplied(customer_id=reply.customer_id, channel="sms", text=body),
            shop_id=reply.shop_id,
        )
        await uow.texts.applied_here(envelope.id, envelope.type)
        await apply_reply(
            uow,
            deps.clock,
            shop_id=reply.shop_id,
            customer_id=reply.customer_id,
            channel="sms",
            text=body,
            event_id=envelope.id,
            provider_answered=deps.provider_answers_keywords,
        )
        replied.append((reply.shop_id, reply.customer_id))
    outcome = (
        "replied: " + ", ".join(f"{shop}/{customer}" for shop, customer in replied)
        if replied
        else "unmatched"
    )
    await uow.texts.answered(text.message_sid, outcome[:2000])
    return TextReceived(duplicate=False, replied=replied)


@dataclass(frozen=True)
class RecordCarrierReport(Command[bool]):
    """A status callback: the provider's word on one of our texts."""

    message_sid: str
    status: str
    error_code: int | None = None
    #: our id for the message, carried in the callback URL we gave the provider
    message_id: uuid.UUID | None = None


async def record_carrier_report(
    command: RecordCarrierReport, uow: FollowUpUnitOfWork, deps: Deps
) -> bool:
    """False when the text is not ours (another system on the same provider account)."""
    message = None
    if command.message_id is not None:
        message = await uow.messages.get(command.message_id)
        if message is not None and message.provider_id not in (None, command.message_sid):
            message = None
    if message is None:
        message = await uow.messages.by_provider_id(command.message_sid)
    if message is None:
        return False
    events = message.carrier_report(
        command.status, command.error_code, deps.clock(), command.message_sid
    )
    await uow.messages.save(message)
    for event in events:
        uow.emit(event, shop_id=message.shop_id)
    return True


COMMANDS: dict[type, Any] = {
    ReceiveText: receive_text,
    RecordCarrierReport: record_carrier_report,
}
