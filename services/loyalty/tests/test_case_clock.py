"""Where a recovery case stands against its SLA, pure: which clock runs, what is left,
and when a case is at risk or breached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from regulars_loyalty.domain.case_clock import CaseClock, by_time_left, clock_of, span

NOW = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
TICK = timedelta(microseconds=1)
ACK_DUE = NOW + timedelta(hours=2)
RESOLVE_DUE = NOW + timedelta(days=2)


def case(
    *,
    acknowledged: bool = False,
    history: list[dict[str, Any]] | None = None,
    ack_due: datetime = ACK_DUE,
    resolve_due: datetime = RESOLVE_DUE,
    **more: Any,
) -> dict[str, Any]:
    # as feedback's API sends a case: times as ISO text, each history entry's data flat
    return {
        "id": "case-1",
        "opened_at": (NOW - timedelta(hours=1)).isoformat(),
        "ack_due_at": ack_due.isoformat(),
        "resolve_due_at": resolve_due.isoformat(),
        "acknowledged_at": (NOW - timedelta(minutes=5)).isoformat() if acknowledged else None,
        "history": history if history is not None else [],
        **more,
    }


def warned(clock: str) -> dict[str, Any]:
    return {
        "at": NOW.isoformat(),
        "kind": "sla_at_risk",
        "by": None,
        "text": None,
        "clock": clock,
        "due_at": (ACK_DUE if clock == "acknowledge" else RESOLVE_DUE).isoformat(),
    }


# -- which clock -----------------------------------------------------------------------------


def test_an_unacknowledged_case_runs_the_acknowledge_clock() -> None:
    assert clock_of(case(), NOW) == CaseClock("acknowledge", ACK_DUE, timedelta(hours=2), "on_time")


def test_an_acknowledged_case_runs_the_resolve_clock() -> None:
    assert clock_of(case(acknowledged=True), NOW) == CaseClock(
        "resolve", RESOLVE_DUE, timedelta(days=2), "on_time"
    )


def test_deadlines_given_as_datetimes_are_read_as_they_are() -> None:
    raw = {"ack_due_at": ACK_DUE, "resolve_due_at": RESOLVE_DUE, "acknowledged_at": None}
    assert clock_of(raw, NOW).due_at == ACK_DUE


def test_a_case_without_a_history_is_on_time() -> None:
    assert clock_of(case() | {"history": None}, NOW).standing == "on_time"
    no_history = {k: v for k, v in case().items() if k != "history"}
    assert clock_of(no_history, NOW).standing == "on_time"


# -- breached --------------------------------------------------------------------------------


def test_a_case_is_breached_at_its_deadline_exactly() -> None:
    clock = clock_of(case(), ACK_DUE)
    assert clock.standing == "breached"
    assert clock.left == timedelta(0)
    assert clock.words == "Acknowledge: overdue by 0 min"


def test_just_before_the_deadline_a_case_is_not_breached() -> None:
    clock = clock_of(case(), ACK_DUE - TICK)
    assert clock.standing == "on_time"
    assert clock.words == "Acknowledge within 0 min"


def test_an_acknowledged_case_is_breached_by_its_resolve_deadline_not_the_acknowledge_one() -> None:
    late = ACK_DUE + timedelta(hours=1)
    assert clock_of(case(acknowledged=True), late).standing == "on_time"
    assert clock_of(case(acknowledged=True), RESOLVE_DUE).standing == "breached"


def test_breached_beats_at_risk() -> None:
    clock = clock_of(case(history=[warned("acknowledge")]), ACK_DUE + timedelta(minutes=90))
    assert clock.standing == "breached"
    assert clock.words == "Acknowledge: overdue by 1 h 30 min"


# -- at risk ---------------------------------------------------------------------------------


def test_the_running_clocks_warning_puts_a_case_at_risk() -> None:
    assert clock_of(case(history=[warned("acknowledge")]), NOW).standing == "at_risk"
    assert clock_of(case(acknowledged=True, history=[warned("resolve")]), NOW).standing == (
        "at_risk"
    )


def test_the_acknowledge_warning_does_not_put_the_resolve_clock_at_risk() -> None:
    # warned about acknowledging, then acknowledged: the resolve clock has had no warning
    assert clock_of(case(acknowledged=True, history=[warned("acknowledge")]), NOW).standing == (
        "on_time"
    )


def test_a_warning_about_the_resolve_clock_does_not_put_acknowledging_at_risk() -> None:
    assert clock_of(case(history=[warned("resolve")]), NOW).standing == "on_time"


def test_only_an_sla_at_risk_entry_is_a_warning() -> None:
    others = [
        {"at": NOW.isoformat(), "kind": "escalated", "clock": "acknowledge", "level": "owner"},
        {"at": NOW.isoformat(), "kind": "comment", "text": "sla_at_risk"},
        {"at": NOW.isoformat(), "kind": "sla_at_risk"},  # no clock named
    ]
    assert clock_of(case(history=others), NOW).standing == "on_time"


# -- words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(0), "0 min"),
        (timedelta(seconds=59), "0 min"),
        (timedelta(minutes=12), "12 min"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=1), "1 h 00 min"),
        (timedelta(hours=3, minutes=5), "3 h 05 min"),
        (timedelta(hours=23, minutes=59), "23 h 59 min"),
        (timedelta(days=1), "1 d 0 h"),
        (timedelta(days=2, hours=3, minutes=59), "2 d 3 h"),
        (timedelta(minutes=-5), "0 min"),
    ],
)
def test_span(delta: timedelta, words: str) -> None:
    assert span(delta) == words


def test_words_for_each_clock() -> None:
    assert clock_of(case(), NOW).words == "Acknowledge within 2 h 00 min"
    assert clock_of(case(acknowledged=True), NOW).words == "Resolve within 2 d 0 h"
    overdue = RESOLVE_DUE + timedelta(hours=3, minutes=5)
    assert clock_of(case(acknowledged=True), overdue).words == "Resolve: overdue by 3 h 05 min"


# -- order -----------------------------------------------------------------------------------


def test_cases_are_listed_the_least_time_left_first_whichever_clock_runs() -> None:
    soon_resolve = case(id="resolve-soon", acknowledged=True, resolve_due=NOW + timedelta(hours=1))
    ack_later = case(id="ack-later", ack_due=NOW + timedelta(hours=3))
    overdue = case(id="overdue", ack_due=NOW - timedelta(minutes=10))
    resolve_later = case(id="resolve-later", acknowledged=True)
    ordered = by_time_left([resolve_later, ack_later, soon_resolve, overdue], NOW)
    assert [c["id"] for c in ordered] == ["overdue", "resolve-soon", "ack-later", "resolve-later"]
