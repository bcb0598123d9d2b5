"""Each metric's definition on hand-made data, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from regulars_loyalty.domain.metrics import (
    AnswerRow,
    CaseRow,
    FollowUpRow,
    InvoiceRow,
    PlanRow,
    ShopHistory,
    VisitRow,
    intervals,
    report,
    tally,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
NOW = datetime(2027, 2, 1, tzinfo=UTC)


def day(month: int, d: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, d, 12, tzinfo=UTC)


def measure(history: ShopHistory, name: str) -> tuple[float | None, float | None, int]:
    m = report(tally(history, START, END, YEAR, NOW))[name]
    return m.value, m.numerator, m.denominator


def test_retention_rate_counts_active_at_start_and_end_less_the_new() -> None:
    visits = [
        # active at the start (a visit within 365 days before it), back in the year: retained
        VisitRow("kept", day(6, year=2025)),
        VisitRow("kept", day(5)),
        # active at the start, never back: lapsed by the end
        VisitRow("gone", day(3, year=2025)),
        # too old to be active at the start
        VisitRow("old", datetime(2024, 12, 31, tzinfo=UTC)),
        # new in the range, still active at the end
        VisitRow("new", day(9)),
    ]
    # S = 2 (kept, gone); E = 2 (kept, new); N = 1 (new): (2 - 1) / 2
    assert measure(ShopHistory(visits=visits), "retention_rate") == (0.5, 1, 2)


def test_active_means_a_visit_less_than_lapsed_after_before_the_moment() -> None:
    exactly_a_year = [VisitRow("c", START - YEAR)]
    assert tally(ShopHistory(visits=exactly_a_year), START, END, YEAR, NOW).active_at_start == 0
    just_inside = [VisitRow("c", START - YEAR + timedelta(seconds=1))]
    assert tally(ShopHistory(visits=just_inside), START, END, YEAR, NOW).active_at_start == 1
    at_the_start = [VisitRow("c", START)]
    assert tally(ShopHistory(visits=at_the_start), START, END, YEAR, NOW).active_at_start == 0


def test_nps_is_promoters_minus_detractors_over_every_answer() -> None:
    answers = [AnswerRow(day(2), nps=n) for n in (10, 9, 9, 8, 7, 6, 0)] + [
        AnswerRow(day(1, year=2025), nps=0),  # outside the range
        AnswerRow(day(3), csat=5),  # a CSAT answer only
    ]
    value, numerator, denominator = measure(ShopHistory(answers=answers), "nps")
    assert (numerator, denominator) == (1, 7)
    assert value is not None and abs(value - 100 / 7) < 1e-9


def test_csat_is_the_share_of_four_and_five() -> None:
    answers = [AnswerRow(day(2), csat=c) for c in (5, 4, 3, 1)]
    assert measure(ShopHistory(answers=answers), "csat") == (50.0, 2, 4)


def test_quality_and_on_time() -> None:
    visits = [
        VisitRow("a", day(2), comeback=True, promised_at=day(2) + timedelta(hours=1)),
        VisitRow("b", day(3), promised_at=day(3) - timedelta(hours=1)),
        VisitRow("c", day(4), promised_at=day(4)),
        VisitRow("d", day(5)),
    ]
    history = ShopHistory(visits=visits)
    assert measure(history, "quality_pct") == (0.75, 3, 4)
    # promised_at is inclusive: done at the promised moment is on time
    assert measure(history, "on_time_pct") == (2 / 3, 2, 3)


def test_referral_share_of_new_customers() -> None:
    visits = [VisitRow("a", day(2)), VisitRow("b", day(3)), VisitRow("old", day(3, year=2025))]
    history = ShopHistory(visits=visits, referred=frozenset({"a", "old"}))
    assert measure(history, "referral_pct") == (0.5, 1, 2)


def test_ar_past_due_at_the_end_of_the_range() -> None:
    invoices = [
        InvoiceRow(10_000, due_at=day(11), issued_at=day(10)),  # open, past due
        InvoiceRow(5_000, due_at=day(1, year=2027) + timedelta(days=10), issued_at=day(12)),  # open
        InvoiceRow(7_000, due_at=day(11), issued_at=day(10), paid_at=day(12)),  # paid in range
        InvoiceRow(3_000, due_at=day(11), issued_at=day(10), paid_at=END),  # paid after: open
        InvoiceRow(9_000, due_at=END, issued_at=END),  # issued after the range
    ]
    assert measure(ShopHistory(invoices=invoices), "ar_past_due_pct") == (
        13_000 / 18_000,
        13_000,
        18_000,
    )


def test_follow_up_completion() -> None:
    follow_ups = [FollowUpRow(day(2), "completed")] * 3 + [FollowUpRow(day(2), "missed")]
    assert measure(ShopHistory(follow_ups=follow_ups), "follow_up_completion_pct") == (0.75, 3, 4)


def test_recovery_sla_compliance_and_medians() -> None:
    opened = day(3)
    hour = timedelta(hours=1)
    cases = [
        # met both deadlines: SLA ended at its resolution
        CaseRow(opened, opened + 2 * hour, opened + 48 * hour, opened + hour, opened + 10 * hour),
        # acknowledged late, resolved in time: ended, not met
        CaseRow(
            opened, opened + 2 * hour, opened + 48 * hour, opened + 3 * hour, opened + 20 * hour
        ),
        # never resolved: ended (breached) at its resolve deadline
        CaseRow(opened, opened + 2 * hour, opened + 48 * hour, opened + 5 * hour),
        # still inside its window at "now": not ended
        CaseRow(NOW - hour, NOW + hour, NOW + 48 * hour),
    ]
    history = ShopHistory(cases=cases)
    assert measure(history, "recovery_sla_compliance_pct") == (1 / 3, 1, 3)
    assert measure(history, "time_to_ack_p50_s") == (3 * 3600, None, 3)
    assert measure(history, "time_to_resolve_p50_s") == (15 * 3600, None, 2)


def test_plan_renewal() -> None:
    plans = [PlanRow(day(2), "renewed"), PlanRow(day(3), "expired"), PlanRow(day(4), "renewed")]
    assert measure(ShopHistory(plans=plans), "plan_renewal_pct") == (2 / 3, 2, 3)


def test_an_empty_denominator_has_no_value() -> None:
    for name, m in report(tally(ShopHistory(), START, END, YEAR, NOW)).items():
        assert m.value is None, name


def test_months_are_cut_at_the_shops_local_midnight_across_dst() -> None:
    zone = ZoneInfo("America/Chicago")
    start = datetime(2026, 1, 15, tzinfo=zone)
    cuts = intervals(start, datetime(2026, 4, 10, tzinfo=zone), "month")
    assert [a.isoformat() for a, _b in cuts] == [
        "2026-01-15T00:00:00-06:00",
        "2026-02-01T00:00:00-06:00",
        "2026-03-01T00:00:00-06:00",
        "2026-04-01T00:00:00-05:00",
    ]
    assert cuts[-1][1] == datetime(2026, 4, 10, tzinfo=zone)
    weeks = intervals(datetime(2026, 3, 4, tzinfo=zone), datetime(2026, 3, 20, tzinfo=zone), "week")
    assert [a.day for a, _b in weeks] == [4, 9, 16]
