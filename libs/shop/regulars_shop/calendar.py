"""A shop's business calendar: opening hours, holidays and business-time arithmetic.

Opening hours are local wall-clock intervals per weekday; every computation happens on
real (UTC) instants, so durations across DST changes are exact:

* a local time inside a spring-forward gap maps to the moment the gap ends;
* an ambiguous local time (fall-back) takes its first occurrence (fold=0);
* an interval end of ``None`` ("24:00") is 00:00 local of the following day.

Open intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["WEEKDAYS", "BusinessCalendar", "due_after"]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = 400
_ONE_DAY = timedelta(days=1)
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")

Interval = tuple[time, time | None]
_Span = tuple[datetime, datetime]  # a real open interval, UTC, half-open


@dataclass(frozen=True)
class BusinessCalendar:
    timezone: ZoneInfo
    hours: Mapping[int, tuple[Interval, ...]]  # 0=Monday..6=Sunday; end None == 24:00
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        for weekday, intervals in self.hours.items():
            if weekday not in range(7):
                raise ValueError(f"weekday must be 0 (Monday) .. 6 (Sunday), got {weekday!r}")
            _check_intervals(WEEKDAYS[weekday], intervals)

    @classmethod
    def from_policy(
        cls,
        timezone: str,
        business_hours: Mapping[str, Sequence[Sequence[str]]],
        holidays: Iterable[date | str] = (),
    ) -> BusinessCalendar:
        """Build from policy data: ``{"mon": [["09:00", "18:00"]], ...}``; "24:00" ends a day."""
        hours: dict[int, tuple[Interval, ...]] = {}
        for key, raw_intervals in business_hours.items():
            day = str(key).strip().lower()
            if day not in WEEKDAYS:
                raise ValueError(f"business_hours: unknown day {key!r}, expected one of {WEEKDAYS}")
            weekday = WEEKDAYS.index(day)
            if weekday in hours:
                raise ValueError(f"business_hours[{day!r}]: day given more than once")
            hours[weekday] = _parse_intervals(day, raw_intervals)
        return cls(
            timezone=_parse_zone(timezone),
            hours=hours,
            holidays=frozenset(_parse_holiday(h) for h in holidays),
        )

    def is_open(self, at: datetime) -> bool:
        """Whether the shop is open at the instant ``at``."""
        instant = _as_utc(at, "at")
        for start, end in self._day_spans(_local_date(instant, self.timezone) - _ONE_DAY, 3):
            if start <= instant < end:
                return True
        return False

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself if open, else the start of the next open interval."""
        instant = _as_utc(at, "at")
        start, _ = next(self._spans_from(instant))
        return self._local(max(start, instant))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of business time has elapsed from ``start``."""
        if duration < timedelta(0):
            raise ValueError(f"duration must not be negative, got {duration}")
        instant = _as_utc(start, "start")
        remaining = duration
        for span_start, span_end in self._spans_from(instant):
            begin = max(span_start, instant)
            available = span_end - begin
            if remaining <= available:
                return self._local(begin + remaining)
            remaining -= available
        raise AssertionError("unreachable: _spans_from never ends")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time elapsed in ``[start, end)``; zero if ``end <= start``."""
        lo, hi = _as_utc(start, "start"), _as_utc(end, "end")
        total = timedelta(0)
        if hi <= lo:
            return total
        first = _local_date(lo, self.timezone) - _ONE_DAY
        days = (_local_date(hi, self.timezone) - first).days + 1
        for span_start, span_end in self._day_spans(first, days):
            overlap = min(span_end, hi) - max(span_start, lo)
            if overlap > timedelta(0):
                total += overlap
        return total

    # -- internals ---------------------------------------------------------------

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.timezone)

    def _spans_of(self, day: date) -> list[_Span]:
        """The non-empty real open intervals of one local day, in order."""
        if day in self.holidays:
            return []
        spans: list[_Span] = []
        for start, end in sorted(self.hours.get(day.weekday(), ()), key=_by_start):
            real_start = _to_utc(day, start, self.timezone)
            real_end = (
                _to_utc(day + _ONE_DAY, time(0), self.timezone)
                if end is None
                else _to_utc(day, end, self.timezone)
            )
            if real_start < real_end:
                spans.append((real_start, real_end))
        return spans

    def _day_spans(self, first: date, days: int) -> Iterator[_Span]:
        for offset in range(days):
            yield from self._spans_of(first + timedelta(days=offset))

    def _spans_from(self, instant: datetime) -> Iterator[_Span]:
        """Open intervals ending after ``instant``, in order, without end.

        Raises ValueError when no open interval exists within ``_SEARCH_DAYS`` days.
        """
        if not any(self.hours.values()):
            raise ValueError("business calendar has no open hours")
        day = _local_date(instant, self.timezone) - _ONE_DAY
        last_open = day
        while (day - last_open).days <= _SEARCH_DAYS:
            for span in self._spans_of(day):
                last_open = day
                if span[1] > instant:
                    yield span
            day += _ONE_DAY
        raise ValueError(f"no open business hours within {_SEARCH_DAYS} days after {last_open}")


def due_after(calendar: BusinessCalendar, start: datetime, delay: timedelta) -> datetime:
    """First business moment at least `delay` of elapsed (wall-clock) time after `start`."""
    return calendar.next_open(_as_utc(start, "start") + delay)


# -- helpers ---------------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _to_utc(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The real instant of local wall-clock ``day clock``.

    Ambiguous times take the first occurrence; times in a gap map to the gap's end.
    """
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    later = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(min(first, later), max(first, later), zone)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(before, after]`` where ``zone``'s UTC offset changes."""
    target = after.astimezone(zone).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _by_start(interval: Interval) -> time:
    return interval[0]


def _check_intervals(day: str, intervals: Iterable[Interval]) -> None:
    previous_end: time | None = None
    for index, (start, end) in enumerate(sorted(intervals, key=_by_start)):
        shown = f"{start:%H:%M}-{'24:00' if end is None else f'{end:%H:%M}'}"
        if start.tzinfo is not None or (end is not None and end.tzinfo is not None):
            raise ValueError(f"business_hours[{day!r}]: {shown} must use naive local times")
        if end is not None and end <= start:
            raise ValueError(f"business_hours[{day!r}]: {shown} must end after it starts")
        if index > 0 and (previous_end is None or start < previous_end):
            raise ValueError(f"business_hours[{day!r}]: {shown} overlaps another interval")
        previous_end = end


def _parse_intervals(day: str, raw_intervals: Sequence[Sequence[str]]) -> tuple[Interval, ...]:
    if isinstance(raw_intervals, str):
        raise ValueError(f"business_hours[{day!r}]: expected a list of [start, end] pairs")
    intervals: list[Interval] = []
    for pair in raw_intervals:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"business_hours[{day!r}]: expected a [start, end] pair, got {pair!r}")
        start = _parse_clock(day, pair[0])
        if start is None:
            raise ValueError(f"business_hours[{day!r}]: 24:00 is only allowed as an end")
        intervals.append((start, _parse_clock(day, pair[1])))
    _check_intervals(day, intervals)
    return tuple(sorted(intervals, key=_by_start))


def _parse_clock(day: str, text: str) -> time | None:
    """``"HH:MM"`` -> time; ``"24:00"`` -> None (end of day)."""
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"business_hours[{day!r}]: bad time {text!r}, expected HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0):
        return None
    if hour > 23 or minute > 59:
        raise ValueError(f"business_hours[{day!r}]: bad time {text!r}, out of range")
    return time(hour, minute)


def _parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ValueError(f"unknown timezone {name[:60]!r}") from exc


def _parse_holiday(value: date | str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"holiday must be a date, not a datetime: {value!r}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad holiday {value!r}, expected YYYY-MM-DD") from exc
