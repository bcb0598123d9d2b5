"""What followup does with loyalty's word about a customer, at the unit-of-work seam: the
stage it keeps (and the monthly check's win-back that follows from it), and the call an
at-risk customer gets."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from regulars_events.base import Event
from regulars_events.catalogue import (
    CustomerAtRisk,
    CustomerUpserted,
    FollowUpCancelled,
    FollowUpCompleted,
    FollowUpScheduled,
    LifecycleStage,
    LifecycleStageChanged,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ServiceCompleted,
    ServiceVoided,
)
from regulars_events.envelope import Envelope
from regulars_followup.domain.attempts import Attempt, AttemptOutcome
from regulars_followup.domain.follow_up import AT_RISK_CALL, FollowUpTask, at_risk_key
from regulars_followup.domain.tasks import TaskStatus
from regulars_followup.handlers import EVENTS, TOPICS, lifecycle, outreach, recovery, sweep, tasks
from regulars_followup.handlers.tasks import FOLLOW_UP_MISSED, RecordCallAttempt
from regulars_runtime.bus import Received
from regulars_runtime.unit_of_work import Waiting

from services.followup.tests.fakes import FakeClock, World

NY = ZoneInfo("America/New_York")
MONDAY_2PM = datetime(2026, 11, 23, 14, 0, tzinfo=NY)


@pytest.fixture
def world() -> World:
    return World(FakeClock(MONDAY_2PM))


def from_loyalty(world: World, event: Event, at: datetime | None = None) -> Received[Any]:
    envelope = Envelope.wrap(event, source="loyalty", shop_id=str(world.shop_id), time=at)
    return Received(event, envelope)


async def customer(world: World, cid: str = "c-1", **more: object) -> None:
    upserted = CustomerUpserted(
        customer_id=cid,
        name="Dana Reyes",
        email=f"{cid}@example.com",
        state="NY",
        **more,  # type: ignore[arg-type]
    )
    await outreach.on_customer_upserted(world.received(upserted), world.uow, world.deps)


async def visit(
    world: World,
    ro: str,
    cid: str = "c-1",
    days_ago: int = 0,
    advisor: str | None = "sam",
    work: str = "brake pads",
) -> None:
    done = ServiceCompleted(
        repair_order_id=ro,
        customer_id=cid,
        completed_at=world.clock() - timedelta(days=days_ago),
        advisor=advisor,
        work_performed=work,
        asset_id="2019 CR-V",
    )
    await tasks.on_services_completed([world.received(done)], world.uow, world.deps)


async def stage(
    world: World,
    to_stage: LifecycleStage,
    at: datetime,
    from_stage: LifecycleStage | None = None,
    cid: str = "c-1",
) -> None:
    changed = LifecycleStageChanged(
        customer_id=cid, from_stage=from_stage, to_stage=to_stage, reason="test"
    )
    await lifecycle.on_stage_changed(from_loyalty(world, changed, at), world.uow, world.deps)


def held_stage(world: World, cid: str = "c-1") -> tuple[str | None, datetime | None]:
    found = world.uow.customers.rows[(world.shop_id, cid)]
    return found.stage, found.stage_at


def at_risk(cid: str = "c-1") -> CustomerAtRisk:
    return CustomerAtRisk(
        customer_id=cid,
        reasons=["missed_follow_up", "overdue_maintenance"],
        score=0.72,
        threshold=0.6,
    )


def at_risk_calls(world: World) -> list[FollowUpTask]:
    return [t for t in world.uow.tasks.rows.values() if t.kind == AT_RISK_CALL]


def test_followup_hears_loyalty() -> None:
    assert "regulars.lifecycle" in TOPICS
    assert EVENTS[LifecycleStageChanged.type] is lifecycle.on_stage_changed
    assert EVENTS[CustomerAtRisk.type] is lifecycle.on_customer_at_risk


# -- the stage -------------------------------------------------------------------------


async def test_a_stage_change_moves_the_customers_stage(world: World) -> None:
    await customer(world)
    t1 = MONDAY_2PM
    await stage(world, "customer", t1, "prospect")
    assert held_stage(world) == ("customer", t1)
    await stage(world, "repeat", t1 + timedelta(days=90), "customer")
    assert held_stage(world) == ("repeat", t1 + timedelta(days=90))


async def test_an_older_stage_change_arriving_late_does_not_move_it_back(world: World) -> None:
    await customer(world)
    t1, t2 = MONDAY_2PM, MONDAY_2PM + timedelta(days=400)
    await stage(world, "lapsed", t2, "repeat")
    await stage(world, "repeat", t1, "customer")  # reordered: the older one comes second
    assert held_stage(world) == ("lapsed", t2)


async def test_a_redelivered_stage_change_changes_nothing(world: World) -> None:
    await customer(world)
    t1, t2 = MONDAY_2PM, MONDAY_2PM + timedelta(days=400)
    changed = LifecycleStageChanged(
        customer_id="c-1", from_stage="repeat", to_stage="lapsed", reason="12 months"
    )
    first = from_loyalty(world, changed, t2)
    await lifecycle.on_stage_changed(first, world.uow, world.deps)
    await stage(world, "repeat", t2 + timedelta(days=1), "lapsed")  # they came back
    await lifecycle.on_stage_changed(first, world.uow, world.deps)  # and the old one again
    assert held_stage(world) == ("repeat", t2 + timedelta(days=1))
    await stage(world, "lapsed", t1, "repeat")
    assert held_stage(world) == ("repeat", t2 + timedelta(days=1))


async def test_two_changes_at_the_same_time_apply_in_their_chain(world: World) -> None:
    await customer(world)
    at = MONDAY_2PM
    await stage(world, "customer", at, "prospect")
    await stage(world, "repeat", at, "customer")  # follows the stage held: applied
    await stage(world, "customer", at, "prospect")  # the first again: not
    assert held_stage(world) == ("repeat", at)


async def test_a_stage_for_a_customer_not_known_yet_waits_for_them(world: World) -> None:
    with pytest.raises(Waiting):
        await stage(world, "customer", MONDAY_2PM, "prospect", cid="c-later")


# -- the monthly check: the win-back goes by loyalty's stage ----------------------------


async def run_december(world: World) -> dict[str, int]:
    world.clock.now = datetime(2026, 12, 1, 8, 0, tzinfo=NY)
    return await sweep.run_monthly_check(
        world.transaction, world.clock, world.shop_id, date(2026, 12, 1)
    )


def asked(world: World, cid: str) -> list[str]:
    return sorted(
        m.kind
        for m in world.uow.messages.rows.values()
        if m.customer_id == cid and m.to_staff is None
    )


async def test_the_win_back_goes_to_whom_loyalty_has_as_lapsed(world: World) -> None:
    for cid in ("c-lapsed", "c-lost", "c-quiet"):
        await customer(world, cid, birthday=date(1980, 12, 24))
        await visit(world, f"ro-{cid}", cid, days_ago=400, work="oil change")
    await stage(world, "lapsed", MONDAY_2PM, "repeat", cid="c-lapsed")
    await stage(world, "lost", MONDAY_2PM, "lapsed", cid="c-lost")
    await stage(world, "repeat", MONDAY_2PM, "customer", cid="c-quiet")
    counts = await run_december(world)
    assert asked(world, "c-lapsed") == ["win_back"]  # only the win-back
    assert asked(world, "c-lost") == []  # nothing at all
    # 400 days without a visit is not lapsed unless loyalty says so
    assert asked(world, "c-quiet") == ["birthday", "reminder"]
    assert counts == {"win_back": 1, "birthday": 1, "reminder": 1}
    (win_back,) = [m for m in world.uow.messages.rows.values() if m.kind == "win_back"]
    assert win_back.purpose == "win_back:ro-c-lapsed"
    assert await run_december(world) == {}  # each asked for once


# -- at-risk outreach --------------------------------------------------------------------


async def test_an_at_risk_customer_gets_a_call_from_their_last_advisor(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=300, advisor="kim")
    await visit(world, "ro-2", days_ago=200, advisor="sam")
    before = len(world.uow.emitted(FollowUpScheduled))
    crossing = from_loyalty(world, at_risk())
    await lifecycle.on_customer_at_risk(crossing, world.uow, world.deps)
    (call,) = at_risk_calls(world)
    assert (call.assignee, call.status, call.due_at) == ("sam", TaskStatus.SCHEDULED, MONDAY_2PM)
    assert call.repair_order_id == at_risk_key(crossing.envelope.id)
    assert call.script["last_repair_order_id"] == "ro-2"
    assert call.script["why"] == [
        "we could not reach them after a visit",
        "their maintenance is overdue",
    ]
    assert call.script["churn_risk"] == 0.72
    assert any("brake pads on your 2019 CR-V" in line for line in call.script["lines"])
    scheduled = world.uow.emitted(FollowUpScheduled)[before:]
    assert [(e.task_id, e.repair_order_id, e.assignee) for e in scheduled] == [
        (str(call.id), call.repair_order_id, "sam")
    ]
    miss = [
        t
        for t in world.uow.timers.of_kind(FOLLOW_UP_MISSED)
        if t.payload["task_id"] == str(call.id)
    ]
    assert [t.fire_at for t in miss] == [MONDAY_2PM + timedelta(hours=24)]


async def test_outside_business_hours_the_call_is_due_when_the_shop_opens(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=200)
    world.clock.now = datetime(2026, 11, 28, 19, 30, tzinfo=NY)  # Saturday evening
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    (call,) = at_risk_calls(world)
    assert call.due_at == datetime(2026, 11, 30, 9, 0, tzinfo=NY)  # Monday 09:00


async def test_one_call_per_crossing_and_a_redelivery_adds_none(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=200)
    before = len(world.uow.emitted(FollowUpScheduled))
    first = from_loyalty(world, at_risk())
    await lifecycle.on_customer_at_risk(first, world.uow, world.deps)
    await lifecycle.on_customer_at_risk(first, world.uow, world.deps)  # redelivered
    assert len(at_risk_calls(world)) == 1
    assert len(world.uow.emitted(FollowUpScheduled)) == before + 1
    # the score fell back and crossed again: a new crossing, a new call
    again = from_loyalty(world, at_risk(), MONDAY_2PM + timedelta(days=60))
    await lifecycle.on_customer_at_risk(again, world.uow, world.deps)
    assert sorted(t.repair_order_id for t in at_risk_calls(world)) == sorted(
        [at_risk_key(first.envelope.id), at_risk_key(again.envelope.id)]
    )
    assert len(world.uow.emitted(FollowUpScheduled)) == before + 2


async def test_no_call_while_a_recovery_case_is_open(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=10)
    await open_case(world)
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    assert at_risk_calls(world) == []
    resolved = RecoveryCaseResolved(
        case_id="k-1", customer_id="c-1", outcome="replaced the pads", resolved_at=MONDAY_2PM
    )
    await recovery.on_case_resolved(world.received(resolved), world.uow, world.deps)
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    assert len(at_risk_calls(world)) == 1  # the case is closed: a later crossing gets its call


async def test_no_call_for_a_customer_with_no_visit(world: World) -> None:
    await customer(world)
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    assert at_risk_calls(world) == []
    assert world.uow.emitted(FollowUpScheduled) == []


async def test_no_call_for_a_lapsed_or_lost_customer_the_win_back_is_theirs(world: World) -> None:
    for cid, to in (("c-lapsed", "lapsed"), ("c-lost", "lost")):
        await customer(world, cid)
        await visit(world, f"ro-{cid}", cid, days_ago=800)
        await stage(world, to, MONDAY_2PM, "customer", cid=cid)
        crossing = from_loyalty(world, at_risk(cid))
        await lifecycle.on_customer_at_risk(crossing, world.uow, world.deps)
    assert at_risk_calls(world) == []


async def test_a_voided_visit_is_not_the_last_visit(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=200, advisor="kim")
    await visit(world, "ro-2", days_ago=100, advisor="sam")
    void = world.received(ServiceVoided(repair_order_id="ro-2"))
    await tasks.on_service_voided(void, world.uow, world.deps)
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    (call,) = at_risk_calls(world)
    assert (call.assignee, call.script["last_repair_order_id"]) == ("kim", "ro-1")


async def open_case(world: World) -> None:
    opened = RecoveryCaseOpened(
        case_id="k-1",
        customer_id="c-1",
        severity="high",
        assignee="sam",
        escalation_level="advisor",
        ack_due_at=MONDAY_2PM + timedelta(hours=2),
        resolve_due_at=MONDAY_2PM + timedelta(days=2),
    )
    await recovery.on_case_opened(world.received(opened), world.uow, world.deps)


async def test_a_case_opened_after_the_crossing_calls_off_the_call_not_yet_made(
    world: World,
) -> None:
    # The case and the crossing travel on different topics: the end is the same either way.
    await customer(world)
    await visit(world, "ro-1")  # its own call is still to make, too
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    (call,) = at_risk_calls(world)
    await open_case(world)
    (cancelled_call,) = at_risk_calls(world)
    assert (cancelled_call.status, cancelled_call.status_reason) == (
        TaskStatus.CANCELLED,
        "recovery case opened",
    )
    (cancelled,) = world.uow.emitted(FollowUpCancelled)
    assert (cancelled.task_id, cancelled.reason) == (str(call.id), "recovery case opened")
    (visit_call,) = [t for t in world.uow.tasks.rows.values() if t.kind == "visit"]
    assert visit_call.status is TaskStatus.SCHEDULED  # only the at-risk call is called off


async def test_an_at_risk_call_is_worked_like_any_call(world: World) -> None:
    await customer(world)
    await visit(world, "ro-1", days_ago=200)
    await lifecycle.on_customer_at_risk(from_loyalty(world, at_risk()), world.uow, world.deps)
    (call,) = at_risk_calls(world)
    reached = Attempt(AttemptOutcome.REACHED, world.clock(), satisfied=True, score=8)
    await tasks.record_call_attempt(
        RecordCallAttempt(world.shop_id, call.id, reached), world.uow, world.deps
    )
    (done,) = world.uow.emitted(FollowUpCompleted)
    assert (done.task_id, done.repair_order_id, done.score) == (
        str(call.id),
        call.repair_order_id,
        8,
    )
    assert at_risk_calls(world)[0].status is TaskStatus.COMPLETED
    # a case opening later leaves a call already made alone
    await open_case(world)
    assert at_risk_calls(world)[0].status is TaskStatus.COMPLETED
    assert world.uow.emitted(FollowUpCancelled) == []
