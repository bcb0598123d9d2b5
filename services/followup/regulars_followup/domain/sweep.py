"""The monthly database check: who is owed a reminder, a birthday note, a thank-you or a
win-back. Pure: the customer's history in, the messages to ask for out.

Whether a customer is lapsed or lost is loyalty's call (their lifecycle stage, which the
history carries), not worked out here from the time since their last visit.

Maintenance is due by time since the last service of that kind, or by mileage, estimated
from the odometer readings of earlier visits (miles per day between the first and last
reading) when the shop sends mileage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from regulars_events.catalogue import LifecycleStage

#: service kinds we remind about: (words that name it, every how long, every how many miles)
MAINTENANCE: dict[str, tuple[tuple[str, ...], timedelta, int | None]] = {
    "oil change": (
        ("oil change", "oil and filter", "lube oil", "oil service"),
        timedelta(days=182),
        5000,
    ),
    "tire rotation": (
        ("tire rotation", "rotate tires", "tyre rotation"),
        timedelta(days=182),
        6000,
    ),
    "brake inspection": (("brake",), timedelta(days=365), 12000),
    "hvac tune-up": (
        ("tune-up", "tune up", "furnace", "ac service", "a/c service", "hvac"),
        timedelta(days=365),
        None,
    ),
    "water heater flush": (("water heater",), timedelta(days=365), None),
}

LOYAL_WINDOW = timedelta(days=730)


@dataclass(frozen=True)
class VisitFact:
    repair_order_id: str
    completed_at: datetime
    asset_id: str | None = None
    mileage: int | None = None
    work: str = ""


@dataclass(frozen=True)
class CustomerHistory:
    customer_id: str
    birthday: date | None
    visits: list[VisitFact] = field(default_factory=list)
    #: the lifecycle stage loyalty last gave the customer (None: none received yet)
    stage: LifecycleStage | None = None


@dataclass(frozen=True)
class Outreach:
    kind: str  # reminder | birthday | thank_you | win_back
    purpose: str  # the idempotency key: one of each per customer and period
    context: dict[str, str]


def service_kinds(work: str) -> set[str]:
    text = work.lower()
    return {
        kind
        for kind, (words, _t, _m) in MAINTENANCE.items()
        if any(re.search(rf"\b{re.escape(w)}", text) for w in words)
    }


def estimated_mileage(visits: list[VisitFact], asset: str | None, on: date) -> float | None:
    readings = sorted(
        (v.completed_at, v.mileage) for v in visits if v.asset_id == asset and v.mileage is not None
    )
    if len(readings) < 2:
        return None
    (t0, m0), (t1, m1) = readings[0], readings[-1]
    days = (t1 - t0).total_seconds() / 86400
    if days < 1 or m1 is None or m0 is None or m1 < m0:
        return None
    per_day = (m1 - m0) / days
    return m1 + per_day * max(0.0, (on - t1.date()).days)


def monthly_check(history: CustomerHistory, month: date, now: datetime) -> list[Outreach]:
    return one_marketing_message(_owed(history, month, now))


#: which marketing message a run sends when a customer is owed several: the win-back and
#: the birthday note belong to this month, the year's thank-you can come with a later run
MARKETING_FIRST = ("win_back", "birthday", "thank_you")


def one_marketing_message(owed: list[Outreach]) -> list[Outreach]:
    """The run's outreach with one marketing message at most (SPEC workflow 4: one per
    7 days). The others are not asked for, rather than held: a thank-you held a week
    behind a birthday note is two marketing messages from one run, and the next month's
    run asks for it again (its purpose is the year's)."""
    marketing = [o for o in owed if o.kind in MARKETING_FIRST]
    if len(marketing) <= 1:
        return owed
    keep = min(marketing, key=lambda o: MARKETING_FIRST.index(o.kind))
    return [o for o in owed if o.kind not in MARKETING_FIRST or o is keep]


def _owed(history: CustomerHistory, month: date, now: datetime) -> list[Outreach]:
    """What this customer is owed in the month that starts on ``month``: every reminder
    due, and at most one marketing message (see :func:`one_marketing_message`).

    Lapsed, lost and loyal are loyalty's stages (``history.stage``), never worked out here:
    the product has one definition of each. A lost customer is owed nothing more; a lapsed
    one only the win-back, one per lapse (keyed by the last visit); a loyal one the year's
    thank-you.
    """
    if history.stage == "lost":
        return []
    visits = sorted(history.visits, key=lambda v: v.completed_at)
    if history.stage == "lapsed":
        if not visits:
            return []  # no visit of theirs here to key the one win-back by
        last = visits[-1]
        return [
            Outreach(
                "win_back",
                f"win_back:{last.repair_order_id}",
                {"last_visit": f"{last.completed_at:%B %Y}"},
            )
        ]
    out: list[Outreach] = []
    period = f"{month:%Y-%m}"
    if history.birthday is not None and history.birthday.month == month.month:
        out.append(Outreach("birthday", f"birthday:{month.year}", {}))
    if not visits:
        return out
    if history.stage == "loyal":
        # loyal is loyalty's word too (three visits within 24 months, no open case)
        recent = [v for v in visits if now - v.completed_at <= LOYAL_WINDOW]
        out.append(Outreach("thank_you", f"thank_you:{month.year}", {"visits": str(len(recent))}))
    due: dict[str, str] = {}
    for kind, (_words, every, miles) in MAINTENANCE.items():
        done = [v for v in visits if kind in service_kinds(v.work)]
        if not done:
            continue
        latest = done[-1]
        by_time = now - latest.completed_at >= every
        by_miles = False
        if miles is not None and latest.mileage is not None:
            estimate = estimated_mileage(visits, latest.asset_id, month)
            by_miles = estimate is not None and estimate - latest.mileage >= miles
        if by_time or by_miles:
            due[kind] = latest.asset_id or ""
    for kind, asset in sorted(due.items()):
        out.append(
            Outreach(
                "reminder", f"reminder:{kind}:{period}", {"service_due": kind, "vehicle": asset}
            )
        )
    return out


def first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)
