"""followup's handlers at the unit-of-work seam: state in memory, a fake clock.

Each test drives a handler as the bus would and asserts what it left behind: tasks and
messages saved, timers scheduled, events emitted.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_events.catalogue import (
    ConsentChanged,
    CustomerUpserted,
    FollowUpAttempted,
    FollowUpCancelled,
    FollowUpCompleted,
    FollowUpMissed,
    FollowUpScheduled,
    MessageFailed,
    MessageSent,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
    SurveyRequested,
)
from regulars_followup.domain.attempts import Attempt, AttemptOutcome, TaskFinished
from regulars_followup.domain.messages import MAX_SEND_ATTEMPTS, MessageStatus
from regulars_followup.domain.tasks import TaskStatus
from regulars_followup.handlers import outreach, tasks, texts
from regulars_followup.handlers.outreach import (
    MESSAGE_DUE,
    ClaimDueMessages,
    Claimed,
    Lease,
    MarkDataStarted,
    ProviderLookup,
    RecordDelivery,
    RecoverInterruptedMessages,
    RenewLease,
)
from regulars_followup.handlers.tasks import FOLLOW_UP_MISSED, RecordCallAttempt
from regulars_followup.handlers.texts import RecordCarrierReport
from regulars_shop.survey_links import survey_token

from services.followup.tests.fakes import SURVEY_KEY, FakeClock, World

NY = ZoneInfo("America/New_York")
MONDAY_2PM = datetime(2026, 11, 23, 14, 0, tzinfo=NY)


@pytest.fixture
def world() -> World:
    return World(FakeClock(MONDAY_2PM))


def completed(ro: str = "ro-1", customer: str = "c-1", **more: object) -> ServiceCompleted:
    return ServiceCompleted(
        repair_order_id=ro,
        customer_id=customer,
        completed_at=MONDAY_2PM,
        advisor="sam",
        work_performed="brake pads",
        **more,  # type: ignore[arg-type]
    )


async def visit(world: World, *events: ServiceCompleted) -> None:
    await tasks.on_services_completed([world.received(e) for e in events], world.uow, world.deps)


async def attempt(
    world: World, task_id: uuid.UUID, outcome: AttemptOutcome, **more: object
) -> None:
    command = RecordCallAttempt(
        world.shop_id,
        task_id,
        Attempt(outcome, world.clock(), **more),  # type: ignore[arg-type]
    )
    await tasks.record_call_attempt(command, world.uow, world.deps)


def only_task(world: World):  # type: ignore[no-untyped-def]
    (task,) = world.uow.tasks.rows.values()
    return task


# -- scheduling from a visit -----------------------------------------------------------


async def test_a_visit_schedules_one_call_and_one_miss_timer(world: World) -> None:
    await visit(world, completed())
    task = only_task(world)
    due = datetime(2026, 11, 25, 14, 0, tzinfo=NY)  # 48 h later, inside business hours
    assert (task.status, task.due_at, task.assignee) == (TaskStatus.SCHEDULED, due, "sam")
    assert "brake pads" in task.script["work_performed"]
    (timer,) = world.uow.timers.of_kind(FOLLOW_UP_MISSED)
    assert timer.fire_at == due + timedelta(hours=24)
    assert timer.payload == {"task_id": str(task.id), "attempts": 0, "due_at": due.isoformat()}
    (scheduled,) = world.uow.emitted(FollowUpScheduled)
    assert (scheduled.task_id, scheduled.due_at) == (str(task.id), due)


async def test_a_repeated_visit_is_ignored(world: World) -> None:
    await visit(world, completed())
    await visit(world, completed())
    assert len(world.uow.tasks.rows) == 1
    assert len(world.uow.timers.of_kind(FOLLOW_UP_MISSED)) == 1
    assert len(world.uow.emitted(FollowUpScheduled)) == 1


async def test_a_run_of_visits_schedules_each_once(world: World) -> None:
    await visit(world, completed("ro-1"), completed("ro-2", "c-2"))
    await visit(world, completed("ro-2", "c-2"), completed("ro-3", "c-3"))
    assert sorted(t.repair_order_id for t in world.uow.tasks.rows.values()) == [
        "ro-1",
        "ro-2",
        "ro-3",
    ]
    assert len(world.uow.emitted(FollowUpScheduled)) == 3


async def test_a_historical_visit_gets_no_call(world: World) -> None:
    world.clock.advance(timedelta(days=30))
    await visit(world, completed())
    assert world.uow.tasks.rows == {}
    assert world.uow.emitted() == []


# -- voids and reopens -----------------------------------------------------------------


async def test_a_void_cancels_an_open_call(world: World) -> None:
    await visit(world, completed())
    void = world.received(ServiceVoided(repair_order_id="ro-1"))
    await tasks.on_service_voided(void, world.uow, world.deps)
    task = only_task(world)
    assert (task.status, task.status_reason) == (TaskStatus.CANCELLED, "service voided")
    (cancelled,) = world.uow.emitted(FollowUpCancelled)
    assert (cancelled.task_id, cancelled.reason) == (str(task.id), "service voided")


async def test_a_void_leaves_a_completed_call_alone(world: World) -> None:
    await visit(world, completed())
    task = only_task(world)
    await attempt(world, task.id, AttemptOutcome.REACHED, satisfied=True)
    void = world.received(ServiceVoided(repair_order_id="ro-1"))
    await tasks.on_service_voided(void, world.uow, world.deps)
    assert only_task(world).status is TaskStatus.COMPLETED
    assert world.uow.emitted(FollowUpCancelled) == []


async def test_a_reopened_visit_completed_again_starts_its_call_over(world: World) -> None:
    await visit(world, completed())
    first = only_task(world)
    reopen = world.received(ServiceReopened(repair_order_id="ro-1"))
    await tasks.on_service_reopened(reopen, world.uow, world.deps)
    assert only_task(world).status is TaskStatus.CANCELLED
    later = completed()
    later = later.model_copy(update={"completed_at": MONDAY_2PM + timedelta(days=1)})
    await visit(world, later)
    task = only_task(world)
    assert task.id == first.id
    assert (task.status, task.due_at) == (TaskStatus.SCHEDULED, first.due_at + timedelta(days=1))
    assert len(world.uow.emitted(FollowUpScheduled)) == 2
    assert len(world.uow.timers.of_kind(FOLLOW_UP_MISSED)) == 2


# -- attempts and misses ---------------------------------------------------------------


async def test_reaching_the_customer_completes_the_call(world: World) -> None:
    await visit(world, completed())
    task = only_task(world)
    await attempt(world, task.id, AttemptOutcome.REACHED, satisfied=False, score=4, notes="rattle")
    saved = only_task(world)
    assert (saved.status, saved.attempts) == (TaskStatus.COMPLETED, 1)
    assert [n for n, _a in world.uow.tasks.attempts[task.id]] == [1]
    (done,) = world.uow.emitted(FollowUpCompleted)
    assert (done.satisfied, done.score, done.notes, done.assignee) == (False, 4, "rattle", "sam")
    assert len(world.uow.emitted(FollowUpAttempted)) == 1


async def test_the_last_unanswered_attempt_misses_the_call(world: World) -> None:
    await visit(world, completed())
    task = only_task(world)
    for _ in range(3):  # the default policy allows three
        await attempt(world, task.id, AttemptOutcome.NO_ANSWER)
    saved = only_task(world)
    assert (saved.status, saved.status_reason, saved.attempts) == (
        TaskStatus.MISSED,
        "max_attempts",
        3,
    )
    (missed,) = world.uow.emitted(FollowUpMissed)
    assert missed.reason == "max_attempts"
    with pytest.raises(TaskFinished):
        await attempt(world, task.id, AttemptOutcome.NO_ANSWER)


async def test_a_miss_timer_stands_down_after_an_attempt(world: World) -> None:
    await visit(world, completed())
    task = only_task(world)
    (first_timer,) = world.uow.timers.of_kind(FOLLOW_UP_MISSED)
    world.clock.now = task.due_at
    await attempt(world, task.id, AttemptOutcome.VOICEMAIL)
    # staff are still trying: a later timer, set from this attempt, governs the task
    (later,) = [t for t in world.uow.timers.of_kind(FOLLOW_UP_MISSED) if t != first_timer]
    assert later.payload["attempts"] == 1
    assert later.fire_at == task.due_at + timedelta(hours=24)
    world.clock.now = first_timer.fire_at
    fired = world.uow.timers.fired(first_timer)
    await tasks.on_missed_timer(fired, world.uow, world.deps)
    assert only_task(world).status is TaskStatus.SCHEDULED
    assert world.uow.emitted(FollowUpMissed) == []
    # and the later one, with nothing since, misses it
    await tasks.on_missed_timer(world.uow.timers.fired(later), world.uow, world.deps)
    assert only_task(world).status is TaskStatus.MISSED
    (missed,) = world.uow.emitted(FollowUpMissed)
    assert missed.reason == "no_attempt_in_time"


async def test_an_unknown_task_is_refused(world: World) -> None:
    with pytest.raises(tasks.UnknownTask):
        await attempt(world, uuid.uuid4(), AttemptOutcome.NO_ANSWER)


# -- messages: consent, holds, delivery ------------------------------------------------


async def customer(world: World, cid: str = "c-1") -> None:
    upserted = CustomerUpserted(
        customer_id=cid, name="Dana Reyes", phone="+15555550100", email="d@example.com", state="NY"
    )
    await outreach.on_customer_upserted(world.received(upserted), world.uow, world.deps)


async def ask_survey(world: World, channel: str | None = "sms") -> None:
    requested = SurveyRequested(
        survey_id="s-1",
        customer_id="c-1",
        reason="after_follow_up",
        channel=channel,  # type: ignore[arg-type]
        survey_url="https://s.example/abc",
    )
    await outreach.on_survey_requested(world.received(requested), world.uow, world.deps)


async def test_a_survey_link_is_made_here_from_the_id_the_event_names(world: World) -> None:
    await customer(world)
    survey_id = str(uuid.uuid4())
    requested = SurveyRequested(
        survey_id=survey_id,
        customer_id="c-1",
        reason="after_follow_up",
        channel="sms",
        survey_page="https://fb.example/s/",
    )
    await outreach.on_survey_requested(world.received(requested), world.uow, world.deps)
    token = survey_token(SURVEY_KEY, world.shop_id, survey_id)
    assert only_message(world).link == f"https://fb.example/s/{token}"
    # the same survey announced by an older event, whole link and all, is sent as it was
    assert (
        outreach.survey_link_of(
            SurveyRequested(
                survey_id=survey_id,
                customer_id="c-1",
                reason="after_follow_up",
                survey_url="https://fb.example/s/older",
            ),
            world.shop_id,
            SURVEY_KEY,
        )
        == "https://fb.example/s/older"
    )


def only_message(world: World):  # type: ignore[no-untyped-def]
    (message,) = world.uow.messages.rows.values()
    return message


async def test_a_survey_at_night_is_held_and_a_revoked_consent_suppresses_it(
    world: World,
) -> None:
    world.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=NY)
    await customer(world)
    await ask_survey(world)
    held = only_message(world)
    assert held.status is MessageStatus.HELD
    (wake,) = world.uow.timers.of_kind(MESSAGE_DUE)
    assert wake.fire_at == datetime(2026, 11, 24, 8, 0, tzinfo=NY)
    revoked = ConsentChanged(customer_id="c-1", channel="sms", granted=False)
    await outreach.on_consent_changed(world.received(revoked), world.uow, world.deps)
    world.clock.now = wake.fire_at
    await outreach.on_message_due(world.uow.timers.fired(wake), world.uow, world.deps)
    gone = only_message(world)
    assert (gone.status, gone.reason) == (
        MessageStatus.SUPPRESSED,
        "sms: customer opted out of sms",
    )
    assert world.uow.messages.wake_ups == 0


async def test_a_held_message_whose_hold_lifts_goes_to_the_dispatcher(world: World) -> None:
    world.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=NY)
    await customer(world)
    await ask_survey(world)
    (wake,) = world.uow.timers.of_kind(MESSAGE_DUE)
    world.clock.now = wake.fire_at
    await outreach.on_message_due(world.uow.timers.fired(wake), world.uow, world.deps)
    due = only_message(world)
    assert (due.status, due.channel, due.send_at) == (MessageStatus.DUE, "sms", wake.fire_at)
    assert world.uow.messages.wake_ups == 1


async def test_an_opted_out_customer_gets_no_survey(world: World) -> None:
    await customer(world)
    revoked = ConsentChanged(customer_id="c-1", channel="sms", granted=False)
    await outreach.on_consent_changed(world.received(revoked), world.uow, world.deps)
    await ask_survey(world)
    message = only_message(world)
    assert message.status is MessageStatus.SUPPRESSED
    assert world.uow.timers.of_kind(MESSAGE_DUE) == []


OWNER = "replica-a"
PUBLIC = "https://regulars.example"


def lease_of(world: World, message_id: uuid.UUID) -> Lease:
    """The lease a dispatcher got with its claim of the message."""
    m = world.uow.messages.rows[message_id]
    return Lease(m.lease_owner or OWNER, m.attempts)


async def claim(world: World, owner: str = OWNER) -> list[Claimed]:
    return await outreach.claim_due_messages(
        ClaimDueMessages(10, owner, PUBLIC), world.uow, world.deps
    )


async def made_due(world: World) -> uuid.UUID:
    """A survey by text, due now (its hold lifted)."""
    await customer(world)
    await ask_survey(world)
    (wake,) = world.uow.timers.of_kind(MESSAGE_DUE)
    await outreach.on_message_due(world.uow.timers.fired(wake), world.uow, world.deps)
    assert only_message(world).status is MessageStatus.DUE
    return only_message(world).id


async def due_message(world: World) -> uuid.UUID:
    """A survey claimed by a dispatcher, 'sending'."""
    await made_due(world)
    (claimed,) = await claim(world)
    assert claimed.recipient is not None and claimed.recipient.phone == "+15555550100"
    assert claimed.outgoing.to == "+15555550100" and claimed.lease == Lease(OWNER, 1)
    return claimed.message.id


async def test_a_sent_message_is_recorded_and_announced(world: World) -> None:
    message_id = await due_message(world)
    command = RecordDelivery(message_id, lease_of(world, message_id), provider_id="SM1")
    await outreach.record_delivery(command, world.uow, world.deps)
    sent = only_message(world)
    assert (sent.status, sent.provider_id, sent.sent_at) == (
        MessageStatus.SENT,
        "SM1",
        world.clock(),
    )
    (event,) = world.uow.emitted(MessageSent)
    assert (event.message_id, event.kind) == (str(message_id), "survey")


async def test_a_transient_failure_is_retried_with_backoff_then_fails(world: World) -> None:
    message_id = await due_message(world)
    failure = RecordDelivery(
        message_id, lease_of(world, message_id), error="gateway timeout", permanent=False
    )
    await outreach.record_delivery(failure, world.uow, world.deps)
    retried = only_message(world)
    assert retried.status is MessageStatus.SCHEDULED
    assert retried.send_at == world.clock() + timedelta(seconds=60)  # 30 s * 2 ** attempts(1)
    assert retried.reason == "retrying: gateway timeout"
    assert any(t.fire_at == retried.send_at for t in world.uow.timers.of_kind(MESSAGE_DUE))
    assert world.uow.emitted(MessageFailed) == []
    retried.attempts = MAX_SEND_ATTEMPTS  # its tries have run out
    retried.status = MessageStatus.SENDING
    await world.uow.messages.save(retried)
    await world.uow.messages.lease(message_id, OWNER, 60, new_attempt=True)
    failure = replace(failure, lease=Lease(OWNER, MAX_SEND_ATTEMPTS))
    await outreach.record_delivery(failure, world.uow, world.deps)
    failed = only_message(world)
    assert (failed.status, failed.reason) == (MessageStatus.FAILED, "gateway timeout")
    (event,) = world.uow.emitted(MessageFailed)
    assert event.error == "gateway timeout"


async def test_a_permanent_failure_fails_at_once(world: World) -> None:
    message_id = await due_message(world)
    failure = RecordDelivery(
        message_id, lease_of(world, message_id), error="number unsubscribed", permanent=True
    )
    await outreach.record_delivery(failure, world.uow, world.deps)
    assert only_message(world).status is MessageStatus.FAILED
    assert len(world.uow.emitted(MessageFailed)) == 1


def expire_leases(world: World) -> None:
    """The database's clock passes every lease (the handlers' clock does not move)."""
    world.uow.messages.db_clock_offset += timedelta(minutes=5)


async def recover(world: World, owner: str = "replica-b") -> list[ProviderLookup]:
    command = RecoverInterruptedMessages(owner, PUBLIC)
    return await outreach.recover_interrupted_messages(command, world.uow, world.deps)


async def test_a_live_lease_is_not_recovered_whatever_the_app_clock_says(world: World) -> None:
    message_id = await due_message(world)
    world.clock.advance(timedelta(hours=5))
    assert await recover(world) == []
    assert world.uow.messages.rows[message_id].status is MessageStatus.SENDING


async def test_an_interrupted_text_is_looked_up_and_sent_only_if_not_found(world: World) -> None:
    message_id = await due_message(world)
    claimed_at = world.uow.messages.rows[message_id].claimed_at
    expire_leases(world)
    (lookup,) = await recover(world)
    assert (lookup.message_id, lookup.lease, lookup.to) == (
        message_id,
        Lease("replica-b", 1),
        "+15555550100",
    )
    assert lookup.since == claimed_at and len(lookup.body_sha256) == 64
    # still 'sending', now held by the replica asking the provider
    assert world.uow.messages.rows[message_id].lease_owner == "replica-b"
    settle = outreach.SettleLookup(message_id, lookup.lease, ())
    assert await outreach.settle_lookup(settle, world.uow, world.deps)
    again = only_message(world)
    assert (again.status, again.reason) == (
        MessageStatus.DUE,
        "not at the SMS provider: sent again",
    )
    assert world.uow.emitted(MessageSent) == []


async def test_an_interrupted_text_found_at_the_provider_is_recorded_sent(world: World) -> None:
    message_id = await due_message(world)
    other = replace(only_message(world), id=uuid.uuid4(), purpose="other", provider_id="SMold")
    world.uow.messages.rows[other.id] = other
    expire_leases(world)
    (lookup,) = [x for x in await recover(world) if x.message_id == message_id]
    # a sid another message of ours was recorded with is not this one's
    settle = outreach.SettleLookup(message_id, lookup.lease, ("SMold", "SMnew"))
    assert await outreach.settle_lookup(settle, world.uow, world.deps)
    sent = world.uow.messages.rows[message_id]
    assert (sent.status, sent.provider_id) == (MessageStatus.SENT, "SMnew")
    (event,) = world.uow.emitted(MessageSent)
    assert event.message_id == str(message_id)


async def test_the_outcome_of_a_lost_lease_is_not_recorded(world: World) -> None:
    message_id = await due_message(world)
    first = lease_of(world, message_id)
    expire_leases(world)
    (_lookup,) = await recover(world)
    late = RecordDelivery(message_id, first, provider_id="SMlate")
    assert not await outreach.record_delivery(late, world.uow, world.deps)
    assert not await outreach.renew_lease(RenewLease(message_id, first), world.uow, world.deps)
    kept = world.uow.messages.rows[message_id]
    assert (kept.status, kept.provider_id, kept.lease_owner) == (
        MessageStatus.SENDING,
        None,
        "replica-b",
    )
    assert world.uow.emitted(MessageSent) == []


async def test_a_status_callback_settles_a_text_whose_sender_died(world: World) -> None:
    message_id = await due_message(world)
    report = RecordCarrierReport("SMcb", "sent", None, message_id)
    assert await texts.record_carrier_report(report, world.uow, world.deps)
    expire_leases(world)
    assert await recover(world) == []  # nothing to ask the provider
    sent = only_message(world)
    assert (sent.status, sent.provider_id) == (MessageStatus.SENT, "SMcb")


async def test_a_callback_during_the_lookup_outweighs_a_list_that_missed_it(world: World) -> None:
    message_id = await due_message(world)
    expire_leases(world)
    (lookup,) = await recover(world)
    report = RecordCarrierReport("SMcb", "queued", None, message_id)
    assert await texts.record_carrier_report(report, world.uow, world.deps)
    settle = outreach.SettleLookup(message_id, lookup.lease, ())
    assert await outreach.settle_lookup(settle, world.uow, world.deps)
    sent = only_message(world)
    assert (sent.status, sent.provider_id) == (MessageStatus.SENT, "SMcb")


async def test_an_unconfirmed_text_waits_for_a_lookup_and_an_email_fails(world: World) -> None:
    message_id = await due_message(world)
    unconfirmed = RecordDelivery(
        message_id, lease_of(world, message_id), error="ReadTimeout", unconfirmed=True
    )
    assert await outreach.record_delivery(unconfirmed, world.uow, world.deps)
    text = only_message(world)
    assert (text.status, text.lease_owner) == (MessageStatus.SENDING, None)
    assert "not confirmed" in (text.reason or "")
    assert await recover(world) == []  # not before its request is surely over
    expire_leases(world)
    assert len(await recover(world)) == 1
    email = replace(text, id=uuid.uuid4(), purpose="survey:other", channel="email")
    world.uow.messages.rows[email.id] = email
    await world.uow.messages.lease(email.id, OWNER, 60, new_attempt=True)
    unconfirmed = RecordDelivery(email.id, Lease(OWNER, 1), error="dropped", unconfirmed=True)
    assert await outreach.record_delivery(unconfirmed, world.uow, world.deps)
    failed = world.uow.messages.rows[email.id]
    assert failed.status is MessageStatus.FAILED and "not sent again" in (failed.reason or "")


async def test_an_interrupted_email_goes_again_only_if_data_never_began(world: World) -> None:
    await due_message(world)
    base = only_message(world)
    began, before = (replace(base, id=uuid.uuid4(), purpose=p, channel="email") for p in ("a", "b"))
    for m in (began, before):
        world.uow.messages.rows[m.id] = m
        await world.uow.messages.lease(m.id, OWNER, 60, new_attempt=True)
    world.uow.messages.rows.pop(base.id)
    assert await outreach.mark_data_started(
        MarkDataStarted(began.id, Lease(OWNER, 1)), world.uow, world.deps
    )
    expire_leases(world)
    assert await recover(world) == []
    rows = world.uow.messages.rows
    assert rows[began.id].status is MessageStatus.FAILED
    assert "not confirmed" in (rows[began.id].reason or "")
    assert rows[before.id].status is MessageStatus.DUE
    (failed,) = world.uow.emitted(MessageFailed)
    assert failed.message_id == str(began.id)


async def test_consent_revoked_after_due_is_checked_again_at_the_claim(world: World) -> None:
    await made_due(world)
    revoked = ConsentChanged(customer_id="c-1", channel="sms", granted=False)
    await outreach.on_consent_changed(world.received(revoked), world.uow, world.deps)
    assert await claim(world) == []
    gone = only_message(world)
    assert (gone.status, gone.reason) == (
        MessageStatus.SUPPRESSED,
        "sms: customer opted out of sms",
    )


async def test_quiet_hours_begun_after_due_hold_it_to_the_morning(world: World) -> None:
    await made_due(world)
    world.clock.now = datetime(2026, 11, 23, 21, 30, tzinfo=NY)
    assert await claim(world) == []
    held = only_message(world)
    assert held.status is MessageStatus.HELD
    assert held.send_at == datetime(2026, 11, 24, 8, 0, tzinfo=NY)
    assert any(t.fire_at == held.send_at for t in world.uow.timers.of_kind(MESSAGE_DUE))


async def test_a_case_opened_after_due_holds_back_a_reminder(world: World) -> None:
    await customer(world)
    message_id = await outreach.request_message(
        world.uow,
        world.clock,
        shop_id=world.shop_id,
        customer_id="c-1",
        kind="reminder",
        purpose="reminder:1",
        channels=["sms"],
    )
    assert message_id is not None
    due = world.uow.messages.rows[message_id]
    due.release(world.clock())
    await world.uow.cases.open(world.shop_id, "c-1", "case-1", world.clock())
    assert await claim(world) == []
    assert world.uow.messages.rows[message_id].status is MessageStatus.SUPPRESSED


# -- the budget counts what is decided, not only what is sent -------------------------


async def ask_marketing(world: World, kind: str, at: datetime) -> uuid.UUID:
    # commercial email carries the shop's postal address (CAN-SPAM)
    world.set_policy({"contact": {"postal_address": "1 Main St, Springfield, NY 10001"}})
    world.clock.now = at
    asked = await outreach.request_message(
        world.uow,
        world.clock,
        shop_id=world.shop_id,
        customer_id="c-1",
        kind=kind,
        purpose=f"{kind}:2026",
        channels=["email"],
    )
    assert asked is not None
    return asked


async def test_a_second_marketing_ask_waits_a_week_after_the_first_not_yet_sent(
    world: World,
) -> None:
    await customer(world)
    first = await ask_marketing(world, "referral_request", MONDAY_2PM)
    second = await ask_marketing(world, "birthday", MONDAY_2PM + timedelta(minutes=1))
    rows = world.uow.messages.rows
    assert (rows[first].status, rows[first].send_at) == (MessageStatus.SCHEDULED, MONDAY_2PM)
    assert rows[second].status is MessageStatus.HELD
    assert rows[second].send_at == MONDAY_2PM + timedelta(days=7)


async def test_a_held_message_yields_to_those_decided_before_it_not_after(
    world: World,
) -> None:
    # The first is held to the morning (quiet hours: SMS at night); the second, decided
    # after it, waits a week after that. At the morning the first goes: the later one,
    # still to go, does not push it back.
    night = datetime(2026, 11, 23, 22, 0, tzinfo=NY)
    await customer(world)
    consent = ConsentChanged(customer_id="c-1", channel="sms", granted=True)
    await outreach.on_consent_changed(world.received(consent), world.uow, world.deps)
    world.clock.now = night
    first = await outreach.request_message(
        world.uow,
        world.clock,
        shop_id=world.shop_id,
        customer_id="c-1",
        kind="birthday",
        purpose="birthday:2026",
        channels=["sms"],
    )
    assert first is not None
    morning = datetime(2026, 11, 24, 8, 0, tzinfo=NY)
    assert world.uow.messages.rows[first].send_at == morning
    second = await ask_marketing(world, "referral_request", night)
    assert world.uow.messages.rows[second].send_at == morning + timedelta(days=7)
    (wake,) = [t for t in world.uow.timers.of_kind(MESSAGE_DUE) if str(first) in t.key]
    world.clock.now = morning
    await outreach.on_message_due(world.uow.timers.fired(wake), world.uow, world.deps)
    assert world.uow.messages.rows[first].status is MessageStatus.DUE
