from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from regulars_followup.domain.sweep import (
    CustomerHistory,
    VisitFact,
    estimated_mileage,
    first_of_next_month,
    monthly_check,
    service_kinds,
)

NOW = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
DEC = date(2026, 12, 1)


def visit(
    days_ago: int, work: str = "", mileage: int | None = None, ro: str | None = None
) -> VisitFact:
    return VisitFact(
        ro or f"ro-{days_ago}", NOW - timedelta(days=days_ago), "2019 CR-V", mileage, work
    )


def kinds(out: list) -> list[tuple[str, str]]:
    return [(o.kind, o.purpose) for o in out]


def test_service_kinds_are_read_from_the_work_done() -> None:
    assert service_kinds("Oil and filter change, rotated tires") == {"oil change"}
    assert service_kinds("Rotate tires; front brake pads") == {"tire rotation", "brake inspection"}
    assert service_kinds("Diagnosed check engine light") == set()


def test_oil_change_due_by_time() -> None:
    out = monthly_check(CustomerHistory("c", None, [visit(200, "oil change")]), DEC, NOW)
    assert kinds(out) == [("reminder", "reminder:oil change:2026-12")]
    assert out[0].context["service_due"] == "oil change"
    fresh = monthly_check(CustomerHistory("c", None, [visit(60, "oil change")]), DEC, NOW)
    assert fresh == []


def test_oil_change_due_by_estimated_mileage_before_time() -> None:
    # 3,000 miles in 30 days = 100 mi/day; 60 days since the last oil change -> ~6,000 miles
    history = CustomerHistory(
        "c", None, [visit(90, "inspection", 40_000), visit(60, "oil change", 43_000)]
    )
    assert estimated_mileage(history.visits, "2019 CR-V", DEC) == 49_000
    assert ("reminder", "reminder:oil change:2026-12") in kinds(monthly_check(history, DEC, NOW))


def test_birthday_this_month() -> None:
    out = monthly_check(CustomerHistory("c", date(1980, 12, 24), []), DEC, NOW)
    assert kinds(out) == [("birthday", "birthday:2026")]
    assert monthly_check(CustomerHistory("c", date(1980, 11, 24), []), DEC, NOW) == []


def test_a_customer_loyalty_has_as_loyal_is_thanked_once_a_year() -> None:
    visits = [visit(20), visit(200), visit(400)]
    loyal = CustomerHistory("c", None, visits, stage="loyal")
    assert ("thank_you", "thank_you:2026") in kinds(monthly_check(loyal, DEC, NOW))
    # the same visits with a case open (at_risk), or no word from loyalty yet: no thanks
    for stage in ("at_risk", "repeat", None):
        history = CustomerHistory("c", None, visits, stage=stage)
        assert "thank_you" not in [o.kind for o in monthly_check(history, DEC, NOW)], stage


def test_a_lapsed_customer_gets_only_the_win_back() -> None:
    # A birthday this month and an oil change long due: still only the win-back.
    history = CustomerHistory(
        "c", date(1980, 12, 24), [visit(400, "oil change", ro="ro-9")], stage="lapsed"
    )
    out = monthly_check(history, DEC, NOW)
    assert kinds(out) == [("win_back", "win_back:ro-9")]
    assert out[0].context == {"last_visit": "October 2025"}


def test_a_lost_customer_gets_nothing_at_all() -> None:
    history = CustomerHistory(
        "c", date(1980, 12, 24), [visit(800, "oil change"), visit(900)], stage="lost"
    )
    assert monthly_check(history, DEC, NOW) == []


def test_lapsed_is_loyaltys_word_not_the_time_since_the_last_visit() -> None:
    # 400 days without a visit, but loyalty has not called them lapsed: no win-back, and
    # what they are due stays due.
    for stage in (None, "customer", "at_risk"):
        history = CustomerHistory("c", None, [visit(400, "oil change", ro="ro-9")], stage=stage)
        assert kinds(monthly_check(history, DEC, NOW)) == [
            ("reminder", "reminder:oil change:2026-12")
        ]
    # and lapsed after only 100 days (a shop with a short lapsed_after, in loyalty) is lapsed
    recent = CustomerHistory("c", None, [visit(100, ro="ro-3")], stage="lapsed")
    assert kinds(monthly_check(recent, DEC, NOW)) == [("win_back", "win_back:ro-3")]


def test_each_lapse_has_its_own_win_back() -> None:
    first = CustomerHistory("c", None, [visit(800, ro="ro-1")], stage="lapsed")
    back_and_gone_again = CustomerHistory(
        "c", None, [visit(800, ro="ro-1"), visit(400, ro="ro-2")], stage="lapsed"
    )
    assert kinds(monthly_check(first, DEC, NOW)) == [("win_back", "win_back:ro-1")]
    assert kinds(monthly_check(back_and_gone_again, DEC, NOW)) == [("win_back", "win_back:ro-2")]


def test_a_lapsed_customer_with_no_visit_here_gets_no_win_back() -> None:
    assert monthly_check(CustomerHistory("c", None, [], stage="lapsed"), DEC, NOW) == []


def test_next_month() -> None:
    assert first_of_next_month(date(2026, 12, 15)) == date(2027, 1, 1)
    assert first_of_next_month(date(2026, 1, 31)) == date(2026, 2, 1)


def test_one_run_asks_for_one_marketing_message_whatever_is_owed() -> None:
    # Loyal, a birthday this month and an oil change due: the birthday note and the
    # reminder (not marketing); the year's thank-you waits for a later month's run.
    visits = [visit(20), visit(200, "oil change"), visit(400)]
    history = CustomerHistory("c", date(1980, 12, 24), visits, stage="loyal")
    out = monthly_check(history, DEC, NOW)
    assert kinds(out) == [
        ("birthday", "birthday:2026"),
        ("reminder", "reminder:oil change:2026-12"),
    ]
    january = monthly_check(history, date(2027, 1, 1), NOW + timedelta(days=31))
    assert ("thank_you", "thank_you:2027") in kinds(january)
    assert [o.kind for o in january].count("thank_you") == 1
