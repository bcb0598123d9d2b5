"""Churn risk: a score from 0 to 1 with its reasons.

It combines the customer's visit rhythm with the signals SPEC.md names. The rhythm part
is ``1 - p_alive``, where ``p_alive`` is the probability that the customer is still a
customer given their own visits: from the shop's BG/NBD fit (:mod:`.rhythm`) when the
shop has the history for one, else from a rule (linear from 1 at the last visit to 0 at
``lost_after``), and never below a floor once the stage says lapsed (0.6) or lost (0.9),
because BG/NBD holds a one-visit customer alive forever. Each signal in force then
removes a share of what is left:

    score = 1 - (1 - rhythm) * (1 - 0.6 [open negative feedback])
                             * (1 - 0.4 [missed follow-up]) * (1 - 0.3 [overdue maintenance])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .rhythm import BgNbd, VisitRhythm
from .stages import Assessment, Signals, StageRules, at_risk_reasons

SIGNAL_WEIGHTS: dict[str, float] = {
    "open_negative_feedback": 0.6,
    "missed_follow_up": 0.4,
    "overdue_maintenance": 0.3,
}
LAPSED_FLOOR, LOST_FLOOR = 0.6, 0.9
WEEKS_PER_YEAR = 365.25 / 7
#: the rhythm shows among the reasons once it weighs at least this much
RHYTHM_REASON_AT = 0.3


@dataclass(frozen=True)
class RiskModel:
    """How a shop's visit rhythm is judged: its BG/NBD fit, or the rules alone, and why."""

    fit: BgNbd | None = None
    note: str = "rules alone: the shop's visit history has not been fitted yet"
    fitted_at: datetime | None = None

    @property
    def name(self) -> Literal["bg_nbd", "rules"]:
        return "bg_nbd" if self.fit is not None else "rules"


@dataclass(frozen=True)
class RiskReason:
    code: str
    words: str
    weight: float


@dataclass(frozen=True)
class Risk:
    score: float
    reasons: tuple[RiskReason, ...]
    p_alive: float | None
    expected_visits_12m: float | None
    expected_next_visit: datetime | None
    average_interval: timedelta | None
    model: Literal["bg_nbd", "rules"]


def average_interval(visits: Sequence[datetime]) -> timedelta | None:
    if len(visits) < 2:
        return None
    return (visits[-1] - visits[0]) / (len(visits) - 1)


def score(
    visits: Sequence[datetime],
    signals: Signals,
    assessment: Assessment,
    now: datetime,
    rules: StageRules,
    model: RiskModel,
) -> Risk:
    done = [v for v in visits if v <= now]
    interval = average_interval(done)
    p_alive: float | None = None
    expected: float | None = None
    next_visit: datetime | None = None
    rhythm_risk = 0.0
    reasons: list[RiskReason] = []
    if done:
        last = done[-1]
        if model.fit is not None:
            rhythm = VisitRhythm.of(done, now)
            p_alive = model.fit.p_alive(rhythm)
            expected = model.fit.expected_visits(rhythm, WEEKS_PER_YEAR)
            weeks = model.fit.expected_weeks_to_next_visit(rhythm)
            if interval is None and weeks is not None:
                next_visit = now + timedelta(weeks=weeks)
        else:
            p_alive = max(0.0, 1.0 - (now - last) / rules.lost_after)
            if interval is not None:
                span_years = (done[-1] - done[0]) / timedelta(days=365.25)
                expected = p_alive * (len(done) - 1) / span_years if span_years > 0 else None
        if interval is not None:
            next_visit = last + interval
        rhythm_risk = 1.0 - p_alive
        if assessment.stage == "lost":
            rhythm_risk = max(rhythm_risk, LOST_FLOOR)
        elif assessment.stage == "lapsed":
            rhythm_risk = max(rhythm_risk, LAPSED_FLOOR)
        if rhythm_risk >= RHYTHM_REASON_AT:
            usual = f", usually every {interval.days} days" if interval is not None else ""
            reasons.append(
                RiskReason(
                    "visit_rhythm",
                    f"last visit {(now - last).days} days ago{usual}",
                    round(rhythm_risk, 4),
                )
            )
    remaining = 1.0 - rhythm_risk
    for code, words, _since in at_risk_reasons(signals, done, now):
        weight = SIGNAL_WEIGHTS[code]
        remaining *= 1.0 - weight
        reasons.append(RiskReason(code, words, weight))
    return Risk(
        score=min(1.0, max(0.0, 1.0 - remaining)),
        reasons=tuple(sorted(reasons, key=lambda r: -r.weight)),
        p_alive=p_alive,
        expected_visits_12m=expected,
        expected_next_visit=next_visit,
        average_interval=interval,
        model=model.name,
    )
