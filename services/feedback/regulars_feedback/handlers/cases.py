"""Recovery cases: opening (one per incident) and joining, SLA timers, and the staff's
acknowledgement, resolution and comments. Each handler loads the case, lets it decide,
saves it, and emits what it caused, in the caller's transaction; a timer fires in the
same transaction as its effect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from regulars_events.catalogue import NegativeFeedback
from regulars_runtime import timers
from regulars_runtime.metrics import SLA_BREACHES
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy

from ..domain.cases import (
    CLOCKS,
    REPEAT_WINDOW,
    CaseStatus,
    Clock,
    Decision,
    RecoveryCase,
    Signal,
    SlaMoment,
    SlaRules,
    staff_of,
    timer_key,
)
from ..domain.classification import incident_key, severity
from .base import Deps, FeedbackUnitOfWork, policy_or_defaults, shop_policy
from .commands import AcknowledgeCase, CommentOnCase, ResolveCase

SLA = "feedback.sla"
RESURVEY = "feedback.resurvey"

# at 0 from the start, so a burst shows as an increase from a known value
for _clock in CLOCKS:
    for _escalated in ("yes", "no"):
        SLA_BREACHES.labels(_clock, _escalated)


class UnknownCase(LookupError):
    pass


def _sla_timer(case: RecoveryCase, moment: SlaMoment) -> timers.NewTimer:
    return timers.NewTimer(
        key=timer_key(str(case.id), moment.clock, moment.moment, moment.due_at),
        kind=SLA,
        shop_id=case.shop_id,
        fire_at=moment.fire_at,
        payload={
            "case_id": str(case.id),
            "clock": moment.clock,
            "moment": moment.moment,
            "due_at": moment.due_at.isoformat(),
        },
    )


async def _carry_out(
    uow: FeedbackUnitOfWork, case: RecoveryCase, decision: Decision, now: datetime
) -> None:
    """What a case decided, after it is saved: its new SLA timers, then its events."""
    for moment in decision.timers:
        await uow.timers.schedule(_sla_timer(case, moment))
    for event in decision.events:
        uow.emit(event, shop_id=case.shop_id, time=now)


# -- opening and joining ------------------------------------------------------------------


async def report_negative(
    uow: FeedbackUnitOfWork, deps: Deps, signal: Signal, policy: Policy
) -> uuid.UUID:
    """NegativeFeedback, and the incident's one recovery case: opened, or joined when the
    same visit already has an open one. Returns the case id."""
    now = deps.clock()
    shop_id, customer_id = signal.shop_id, signal.customer_id
    repair_order_id = signal.repair_order_id
    case: RecoveryCase | None = None
    if repair_order_id is None:
        # A reply names no visit: it joins the customer's open case when there is one.
        case = await uow.cases.latest_open(shop_id, customer_id)
        if case is not None:
            repair_order_id = case.repair_order_id
    key = case.incident_key if case is not None else incident_key(customer_id, repair_order_id)
    earlier = await uow.cases.other_incidents(shop_id, customer_id, key, now - REPEAT_WINDOW)
    grade = severity(nps=signal.nps, csat=signal.csat, text=signal.text, earlier_incidents=earlier)
    if case is None:
        case = await uow.cases.open_for_incident(shop_id, key)
    rules = SlaRules.from_policy(policy)
    opened: Decision | None = None
    if case is None:
        visit = await uow.visits.get(shop_id, repair_order_id) if repair_order_id else None
        case, opened = RecoveryCase.open(
            id=uuid.uuid4(),
            signal=signal,
            repair_order_id=repair_order_id,
            incident_key=key,
            severity=grade,
            advisor=(visit.advisor if visit is not None else None) or signal.advisor,
            staff=staff_of(policy),
            rules=rules,
            now=now,
        )
        if not await uow.cases.add(case):
            # Another writer opened this incident's case a moment ago: join it.
            opened = None
            case = await uow.cases.open_for_incident(shop_id, key)
            assert case is not None
    negative_id = uuid.uuid4()
    v = signal.verdict
    uow.emit(
        NegativeFeedback(
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            source=signal.source,
            survey_id=str(signal.survey_id) if signal.survey_id else None,
            nps=signal.nps,
            csat=signal.csat,
            comment=signal.text,
            incident_key=key,
            reasons=list(v.reasons),
            safety=v.safety,
            severity=grade,
            case_id=str(case.id),
        ),
        shop_id=shop_id,
        id=negative_id,
        time=now,
    )
    await uow.cases.record_negative(negative_id, case, now)
    if opened is None:
        joined = case.join(signal, grade, rules, now)
        await uow.cases.save(case)
        await _carry_out(uow, case, joined, now)
    else:
        await _carry_out(uow, case, opened, now)
    return case.id


async def note_reply(
    uow: FeedbackUnitOfWork, shop_id: uuid.UUID, customer_id: str, text: str, at: datetime
) -> uuid.UUID | None:
    """A reply that is neither consent nor complaint: a note on the open case, if any."""
    case = await uow.cases.latest_open(shop_id, customer_id)
    if case is None:
        return None
    case.note_reply(text, at)
    await uow.cases.save(case)
    return case.id


# -- SLA timers ----------------------------------------------------------------------------


async def on_sla_timer(timer: Timer, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """An SLA moment came. It acts only if its window still governs the case: the
    warning at risk, or at the breach one level up the ladder."""
    payload = timer.payload
    # scoped to the timer's shop like every read of a case, though its id is its own
    case = await uow.cases.get(uuid.UUID(payload["case_id"]), timer.shop_id, lock=True)
    clock: Clock = payload["clock"]
    if case is None or not case.governs(clock, datetime.fromisoformat(payload["due_at"])):
        return
    now = deps.clock()
    if payload["moment"] == "at_risk":
        known = await uow.shops.policy(case.shop_id)
        decision = case.warn_at_risk(clock, staff_of(known.policy) if known else [], now)
    else:
        policy = await shop_policy(uow, case.shop_id)
        decision = case.escalate(clock, staff_of(policy), SlaRules.from_policy(policy), now)
        SLA_BREACHES.labels(clock, "yes" if decision.events else "no").inc()
    await uow.cases.save(case)
    await _carry_out(uow, case, decision, now)


# -- staff commands ------------------------------------------------------------------------


async def _stop_then_hold(
    uow: FeedbackUnitOfWork,
    shop_id: uuid.UUID,
    case_id: uuid.UUID,
    clocks: Sequence[Clock],
    now: datetime,
) -> RecoveryCase:
    """Cancel the current timers of ``clocks``, then lock the case.

    In this order, like the timer scheduler (which holds a timer, then locks its case):
    cancelling a timer that is firing waits for that firing to commit, and a command
    holding the case while waiting for a timer could otherwise deadlock with it. Should
    an escalation slip in between, its new timers stand down when they fire, because a
    handler acts only on a window that still governs.
    """
    current = await uow.cases.get(case_id, shop_id)
    if current is None:
        raise UnknownCase(f"no case {case_id} in this shop")
    if current.status != CaseStatus.RESOLVED:
        for moment in current.moments(clocks):
            key = timer_key(str(case_id), moment.clock, moment.moment, moment.due_at)
            await uow.timers.cancel(key, at=now)
    case = await uow.cases.get(case_id, shop_id, lock=True)
    assert case is not None
    return case


async def acknowledge(command: AcknowledgeCase, uow: FeedbackUnitOfWork, deps: Deps) -> bool:
    """Stop the acknowledgement clock. False if it was acknowledged already (no change);
    CaseClosed if resolved."""
    now = deps.clock()
    case = await _stop_then_hold(uow, command.shop_id, command.case_id, ("acknowledge",), now)
    decision = case.acknowledge(command.by, command.note, now)
    if not decision.events:
        return False
    await uow.cases.save(case)
    await _carry_out(uow, case, decision, now)
    return True


async def resolve(command: ResolveCase, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """Close the case with its outcome note: every clock stops, and the check-in and
    re-survey are due ``recovery_check_in_after`` later."""
    now = deps.clock()
    case = await _stop_then_hold(uow, command.shop_id, command.case_id, CLOCKS, now)
    policy = await policy_or_defaults(uow, command.shop_id)
    decision = case.resolve(
        command.by, command.outcome, now, check_in_after=policy.recovery_check_in_after_timedelta
    )
    await uow.cases.save(case)
    assert decision.check_in_at is not None
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{RESURVEY}:{case.id}",
            kind=RESURVEY,
            shop_id=case.shop_id,
            fire_at=decision.check_in_at,
            payload={"case_id": str(case.id)},
        )
    )
    await _carry_out(uow, case, decision, now)


async def comment(command: CommentOnCase, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    case = await uow.cases.get(command.case_id, command.shop_id, lock=True)
    if case is None:
        raise UnknownCase(f"no case {command.case_id} in this shop")
    case.comment(command.text, command.by, deps.clock())
    await uow.cases.save(case)


__all__ = [
    "RESURVEY",
    "SLA",
    "AcknowledgeCase",
    "CommentOnCase",
    "ResolveCase",
    "Signal",
    "UnknownCase",
    "acknowledge",
    "comment",
    "note_reply",
    "on_sla_timer",
    "report_negative",
    "resolve",
]
