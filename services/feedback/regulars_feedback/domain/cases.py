"""Recovery cases: who owns one, its SLA clocks, and the escalation ladder. Pure.

Two clocks run from the moment a case opens (or is escalated): acknowledge within
``ack_sla`` (``ack_sla_critical`` for a critical case) and resolve within ``resolve_sla``,
both in the shop's business time (``BusinessCalendar.add``), to the minute. Each clock has
two moments: "at risk" when ``at_risk_fraction`` of its window is left, and "breached" at
its end. A breach moves the case one level up the ladder (advisor -> service manager ->
owner), to that person, with a new window for the clock that breached.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from regulars_events.base import Event
from regulars_events.catalogue import (
    FeedbackSource,
    RecoveryCaseAcknowledged,
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    RecoveryCaseSlaAtRisk,
)
from regulars_shop.calendar import BusinessCalendar
from regulars_shop.policy import Policy

from .classification import Severity, StaffRef, Verdict, graver

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

    def window(self, clock: Clock, severity: Severity, start: datetime) -> SlaWindow:
        return sla_window(self.calendar, start, self.length(clock, severity), self.at_risk_fraction)


Moment = Literal["at_risk", "breach"]


@dataclass(frozen=True)
class SlaWindow:
    """One SLA window: from ``start``, warn at ``at_risk_at``, breached at ``due_at``."""

    start: datetime
    at_risk_at: datetime
    due_at: datetime

    def moments(self, clock: Clock) -> list[SlaMoment]:
        return [
            SlaMoment(clock, "at_risk", self.at_risk_at, self.due_at),
            SlaMoment(clock, "breach", self.due_at, self.due_at),
        ]


@dataclass(frozen=True)
class SlaMoment:
    """A moment a case's clock needs a timer for: the warning, or the breach, of the
    window that ends at ``due_at`` (a new window has new moments)."""

    clock: Clock
    moment: Moment
    fire_at: datetime
    due_at: datetime


def sla_window(
    calendar: BusinessCalendar, start: datetime, length: timedelta, at_risk_fraction: float
) -> SlaWindow:
    """``length`` of business time from ``start``; at risk when the fraction is left.

    Durations are kept to the microsecond (a 3-second window has a 0.75-second warning);
    ``BusinessCalendar`` carries them across nights, weekends, holidays and DST changes.
    """
    if not 0 < at_risk_fraction < 1:
        raise ValueError(f"at_risk_fraction must be between 0 and 1, got {at_risk_fraction}")
    used = timedelta(
        microseconds=round((length / timedelta(microseconds=1)) * (1 - at_risk_fraction))
    )
    return SlaWindow(start, calendar.add(start, used), calendar.add(start, length))


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


def timer_key(case_id: str, clock: Clock, moment: Moment, due_at: datetime) -> str:
    """One timer per case, clock, moment and window: a new window has new keys."""
    return f"feedback.sla:{case_id}:{clock}:{moment}:{due_at.isoformat()}"


def clock_running(status: str, clock: Clock) -> bool:
    """Acknowledging stops the acknowledgement clock; resolving stops both."""
    if status == CaseStatus.RESOLVED:
        return False
    return not (clock == "acknowledge" and status == CaseStatus.ACKNOWLEDGED)


# -- the aggregate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One piece of negative feedback about a customer (and a visit, when known)."""

    shop_id: uuid.UUID
    customer_id: str
    repair_order_id: str | None
    source: FeedbackSource
    verdict: Verdict
    nps: int | None = None
    csat: int | None = None
    text: str | None = None
    survey_id: uuid.UUID | None = None
    #: who the visit's advisor is, when the visit itself is not known here yet
    advisor: str | None = None

    def detail(self, grade: Severity) -> dict[str, Any]:
        """What a case's history keeps of the signal."""
        return {
            "source": self.source,
            "reasons": list(self.verdict.reasons),
            "nps": self.nps,
            "csat": self.csat,
            "survey_id": str(self.survey_id) if self.survey_id else None,
            "severity": grade,
        }


@dataclass(frozen=True)
class CaseEntry:
    """One line of a case's history, as the API shows it."""

    at: datetime
    kind: str
    by: str | None = None
    text: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    """What a case's method decided beyond its own state: the events it causes, the SLA
    moments that now need timers, and (on resolution) when to check in again."""

    events: list[Event] = field(default_factory=list)
    timers: list[SlaMoment] = field(default_factory=list)
    check_in_at: datetime | None = None


class OutcomeRequired(ValueError):
    """A case is resolved with a note of what was done, never without."""


def _contact(member: StaffRef | None) -> dict[str, Any]:
    if member is None:
        return {}
    return {
        "assignee_name": member.name,
        "assignee_email": member.email,
        "assignee_phone": member.phone,
        "staff_id": member.id,
    }


@dataclass
class RecoveryCase:
    """One incident's recovery: who owns it, its two SLA clocks, and where it stands.

    Its methods change it and return what they cause; ``entries`` holds the history lines
    added since it was loaded, for its repository to append.
    """

    id: uuid.UUID
    shop_id: uuid.UUID
    customer_id: str
    repair_order_id: str | None
    incident_key: str
    severity: Severity
    status: CaseStatus
    assignee: str
    escalation_level: Level
    opened_at: datetime
    acknowledge_window: SlaWindow
    resolve_window: SlaWindow
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    outcome: str | None = None
    #: the assignee's staff record, when the shop's policy names them
    member: StaffRef | None = None
    entries: list[CaseEntry] = field(default_factory=list)

    # -- opening and joining ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        id: uuid.UUID,
        signal: Signal,
        repair_order_id: str | None,
        incident_key: str,
        severity: Severity,
        advisor: str | None,
        staff: Sequence[StaffRef],
        rules: SlaRules,
        now: datetime,
    ) -> tuple[RecoveryCase, Decision]:
        """A new case for an incident: to the visit's advisor (or the next one who can
        take it), both clocks running from now."""
        assignment = initial_assignment(advisor, staff)
        case = cls(
            id=id,
            shop_id=signal.shop_id,
            customer_id=signal.customer_id,
            repair_order_id=repair_order_id,
            incident_key=incident_key,
            severity=severity,
            status=CaseStatus.OPEN,
            assignee=assignment.assignee,
            escalation_level=assignment.level,
            opened_at=now,
            acknowledge_window=rules.window("acknowledge", severity, now),
            resolve_window=rules.window("resolve", severity, now),
            member=assignment.member,
        )
        detail = signal.detail(severity)
        case.entries.append(CaseEntry(now, "opened", text=signal.text, data=detail))
        opened = RecoveryCaseOpened(
            case_id=str(case.id),
            customer_id=case.customer_id,
            repair_order_id=case.repair_order_id,
            severity=case.severity,
            assignee=case.assignee,
            escalation_level=case.escalation_level,
            ack_due_at=case.acknowledge_window.due_at,
            resolve_due_at=case.resolve_window.due_at,
            incident_key=case.incident_key,
            source=signal.source,
            reasons=detail["reasons"],
            opened_at=now,
            **_contact(case.member),
        )
        return case, Decision([opened], case.moments(CLOCKS))

    def join(self, signal: Signal, grade: Severity, rules: SlaRules, now: datetime) -> Decision:
        """A second signal about the same incident: into the history; a graver one raises
        the severity (and a critical one shortens an acknowledgement window still running)."""
        self.entries.append(CaseEntry(now, "joined", text=signal.text, data=signal.detail(grade)))
        new = graver(self.severity, grade)
        if new == self.severity:
            return Decision()
        self.entries.append(CaseEntry(now, "severity", data={"from": self.severity, "to": new}))
        self.severity = new
        if new != "critical" or self.status != CaseStatus.OPEN:
            return Decision()
        window = rules.window("acknowledge", new, self.acknowledge_window.start)
        if window.due_at >= self.acknowledge_window.due_at:
            return Decision()
        # The old window's timers stand down by themselves (their due time no longer
        # governs), so nothing needs cancelling while the case is held.
        self.acknowledge_window = window
        return Decision(timers=window.moments("acknowledge"))

    def note_reply(self, text: str, at: datetime) -> None:
        """A reply that is neither consent nor complaint: kept on the case."""
        self.entries.append(CaseEntry(at, "reply", text=text))

    # -- SLA clocks ------------------------------------------------------------------------

    def window(self, clock: Clock) -> SlaWindow:
        return self.acknowledge_window if clock == "acknowledge" else self.resolve_window

    def moments(self, clocks: Sequence[Clock]) -> list[SlaMoment]:
        """The timer moments of ``clocks``' current windows."""
        return [m for clock in clocks for m in self.window(clock).moments(clock)]

    def governs(self, clock: Clock, due_at: datetime) -> bool:
        """A timer acts only for a running clock whose window is still the one it was set
        for: acknowledging, resolving or an escalation since make it stand down."""
        return clock_running(self.status, clock) and self.window(clock).due_at == due_at

    def warn_at_risk(self, clock: Clock, staff: Sequence[StaffRef], now: datetime) -> Decision:
        """Little of ``clock``'s window is left: the assignee is warned."""
        due = self.window(clock).due_at
        self.entries.append(
            CaseEntry(now, "sla_at_risk", data={"clock": clock, "due_at": due.isoformat()})
        )
        member = find_staff(staff, self.assignee)
        warning = RecoveryCaseSlaAtRisk(
            case_id=str(self.id),
            customer_id=self.customer_id,
            clock=clock,
            due_at=due,
            assignee=self.assignee,
            escalation_level=self.escalation_level,
            severity=self.severity,
            repair_order_id=self.repair_order_id,
            **_contact(member),
        )
        return Decision([warning])

    def escalate(
        self, clock: Clock, staff: Sequence[StaffRef], rules: SlaRules, now: datetime
    ) -> Decision:
        """``clock``'s window ran out: one level up the ladder, to that person, with a new
        window for that clock. At the top of the ladder it is only recorded (no events)."""
        breached = self.window(clock).due_at
        level = self.escalation_level
        to = escalation(level, staff)
        if to is None:
            self.entries.append(
                CaseEntry(
                    now,
                    "sla_breached",
                    data={"clock": clock, "due_at": breached.isoformat(), "level": level},
                )
            )
            return Decision()
        window = rules.window(clock, self.severity, now)
        previous = self.assignee
        self.assignee, self.escalation_level, self.member = to.assignee, to.level, to.member
        if clock == "acknowledge":
            self.acknowledge_window = window
        else:
            self.resolve_window = window
        self.entries.append(
            CaseEntry(
                now,
                "escalated",
                data={
                    "clock": clock,
                    "from_level": level,
                    "to_level": to.level,
                    "from_assignee": previous,
                    "assignee": to.assignee,
                    "breached_due_at": breached.isoformat(),
                    "due_at": window.due_at.isoformat(),
                },
            )
        )
        escalated = RecoveryCaseEscalated(
            case_id=str(self.id),
            customer_id=self.customer_id,
            from_level=level,
            to_level=to.level,
            assignee=to.assignee,
            clock=clock,
            escalated_at=now,
            severity=self.severity,
            repair_order_id=self.repair_order_id,
            previous_assignee=previous,
            breached_due_at=breached,
            due_at=window.due_at,
            **_contact(to.member),
        )
        return Decision([escalated], window.moments(clock))

    # -- staff -----------------------------------------------------------------------------

    def acknowledge(self, by: str | None, note: str | None, at: datetime) -> Decision:
        """Stops the acknowledgement clock. No events when it was acknowledged already;
        CaseClosed when resolved."""
        if not can_acknowledge(self.status):
            return Decision()
        self.status = CaseStatus.ACKNOWLEDGED
        self.acknowledged_at, self.acknowledged_by = at, by
        self.entries.append(CaseEntry(at, "acknowledged", by=by, text=note))
        acknowledged = RecoveryCaseAcknowledged(
            case_id=str(self.id),
            customer_id=self.customer_id,
            acknowledged_by=by,
            acknowledged_at=at,
            repair_order_id=self.repair_order_id,
            escalation_level=self.escalation_level,
            severity=self.severity,
        )
        return Decision([acknowledged])

    def resolve(
        self, by: str | None, outcome: str, at: datetime, *, check_in_after: timedelta
    ) -> Decision:
        """Closes the case with its outcome note: every clock stops, and the check-in and
        re-survey are due ``check_in_after`` later. CaseClosed when resolved already."""
        check_resolvable(self.status)
        note = outcome_note(outcome)
        if note is None:
            raise OutcomeRequired("an outcome note is required to resolve a case")
        self.status = CaseStatus.RESOLVED
        self.resolved_at, self.resolved_by, self.outcome = at, by, note
        self.entries.append(CaseEntry(at, "resolved", by=by, text=note))
        check_in_at = at + check_in_after
        resolved = RecoveryCaseResolved(
            case_id=str(self.id),
            customer_id=self.customer_id,
            outcome=note,
            resolved_at=at,
            resolved_by=by,
            repair_order_id=self.repair_order_id,
            severity=self.severity,
            opened_at=self.opened_at,
            acknowledged_at=self.acknowledged_at,
            escalation_level=self.escalation_level,
            check_in_at=check_in_at,
        )
        return Decision([resolved], check_in_at=check_in_at)

    def comment(self, text: str, by: str | None, at: datetime) -> None:
        """A note from staff; a resolved case takes comments too."""
        self.entries.append(CaseEntry(at, "comment", by=by, text=text))

    def taken(self) -> list[CaseEntry]:
        """The history lines added since it was loaded, handed to its repository once."""
        entries, self.entries = self.entries, []
        return entries
