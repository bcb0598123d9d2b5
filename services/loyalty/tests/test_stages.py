"""The lifecycle stages' boundaries, pure: when each stage begins and ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from regulars_loyalty.domain.stages import (
    MAINTENANCE_GRACE,
    Signals,
    StageRules,
    assess,
    months_after,
    months_before,
)

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
RULES = StageRules()


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def stage(visits: list[datetime], signals: Signals | None = None, now: datetime = NOW) -> str:
    return assess(visits, signals or Signals(), now, RULES).stage


def test_no_completed_service_is_a_prospect() -> None:
    assert stage([]) == "prospect"
    # a visit dated after now (a clock skew) is not counted yet
    assert stage([NOW + timedelta(hours=1)]) == "prospect"


def test_one_visit_is_a_customer() -> None:
    assert stage([days_ago(10)]) == "customer"


@pytest.mark.parametrize(("quiet_days", "expected"), [(364, "customer"), (365, "lapsed")])
def test_lapsed_begins_at_exactly_lapsed_after(quiet_days: int, expected: str) -> None:
    assert stage([days_ago(quiet_days)]) == expected


@pytest.mark.parametrize(("quiet_days", "expected"), [(729, "lapsed"), (730, "lost")])
def test_lost_begins_at_exactly_lost_after(quiet_days: int, expected: str) -> None:
    assert stage([days_ago(quiet_days)]) == expected


def test_the_shops_own_lapsed_after_and_lost_after_decide() -> None:
    rules = StageRules(lapsed_after=timedelta(days=180), lost_after=timedelta(days=400))
    assert assess([days_ago(179)], Signals(), NOW, rules).stage == "customer"
    assert assess([days_ago(180)], Signals(), NOW, rules).stage == "lapsed"
    assert assess([days_ago(400)], Signals(), NOW, rules).stage == "lost"


def test_two_visits_within_18_months_are_a_repeat_customer() -> None:
    first = months_before(NOW, 18)
    assert stage([first, days_ago(30)]) == "repeat"


def test_two_visits_across_the_18_month_window_are_not() -> None:
    first = months_before(NOW, 18) - timedelta(seconds=1)
    assessment = assess([first, days_ago(30)], Signals(), NOW, RULES)
    assert assessment.stage == "customer"
    assert "fewer than 2 within 18 months" in assessment.reason


def test_three_visits_within_24_months_are_loyal_unless_a_case_is_open() -> None:
    visits = [months_before(NOW, 24), days_ago(200), days_ago(20)]
    assert stage(visits) == "loyal"
    open_case = Signals(open_case=True, open_negative_since=days_ago(1))
    assert stage(visits, open_case) == "at_risk"
    # a case open without negative feedback still holds loyalty back
    assert stage(visits, Signals(open_case=True)) == "repeat"
    older = [months_before(NOW, 24) - timedelta(seconds=1), days_ago(200), days_ago(20)]
    assert stage(older) == "repeat"


def test_a_referral_makes_an_advocate() -> None:
    signals = Signals(referred=(("c-9", days_ago(3)),))
    assessment = assess([days_ago(100)], signals, NOW, RULES)
    assert assessment.stage == "advocate"
    assert assessment.reason == "referred c-9"
    assert assessment.since == days_ago(3)


def test_a_promoter_invited_to_review_is_an_advocate() -> None:
    assert stage([days_ago(100)], Signals(promoter_invited_at=days_ago(5))) == "advocate"


def test_lapsed_outranks_advocate_and_at_risk() -> None:
    signals = Signals(referred=(("c-9", days_ago(400)),), missed_follow_up_at=days_ago(380))
    assert stage([days_ago(400)], signals) == "lapsed"


def test_a_missed_follow_up_puts_at_risk_until_the_customer_is_heard_from() -> None:
    visit = days_ago(40)
    missed = Signals(missed_follow_up_at=days_ago(35))
    assert stage([visit], missed) == "at_risk"
    answered = Signals(missed_follow_up_at=days_ago(35), heard_from_at=days_ago(30))
    assert stage([visit], answered) == "customer"
    assert stage([visit, days_ago(2)], missed) == "repeat"


def test_maintenance_is_overdue_a_grace_period_after_its_reminder() -> None:
    visit = days_ago(300)
    just_reminded = Signals(maintenance_reminded_at=NOW - MAINTENANCE_GRACE + timedelta(hours=1))
    assert stage([visit], just_reminded) == "customer"
    overdue = Signals(maintenance_reminded_at=NOW - MAINTENANCE_GRACE)
    assessment = assess([visit], overdue, NOW, RULES)
    assert assessment.stage == "at_risk"
    assert assessment.at_risk_reasons == ("overdue_maintenance",)
    assert stage([visit, days_ago(1)], overdue) == "repeat"


def test_the_next_change_is_when_time_alone_changes_the_stage() -> None:
    last = days_ago(100)
    assessment = assess([last], Signals(), NOW, RULES)
    assert assessment.next_change_at == last + RULES.lapsed_after
    lapsed = assess([last], Signals(), last + RULES.lapsed_after, RULES)
    assert lapsed.stage == "lapsed"
    assert lapsed.next_change_at == last + RULES.lost_after
    lost = assess([last], Signals(), last + RULES.lost_after, RULES)
    assert (lost.stage, lost.next_change_at) == ("lost", None)


def test_a_repeat_customer_falls_back_when_a_visit_leaves_the_window() -> None:
    first, second = days_ago(500), days_ago(300)
    assessment = assess([first, second], Signals(), NOW, RULES)
    assert assessment.stage == "repeat"
    leaves = months_after(first, 18) + timedelta(microseconds=1)
    assert assessment.next_change_at == leaves
    assert assess([first, second], Signals(), leaves, RULES).stage == "customer"


def test_stage_since_is_in_event_time() -> None:
    last = days_ago(500)
    assert assess([last], Signals(), NOW, RULES).since == last + RULES.lapsed_after
    second = days_ago(40)
    assert assess([days_ago(90), second], Signals(), NOW, RULES).since == second


def test_calendar_months_clamp_the_day() -> None:
    assert months_after(datetime(2024, 8, 31, tzinfo=UTC), 18) == datetime(2026, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2026, 3, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 13) == datetime(
        2024, 12, 15, tzinfo=UTC
    )
