"""Business-calendar arithmetic: opening hours, holidays, DST, SLAs and follow-up due times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_shop.calendar import BusinessCalendar, due_after

NEW_YORK = "America/New_York"
CHICAGO = "America/Chicago"
LONDON = "Europe/London"

WORKSHOP = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}
OFFICE = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
LUNCH = {
    day: [["08:00", "12:00"], ["13:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")
}
ALWAYS = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
LATE = {day: [["07:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def at(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, fold=fold, tzinfo=ZoneInfo(zone))


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> datetime:
    return at(NEW_YORK, y, mo, d, h, mi, fold)


def cal(
    hours: dict[str, list[list[str]]], zone: str = NEW_YORK, holidays: tuple[str, ...] = ()
) -> BusinessCalendar:
    return BusinessCalendar.from_policy(zone, hours, holidays)


def same_instant(actual: datetime, expected: datetime, calendar: BusinessCalendar) -> bool:
    """Equal as real instants (fold-safe) and expressed in the calendar's timezone."""
    same_zone = actual.tzinfo == calendar.timezone
    return same_zone and actual.astimezone(UTC) == expected.astimezone(UTC)


# -- from_policy ---------------------------------------------------------------------------


def test_from_policy_parses_hours_24_00_and_holidays() -> None:
    c = BusinessCalendar.from_policy(
        NEW_YORK,
        {"Mon": [["13:00", "18:00"], ["08:30", "12:00"]], "sun": [], "fri": [["20:00", "24:00"]]},
        ["2026-07-03", date(2026, 12, 25)],
    )
    assert c.timezone == ZoneInfo(NEW_YORK)
    assert c.hours[0] == ((time(8, 30), time(12)), (time(13), time(18)))
    assert c.hours[4] == ((time(20), None),)
    assert c.hours[6] == ()
    assert 1 not in c.hours
    assert c.holidays == frozenset({date(2026, 7, 3), date(2026, 12, 25)})


def test_from_policy_touching_intervals_are_allowed() -> None:
    c = cal({"mon": [["09:00", "12:00"], ["12:00", "18:00"]]})
    assert c.between(ny(2026, 6, 1, 0), ny(2026, 6, 2, 0)) == timedelta(hours=9)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"tue": [["10:00", "09:00"]]}, r"'tue'.*end after"),
        ({"tue": [["10:00", "10:00"]]}, r"'tue'.*end after"),
        ({"wed": [["09:00", "12:00"], ["11:00", "18:00"]]}, r"'wed'.*overlaps"),
        ({"wed": [["09:00", "24:00"], ["10:00", "11:00"]]}, r"'wed'.*overlaps"),
        ({"wed": [["09:00", "12:00"], ["09:00", "10:00"]]}, r"'wed'.*overlaps"),
        ({"thu": [["9am", "5pm"]]}, r"'thu'.*bad time '9am'"),
        ({"thu": [["09:00", "18:60"]]}, r"'thu'.*bad time '18:60'"),
        ({"thu": [["25:00", "26:00"]]}, r"'thu'.*bad time '25:00'"),
        ({"fri": [["09:00"]]}, r"'fri'.*\[start, end\] pair"),
        ({"fri": ["09:00-18:00"]}, r"'fri'.*\[start, end\] pair"),
        ({"fri": "09:00-18:00"}, r"'fri'.*list of \[start, end\] pairs"),
        ({"sat": [["24:00", "24:00"]]}, r"'sat'.*24:00 is only allowed as an end"),
        ({"sun": [["09:00", "00:00"]]}, r"'sun'.*end after"),
        ({"funday": [["09:00", "18:00"]]}, r"unknown day 'funday'"),
        ({"mon": [["09:00", "12:00"]], "MON": [["13:00", "18:00"]]}, r"'mon'.*more than once"),
    ],
)
def test_from_policy_rejects_bad_hours_naming_the_day(
    hours: dict[str, list[list[str]]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar.from_policy(NEW_YORK, hours)


def test_from_policy_rejects_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        BusinessCalendar.from_policy("Mars/Olympus_Mons", WORKSHOP)


@pytest.mark.parametrize("holiday", ["2026-13-01", "next tuesday", datetime(2026, 7, 3, 0, 0)])
def test_from_policy_rejects_bad_holidays(holiday: str | datetime) -> None:
    with pytest.raises(ValueError, match="holiday"):
        BusinessCalendar.from_policy(NEW_YORK, WORKSHOP, [holiday])


def test_constructor_validates_hours() -> None:
    zone = ZoneInfo(NEW_YORK)
    with pytest.raises(ValueError, match="weekday"):
        BusinessCalendar(zone, {7: ((time(9), time(18)),)})
    with pytest.raises(ValueError, match=r"'sat'.*overlaps"):
        BusinessCalendar(zone, {5: ((time(9), time(18)), (time(17), None))})
    with pytest.raises(ValueError, match=r"'mon'.*end after"):
        BusinessCalendar(zone, {0: ((time(18), time(9)),)})


# -- is_open / next_open ---------------------------------------------------------------------


def test_is_open_boundaries_are_half_open() -> None:
    c = cal(WORKSHOP)
    assert not c.is_open(ny(2026, 6, 5, 8, 59))
    assert c.is_open(ny(2026, 6, 5, 9, 0))
    assert c.is_open(ny(2026, 6, 5, 17, 59))
    assert not c.is_open(ny(2026, 6, 5, 18, 0))
    assert not c.is_open(ny(2026, 6, 7, 12, 0))  # Sunday closed


def test_is_open_accepts_any_timezone_input() -> None:
    c = cal(WORKSHOP)
    assert c.is_open(datetime(2026, 6, 5, 13, 0, tzinfo=UTC))  # 09:00 EDT
    assert not c.is_open(datetime(2026, 6, 5, 12, 59, tzinfo=UTC))  # 08:59 EDT
    assert c.is_open(at(LONDON, 2026, 6, 5, 22, 59))  # 17:59 EDT
    assert not c.is_open(at(LONDON, 2026, 6, 5, 23, 0))  # 18:00 EDT


def test_next_open_returns_at_itself_when_open() -> None:
    c = cal(WORKSHOP)
    moment = ny(2026, 6, 5, 11, 17)
    assert same_instant(c.next_open(moment), moment, c)


def test_next_open_returns_result_in_calendar_timezone() -> None:
    c = cal(WORKSHOP)
    result = c.next_open(datetime(2026, 6, 5, 15, 0, tzinfo=UTC))
    assert result.tzinfo == ZoneInfo(NEW_YORK)
    assert result.replace(tzinfo=None) == datetime(2026, 6, 5, 11, 0)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (ny(2026, 6, 5, 6, 0), ny(2026, 6, 5, 9, 0)),  # Fri before opening
        (ny(2026, 6, 5, 18, 0), ny(2026, 6, 6, 9, 0)),  # Fri at closing -> Sat
        (ny(2026, 6, 6, 18, 0), ny(2026, 6, 8, 9, 0)),  # Sat closing -> Mon (Sun closed)
        (ny(2026, 6, 7, 12, 0), ny(2026, 6, 8, 9, 0)),  # Sunday -> Mon
        (ny(2026, 6, 7, 23, 59), ny(2026, 6, 8, 9, 0)),
    ],
)
def test_next_open_skips_closed_time(moment: datetime, expected: datetime) -> None:
    c = cal(WORKSHOP)
    assert same_instant(c.next_open(moment), expected, c)


def test_next_open_skips_holidays() -> None:
    c = cal(WORKSHOP, holidays=("2026-07-03", "2026-07-04"))
    assert not c.is_open(ny(2026, 7, 3, 12, 0))
    assert same_instant(c.next_open(ny(2026, 7, 2, 18, 30)), ny(2026, 7, 6, 9, 0), c)


def test_lunch_break() -> None:
    c = cal(LUNCH)
    assert c.is_open(ny(2026, 6, 1, 11, 59))
    assert not c.is_open(ny(2026, 6, 1, 12, 0))
    assert not c.is_open(ny(2026, 6, 1, 12, 59))
    assert c.is_open(ny(2026, 6, 1, 13, 0))
    assert same_instant(c.next_open(ny(2026, 6, 1, 12, 30)), ny(2026, 6, 1, 13, 0), c)
    assert same_instant(
        c.add(ny(2026, 6, 1, 11, 30), timedelta(hours=1)), ny(2026, 6, 1, 13, 30), c
    )
    assert same_instant(
        c.add(ny(2026, 6, 1, 12, 15), timedelta(minutes=5)), ny(2026, 6, 1, 13, 5), c
    )
    assert c.between(ny(2026, 6, 1, 11, 0), ny(2026, 6, 1, 14, 0)) == timedelta(hours=2)
    assert c.between(ny(2026, 6, 1, 0, 0), ny(2026, 6, 2, 0, 0)) == timedelta(hours=8)


def test_24_00_end_runs_to_midnight() -> None:
    c = cal(LATE)  # Mon-Fri 07:00-24:00
    assert c.is_open(ny(2026, 6, 1, 23, 59))
    assert not c.is_open(ny(2026, 6, 2, 0, 0))
    assert same_instant(c.next_open(ny(2026, 6, 2, 0, 0)), ny(2026, 6, 2, 7, 0), c)
    assert same_instant(c.add(ny(2026, 6, 1, 23, 30), timedelta(hours=1)), ny(2026, 6, 2, 7, 30), c)
    assert same_instant(
        c.add(ny(2026, 6, 1, 23, 30), timedelta(minutes=30)), ny(2026, 6, 2, 0, 0), c
    )
    assert c.between(ny(2026, 6, 1, 0, 0), ny(2026, 6, 2, 0, 0)) == timedelta(hours=17)
    # Friday 24:00 -> Monday 07:00 across the weekend
    assert same_instant(c.next_open(ny(2026, 6, 6, 0, 0)), ny(2026, 6, 8, 7, 0), c)


def test_intervals_touching_midnight_are_continuous() -> None:
    c = cal({"mon": [["00:00", "24:00"]], "tue": [["00:00", "24:00"]], "wed": [["00:00", "06:00"]]})
    assert c.is_open(ny(2026, 6, 2, 0, 0))
    assert same_instant(c.next_open(ny(2026, 6, 2, 0, 0)), ny(2026, 6, 2, 0, 0), c)
    assert same_instant(c.add(ny(2026, 6, 1, 23, 0), timedelta(hours=2)), ny(2026, 6, 2, 1, 0), c)
    assert same_instant(c.add(ny(2026, 6, 1, 12, 0), timedelta(hours=42)), ny(2026, 6, 3, 6, 0), c)
    assert same_instant(c.add(ny(2026, 6, 1, 12, 0), timedelta(hours=43)), ny(2026, 6, 8, 1, 0), c)
    assert c.between(ny(2026, 6, 1, 23, 0), ny(2026, 6, 2, 1, 0)) == timedelta(hours=2)
    assert c.between(ny(2026, 5, 31, 0, 0), ny(2026, 6, 4, 0, 0)) == timedelta(hours=54)


def test_late_evening_interval_continues_into_next_morning() -> None:
    c = cal({"fri": [["20:00", "24:00"]], "sat": [["00:00", "02:00"], ["10:00", "12:00"]]})
    assert same_instant(c.add(ny(2026, 6, 5, 23, 0), timedelta(hours=2)), ny(2026, 6, 6, 1, 0), c)
    assert same_instant(c.add(ny(2026, 6, 5, 23, 0), timedelta(hours=4)), ny(2026, 6, 6, 11, 0), c)
    assert c.between(ny(2026, 6, 5, 0, 0), ny(2026, 6, 7, 0, 0)) == timedelta(hours=8)


# -- follow-up due time (elapsed delay, then next open moment) -------------------------------


@pytest.mark.parametrize(
    ("completed", "due"),
    [
        (ny(2026, 6, 5, 17, 0), ny(2026, 6, 8, 9, 0)),  # Fri 17:00 + 48h = Sun 17:00 -> Mon 09:00
        (ny(2026, 6, 4, 10, 0), ny(2026, 6, 6, 10, 0)),  # Thu 10:00 -> Sat 10:00, open
        (ny(2026, 6, 4, 17, 59), ny(2026, 6, 6, 17, 59)),  # Thu 17:59 -> Sat 17:59, open
        (ny(2026, 6, 4, 18, 0), ny(2026, 6, 8, 9, 0)),  # Thu 18:00 -> Sat 18:00 closed -> Mon
        (ny(2026, 6, 6, 12, 0), ny(2026, 6, 8, 12, 0)),  # Sat 12:00 -> Mon 12:00
        (ny(2026, 6, 3, 7, 0), ny(2026, 6, 5, 9, 0)),  # Wed 07:00 -> Fri 07:00 -> Fri 09:00
        (ny(2026, 6, 7, 12, 0), ny(2026, 6, 9, 12, 0)),  # completed on a Sunday
    ],
)
def test_due_after_48h(completed: datetime, due: datetime) -> None:
    c = cal(WORKSHOP)
    assert same_instant(due_after(c, completed, timedelta(hours=48)), due, c)


def test_due_after_landing_on_holiday_moves_to_next_open_day() -> None:
    c = cal(WORKSHOP, holidays=("2026-07-03", "2026-07-04"))
    # Wed 11:00 + 48h = Fri Jul 3 11:00 (holiday), Sat Jul 4 holiday, Sun closed -> Mon 09:00
    assert same_instant(
        due_after(c, ny(2026, 7, 1, 11, 0), timedelta(hours=48)), ny(2026, 7, 6, 9), c
    )
    # without the holidays it is simply Friday 11:00
    plain = cal(WORKSHOP)
    assert same_instant(
        due_after(plain, ny(2026, 7, 1, 11), timedelta(hours=48)), ny(2026, 7, 3, 11), c
    )


def test_due_after_is_elapsed_time_across_spring_forward() -> None:
    c = cal(ALWAYS)
    # Fri 2026-03-06 10:00 EST + 48 real hours = Sun 2026-03-08 11:00 EDT (not 10:00)
    due = due_after(c, ny(2026, 3, 6, 10, 0), timedelta(hours=48))
    assert due.replace(tzinfo=None) == datetime(2026, 3, 8, 11, 0)
    # (subtracting within one ZoneInfo would be wall-clock arithmetic: compare in UTC)
    assert due.astimezone(UTC) - ny(2026, 3, 6, 10, 0).astimezone(UTC) == timedelta(hours=48)


def test_due_after_is_elapsed_time_across_fall_back() -> None:
    c = cal(ALWAYS, CHICAGO)
    start = at(CHICAGO, 2026, 10, 30, 10, 0)
    due = due_after(c, start, timedelta(hours=48))
    assert due.replace(tzinfo=None) == datetime(2026, 11, 1, 9, 0)
    assert due.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=48)


def test_due_after_zero_delay_is_next_open() -> None:
    c = cal(WORKSHOP)
    assert same_instant(due_after(c, ny(2026, 6, 5, 19, 0), timedelta(0)), ny(2026, 6, 6, 9, 0), c)


# -- add: SLAs in business time ---------------------------------------------------------------


def test_add_two_hours_from_closing_time_lands_next_morning() -> None:
    c = cal(WORKSHOP)
    # 17:00 Tue: 1h today, 1h tomorrow -> Wed 10:00
    assert same_instant(c.add(ny(2026, 6, 2, 17, 0), timedelta(hours=2)), ny(2026, 6, 3, 10, 0), c)


def test_add_critical_30_minutes_near_close() -> None:
    c = cal(WORKSHOP)
    assert same_instant(c.add(ny(2026, 6, 5, 17, 30), timedelta(minutes=30)), ny(2026, 6, 5, 18), c)
    assert same_instant(
        c.add(ny(2026, 6, 5, 17, 45), timedelta(minutes=30)), ny(2026, 6, 6, 9, 15), c
    )
    # Saturday near close spills past closed Sunday
    assert same_instant(
        c.add(ny(2026, 6, 6, 17, 50), timedelta(minutes=30)), ny(2026, 6, 8, 9, 20), c
    )


def test_add_starting_while_closed_counts_from_next_open() -> None:
    c = cal(WORKSHOP)
    assert same_instant(c.add(ny(2026, 6, 7, 3, 0), timedelta(hours=2)), ny(2026, 6, 8, 11, 0), c)
    assert same_instant(c.add(ny(2026, 6, 5, 6, 0), timedelta(minutes=1)), ny(2026, 6, 5, 9, 1), c)


def test_add_zero_is_next_open() -> None:
    c = cal(WORKSHOP)
    assert same_instant(c.add(ny(2026, 6, 5, 18, 0), timedelta(0)), ny(2026, 6, 6, 9, 0), c)
    assert same_instant(c.add(ny(2026, 6, 5, 12, 34), timedelta(0)), ny(2026, 6, 5, 12, 34), c)


def test_add_two_business_days_over_a_weekend() -> None:
    c = cal(OFFICE)  # Mon-Fri 09:00-17:00: a business day is 8 business hours
    two_days = 2 * timedelta(hours=8)
    assert same_instant(c.add(ny(2026, 6, 5, 15, 0), two_days), ny(2026, 6, 9, 15, 0), c)
    assert same_instant(c.add(ny(2026, 6, 5, 17, 0), two_days), ny(2026, 6, 9, 17, 0), c)
    assert same_instant(c.add(ny(2026, 6, 6, 10, 0), two_days), ny(2026, 6, 9, 17, 0), c)
    assert c.between(ny(2026, 6, 5, 15, 0), ny(2026, 6, 9, 15, 0)) == two_days


def test_add_two_business_days_over_a_weekend_and_holiday() -> None:
    c = cal(OFFICE, holidays=("2026-09-07",))  # Labor Day, Monday
    two_days = 2 * timedelta(hours=8)
    assert same_instant(c.add(ny(2026, 9, 4, 15, 0), two_days), ny(2026, 9, 9, 15, 0), c)


def test_add_long_duration_walks_many_weeks() -> None:
    c = cal(OFFICE)
    # 40 business hours per week; 10 weeks from Monday 09:00 -> ten weeks later Monday 09:00
    # (returned as the end of the Friday before, the instant the duration completes)
    result = c.add(ny(2026, 1, 5, 9, 0), timedelta(hours=400))
    assert same_instant(result, ny(2026, 3, 13, 17, 0), c)


def test_add_rejects_negative_duration() -> None:
    with pytest.raises(ValueError, match="negative"):
        cal(WORKSHOP).add(ny(2026, 6, 5, 12), timedelta(minutes=-1))


# -- DST ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (NEW_YORK, date(2026, 3, 8), 23),
        (NEW_YORK, date(2026, 11, 1), 25),
        (CHICAGO, date(2026, 3, 8), 23),
        (CHICAGO, date(2026, 11, 1), 25),
        (LONDON, date(2026, 3, 29), 23),
        (LONDON, date(2026, 10, 25), 25),
        (NEW_YORK, date(2026, 3, 9), 24),
        (LONDON, date(2026, 3, 30), 24),
    ],
)
def test_24h_shop_day_length_follows_dst(zone: str, day: date, hours: int) -> None:
    c = cal(ALWAYS, zone)
    midnight = datetime.combine(day, time(0), ZoneInfo(zone))
    next_midnight = datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(zone))
    assert c.between(midnight, next_midnight) == timedelta(hours=hours)
    assert same_instant(c.add(midnight, timedelta(hours=hours)), next_midnight, c)


def test_24h_shop_add_across_spring_forward() -> None:
    c = cal(ALWAYS)
    assert same_instant(c.add(ny(2026, 3, 7, 12), timedelta(hours=24)), ny(2026, 3, 8, 13), c)
    assert same_instant(c.add(ny(2026, 3, 8, 1, 30), timedelta(hours=1)), ny(2026, 3, 8, 3, 30), c)
    assert c.is_open(ny(2026, 3, 8, 3, 0))


def test_24h_shop_add_across_fall_back() -> None:
    c = cal(ALWAYS)
    assert same_instant(c.add(ny(2026, 10, 31, 12), timedelta(hours=24)), ny(2026, 11, 1, 11), c)
    first_0130 = ny(2026, 11, 1, 1, 30, fold=0)
    second_0130 = ny(2026, 11, 1, 1, 30, fold=1)
    assert same_instant(c.add(first_0130, timedelta(hours=1)), second_0130, c)
    assert c.add(first_0130, timedelta(hours=1)).fold == 1
    assert c.between(first_0130, second_0130) == timedelta(hours=1)


def test_spring_forward_night_interval_has_two_real_hours() -> None:
    c = cal({"sun": [["01:00", "04:00"]]})
    assert c.between(ny(2026, 3, 8, 0), ny(2026, 3, 9, 0)) == timedelta(hours=2)
    assert c.between(ny(2026, 3, 15, 0), ny(2026, 3, 16, 0)) == timedelta(hours=3)
    assert same_instant(c.add(ny(2026, 3, 8, 1, 0), timedelta(hours=2)), ny(2026, 3, 8, 4, 0), c)
    assert same_instant(
        c.add(ny(2026, 3, 8, 1, 0), timedelta(hours=2, minutes=1)), ny(2026, 3, 15, 1, 1), c
    )


def test_fall_back_night_interval_has_four_real_hours() -> None:
    c = cal({"sun": [["01:00", "04:00"]]}, CHICAGO)
    day, next_day = at(CHICAGO, 2026, 11, 1), at(CHICAGO, 2026, 11, 2)
    assert c.between(day, next_day) == timedelta(hours=4)
    assert same_instant(
        c.add(at(CHICAGO, 2026, 11, 1, 1, 0), timedelta(hours=4)), at(CHICAGO, 2026, 11, 1, 4), c
    )
    # the first 01:00 is the opening, the second 01:30 is still open
    assert c.is_open(at(CHICAGO, 2026, 11, 1, 1, 30, fold=1))
    assert not c.is_open(at(CHICAGO, 2026, 11, 1, 0, 59))


def test_interval_starting_in_the_spring_forward_gap_starts_when_gap_ends() -> None:
    c = cal({"sun": [["02:30", "05:00"]]})
    assert same_instant(c.next_open(ny(2026, 3, 8, 1, 0)), ny(2026, 3, 8, 3, 0), c)
    assert c.next_open(ny(2026, 3, 8, 1, 0)).astimezone(UTC) == datetime(2026, 3, 8, 7, tzinfo=UTC)
    assert c.between(ny(2026, 3, 8, 0), ny(2026, 3, 9, 0)) == timedelta(hours=2)
    assert c.between(ny(2026, 3, 15, 0), ny(2026, 3, 16, 0)) == timedelta(hours=2, minutes=30)


def test_interval_inside_the_spring_forward_gap_is_empty() -> None:
    c = cal({"sun": [["02:00", "02:30"]]})
    assert c.between(ny(2026, 3, 8, 0), ny(2026, 3, 9, 0)) == timedelta(0)
    assert same_instant(c.next_open(ny(2026, 3, 8, 0)), ny(2026, 3, 15, 2, 0), c)


def test_interval_starting_in_the_ambiguous_hour_takes_first_occurrence() -> None:
    c = cal({"sun": [["01:30", "05:00"]]})
    first_0115, second_0115 = ny(2026, 11, 1, 1, 15, fold=0), ny(2026, 11, 1, 1, 15, fold=1)
    assert not c.is_open(first_0115)
    assert c.is_open(second_0115)
    opening = c.next_open(first_0115)
    assert opening.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert c.between(ny(2026, 11, 1, 0), ny(2026, 11, 2, 0)) == timedelta(hours=4, minutes=30)


def test_workshop_sla_across_dst_weekends() -> None:
    c = cal(WORKSHOP)
    # Sat 17:00 EST + 2 business hours -> Mon 10:00 EDT (weekend contains spring-forward)
    assert same_instant(c.add(ny(2026, 3, 7, 17, 0), timedelta(hours=2)), ny(2026, 3, 9, 10), c)
    assert c.between(ny(2026, 3, 7, 9), ny(2026, 3, 9, 18)) == timedelta(hours=18)
    assert same_instant(c.add(ny(2026, 10, 31, 17, 0), timedelta(hours=2)), ny(2026, 11, 2, 10), c)
    assert c.between(ny(2026, 10, 31, 17), ny(2026, 11, 2, 10)) == timedelta(hours=2)


def test_london_shop_across_its_own_dst_changes() -> None:
    c = cal(WORKSHOP, LONDON)
    sat = at(LONDON, 2026, 3, 28, 17, 30)
    assert same_instant(c.add(sat, timedelta(hours=1)), at(LONDON, 2026, 3, 30, 9, 30), c)
    assert c.between(at(LONDON, 2026, 10, 24, 9), at(LONDON, 2026, 10, 26, 18)) == timedelta(
        hours=18
    )


# -- between --------------------------------------------------------------------------------


def test_between_basic_cases() -> None:
    c = cal(WORKSHOP)
    assert c.between(ny(2026, 6, 5, 10), ny(2026, 6, 5, 12, 30)) == timedelta(hours=2, minutes=30)
    assert c.between(ny(2026, 6, 5, 17), ny(2026, 6, 8, 10)) == timedelta(hours=11)
    assert c.between(ny(2026, 6, 6, 18), ny(2026, 6, 8, 9)) == timedelta(0)
    assert c.between(ny(2026, 6, 1), ny(2026, 6, 8)) == timedelta(hours=54)


def test_between_is_zero_when_end_not_after_start() -> None:
    c = cal(WORKSHOP)
    assert c.between(ny(2026, 6, 5, 12), ny(2026, 6, 5, 12)) == timedelta(0)
    assert c.between(ny(2026, 6, 5, 12), ny(2026, 6, 5, 10)) == timedelta(0)


def test_between_skips_holidays() -> None:
    c = cal(WORKSHOP, holidays=("2026-07-03",))
    assert c.between(ny(2026, 7, 2, 17), ny(2026, 7, 4, 10)) == timedelta(hours=2)


def test_between_mixed_timezone_inputs() -> None:
    c = cal(WORKSHOP)
    start = datetime(2026, 6, 5, 14, 0, tzinfo=UTC)  # 10:00 EDT
    end = at(LONDON, 2026, 6, 5, 17, 0)  # 12:00 EDT
    assert c.between(start, end) == timedelta(hours=2)


CALENDARS = [
    cal(WORKSHOP, holidays=("2026-03-10",)),
    cal(LUNCH, CHICAGO),
    cal(ALWAYS),
    cal(LATE, LONDON),
    cal({"sun": [["01:00", "04:00"]], "wed": [["02:30", "02:45"], ["22:00", "24:00"]]}),
]
DURATIONS = [
    timedelta(0),
    timedelta(minutes=1),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=7, minutes=13),
    timedelta(hours=16),
    timedelta(hours=49, minutes=1),
]


ORIGINS = [
    datetime(2026, 3, 3, 0, 7, tzinfo=UTC),  # ten days around the 2026-03-08 spring-forward
    datetime(2026, 10, 26, 3, 11, tzinfo=UTC),  # ten days around the 2026-11-01 fall-back
]
SECOND = timedelta(seconds=1)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("calendar", CALENDARS)
def test_between_inverts_add(calendar: BusinessCalendar, origin: datetime) -> None:
    checked = 0
    for step in range(150):
        start = origin + timedelta(minutes=97 * step)
        for duration in DURATIONS:
            end = calendar.add(start, duration)
            assert end.tzinfo == calendar.timezone
            assert utc(end) >= start
            assert calendar.between(start, end) == duration
            if duration:  # the last second before `end` was business time
                assert calendar.is_open(end - SECOND)
            else:
                assert utc(end) == utc(calendar.next_open(start))
            checked += 1
    assert checked == 150 * len(DURATIONS)


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("calendar", CALENDARS)
def test_add_inverts_between(calendar: BusinessCalendar, origin: datetime) -> None:
    for step in range(130):
        start = origin + timedelta(minutes=113 * step)
        for span in (timedelta(minutes=45), timedelta(hours=5), timedelta(hours=30)):
            end = start + span
            elapsed = calendar.between(start, end)
            assert timedelta(0) <= elapsed <= span
            reached = calendar.add(start, elapsed)
            assert calendar.between(start, reached) == elapsed
            if elapsed:  # earliest such moment, no later than `end`
                assert utc(reached) <= end
                assert calendar.between(reached, end) == timedelta(0)
                assert calendar.is_open(reached - SECOND)
            else:
                assert utc(reached) == utc(calendar.next_open(start))
            # additivity of business time
            middle = start + span / 3
            assert calendar.between(start, middle) + calendar.between(middle, end) == elapsed


def test_between_matches_minute_sampling() -> None:
    c = cal(LUNCH, holidays=("2026-03-09",))
    start, end = ny(2026, 3, 6, 7, 0), ny(2026, 3, 11, 9, 0)
    minutes = int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 60)
    open_minutes = sum(
        c.is_open(start.astimezone(UTC) + timedelta(minutes=m)) for m in range(minutes)
    )
    assert c.between(start, end) == timedelta(minutes=open_minutes)
    assert open_minutes == 8 * 60 + 8 * 60 + 60  # Fri, Tue, Wed 08:00-09:00


# -- errors ---------------------------------------------------------------------------------


def test_naive_datetimes_are_rejected() -> None:
    c = cal(WORKSHOP)
    naive = datetime(2026, 6, 5, 12, 0)
    aware = ny(2026, 6, 5, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        c.is_open(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        c.next_open(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        c.add(naive, timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        c.between(naive, aware)
    with pytest.raises(ValueError, match="timezone-aware"):
        c.between(aware, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_after(c, naive, timedelta(hours=48))


def test_calendar_without_hours_has_no_next_open() -> None:
    for c in (cal({}), cal({"mon": [], "sun": []}), BusinessCalendar(ZoneInfo(NEW_YORK), {})):
        with pytest.raises(ValueError, match="no open hours"):
            c.next_open(ny(2026, 6, 5, 12))
        with pytest.raises(ValueError, match="no open hours"):
            c.add(ny(2026, 6, 5, 12), timedelta(hours=1))
        with pytest.raises(ValueError, match="no open hours"):
            due_after(c, ny(2026, 6, 5, 12), timedelta(hours=48))
        assert not c.is_open(ny(2026, 6, 5, 12))
        assert c.between(ny(2026, 6, 1), ny(2026, 7, 1)) == timedelta(0)


def test_search_gives_up_after_about_400_days() -> None:
    mondays = tuple(
        (date(2026, 6, 1) + timedelta(weeks=w)).isoformat() for w in range(60)
    )  # every Monday for ~14 months
    c = cal({"mon": [["09:00", "18:00"]]}, holidays=mondays)
    with pytest.raises(ValueError, match="400 days"):
        c.next_open(ny(2026, 6, 1, 0))
    with pytest.raises(ValueError, match="400 days"):
        c.add(ny(2026, 6, 1, 0), timedelta(hours=1))
    # a shorter run of holidays is skipped
    short = cal({"mon": [["09:00", "18:00"]]}, holidays=mondays[:50])
    assert same_instant(short.next_open(ny(2026, 6, 1)), ny(2027, 5, 17, 9), short)


def test_a_zone_name_too_long_for_the_zone_database_is_an_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        BusinessCalendar.from_policy("America/" + "x" * 300, WORKSHOP)
