"""CustomerStanding: what loyalty knows of one customer of one shop, and the decisions it
makes about them: the lifecycle stage, the churn risk, and the events when they change.

It is rebuilt from events alone, in any arrival order within what intake guarantees (a
customer's own events in order per topic; different topics interleave freely), and it is
idempotent per event only through the consumer's inbox: apply each event once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from regulars_events.base import Event
from regulars_events.catalogue import (
    ConsentChanged,
    CustomerAtRisk,
    CustomerUpserted,
    FeedbackReceived,
    FollowUpCompleted,
    FollowUpMissed,
    LifecycleStageChanged,
    NegativeFeedback,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReferralReported,
    ReminderSent,
    ReviewRequested,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
)

from .risk import Risk, RiskModel, score
from .stages import Assessment, Signals, Stage, StageRules, assess

PROMOTER = 9

#: the events that can change a standing; every other one is history and timeline only
MOVED_BY: tuple[type[Event], ...] = (
    CustomerUpserted,
    ConsentChanged,
    ServiceCompleted,
    ServiceVoided,
    ServiceReopened,
    FollowUpMissed,
    FollowUpCompleted,
    FeedbackReceived,
    NegativeFeedback,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReminderSent,
    ReviewRequested,
    ReferralReported,
)


def moves_standing(event: Event) -> bool:
    """Whether ``event`` can change its customer's standing (so they are reassessed)."""
    if isinstance(event, ReminderSent):
        return event.kind == "maintenance_due"
    return isinstance(event, MOVED_BY)


def _t(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _s(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass
class CustomerStanding:
    shop_id: str
    customer_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    #: completed visits still standing: repair order -> completed at
    visits: dict[str, datetime] = field(default_factory=dict)
    #: what each standing visit was billed, where the shop said
    totals: dict[str, int] = field(default_factory=dict)
    #: negative feedback by incident: incident key -> (received at, case id or None)
    incidents: dict[str, tuple[datetime, str | None]] = field(default_factory=dict)
    open_cases: dict[str, datetime] = field(default_factory=dict)
    #: the case feedback opened for each incident (it can arrive before the feedback)
    incident_cases: dict[str, str] = field(default_factory=dict)
    resolved_cases: set[str] = field(default_factory=set)
    missed_follow_up_at: datetime | None = None
    heard_from_at: datetime | None = None
    maintenance_reminded_at: datetime | None = None
    last_nps: tuple[datetime, int] | None = None
    review_invited_at: datetime | None = None
    referred: dict[str, datetime] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    first_seen_at: datetime | None = None
    # -- what loyalty decided, and told ------------------------------------------------
    stage: Stage | None = None
    stage_since: datetime | None = None
    stage_reason: str | None = None
    next_change_at: datetime | None = None
    risk: Risk | None = None
    at_risk: bool = False
    events: list[Event] = field(default_factory=list)
    #: the visits as stored (ISO text), kept beside ``visits`` so saving a customer with a
    #: long history writes out only what changed
    _stored_visits: dict[str, str] = field(default_factory=dict, repr=False)

    # -- events in ---------------------------------------------------------------------

    def apply(self, event: Event, at: datetime) -> None:
        """One event about this customer, ``at`` being when it happened (its envelope time)."""
        if self.first_seen_at is None or at < self.first_seen_at:
            self.first_seen_at = at
        match event:
            case ServiceCompleted():
                self.visits[event.repair_order_id] = event.completed_at
                self._stored_visits[event.repair_order_id] = event.completed_at.isoformat()
                if event.total_cents is not None:
                    self.totals[event.repair_order_id] = event.total_cents
                else:
                    self.totals.pop(event.repair_order_id, None)
            case ServiceVoided() | ServiceReopened():
                self.visits.pop(event.repair_order_id, None)
                self._stored_visits.pop(event.repair_order_id, None)
                self.totals.pop(event.repair_order_id, None)
            case CustomerUpserted():
                self.name, self.phone, self.email = event.name, event.phone, event.email
                for channel in ("sms", "email"):
                    value = None if event.consent is None else getattr(event.consent, channel)
                    if value is not None:
                        self.consent[channel] = value
            case ConsentChanged():
                self.consent[event.channel] = event.granted
            case FollowUpMissed():
                self.missed_follow_up_at = _later(self.missed_follow_up_at, event.missed_at)
            case FollowUpCompleted():
                self.heard_from_at = _later(self.heard_from_at, event.completed_at)
                if event.score is not None:
                    self._nps(event.completed_at, event.score)
            case FeedbackReceived():
                answered = event.received_at or at
                self.heard_from_at = _later(self.heard_from_at, answered)
                if event.nps is not None:
                    self._nps(answered, event.nps)
            case NegativeFeedback():
                known = self.incidents.get(event.incident_key)
                case_id = (
                    event.case_id
                    or self.incident_cases.get(event.incident_key)
                    or (known[1] if known else None)
                )
                if case_id is not None and case_id in self.resolved_cases:
                    self.incidents.pop(event.incident_key, None)
                else:
                    self.incidents[event.incident_key] = (known[0] if known else at, case_id)
            case RecoveryCaseOpened():
                if event.case_id not in self.resolved_cases:
                    self.open_cases[event.case_id] = event.opened_at or at
                if event.incident_key is not None:
                    self.incident_cases[event.incident_key] = event.case_id
                    if event.incident_key in self.incidents:
                        since, _case = self.incidents[event.incident_key]
                        self.incidents[event.incident_key] = (since, event.case_id)
            case RecoveryCaseResolved():
                self.open_cases.pop(event.case_id, None)
                self.resolved_cases.add(event.case_id)
                self.incidents = {
                    key: (since, case)
                    for key, (since, case) in self.incidents.items()
                    if case != event.case_id
                }
            case ReminderSent() if event.kind == "maintenance_due":
                self.maintenance_reminded_at = _later(
                    self.maintenance_reminded_at, event.sent_at or at
                )
            case ReviewRequested():
                self.review_invited_at = _later(self.review_invited_at, at)
            case ReferralReported() if event.referrer_customer_id == self.customer_id:
                if event.referred_customer_id != self.customer_id:
                    self.referred.setdefault(event.referred_customer_id, at)
            case _:
                pass

    def _nps(self, at: datetime, nps: int) -> None:
        if self.last_nps is None or at >= self.last_nps[0]:
            self.last_nps = (at, nps)

    # -- decisions ---------------------------------------------------------------------

    def signals(self) -> Signals:
        open_since = [since for since, _case in self.incidents.values()]
        open_since += list(self.open_cases.values())
        promoter = self.last_nps is not None and self.last_nps[1] >= PROMOTER
        invited = (
            max(self.last_nps[0], self.review_invited_at)  # type: ignore[index]
            if promoter and self.review_invited_at is not None
            else None
        )
        return Signals(
            open_negative_since=min(open_since) if open_since else None,
            missed_follow_up_at=self.missed_follow_up_at,
            maintenance_reminded_at=self.maintenance_reminded_at,
            referred=tuple(sorted(self.referred.items(), key=lambda kv: (kv[1], kv[0]))),
            promoter_invited_at=invited,
            open_case=bool(self.open_cases),
            heard_from_at=self.heard_from_at,
        )

    def visit_times(self) -> list[datetime]:
        return sorted(self.visits.values())

    @property
    def first_visit_at(self) -> datetime | None:
        return min(self.visits.values(), default=None)

    @property
    def lifetime_value_cents(self) -> int:
        return sum(self.totals.values())

    @property
    def last_visit_at(self) -> datetime | None:
        return max(self.visits.values(), default=None)

    def reassess(
        self, now: datetime, rules: StageRules, model: RiskModel, threshold: float
    ) -> Assessment:
        """Stage and risk at ``now``; records LifecycleStageChanged for a real change of
        stage and CustomerAtRisk when the risk crosses ``threshold`` from below."""
        visits = self.visit_times()
        signals = self.signals()
        assessment = assess(visits, signals, now, rules)
        if assessment.stage != self.stage:
            self.events.append(
                LifecycleStageChanged(
                    customer_id=self.customer_id,
                    from_stage=self.stage,
                    to_stage=assessment.stage,
                    reason=assessment.reason[:1000],
                )
            )
            self.stage = assessment.stage
            self.stage_since = assessment.since or now
        self.stage_reason = assessment.reason
        self.next_change_at = assessment.next_change_at
        self.risk = score(visits, signals, assessment, now, rules, model)
        crossed = self.risk.score >= threshold
        if crossed and not self.at_risk:
            self.events.append(
                CustomerAtRisk(
                    customer_id=self.customer_id,
                    reasons=[r.code for r in self.risk.reasons] or ["churn_risk"],
                    score=round(self.risk.score, 4),
                    p_alive=None if self.risk.p_alive is None else round(self.risk.p_alive, 4),
                    threshold=threshold,
                )
            )
        self.at_risk = crossed
        return assessment

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    # -- kept as JSON ------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        """What is stored to rebuild this standing (the decisions have columns of their own)."""
        return {
            "name": self.name,
            "phone": self.phone,
            "email": self.email,
            "visits": self._stored_visits,
            "totals": dict(self.totals),
            "incidents": {
                k: [since.isoformat(), case] for k, (since, case) in self.incidents.items()
            },
            "open_cases": {c: at.isoformat() for c, at in self.open_cases.items()},
            "incident_cases": dict(self.incident_cases),
            "resolved_cases": sorted(self.resolved_cases),
            "missed_follow_up_at": _s(self.missed_follow_up_at),
            "heard_from_at": _s(self.heard_from_at),
            "maintenance_reminded_at": _s(self.maintenance_reminded_at),
            "last_nps": None
            if self.last_nps is None
            else [self.last_nps[0].isoformat(), self.last_nps[1]],
            "review_invited_at": _s(self.review_invited_at),
            "referred": {c: at.isoformat() for c, at in self.referred.items()},
            "consent": dict(self.consent),
            "first_seen_at": _s(self.first_seen_at),
        }

    @classmethod
    def restore(
        cls,
        shop_id: str,
        customer_id: str,
        facts: dict[str, Any],
        *,
        stage: Stage | None,
        stage_since: datetime | None,
        at_risk: bool,
        next_change_at: datetime | None = None,
    ) -> CustomerStanding:
        last_nps = facts.get("last_nps")
        stored_visits: dict[str, str] = facts.get("visits", {})
        return cls(
            shop_id=shop_id,
            customer_id=customer_id,
            name=facts.get("name"),
            phone=facts.get("phone"),
            email=facts.get("email"),
            visits={ro: datetime.fromisoformat(at) for ro, at in stored_visits.items()},
            _stored_visits=dict(stored_visits),
            totals={ro: int(c) for ro, c in facts.get("totals", {}).items()},
            incidents={
                k: (datetime.fromisoformat(since), case)
                for k, (since, case) in facts.get("incidents", {}).items()
            },
            open_cases={
                c: datetime.fromisoformat(at) for c, at in facts.get("open_cases", {}).items()
            },
            resolved_cases=set(facts.get("resolved_cases", [])),
            incident_cases=dict(facts.get("incident_cases", {})),
            missed_follow_up_at=_t(facts.get("missed_follow_up_at")),
            heard_from_at=_t(facts.get("heard_from_at")),
            maintenance_reminded_at=_t(facts.get("maintenance_reminded_at")),
            last_nps=None
            if last_nps is None
            else (datetime.fromisoformat(last_nps[0]), int(last_nps[1])),
            review_invited_at=_t(facts.get("review_invited_at")),
            referred={c: datetime.fromisoformat(at) for c, at in facts.get("referred", {}).items()},
            consent=dict(facts.get("consent", {})),
            first_seen_at=_t(facts.get("first_seen_at")),
            stage=stage,
            stage_since=stage_since,
            at_risk=at_risk,
            next_change_at=next_change_at,
        )


def _later(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new > current else current
