"""feedback's handlers at the unit-of-work seam: events, timers and commands through the
real bus, with repositories, timers and shops in memory and a fake clock.

The shop keeps the default hours (Mon-Sat 09:00-18:00, America/New_York) and SLAs (ack
PT2H, critical PT30M, resolve P2D, at risk with a quarter left), with three staff.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_events.catalogue import FollowUpCompleted, FollowUpMissed, ServiceCompleted
from regulars_feedback.domain.cases import OutcomeRequired, timer_key
from regulars_feedback.domain.surveys import InvalidAnswer
from regulars_feedback.handlers.cases import RESURVEY, SLA
from regulars_feedback.handlers.commands import AcknowledgeCase, AnswerSurvey, ResolveCase
from regulars_shop.policy import Policy

from services.feedback.tests.fakes import Feedback

NY = ZoneInfo("America/New_York")
STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@x.example"},
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@x.example"},
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@x.example"},
]
POLICY = Policy.defaults().merged({"staff": STAFF})
MONDAY_10 = datetime(2026, 6, 1, 10, tzinfo=NY)

NEGATIVE = "regulars.feedback.negative.v1"
POSITIVE = "regulars.feedback.positive.v1"
RECEIVED = "regulars.feedback.received.v1"
OPENED = "regulars.recovery_case.opened.v1"
ACKNOWLEDGED = "regulars.recovery_case.acknowledged.v1"
ESCALATED = "regulars.recovery_case.escalated.v1"
RESOLVED = "regulars.recovery_case.resolved.v1"
AT_RISK = "regulars.recovery_case.sla_at_risk.v1"
SURVEY_REQUESTED = "regulars.survey.requested.v1"
REVIEW = "regulars.review.requested.v1"
REFERRAL = "regulars.referral.requested.v1"


def ny(d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(2026, 6, d, h, mi, s, tzinfo=NY)


@pytest.fixture
async def fb() -> Feedback:
    feedback = Feedback(MONDAY_10, POLICY)
    await feedback.deliver(
        ServiceCompleted(
            repair_order_id="ro1", customer_id="c1", completed_at=MONDAY_10, advisor="sam"
        )
    )
    return feedback


async def unhappy_call(fb: Feedback, notes: str, ro: str = "ro1") -> None:
    await fb.deliver(
        FollowUpCompleted(
            task_id=str(uuid.uuid4()),
            customer_id="c1",
            repair_order_id=ro,
            assignee="sam",
            satisfied=False,
            notes=notes,
            completed_at=fb.clock(),
        )
    )


def sla_timers(fb: Feedback) -> list[tuple[str, str, datetime]]:
    return [
        (t.payload["clock"], t.payload["moment"], t.fire_at) for t in fb.world.timers.pending(SLA)
    ]


# -- opening and joining ------------------------------------------------------------------------


async def test_an_unhappy_call_opens_one_case_with_its_severity_and_sla_timers(
    fb: Feedback,
) -> None:
    await unhappy_call(fb, "the wait was long")
    case = fb.world.cases.only()
    assert (case.severity, case.status, case.assignee, case.escalation_level) == (
        "normal",
        "open",
        "sam",
        "advisor",
    )
    assert case.incident_key == "c1|ro:ro1"
    assert sorted(sla_timers(fb)) == sorted(
        [
            ("acknowledge", "at_risk", ny(1, 11, 30)),
            ("acknowledge", "breach", ny(1, 12)),
            # 18 business hours from Monday 10:00: Wednesday 10:00, at risk 4.5 h before
            ("resolve", "at_risk", ny(2, 14, 30)),
            ("resolve", "breach", ny(3, 10)),
        ]
    )
    (opened,) = fb.events(OPENED)
    assert opened["case_id"] == str(case.id) and opened["assignee_email"] == "sam@x.example"
    (negative,) = fb.events(NEGATIVE)
    assert negative["case_id"] == str(case.id) and negative["source"] == "follow_up_call"
    assert fb.world.cases.kinds(case.id) == ["opened"]
    # the survey still goes out after the call
    assert [e["reason"] for e in fb.events(SURVEY_REQUESTED)] == ["after_follow_up"]


async def test_a_safety_word_makes_the_case_critical_with_the_short_window(
    fb: Feedback,
) -> None:
    await unhappy_call(fb, "the brakes feel unsafe")
    case = fb.world.cases.only()
    assert case.severity == "critical"
    assert case.acknowledge_window.due_at == ny(1, 10, 30)
    assert ("acknowledge", "breach", ny(1, 10, 30)) in sla_timers(fb)
    assert fb.events(NEGATIVE)[0]["safety"]


async def test_a_second_signal_joins_the_same_case(fb: Feedback) -> None:
    await unhappy_call(fb, "the wait was long")
    fb.clock.now = ny(1, 10, 5)
    token = fb.world.surveys.token("c1")
    done = await fb.handle(AnswerSurvey(token, {"nps": 5, "comment": "still slow"}))
    assert done.first
    case = fb.world.cases.only()
    negatives = fb.events(NEGATIVE)
    assert [n["source"] for n in negatives] == ["follow_up_call", "survey"]
    assert {n["case_id"] for n in negatives} == {str(case.id)}
    assert len(fb.events(OPENED)) == 1
    assert fb.world.cases.kinds(case.id)[:2] == ["opened", "joined"]
    # a case is open: the survey's review ask is held back
    assert fb.events(REVIEW) == []


async def test_a_safety_signal_joining_shortens_the_window_and_the_old_timers_stand_down(
    fb: Feedback,
) -> None:
    await unhappy_call(fb, "the wait was long")
    fb.clock.now = ny(1, 10, 10)
    await unhappy_call(fb, "and now the brakes squeal")
    case = fb.world.cases.only()
    assert case.severity == "critical" and case.acknowledge_window.due_at == ny(1, 10, 30)
    assert fb.world.cases.kinds(case.id) == ["opened", "joined", "severity"]
    await fb.at(ny(1, 10, 30))
    assert [(e["from_level"], e["to_level"]) for e in fb.events(ESCALATED)] == [
        ("advisor", "service_manager")
    ]
    await fb.at(ny(1, 11, 0))  # the manager's 30 minutes
    await fb.at(ny(1, 12, 0))  # the first window's end: its timers stand down
    assert [e["to_level"] for e in fb.events(ESCALATED)] == ["service_manager", "owner"]


# -- SLA timers ---------------------------------------------------------------------------------


async def test_an_sla_breach_escalates_one_level_and_a_stale_timer_stands_down(
    fb: Feedback,
) -> None:
    await unhappy_call(fb, "the wait was long")
    case = fb.world.cases.only()
    breach = next(
        t
        for t in fb.world.timers.pending(SLA)
        if t.payload["clock"] == "acknowledge" and t.payload["moment"] == "breach"
    )
    await fb.at(ny(1, 11, 30))
    (warning,) = fb.events(AT_RISK)
    assert (warning["clock"], warning["assignee"]) == ("acknowledge", "sam")
    assert fb.events(ESCALATED) == []

    await fb.at(ny(1, 12))
    (up,) = fb.events(ESCALATED)
    assert (up["from_level"], up["to_level"], up["assignee"], up["clock"]) == (
        "advisor",
        "service_manager",
        "maria",
        "acknowledge",
    )
    assert up["assignee_email"] == "maria@x.example"
    case = fb.world.cases.only()
    assert (case.escalation_level, case.assignee) == ("service_manager", "maria")
    assert case.acknowledge_window.due_at == ny(1, 14)  # a new window for the manager
    assert ("acknowledge", "breach", ny(1, 14)) in sla_timers(fb)

    # The same breach firing again (a retry after a crash): nothing escalates twice.
    await fb.fire(breach)
    assert len(fb.events(ESCALATED)) == 1
    assert fb.world.cases.only().escalation_level == "service_manager"


async def test_the_top_of_the_ladder_is_recorded_not_escalated(fb: Feedback) -> None:
    await unhappy_call(fb, "the wait was long")
    for hour in (12, 14, 16):  # the advisor's window, the manager's, the owner's
        await fb.at(ny(1, hour))
    assert [e["to_level"] for e in fb.events(ESCALATED)] == ["service_manager", "owner"]
    case = fb.world.cases.only()
    assert fb.world.cases.kinds(case.id).count("sla_breached") == 1


# -- staff commands -----------------------------------------------------------------------------


async def test_acknowledging_cancels_the_acknowledge_timers_only(fb: Feedback) -> None:
    await unhappy_call(fb, "the wait was long")
    case = fb.world.cases.only()
    fb.clock.now = ny(1, 11)
    assert await fb.handle(AcknowledgeCase(fb.shop_id, case.id, by="sam", note="calling"))
    ack_keys = {
        timer_key(str(case.id), "acknowledge", moment, ny(1, 12))
        for moment in ("at_risk", "breach")
    }
    assert fb.world.timers.cancelled() == ack_keys
    assert {c for c, _m, _at in sla_timers(fb)} == {"resolve"}
    (acknowledged,) = fb.events(ACKNOWLEDGED)
    assert acknowledged["acknowledged_by"] == "sam"
    assert fb.world.cases.only().status == "acknowledged"
    # again: no change, no event
    assert not await fb.handle(AcknowledgeCase(fb.shop_id, case.id, by="sam"))
    assert len(fb.events(ACKNOWLEDGED)) == 1
    await fb.at(ny(1, 17))
    assert fb.events(ESCALATED) == []


async def test_resolving_needs_an_outcome_then_stops_every_clock_and_brings_the_resurvey(
    fb: Feedback,
) -> None:
    await unhappy_call(fb, "rude advisor")
    case = fb.world.cases.only()
    with pytest.raises(OutcomeRequired):
        await fb.handle(ResolveCase(fb.shop_id, case.id, outcome="   ", by="sam"))
    assert fb.world.cases.only().status == "open"
    assert fb.events(RESOLVED) == []

    await fb.handle(ResolveCase(fb.shop_id, case.id, outcome="apologised", by="sam"))
    case = fb.world.cases.only()
    assert (case.status, case.outcome, case.resolved_by) == ("resolved", "apologised", "sam")
    assert sla_timers(fb) == []
    (resurvey,) = fb.world.timers.pending(RESURVEY)
    assert resurvey.fire_at == MONDAY_10 + timedelta(days=7)
    (resolved,) = fb.events(RESOLVED)
    assert resolved["check_in_at"] == resurvey.fire_at.isoformat()

    await fb.at(MONDAY_10 + timedelta(days=7))
    again = [e for e in fb.events(SURVEY_REQUESTED) if e["reason"] == "recovery_resurvey"]
    assert len(again) == 1 and again[0]["case_id"] == str(case.id)
    assert fb.events(ESCALATED) == [] and fb.events(AT_RISK) == []


# -- survey answers -----------------------------------------------------------------------------


async def surveyed(fb: Feedback) -> str:
    await fb.deliver(
        FollowUpMissed(
            task_id="t1",
            customer_id="c1",
            repair_order_id="ro1",
            reason="max_attempts",
            missed_at=fb.clock(),
        )
    )
    return fb.world.surveys.token("c1")


async def test_a_promoter_answer_is_positive_and_brings_review_and_referral_asks(
    fb: Feedback,
) -> None:
    token = await surveyed(fb)
    done = await fb.handle(AnswerSurvey(token, {"nps": 10, "comment": "great job"}))
    assert done.first and done.result["nps"] == 10
    (received,) = fb.events(RECEIVED)
    assert received["nps"] == 10
    assert [p["nps"] for p in fb.events(POSITIVE)] == [10]
    assert fb.events(NEGATIVE) == [] and fb.world.cases.rows == {}
    assert len(fb.events(REVIEW)) == 1 and len(fb.events(REFERRAL)) == 1
    (survey,) = fb.world.surveys.rows.values()
    assert survey.status == "answered"


async def test_a_detractor_answer_is_negative_and_opens_a_case(fb: Feedback) -> None:
    token = await surveyed(fb)
    await fb.handle(AnswerSurvey(token, {"nps": 3}))
    assert [n["nps"] for n in fb.events(NEGATIVE)] == [3]
    assert fb.events(POSITIVE) == [] and fb.events(REFERRAL) == []
    case = fb.world.cases.only()
    assert case.severity == "high" and len(fb.events(OPENED)) == 1


async def test_answering_twice_counts_the_first_answer_only(fb: Feedback) -> None:
    token = await surveyed(fb)
    first = await fb.handle(AnswerSurvey(token, {"nps": 10}))
    before = len(fb.world.outbox)
    again = await fb.handle(AnswerSurvey(token, {"nps": 0}))
    assert not again.first and again.result == first.result
    assert len(fb.world.outbox) == before  # nothing new emitted
    assert fb.world.cases.rows == {}
    (survey,) = fb.world.surveys.rows.values()
    assert survey.response is not None and survey.response.nps == 10


async def test_an_invalid_first_answer_changes_nothing(fb: Feedback) -> None:
    token = await surveyed(fb)
    before = len(fb.world.outbox)
    with pytest.raises(InvalidAnswer):
        await fb.handle(AnswerSurvey(token, {"nps": 11}))
    assert len(fb.world.outbox) == before
    (survey,) = fb.world.surveys.rows.values()
    assert survey.response is None and survey.status == "sent"
