"""Recovery cases: who owns one, its SLA clocks, and the escalation ladder. Pure.

Two clocks run from the moment a case opens (or is escalated): acknowledge within
``ack_sla`` (``ack_sla_critical`` for a critical case) and resolve within ``resolve_sla``,
both in the shop's business time (``BusinessCalendar.add``), to the minute. Each clock has
two moments: "at risk" when ``at_risk_fraction`` of its window is left, and "breached" at
its end. A breach moves the case one level up the ladder (advisor -> service manager ->
owner), to that person, with a new window for the clock that breached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from regulars_shop.calendar import BusinessCalendar
from regulars_shop.policy import Policy

from .classification import Severity, StaffRef

Level = Literal["advisor", "service_manager", "owner"]
Clock = Literal["acknowledge", "resolve"]
LADDER: tuple[Level, ...] = ("advisor", "service_manager", "owner")
CLOCKS: tuple[Clock, ...] = ("acknowledge", "resolve")
#: a customer's second negative (another incident) within this long is critical
REPEAT_WINDOW = timedelta(days=90)


class CaseStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class CaseClosed(Exception):
    """The case is resolved: it can be commented on, not acknowledged or resolved again."""


def can_acknowledge(status: str) -> bool:
    """True to acknowledge now, False when it already is; CaseClosed when resolved."""
    if status == CaseStatus.RESOLVED:
        raise CaseClosed("the case is resolved")
    return status == CaseStatus.OPEN


def check_resolvable(status: str) -> None:
    if status == CaseStatus.RESOLVED:
        raise CaseClosed("the case is resolved already")


def outcome_note(raw: object) -> str | None:
    """The resolution's outcome note, stripped; None if missing or blank."""
    if not isinstance(raw, str):
        return None
    note = raw.strip()
    return note or None


# -- SLA arithmetic ------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaRules:
    calendar: BusinessCalendar
    ack: timedelta
    ack_critical: timedelta
    resolve: timedelta
    at_risk_fraction: float = 0.25

    @classmethod
    def from_policy(cls, policy: Policy) -> SlaRules:
        return cls(
            policy.calendar(),
            policy.ack_sla_business,
            policy.ack_sla_critical_business,
            policy.resolve_sla_business,
            policy.sla_at_risk_fraction,
        )

    def length(self, clock: Clock, severity: Severity) -> timedelta:
        if clock == "resolve":
            return self.resolve
        return self.ack_critical if severity == "critical" else self.ack

    def window(self, clock: Clock, severity: Severity, start: datetime) -> Window:
        return sla_window(self.calendar, start, self.length(clock, severity), self.at_risk_fraction)


@dataclass(frozen=True)
class Window:
    """One SLA window: from ``start``, warn at ``at_risk_at``, breached at ``due_at``."""

    start: datetime
    at_risk_at: datetime
    due_at: datetime


def sla_window(
    calendar: BusinessCalendar, start: datetime, length: timedelta, at_risk_fraction: float
) -> Window:
    """``length`` of business time from ``start``; at risk when the fraction is left.

    Durations are kept to the microsecond (a 3-second window has a 0.75-second warning);
    ``BusinessCalendar`` carries them across nights, weekends, holidays and DST changes.
    """
    if not 0 < at_risk_fraction < 1:
        raise ValueError(f"at_risk_fraction must be between 0 and 1, got {at_risk_fraction}")
    used = timedelta(
        microseconds=round((length / timedelta(microseconds=1)) * (1 - at_risk_fraction))
    )
    return Window(start, calendar.add(start, used), calendar.add(start, length))


# -- people and the ladder --------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    level: Level
    assignee: str
    member: StaffRef | None = None


def _first(staff: Sequence[StaffRef], role: str) -> StaffRef | None:
    return next((m for m in staff if m.role == role), None)


def find_staff(staff: Sequence[StaffRef], who: str | None) -> StaffRef | None:
    """The staff member ``who`` names: an id, or a name (case aside)."""
    if not who:
        return None
    wanted = " ".join(who.lower().split())
    for member in staff:
        if member.id.lower() == wanted or " ".join(member.name.lower().split()) == wanted:
            return member
    return None


UNASSIGNED = "unassigned"


def initial_assignment(advisor: str | None, staff: Sequence[StaffRef]) -> Assignment:
    """The visit's advisor; without one, a service manager; then the owner."""
    if advisor:
        member = find_staff(staff, advisor)
        return Assignment("advisor", member.id if member else advisor, member)
    for level in ("service_manager", "owner"):
        member = _first(staff, level)
        if member is not None:
            return Assignment(level, member.id, member)
    return Assignment("advisor", UNASSIGNED)


def escalation(level: str, staff: Sequence[StaffRef]) -> Assignment | None:
    """The next level up that has someone in it; None at the top of the ladder."""
    if level not in LADDER:
        raise ValueError(f"unknown escalation level {level!r}")
    for higher in LADDER[LADDER.index(level) + 1 :]:
        member = _first(staff, higher)
        if member is not None:
            return Assignment(higher, member.id, member)
    return None


def staff_of(policy: Policy) -> list[StaffRef]:
    return [StaffRef(m.id, m.name, m.role, m.email, m.phone) for m in policy.staff]


# -- timers ------------------------------------------------------------------------------------

Moment = Literal["at_risk", "breach"]


def timer_key(case_id: str, clock: Clock, moment: Moment, due_at: datetime) -> str:
    """One timer per case, clock, moment and window: a new window has new keys."""
    return f"feedback.sla:{case_id}:{clock}:{moment}:{due_at.isoformat()}"


def clock_running(status: str, clock: Clock) -> bool:
    """Acknowledging stops the acknowledgement clock; resolving stops both."""
    if status == CaseStatus.RESOLVED:
        return False
    return not (clock == "acknowledge" and status == CaseStatus.ACKNOWLEDGED)
