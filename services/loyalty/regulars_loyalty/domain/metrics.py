"""The shop's retention metrics: their definitions, once.

Every metric is computed for a half-open range ``[start, end)`` from what loyalty keeps
(never by asking another service). :func:`tally` is the definition, written over plain
rows; the PostgreSQL adapter counts the same :class:`Tally` set-based (and a test holds
the two to the same answer); :func:`report` turns a tally into the published values.

- ``retention_rate`` = (E - N) / S: S customers active at ``start``, E active at ``end``,
  N customers whose first visit falls in the range. Active at t: a visit before t, less
  than ``lapsed_after`` before it.
- ``nps`` = % of answers 9-10 minus % of answers 0-6, over every NPS answer in the range
  (survey answers and the score recorded on a follow-up call): numerator promoters minus
  detractors, denominator answers, value in points (-100..100).
- ``csat`` = % of CSAT answers that are 4 or 5 (value 0..100).
- ``quality_pct`` = 1 - comebacks / visits = (visits - comebacks) / visits.
- ``on_time_pct`` = visits completed by their ``promised_at`` / visits with a promise.
- ``referral_pct`` = new customers (first visit in the range) referred by another
  customer / new customers.
- ``ar_past_due_pct`` = open amount past its due date / open amount, at ``end``: open is
  issued before ``end`` and not paid before it; past due is due before ``end``.
- ``follow_up_completion_pct`` = follow-ups completed / (completed + missed), by when
  they were completed or missed.
- ``recovery_sla_compliance_pct`` = cases acknowledged by their acknowledge deadline and
  resolved by their resolve deadline / cases whose SLA ended in the range. A case's SLA
  ends when it is resolved, or at its resolve deadline if it was not resolved by then
  (and that moment has passed).
- ``time_to_ack_p50_s``, ``time_to_resolve_p50_s``: the median (the mean of the middle
  two for an even count) of seconds from opening to acknowledgement / resolution, over
  the cases acknowledged / resolved in the range; the denominator is that count.
- ``plan_renewal_pct`` = plans renewed / (renewed + expired), over plan events in the range.

A ratio with a denominator of 0 has the value ``None``. Ratios named ``_pct`` and
``retention_rate`` are fractions (0..1), as their formulas give.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Literal

from regulars_events.base import Event
from regulars_events.catalogue import (
    AppointmentBooked,
    FeedbackReceived,
    FollowUpCompleted,
    FollowUpMissed,
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
    RecoveryCaseAcknowledged,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReferralReported,
    ServiceCompleted,
    ServicePlanExpired,
    ServicePlanRenewed,
    ServiceReopened,
    ServiceVoided,
)

PROMOTER_FROM, DETRACTOR_TO, SATISFIED_FROM = 9, 6, 4

#: the events whose facts the metrics count (every other one is on the timeline only)
COUNTED: tuple[type[Event], ...] = (
    ServiceCompleted,
    ServiceVoided,
    ServiceReopened,
    FeedbackReceived,
    FollowUpCompleted,
    FollowUpMissed,
    RecoveryCaseOpened,
    RecoveryCaseAcknowledged,
    RecoveryCaseResolved,
    InvoiceIssued,
    InvoicePaid,
    InvoiceOverdue,
    ServicePlanRenewed,
    ServicePlanExpired,
    ReferralReported,
    AppointmentBooked,
)


@dataclass(frozen=True)
class VisitRow:
    customer_id: str
    completed_at: datetime
    total_cents: int | None = None
    comeback: bool = False
    promised_at: datetime | None = None


@dataclass(frozen=True)
class NewCustomerRow:
    customer_id: str
    first_visit_at: datetime
    referred: bool = False


@dataclass(frozen=True)
class AnswerRow:
    at: datetime
    nps: int | None = None
    csat: int | None = None


@dataclass(frozen=True)
class FollowUpRow:
    at: datetime
    outcome: Literal["completed", "missed"]


@dataclass(frozen=True)
class CaseRow:
    opened_at: datetime
    ack_due_at: datetime
    resolve_due_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None

    def sla_ended_at(self, now: datetime) -> datetime | None:
        if self.resolved_at is not None and self.resolved_at <= self.resolve_due_at:
            return self.resolved_at
        return self.resolve_due_at if self.resolve_due_at <= now else None

    def sla_met(self) -> bool:
        return (
            self.acknowledged_at is not None
            and self.acknowledged_at <= self.ack_due_at
            and self.resolved_at is not None
            and self.resolved_at <= self.resolve_due_at
        )


@dataclass(frozen=True)
class InvoiceRow:
    amount_cents: int
    due_at: datetime
    issued_at: datetime
    paid_at: datetime | None = None


@dataclass(frozen=True)
class PlanRow:
    at: datetime
    kind: Literal["renewed", "expired"]


@dataclass
class Tally:
    """The counts behind every metric, for one range."""

    active_at_start: int = 0
    active_at_end: int = 0
    new_customers: int = 0
    new_referred: int = 0
    visits: int = 0
    comebacks: int = 0
    promised: int = 0
    on_time: int = 0
    revenue_cents: int = 0
    nps_answers: int = 0
    promoters: int = 0
    detractors: int = 0
    csat_answers: int = 0
    csat_satisfied: int = 0
    follow_ups_completed: int = 0
    follow_ups_missed: int = 0
    sla_ended: int = 0
    sla_met: int = 0
    acknowledged: int = 0
    ack_p50_s: float | None = None
    resolved: int = 0
    resolve_p50_s: float | None = None
    plans_renewed: int = 0
    plans_expired: int = 0
    open_cents: int = 0
    past_due_cents: int = 0

    def as_dict(self) -> dict[str, int | float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ShopHistory:
    """Plain rows of everything the metrics count (the definition's input)."""

    visits: Sequence[VisitRow] = ()
    answers: Sequence[AnswerRow] = ()
    follow_ups: Sequence[FollowUpRow] = ()
    cases: Sequence[CaseRow] = ()
    invoices: Sequence[InvoiceRow] = ()
    plans: Sequence[PlanRow] = ()
    referred: frozenset[str] = field(default_factory=frozenset)


def active_customers(visits: Iterable[VisitRow], at: datetime, lapsed_after: timedelta) -> int:
    return len(
        {v.customer_id for v in visits if v.completed_at < at < v.completed_at + lapsed_after}
    )


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def tally(
    history: ShopHistory, start: datetime, end: datetime, lapsed_after: timedelta, now: datetime
) -> Tally:
    """The definition of every count, for ``[start, end)``."""

    def within(at: datetime | None) -> bool:
        return at is not None and start <= at < end

    t = Tally()
    t.active_at_start = active_customers(history.visits, start, lapsed_after)
    t.active_at_end = active_customers(history.visits, end, lapsed_after)
    first: dict[str, datetime] = {}
    for v in history.visits:
        if v.customer_id not in first or v.completed_at < first[v.customer_id]:
            first[v.customer_id] = v.completed_at
    new = [c for c, at in first.items() if within(at)]
    t.new_customers = len(new)
    t.new_referred = sum(1 for c in new if c in history.referred)
    for v in history.visits:
        if within(v.completed_at):
            t.visits += 1
            t.comebacks += v.comeback
            t.revenue_cents += v.total_cents or 0
            if v.promised_at is not None:
                t.promised += 1
                t.on_time += v.completed_at <= v.promised_at
    for a in history.answers:
        if within(a.at):
            if a.nps is not None:
                t.nps_answers += 1
                t.promoters += a.nps >= PROMOTER_FROM
                t.detractors += a.nps <= DETRACTOR_TO
            if a.csat is not None:
                t.csat_answers += 1
                t.csat_satisfied += a.csat >= SATISFIED_FROM
    for f in history.follow_ups:
        if within(f.at):
            t.follow_ups_completed += f.outcome == "completed"
            t.follow_ups_missed += f.outcome == "missed"
    acks, resolves = [], []
    for c in history.cases:
        if within(c.sla_ended_at(now)):
            t.sla_ended += 1
            t.sla_met += c.sla_met()
        if c.acknowledged_at is not None and within(c.acknowledged_at):
            acks.append((c.acknowledged_at - c.opened_at).total_seconds())
        if c.resolved_at is not None and within(c.resolved_at):
            resolves.append((c.resolved_at - c.opened_at).total_seconds())
    t.acknowledged, t.ack_p50_s = len(acks), _median(acks)
    t.resolved, t.resolve_p50_s = len(resolves), _median(resolves)
    for p in history.plans:
        if within(p.at):
            t.plans_renewed += p.kind == "renewed"
            t.plans_expired += p.kind == "expired"
    for i in history.invoices:
        if i.issued_at < end and (i.paid_at is None or i.paid_at >= end):
            t.open_cents += i.amount_cents
            if i.due_at < end:
                t.past_due_cents += i.amount_cents
    return t


@dataclass(frozen=True)
class Measure:
    value: float | None
    numerator: float | None
    denominator: int


def _ratio(numerator: int, denominator: int, scale: float = 1.0) -> Measure:
    value = None if denominator == 0 else scale * numerator / denominator
    return Measure(value, numerator, denominator)


def report(t: Tally) -> dict[str, Measure]:
    """The published metrics of one tally, each {value, numerator, denominator}."""
    return {
        "retention_rate": _ratio(t.active_at_end - t.new_customers, t.active_at_start),
        "nps": _ratio(t.promoters - t.detractors, t.nps_answers, 100.0),
        "csat": _ratio(t.csat_satisfied, t.csat_answers, 100.0),
        "quality_pct": _ratio(t.visits - t.comebacks, t.visits),
        "on_time_pct": _ratio(t.on_time, t.promised),
        "referral_pct": _ratio(t.new_referred, t.new_customers),
        "ar_past_due_pct": _ratio(t.past_due_cents, t.open_cents),
        "follow_up_completion_pct": _ratio(
            t.follow_ups_completed, t.follow_ups_completed + t.follow_ups_missed
        ),
        "recovery_sla_compliance_pct": _ratio(t.sla_met, t.sla_ended),
        "time_to_ack_p50_s": Measure(t.ack_p50_s, None, t.acknowledged),
        "time_to_resolve_p50_s": Measure(t.resolve_p50_s, None, t.resolved),
        "plan_renewal_pct": _ratio(t.plans_renewed, t.plans_renewed + t.plans_expired),
    }


def counts(t: Tally) -> dict[str, int]:
    return {"new_customers": t.new_customers, "visits": t.visits, "revenue_cents": t.revenue_cents}


Interval = Literal["day", "week", "month"]


def intervals(start: datetime, end: datetime, every: Interval) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at each local day, Monday or first of the month (``start``'s
    timezone, wall-clock arithmetic, so a DST change does not shift the cuts)."""
    cuts = [start]
    at = start
    while True:
        if every == "day":
            at = (at.replace(hour=0, minute=0, second=0, microsecond=0)) + timedelta(days=1)
        elif every == "week":
            monday = at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
                days=at.weekday()
            )
            at = monday + timedelta(days=7)
        else:
            first = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            at = (first + timedelta(days=32)).replace(day=1)
        at = _rezone(at)
        if at >= end:
            break
        cuts.append(at)
    cuts.append(end)
    return list(itertools.pairwise(cuts))


def _rezone(at: datetime) -> datetime:
    # Adding timedeltas to an aware datetime keeps its old UTC offset; re-reading the wall
    # time in its zone gives the right offset on the far side of a DST change.
    return at.replace(tzinfo=None).replace(tzinfo=at.tzinfo)


def definitions() -> dict[str, str]:
    """Each metric's definition, in the words of this module's documentation (one source
    for the API's description and the console's "what this counts")."""
    found: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []

    def keep() -> None:
        for name in names:
            found[name] = " ".join(text).strip()

    for line in (__doc__ or "").splitlines():
        if line.startswith("- ``"):
            keep()
            head, _, rest = line[2:].partition(" = ") if " = " in line else line[2:].partition(":")
            names = [n.strip(" `,:") for n in head.split(",") if n.strip(" `,:")]
            text = [rest.strip()]
        elif line.startswith("  ") and names:
            text.append(line.strip())
        else:
            keep()
            names, text = [], []
    keep()
    return found
