"""Texts customers send to our number and the provider's delivery reports: the domain
rules and the handlers at the unit-of-work seam (state in memory, a fake clock)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_events.catalogue import CustomerReplied, CustomerUpserted, MessageFailed, MessageSent
from regulars_events.envelope import Envelope
from regulars_followup.adapters.twilio_signature import TwilioSignatures
from regulars_followup.domain.inbound_texts import InboundText, KnownNumber, addressed_to
from regulars_followup.domain.messages import MessageStatus
from regulars_followup.handlers import outreach, texts
from regulars_followup.handlers.outreach import RecordDelivery
from regulars_followup.handlers.texts import ReceiveText, RecordCarrierReport
from regulars_runtime.bus import Received
from regulars_runtime.unit_of_work import ShopPolicy
from regulars_shop.policy import Policy

from services.followup.tests.fakes import FakeClock, World
from services.followup.tests.test_handlers import ask_survey, due_message, lease_of, only_message

NY = ZoneInfo("America/New_York")
MONDAY_2PM = datetime(2026, 11, 23, 14, 0, tzinfo=NY)
PHONE = "+15555550100"
SHOP_A, SHOP_B = uuid.UUID(int=1), uuid.UUID(int=2)


@pytest.fixture
def world() -> World:
    return World(FakeClock(MONDAY_2PM))


def text(body: str, sid: str = "SM1", sender: str = PHONE) -> InboundText:
    return InboundText(sid, "AClocal", sender, "+15555550000", body)


async def customer_of(world: World, shop: uuid.UUID, cid: str, phone: str = PHONE) -> None:
    world.uow.shops.policies.setdefault(shop, ShopPolicy(1, Policy.defaults()))
    upserted = CustomerUpserted(customer_id=cid, name="Dana Reyes", phone=phone)
    envelope = Envelope.wrap(upserted, source="intake", shop_id=str(shop))
    await outreach.on_customer_upserted(Received(upserted, envelope), world.uow, world.deps)


# -- whose reply a text is ----------------------------------------------------------


def known(shop: uuid.UUID, cid: str, texted_hours_ago: float | None) -> KnownNumber:
    at = None if texted_hours_ago is None else MONDAY_2PM - timedelta(hours=texted_hours_ago)
    return KnownNumber(shop, cid, at)


def test_a_reply_goes_to_the_shop_that_texted_last() -> None:
    numbers = [known(SHOP_A, "a1", 30), known(SHOP_B, "b1", 2)]
    assert addressed_to("The car runs great, thanks", numbers) == [numbers[1]]


def test_stop_speaks_to_every_shop_that_texted_the_number() -> None:
    numbers = [known(SHOP_A, "a1", 30), known(SHOP_B, "b1", 2), known(SHOP_B, "b2", None)]
    assert addressed_to("STOP", numbers) == [numbers[1], numbers[0]]
    assert addressed_to("please stop texting me", numbers) == [numbers[1], numbers[0]]


def test_stop_from_a_number_never_texted_spares_it_from_every_shop() -> None:
    numbers = [known(SHOP_A, "a1", None), known(SHOP_B, "b1", None)]
    assert addressed_to("stop", numbers) == numbers


def test_a_reply_that_cannot_be_placed_is_not_guessed() -> None:
    assert addressed_to("hello?", [known(SHOP_A, "a1", None), known(SHOP_B, "b1", None)]) == []
    assert addressed_to("hello?", []) == []
    assert addressed_to("   ", [known(SHOP_A, "a1", 1)]) == []
    only = known(SHOP_A, "a1", None)
    assert addressed_to("hello?", [only]) == [only]


# -- the handler ---------------------------------------------------------------------


async def test_a_texted_stop_revokes_sms_at_once_and_is_one_customer_reply(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    result = await texts.receive_text(ReceiveText(text("STOP")), world.uow, world.deps)
    assert result.replied == [(world.shop_id, "c-1")] and not result.duplicate
    assert world.uow.customers.rows[(world.shop_id, "c-1")].consents_to("sms") is False
    (reply,) = world.uow.emitted(CustomerReplied)
    assert (reply.customer_id, reply.channel, reply.text) == ("c-1", "sms", "STOP")
    # applied here already: followup's own consumer skips it when it comes back
    (envelope,) = world.uow.pending
    assert world.uow.texts.inbox == {envelope.id}
    # the provider confirmed it (its default opt-out handling): ours is kept, not sent
    (confirmation,) = world.uow.messages.rows.values()
    assert confirmation.kind == "opt_out_confirmation"
    assert confirmation.status is MessageStatus.SUPPRESSED
    assert confirmation.reason == "the provider confirms opt-outs"
    # a later survey to that customer is not texted
    await ask_survey(world)
    survey = next(m for m in world.uow.messages.rows.values() if m.kind == "survey")
    assert survey.status is MessageStatus.SUPPRESSED


async def test_without_the_providers_handling_our_own_confirmation_goes(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    deps = replace(world.deps, provider_answers_keywords=False)
    await texts.receive_text(ReceiveText(text("STOP")), world.uow, deps)
    (confirmation,) = world.uow.messages.rows.values()
    assert confirmation.kind == "opt_out_confirmation"
    assert confirmation.status is not MessageStatus.SUPPRESSED
    assert confirmation.status is MessageStatus.SCHEDULED


async def test_help_is_the_providers_to_answer_unless_it_does_not(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    await texts.receive_text(ReceiveText(text(" help ", "SM1")), world.uow, world.deps)
    (answer,) = world.uow.messages.rows.values()
    assert (answer.kind, answer.status) == ("help", MessageStatus.SUPPRESSED)
    assert answer.reason == "the provider answers HELP"
    deps = replace(world.deps, provider_answers_keywords=False)
    await texts.receive_text(ReceiveText(text("INFO", "SM2")), world.uow, deps)
    ours = [m for m in world.uow.messages.rows.values() if m.id != answer.id]
    assert [(m.kind, m.status) for m in ours] == [("help", MessageStatus.SCHEDULED)]


async def test_a_plain_word_stop_no_provider_understands_gets_our_confirmation(
    world: World,
) -> None:
    await customer_of(world, world.shop_id, "c-1")
    await texts.receive_text(ReceiveText(text("please stop texting me")), world.uow, world.deps)
    assert world.uow.customers.rows[(world.shop_id, "c-1")].consents_to("sms") is False
    (confirmation,) = world.uow.messages.rows.values()
    assert (confirmation.kind, confirmation.status) == (
        "opt_out_confirmation",
        MessageStatus.SCHEDULED,
    )


async def test_a_relayed_stop_is_confirmed_by_us(world: World) -> None:
    """A STOP the shop's system relays went to its number, not through our provider."""
    await customer_of(world, world.shop_id, "c-1")
    replied = CustomerReplied(customer_id="c-1", channel="sms", text="STOP")
    await outreach.on_customer_replied(world.received(replied), world.uow, world.deps)
    (confirmation,) = world.uow.messages.rows.values()
    assert (confirmation.kind, confirmation.status) == (
        "opt_out_confirmation",
        MessageStatus.SCHEDULED,
    )


async def test_a_retried_message_sid_acts_once(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    await texts.receive_text(ReceiveText(text("STOP")), world.uow, world.deps)
    again = await texts.receive_text(ReceiveText(text("STOP")), world.uow, world.deps)
    assert again.duplicate and again.replied == []
    assert len(world.uow.emitted(CustomerReplied)) == 1
    assert len(world.uow.customers.ledger) == 1
    assert len(world.uow.messages.rows) == 1


async def test_start_after_stop_restores_texts(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    await texts.receive_text(ReceiveText(text("STOP", "SM1")), world.uow, world.deps)
    await texts.receive_text(ReceiveText(text("START", "SM2")), world.uow, world.deps)
    assert world.uow.customers.rows[(world.shop_id, "c-1")].consents_to("sms") is True
    assert [c.granted for _s, _c, c in world.uow.customers.ledger] == [False, True]


async def test_a_text_from_an_unknown_number_is_kept_unmatched(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1")
    result = await texts.receive_text(
        ReceiveText(text("STOP", sender="+15555559999")), world.uow, world.deps
    )
    assert result.replied == [] and world.uow.emitted() == []
    assert world.uow.texts.outcomes["SM1"] == "unmatched"
    assert world.uow.customers.rows[(world.shop_id, "c-1")].consents_to("sms") is None


async def test_the_number_as_typed_in_the_shop_system_still_matches(world: World) -> None:
    await customer_of(world, world.shop_id, "c-1", phone="+1 (555) 555-0100")
    result = await texts.receive_text(ReceiveText(text("stop")), world.uow, world.deps)
    assert result.replied == [(world.shop_id, "c-1")]


async def test_another_shops_customer_with_the_number_stops_too_a_note_goes_to_one(
    world: World,
) -> None:
    other = uuid.UUID(int=7)
    await customer_of(world, world.shop_id, "c-1")
    await customer_of(world, other, "x-9")
    note = await texts.receive_text(ReceiveText(text("hi", "SM1")), world.uow, world.deps)
    assert note.replied == []  # neither shop texted them: cannot tell whose
    stop = await texts.receive_text(ReceiveText(text("stop", "SM2")), world.uow, world.deps)
    assert sorted(stop.replied, key=str) == sorted(
        [(world.shop_id, "c-1"), (other, "x-9")], key=str
    )


# -- delivery reports ------------------------------------------------------------------


async def sent_survey(world: World) -> uuid.UUID:
    message_id = await due_message(world)
    await outreach.record_delivery(
        RecordDelivery(message_id, lease_of(world, message_id), provider_id="SM9"),
        world.uow,
        world.deps,
    )
    return message_id


async def report(
    world: World, status: str, message_id: uuid.UUID | None, code: int | None = None
) -> bool:
    command = RecordCarrierReport("SM9", status, code, message_id)
    return await texts.record_carrier_report(command, world.uow, world.deps)


async def test_a_delivered_report_moves_the_message_and_a_late_sent_changes_nothing(
    world: World,
) -> None:
    message_id = await sent_survey(world)
    assert await report(world, "sent", message_id)
    assert only_message(world).status is MessageStatus.SENT
    assert await report(world, "delivered", message_id)
    assert only_message(world).status is MessageStatus.DELIVERED
    for late in ("sent", "queued", "undelivered", "failed"):
        await report(world, late, message_id)
    assert only_message(world).status is MessageStatus.DELIVERED
    assert world.uow.emitted(MessageFailed) == []


async def test_a_failed_report_fails_the_message_once(world: World) -> None:
    await sent_survey(world)
    assert await report(world, "undelivered", None, 30003)  # found by the provider's sid
    failed = only_message(world)
    assert failed.status is MessageStatus.UNDELIVERED and "30003" in (failed.reason or "")
    await report(world, "failed", None, 30005)
    (event,) = world.uow.emitted(MessageFailed)
    assert "undelivered" in event.error
    assert only_message(world).status is MessageStatus.UNDELIVERED


async def test_a_report_before_the_hand_over_is_recorded_applies_after_it(world: World) -> None:
    message_id = await due_message(world)  # 'sending': the provider has it, we do not know yet
    assert await report(world, "delivered", message_id)
    assert only_message(world).status is MessageStatus.SENDING
    await outreach.record_delivery(
        RecordDelivery(message_id, lease_of(world, message_id), provider_id="SM9"),
        world.uow,
        world.deps,
    )
    assert only_message(world).status is MessageStatus.DELIVERED
    assert len(world.uow.emitted(MessageSent)) == 1


async def test_a_report_for_a_text_not_ours_is_ignored(world: World) -> None:
    await sent_survey(world)
    assert not await texts.record_carrier_report(
        RecordCarrierReport("SM-other", "failed", 30003, None), world.uow, world.deps
    )
    # another message's id with a sid that is not its own: not applied to it
    message_id = only_message(world).id
    assert not await texts.record_carrier_report(
        RecordCarrierReport("SM-other", "failed", 30003, message_id), world.uow, world.deps
    )
    assert only_message(world).status is MessageStatus.SENT


# -- signatures and limits -----------------------------------------------------------


def test_the_signature_covers_the_public_url_and_every_field() -> None:
    signatures = TwilioSignatures("secret-token", "https://followup.example.com/")
    form = {"MessageSid": "SM1", "From": PHONE, "To": "+15555550000", "Body": "STOP"}
    good = signatures.sign("/hooks/sms/inbound", "", form)
    assert signatures.valid("/hooks/sms/inbound", "", form, good)
    assert not signatures.valid("/hooks/sms/inbound", "", {**form, "Body": "START"}, good)
    assert not signatures.valid("/hooks/sms/status", "", form, good)
    assert not signatures.valid("/hooks/sms/inbound", "", form, "")
    other = TwilioSignatures("another-token", "https://followup.example.com")
    assert not other.valid("/hooks/sms/inbound", "", form, good)
    # the pod's own address is not what the provider signed
    pod = TwilioSignatures("secret-token", "http://10.0.0.7:8002")
    assert not pod.valid("/hooks/sms/inbound", "", form, good)


async def test_a_send_refused_as_opted_out_at_the_carrier_enters_the_ledger(
    world: World,
) -> None:
    message_id = await due_message(world)
    refused = RecordDelivery(
        message_id,
        lease_of(world, message_id),
        error="SMS provider answered 400 (21610)",
        permanent=True,
        code=21610,
    )
    await outreach.record_delivery(refused, world.uow, world.deps)
    assert only_message(world).status is MessageStatus.FAILED
    ((_shop, cid, change),) = world.uow.customers.ledger
    assert (cid, change.channel, change.granted, change.source) == ("c-1", "sms", False, "carrier")
    assert world.uow.customers.rows[(world.shop_id, "c-1")].consents_to("sms") is False


async def test_another_refusal_leaves_consent_alone(world: World) -> None:
    message_id = await due_message(world)
    refused = RecordDelivery(
        message_id,
        lease_of(world, message_id),
        error="not a mobile number",
        permanent=True,
        code=21614,
    )
    await outreach.record_delivery(refused, world.uow, world.deps)
    assert world.uow.customers.ledger == []
