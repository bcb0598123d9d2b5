"""A customer's lifecycle stage, from when things happened (SPEC.md workflow 5).

The stages, first match wins:

- ``lost``: no visit for ``lost_after`` (the shop's policy, default 730 days);
- ``lapsed``: no visit for ``lapsed_after`` (default 365 days);
- ``at_risk``: open negative feedback, a missed follow-up not made good since (no visit,
  completed follow-up or survey answer after it), or maintenance overdue (a maintenance
  reminder went out ``MAINTENANCE_GRACE`` ago and no visit since);
- ``advocate``: referred a customer, or a promoter (last NPS answer 9-10, survey or call)
  who was invited to review;
- ``loyal``: three or more visits within the last 24 months, no open recovery case;
- ``repeat``: two or more visits within the last 18 months;
- ``customer``: a completed service (fewer in those windows);
- ``prospect``: no completed service yet.

A visit counts in a window until the same wall time that many calendar months later
(the day clamped to the month: 18 months after 2024-08-31 is 2026-02-28), inclusive. "No
visit for N" is reached at exactly N after the last visit (364 days: not lapsed; 365
days: lapsed).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Stage = Literal["prospect", "customer", "repeat", "loyal", "advocate", "at_risk", "lapsed", "lost"]
STAGES: tuple[Stage, ...] = (
    "prospect",
    "customer",
    "repeat",
    "loyal",
    "advocate",
    "at_risk",
    "lapsed",
    "lost",
)

REPEAT_VISITS, REPEAT_MONTHS = 2, 18
LOYAL_VISITS, LOYAL_MONTHS = 3, 24
#: a maintenance reminder unanswered this long makes the maintenance overdue
MAINTENANCE_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class StageRules:
    lapsed_after: timedelta = timedelta(days=365)
    lost_after: timedelta = timedelta(days=730)


def months_before(at: datetime, months: int) -> datetime:
    """The same wall time ``months`` calendar months earlier (the day clamped to the month)."""
    index = at.year * 12 + at.month - 1 - months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def months_after(at: datetime, months: int) -> datetime:
    return months_before(at, -months)


@dataclass(frozen=True)
class Signals:
    """What can put a customer at risk or make them an advocate, each with when it began."""

    open_negative_since: datetime | None = None
    missed_follow_up_at: datetime | None = None
    maintenance_reminded_at: datetime | None = None
    referred: tuple[tuple[str, datetime], ...] = ()
    promoter_invited_at: datetime | None = None
    open_case: bool = False
    #: the last time anything made a missed follow-up good (answer, completed follow-up)
    heard_from_at: datetime | None = None


@dataclass(frozen=True)
class Assessment:
    stage: Stage
    reason: str
    #: when the stage's condition began, in event time (a history import lands in the past)
    since: datetime | None
    #: the next moment the stage changes if nothing else happens; None: never by time alone
    next_change_at: datetime | None = None
    at_risk_reasons: tuple[str, ...] = field(default=())


def _day(at: datetime) -> str:
    return f"{at:%Y-%m-%d}"


def at_risk_reasons(
    signals: Signals, visits: Sequence[datetime], now: datetime
) -> list[tuple[str, str, datetime]]:
    """(code, words, since) of every at-risk signal in force at ``now``."""
    last = visits[-1] if visits else None
    found: list[tuple[str, str, datetime]] = []
    if signals.open_negative_since is not None and signals.open_negative_since <= now:
        found.append(
            (
                "open_negative_feedback",
                f"open negative feedback since {_day(signals.open_negative_since)}",
                signals.open_negative_since,
            )
        )
    missed = signals.missed_follow_up_at
    if (
        missed is not None
        and missed <= now
        and (last is None or last <= missed)
        and (signals.heard_from_at is None or signals.heard_from_at <= missed)
    ):
        found.append(("missed_follow_up", f"follow-up missed on {_day(missed)}", missed))
    reminded = signals.maintenance_reminded_at
    if reminded is not None and (last is None or last <= reminded):
        overdue_at = reminded + MAINTENANCE_GRACE
        if overdue_at <= now:
            found.append(
                (
                    "overdue_maintenance",
                    f"maintenance reminded on {_day(reminded)}, no visit since",
                    overdue_at,
                )
            )
    return found


def assess(
    visits: Iterable[datetime], signals: Signals, now: datetime, rules: StageRules
) -> Assessment:
    """The stage at ``now``, why, and since when; visits after ``now`` are not counted."""
    done = sorted(v for v in visits if v <= now)
    stage, reason, since, risks = _stage_at(done, signals, now, rules)
    return Assessment(
        stage,
        reason,
        since,
        _next_change(done, signals, now, rules, stage),
        tuple(code for code, _w, _s in risks),
    )


def _stage_at(
    done: Sequence[datetime], signals: Signals, now: datetime, rules: StageRules
) -> tuple[Stage, str, datetime | None, list[tuple[str, str, datetime]]]:
    risks = at_risk_reasons(signals, done, now)
    if done:
        last = done[-1]
        quiet = now - last
        if quiet >= rules.lost_after:
            return (
                "lost",
                f"no visit for {quiet.days} days (last {_day(last)})",
                last + rules.lost_after,
                risks,
            )
        if quiet >= rules.lapsed_after:
            return (
                "lapsed",
                f"no visit for {quiet.days} days (last {_day(last)})",
                last + rules.lapsed_after,
                risks,
            )
    if risks:
        return "at_risk", "; ".join(w for _c, w, _s in risks), min(s for _c, _w, s in risks), risks
    referred = [(c, at) for c, at in signals.referred if at <= now]
    if referred:
        who, at = referred[0]
        more = f" and {len(referred) - 1} more" if len(referred) > 1 else ""
        return "advocate", f"referred {who}{more}", at, risks
    if signals.promoter_invited_at is not None and signals.promoter_invited_at <= now:
        return "advocate", "promoter invited to review", signals.promoter_invited_at, risks
    if not done:
        return "prospect", "no completed service yet", None, risks
    loyal = _within(done, LOYAL_MONTHS, now)
    if loyal >= LOYAL_VISITS and not signals.open_case:
        return (
            "loyal",
            f"{loyal} visits within {LOYAL_MONTHS} months, no open case",
            done[-loyal + LOYAL_VISITS - 1],
            risks,
        )
    repeat = _within(done, REPEAT_MONTHS, now)
    if repeat >= REPEAT_VISITS:
        return (
            "repeat",
            f"{repeat} visits within {REPEAT_MONTHS} months",
            done[-repeat + REPEAT_VISITS - 1],
            risks,
        )
    if len(done) == 1:
        return "customer", f"one visit, on {_day(done[0])}", done[0], risks
    return (
        "customer",
        f"{len(done)} visits, the last on {_day(done[-1])}; fewer than"
        f" {REPEAT_VISITS} within {REPEAT_MONTHS} months",
        max(done[-1], months_after(done[-2], REPEAT_MONTHS)),
        risks,
    )


def _within(done: Sequence[datetime], months: int, now: datetime) -> int:
    """How many of the (sorted) visits are within ``months`` of ``now``: counted from the
    latest back, since a visit out of the window has every earlier one out too. A visit
    well inside (a month's margin) needs no calendar arithmetic."""
    surely_in = now - timedelta(days=31 * months - 31)
    count = 0
    for v in reversed(done):
        if v < surely_in and months_after(v, months) < now:
            break
        count += 1
    return count


def _next_change(
    done: Sequence[datetime],
    signals: Signals,
    now: datetime,
    rules: StageRules,
    stage: Stage,
) -> datetime | None:
    """The first moment after ``now`` at which the stage differs, by time passing alone.

    Only a few moments can change it: the last visit turning lapsed or lost, and the
    visit that holds a count at its threshold leaving its window (the second most recent
    for repeat, the third for loyal), one instant after the window's end.
    """
    moments: set[datetime] = set()
    instant = timedelta(microseconds=1)
    if done:
        moments.update({done[-1] + rules.lapsed_after, done[-1] + rules.lost_after})
        if len(done) >= REPEAT_VISITS:
            moments.add(months_after(done[-REPEAT_VISITS], REPEAT_MONTHS) + instant)
        if len(done) >= LOYAL_VISITS:
            moments.add(months_after(done[-LOYAL_VISITS], LOYAL_MONTHS) + instant)
    if signals.maintenance_reminded_at is not None:
        moments.add(signals.maintenance_reminded_at + MAINTENANCE_GRACE)
    for at in sorted(m for m in moments if m > now):
        if _stage_at(done, signals, at, rules)[0] != stage:
            return at
    return None
