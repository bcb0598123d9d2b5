"""Recovery cases, pure: SLA windows in business time (nights, weekends, holidays, DST),
who owns a case and the escalation ladder, and what each status allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_feedback.domain.cases import (
    CaseClosed,
    SlaRules,
    can_acknowledge,
    check_resolvable,
    clock_running,
    escalation,
    initial_assignment,
    outcome_note,
    sla_window,
    staff_of,
    timer_key,
)
from regulars_feedback.domain.classification import StaffRef
from regulars_shop.calendar import BusinessCalendar
from regulars_shop.policy import Policy

NY = ZoneInfo("America/New_York")
WORKSHOP = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")}
ALWAYS = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, fold=fold, tzinfo=NY)


def workshop(*holidays: str) -> BusinessCalendar:
    return BusinessCalendar.from_policy("America/New_York", WORKSHOP, holidays)


def same(a: datetime, b: datetime) -> bool:
    return a.astimezone(UTC) == b.astimezone(UTC)


# -- SLA arithmetic -------------------------------------------------------------------------


def test_a_window_inside_one_day_counts_to_the_minute() -> None:
    w = sla_window(workshop(), ny(2026, 6, 2, 10, 7), timedelta(hours=2), 0.25)
    assert same(w.due_at, ny(2026, 6, 2, 12, 7))
    assert same(w.at_risk_at, ny(2026, 6, 2, 11, 37))  # a quarter (30 min) left


def test_a_window_runs_over_the_night() -> None:
    # Tuesday 17:30 + 2 business hours: 30 min today, 90 min from Wednesday 09:00.
    w = sla_window(workshop(), ny(2026, 6, 2, 17, 30), timedelta(hours=2), 0.25)
    assert same(w.due_at, ny(2026, 6, 3, 10, 30))
    assert same(w.at_risk_at, ny(2026, 6, 3, 10, 0))


def test_a_critical_window_opened_at_night_starts_at_opening() -> None:
    w = sla_window(workshop(), ny(2026, 6, 2, 23, 15), timedelta(minutes=30), 0.25)
    assert same(w.due_at, ny(2026, 6, 3, 9, 30))
    assert same(w.at_risk_at, ny(2026, 6, 3, 9, 22, 30))


def test_a_window_skips_the_closed_sunday() -> None:
    # Saturday 17:30 + 2 h: 30 min on Saturday, Sunday closed, Monday 09:00 + 90 min.
    w = sla_window(workshop(), ny(2026, 6, 6, 17, 30), timedelta(hours=2), 0.25)
    assert same(w.due_at, ny(2026, 6, 8, 10, 30))


def test_a_window_skips_a_holiday() -> None:
    # Wed 24 Dec 17:00 + 18 business hours (P2D of 9-hour days): 1 h Wed, Christmas closed,
    # 9 h Friday, 8 h Saturday -> Saturday 17:00.
    cal = workshop("2025-12-25")
    w = sla_window(cal, ny(2025, 12, 24, 17), timedelta(hours=18), 0.25)
    assert same(w.due_at, ny(2025, 12, 27, 17))
    assert same(w.at_risk_at, ny(2025, 12, 27, 12, 30))  # 13.5 h used


def test_a_window_across_spring_forward_is_real_time() -> None:
    always = BusinessCalendar.from_policy("America/New_York", ALWAYS)
    # 8 Mar 2026: 02:00 EST jumps to 03:00 EDT. 23:00 + 4 real hours = 04:00 EDT.
    w = sla_window(always, ny(2026, 3, 7, 23), timedelta(hours=4), 0.25)
    assert same(w.due_at, ny(2026, 3, 8, 4))
    assert w.due_at.astimezone(UTC) - ny(2026, 3, 7, 23).astimezone(UTC) == timedelta(hours=4)
    assert same(w.at_risk_at, ny(2026, 3, 8, 3))


def test_a_window_across_fall_back_is_real_time() -> None:
    always = BusinessCalendar.from_policy("America/New_York", ALWAYS)
    # 1 Nov 2026: 02:00 EDT falls back to 01:00 EST. 23:00 EDT + 4 h = 02:00 EST.
    w = sla_window(always, ny(2026, 10, 31, 23), timedelta(hours=4), 0.25)
    assert w.due_at.astimezone(UTC) == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert (w.due_at.hour, w.due_at.utcoffset()) == (2, timedelta(hours=-5))


def test_an_opening_hours_day_across_dst_is_still_nine_business_hours() -> None:
    # Saturday 7 Mar 17:00 + 2 h: 1 h Saturday, Sunday closed, Monday 09:00 EDT + 1 h.
    w = sla_window(workshop(), ny(2026, 3, 7, 17), timedelta(hours=2), 0.25)
    assert same(w.due_at, ny(2026, 3, 9, 10))


def test_rules_from_the_default_policy() -> None:
    rules = SlaRules.from_policy(Policy.defaults())
    assert (rules.ack, rules.ack_critical, rules.resolve) == (
        timedelta(hours=2),
        timedelta(minutes=30),
        timedelta(hours=18),  # P2D: two business days of nine hours
    )
    opened = ny(2026, 6, 1, 9)  # a Monday
    assert same(rules.window("acknowledge", "normal", opened).due_at, ny(2026, 6, 1, 11))
    assert same(rules.window("acknowledge", "high", opened).due_at, ny(2026, 6, 1, 11))
    assert same(rules.window("acknowledge", "critical", opened).due_at, ny(2026, 6, 1, 9, 30))
    assert same(rules.window("resolve", "critical", opened).due_at, ny(2026, 6, 2, 18))


def test_rules_of_a_short_policy_in_seconds() -> None:
    policy = Policy.defaults().merged(
        {"business_hours": ALWAYS, "ack_sla_critical": "PT3S", "ack_sla": "PT6S"}
    )
    rules = SlaRules.from_policy(policy)
    opened = datetime(2026, 6, 1, 12, tzinfo=UTC)
    w = rules.window("acknowledge", "critical", opened)
    assert w.due_at - opened == timedelta(seconds=3)
    assert w.at_risk_at - opened == timedelta(seconds=2.25)


def test_the_at_risk_fraction_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        sla_window(workshop(), ny(2026, 6, 2, 10), timedelta(hours=1), 1.0)


# -- people and the ladder --------------------------------------------------------------------

STAFF = [
    StaffRef("sam", "Sam Rivera", "advisor", "sam@shop.example"),
    StaffRef("maria", "Maria Lopez", "service_manager", "maria@shop.example"),
    StaffRef("olga", "Olga Chen", "owner", "olga@shop.example"),
]


def test_a_case_goes_to_the_visits_advisor() -> None:
    assert initial_assignment("sam", STAFF).assignee == "sam"
    by_name = initial_assignment("sam rivera", STAFF)
    assert (by_name.level, by_name.assignee, by_name.member) == ("advisor", "sam", STAFF[0])
    # An advisor the policy does not list still owns the case, by what the shop sent.
    unknown = initial_assignment("joe", STAFF)
    assert (unknown.level, unknown.assignee, unknown.member) == ("advisor", "joe", None)


def test_without_an_advisor_a_case_goes_to_a_service_manager_then_the_owner() -> None:
    assert initial_assignment(None, STAFF).assignee == "maria"
    assert initial_assignment(None, STAFF).level == "service_manager"
    assert initial_assignment(None, [STAFF[2]]).level == "owner"
    assert initial_assignment(None, []).assignee == "unassigned"


def test_the_ladder_climbs_one_level_at_a_time_and_stops_at_the_owner() -> None:
    first = escalation("advisor", STAFF)
    assert first is not None and (first.level, first.assignee) == ("service_manager", "maria")
    second = escalation("service_manager", STAFF)
    assert second is not None and (second.level, second.assignee) == ("owner", "olga")
    assert escalation("owner", STAFF) is None


def test_a_missing_rung_is_skipped() -> None:
    up = escalation("advisor", [STAFF[0], STAFF[2]])
    assert up is not None and up.level == "owner"
    assert escalation("advisor", [STAFF[0]]) is None


def test_staff_from_the_policy() -> None:
    policy = Policy.defaults().merged(
        {"staff": [{"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "s@x.io"}]}
    )
    assert staff_of(policy) == [StaffRef("sam", "Sam Rivera", "advisor", "s@x.io")]


# -- status --------------------------------------------------------------------------------------


def test_what_each_status_allows() -> None:
    assert can_acknowledge("open") is True
    assert can_acknowledge("acknowledged") is False  # already: no change
    with pytest.raises(CaseClosed):
        can_acknowledge("resolved")
    check_resolvable("open")
    check_resolvable("acknowledged")
    with pytest.raises(CaseClosed):
        check_resolvable("resolved")


def test_acknowledging_stops_one_clock_and_resolving_both() -> None:
    assert clock_running("open", "acknowledge") and clock_running("open", "resolve")
    assert not clock_running("acknowledged", "acknowledge")
    assert clock_running("acknowledged", "resolve")
    assert not clock_running("resolved", "resolve")


def test_outcome_notes_and_timer_keys() -> None:
    assert outcome_note("  replaced the pads free of charge ") == "replaced the pads free of charge"
    assert outcome_note("   ") is None and outcome_note(None) is None
    due = ny(2026, 6, 2, 12)
    assert timer_key("c1", "acknowledge", "breach", due) != timer_key(
        "c1", "resolve", "breach", due
    )
    assert timer_key("c1", "acknowledge", "breach", due) != timer_key(
        "c1", "acknowledge", "breach", due + timedelta(minutes=1)
    )
