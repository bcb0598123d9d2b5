"""Recovery cases: opening (one per incident), SLA timers, escalation, acknowledgement and
resolution. Every write of a case happens here, with the events it causes, in the
caller's transaction; a timer fires in the same transaction as its effect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter
from regulars_events.catalogue import (
    FeedbackSource,
    NegativeFeedback,
    RecoveryCaseAcknowledged,
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    RecoveryCaseSlaAtRisk,
)
from regulars_runtime import timers
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy

from ..domain.cases import (
    CLOCKS,
    REPEAT_WINDOW,
    CaseStatus,
    Clock,
    Moment,
    SlaRules,
    Window,
    can_acknowledge,
    check_resolvable,
    clock_running,
    escalation,
    find_staff,
    initial_assignment,
    staff_of,
    timer_key,
)
from ..domain.classification import StaffRef, Verdict, graver, incident_key, severity
from .base import Deps, FeedbackUnitOfWork, policy_or_defaults, shop_policy

SLA = "feedback.sla"
RESURVEY = "feedback.resurvey"

SLA_BREACHES = Counter(
    "regulars_recovery_sla_breaches_total",
    "Recovery-case SLA windows that ran out (escalated, or at the top of the ladder)",
    ["clock", "escalated"],
)

_PREFIX: dict[str, str] = {"acknowledge": "ack", "resolve": "resolve"}


class UnknownCase(LookupError):
    pass


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


def _contact(member: StaffRef | None) -> dict[str, Any]:
    if member is None:
        return {}
    return {
        "assignee_name": member.name,
        "assignee_email": member.email,
        "assignee_phone": member.phone,
        "staff_id": member.id,
    }


def _window_fields(clock: Clock, window: Window) -> dict[str, datetime]:
    prefix = _PREFIX[clock]
    return {
        f"{prefix}_window_start": window.start,
        f"{prefix}_at_risk_at": window.at_risk_at,
        f"{prefix}_due_at": window.due_at,
    }


async def _schedule_clock(
    uow: FeedbackUnitOfWork, shop_id: uuid.UUID, case_id: uuid.UUID, clock: Clock, window: Window
) -> None:
    moments: tuple[tuple[Moment, datetime], ...] = (
        ("at_risk", window.at_risk_at),
        ("breach", window.due_at),
    )
    for moment, at in moments:
        await uow.timers.schedule(
            timers.NewTimer(
                key=timer_key(str(case_id), clock, moment, window.due_at),
                kind=SLA,
                shop_id=shop_id,
                fire_at=at,
                payload={
                    "case_id": str(case_id),
                    "clock": clock,
                    "moment": moment,
                    "due_at": window.due_at.isoformat(),
                },
            )
        )


async def _cancel_clock(
    uow: FeedbackUnitOfWork, case: asyncpg.Record, clock: Clock, at: datetime
) -> None:
    due: datetime = case[f"{_PREFIX[clock]}_due_at"]
    for moment in ("at_risk", "breach"):
        await uow.timers.cancel(timer_key(str(case["id"]), clock, moment, due), at=at)


# -- opening and joining ------------------------------------------------------------------


async def report_negative(
    uow: FeedbackUnitOfWork, deps: Deps, signal: Signal, policy: Policy
) -> uuid.UUID:
    """NegativeFeedback, and the incident's one recovery case: opened, or joined when the
    same visit already has an open one. Returns the case id."""
    repo = uow.repo
    now = deps.clock()
    shop_id, customer_id = signal.shop_id, signal.customer_id
    repair_order_id = signal.repair_order_id
    case: asyncpg.Record | None = None
    if repair_order_id is None:
        # A reply names no visit: it joins the customer's open case when there is one.
        case = await repo.latest_open_case(shop_id, customer_id)
        if case is not None:
            repair_order_id = case["repair_order_id"]
    key = case["incident_key"] if case is not None else incident_key(customer_id, repair_order_id)
    earlier = await repo.other_incidents(shop_id, customer_id, key, now - REPEAT_WINDOW)
    grade = severity(nps=signal.nps, csat=signal.csat, text=signal.text, earlier_incidents=earlier)
    if case is None:
        case = await repo.open_case_for_incident(shop_id, key)
    staff = staff_of(policy)
    opened: dict[str, Any] | None = None
    if case is None:
        visit = await repo.visit(shop_id, repair_order_id) if repair_order_id else None
        advisor = (visit["advisor"] if visit is not None else None) or signal.advisor
        assignment = initial_assignment(advisor, staff)
        rules = SlaRules.from_policy(policy)
        ack = rules.window("acknowledge", grade, now)
        resolve = rules.window("resolve", grade, now)
        opened = {
            "id": uuid.uuid4(),
            "shop_id": shop_id,
            "customer_id": customer_id,
            "repair_order_id": repair_order_id,
            "incident_key": key,
            "severity": grade,
            "assignee": assignment.assignee,
            "escalation_level": assignment.level,
            "opened_at": now,
            **_window_fields("acknowledge", ack),
            **_window_fields("resolve", resolve),
            "member": assignment.member,
        }
        if not await repo.add_case(opened):
            # Another writer opened this incident's case a moment ago: join it.
            opened = None
            case = await repo.open_case_for_incident(shop_id, key)
            assert case is not None
    if opened is not None:
        case_id: uuid.UUID = opened["id"]
    else:
        assert case is not None
        case_id = case["id"]
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
            case_id=str(case_id),
        ),
        shop_id=shop_id,
        id=negative_id,
        time=now,
    )
    await repo.add_negative(negative_id, shop_id, customer_id, key, case_id, now)
    detail = {
        "source": signal.source,
        "reasons": list(v.reasons),
        "nps": signal.nps,
        "csat": signal.csat,
        "survey_id": str(signal.survey_id) if signal.survey_id else None,
        "severity": grade,
    }
    if opened is not None:
        await _open(uow, opened, detail, signal.text, now)
    else:
        assert case is not None
        await _join(uow, case, grade, policy, detail, signal.text, now)
    return case_id


async def _open(
    uow: FeedbackUnitOfWork,
    case: dict[str, Any],
    detail: dict[str, Any],
    text: str | None,
    now: datetime,
) -> None:
    case_id, shop_id = case["id"], case["shop_id"]
    await uow.repo.add_history(case_id, now, "opened", text=text, data=detail)
    for clock in CLOCKS:
        prefix = _PREFIX[clock]
        window = Window(
            case[f"{prefix}_window_start"], case[f"{prefix}_at_risk_at"], case[f"{prefix}_due_at"]
        )
        await _schedule_clock(uow, shop_id, case_id, clock, window)
    uow.emit(
        RecoveryCaseOpened(
            case_id=str(case_id),
            customer_id=case["customer_id"],
            repair_order_id=case["repair_order_id"],
            severity=case["severity"],
            assignee=case["assignee"],
            escalation_level=case["escalation_level"],
            ack_due_at=case["ack_due_at"],
            resolve_due_at=case["resolve_due_at"],
            incident_key=case["incident_key"],
            source=detail["source"],
            reasons=detail["reasons"],
            opened_at=now,
            **_contact(case["member"]),
        ),
        shop_id=shop_id,
        time=now,
    )


async def _join(
    uow: FeedbackUnitOfWork,
    case: asyncpg.Record,
    grade: Any,
    policy: Policy,
    detail: dict[str, Any],
    text: str | None,
    now: datetime,
) -> None:
    """A second signal about the same visit: into the case's history; a graver one raises
    its severity (and a critical one shortens an acknowledgement window still running)."""
    await uow.repo.add_history(case["id"], now, "joined", text=text, data=detail)
    new = graver(case["severity"], grade)
    if new == case["severity"]:
        return
    await uow.repo.update_case(case["id"], severity=new)
    await uow.repo.add_history(
        case["id"], now, "severity", data={"from": case["severity"], "to": new}
    )
    if new != "critical" or case["status"] != CaseStatus.OPEN:
        return
    window = SlaRules.from_policy(policy).window("acknowledge", new, case["ack_window_start"])
    if window.due_at >= case["ack_due_at"]:
        return
    # The old window's timers stand down by themselves (their due time is no longer the
    # case's); cancelling them here, with the case locked, could deadlock with a firing.
    await uow.repo.update_case(case["id"], **_window_fields("acknowledge", window))
    await _schedule_clock(uow, case["shop_id"], case["id"], "acknowledge", window)


async def note_reply(
    uow: FeedbackUnitOfWork, shop_id: uuid.UUID, customer_id: str, text: str, at: datetime
) -> uuid.UUID | None:
    """A reply that is neither consent nor complaint: a note on the open case, if any."""
    case = await uow.repo.latest_open_case(shop_id, customer_id)
    if case is None:
        return None
    await uow.repo.add_history(case["id"], at, "reply", text=text)
    case_id: uuid.UUID = case["id"]
    return case_id


# -- SLA timers ----------------------------------------------------------------------------


async def on_sla_timer(timer: Timer, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """An SLA moment came. It acts only if its window is still the case's current one for
    a running clock: acknowledging, resolving or an escalation since make it stand down."""
    payload = timer.payload
    case = await uow.repo.case(uuid.UUID(payload["case_id"]), lock=True)
    clock: Clock = payload["clock"]
    due = datetime.fromisoformat(payload["due_at"])
    if (
        case is None
        or not clock_running(case["status"], clock)
        or case[f"{_PREFIX[clock]}_due_at"] != due
    ):
        return
    now = deps.clock()
    if payload["moment"] == "at_risk":
        known = await uow.shops.policy(case["shop_id"])
        member = find_staff(staff_of(known[1]), case["assignee"]) if known else None
        await uow.repo.add_history(
            case["id"], now, "sla_at_risk", data={"clock": clock, "due_at": due.isoformat()}
        )
        uow.emit(
            RecoveryCaseSlaAtRisk(
                case_id=str(case["id"]),
                customer_id=case["customer_id"],
                clock=clock,
                due_at=due,
                assignee=case["assignee"],
                escalation_level=case["escalation_level"],
                severity=case["severity"],
                repair_order_id=case["repair_order_id"],
                **_contact(member),
            ),
            shop_id=case["shop_id"],
            time=now,
        )
        return
    await escalate(uow, deps, case, clock, due, now)


async def escalate(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    case: asyncpg.Record,
    clock: Clock,
    due: datetime,
    now: datetime,
) -> None:
    """The ``clock`` window ran out: one level up the ladder, to that person, with a new
    window for that clock. At the top of the ladder it is only recorded."""
    policy = await shop_policy(uow, case["shop_id"])
    staff = staff_of(policy)
    level = case["escalation_level"]
    to = escalation(level, staff)
    SLA_BREACHES.labels(clock, "yes" if to is not None else "no").inc()
    if to is None:
        await uow.repo.add_history(
            case["id"],
            now,
            "sla_breached",
            data={"clock": clock, "due_at": due.isoformat(), "level": level},
        )
        return
    window = SlaRules.from_policy(policy).window(clock, case["severity"], now)
    await uow.repo.update_case(
        case["id"],
        assignee=to.assignee,
        escalation_level=to.level,
        **_window_fields(clock, window),
    )
    await uow.repo.add_history(
        case["id"],
        now,
        "escalated",
        by=None,
        data={
            "clock": clock,
            "from_level": level,
            "to_level": to.level,
            "from_assignee": case["assignee"],
            "assignee": to.assignee,
            "breached_due_at": due.isoformat(),
            "due_at": window.due_at.isoformat(),
        },
    )
    await _schedule_clock(uow, case["shop_id"], case["id"], clock, window)
    uow.emit(
        RecoveryCaseEscalated(
            case_id=str(case["id"]),
            customer_id=case["customer_id"],
            from_level=level,
            to_level=to.level,
            assignee=to.assignee,
            clock=clock,
            escalated_at=now,
            severity=case["severity"],
            repair_order_id=case["repair_order_id"],
            previous_assignee=case["assignee"],
            breached_due_at=due,
            due_at=window.due_at,
            **_contact(to.member),
        ),
        shop_id=case["shop_id"],
        time=now,
    )


# -- staff commands ------------------------------------------------------------------------


async def _stop_then_lock(
    uow: FeedbackUnitOfWork,
    shop_id: uuid.UUID,
    case_id: uuid.UUID,
    clocks: tuple[Clock, ...],
    now: datetime,
) -> asyncpg.Record:
    """Cancel the current timers of ``clocks``, then lock the case.

    In this order, like the timer scheduler (which holds a timer, then locks its case):
    cancelling a timer that is firing waits for that firing to commit, and a command
    holding the case while waiting for a timer could otherwise deadlock with it. Should
    an escalation slip in between, its new timers stand down when they fire, because a
    handler acts only on a clock still running.
    """
    current = await uow.repo.case(case_id, shop_id)
    if current is None:
        raise UnknownCase(f"no case {case_id} in this shop")
    if current["status"] != CaseStatus.RESOLVED:
        for clock in clocks:
            await _cancel_clock(uow, current, clock, now)
    case = await uow.repo.case(case_id, shop_id, lock=True)
    assert case is not None
    return case


async def acknowledge(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    shop_id: uuid.UUID,
    case_id: uuid.UUID,
    *,
    by: str | None,
    note: str | None,
) -> bool:
    """Stop the acknowledgement clock. False if it was acknowledged already (no change);
    CaseClosed if resolved."""
    now = deps.clock()
    case = await _stop_then_lock(uow, shop_id, case_id, ("acknowledge",), now)
    if not can_acknowledge(case["status"]):
        return False
    await uow.repo.update_case(
        case_id, status=CaseStatus.ACKNOWLEDGED.value, acknowledged_at=now, acknowledged_by=by
    )
    await uow.repo.add_history(case_id, now, "acknowledged", by=by, text=note)
    uow.emit(
        RecoveryCaseAcknowledged(
            case_id=str(case_id),
            customer_id=case["customer_id"],
            acknowledged_by=by,
            acknowledged_at=now,
            repair_order_id=case["repair_order_id"],
            escalation_level=case["escalation_level"],
            severity=case["severity"],
        ),
        shop_id=shop_id,
        time=now,
    )
    return True


async def resolve(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    shop_id: uuid.UUID,
    case_id: uuid.UUID,
    *,
    outcome: str,
    by: str | None,
) -> None:
    """Close the case with its outcome note: every clock stops, and the check-in and
    re-survey are due ``recovery_check_in_after`` later."""
    now = deps.clock()
    case = await _stop_then_lock(uow, shop_id, case_id, CLOCKS, now)
    check_resolvable(case["status"])
    await uow.repo.update_case(
        case_id, status=CaseStatus.RESOLVED.value, resolved_at=now, resolved_by=by, outcome=outcome
    )
    await uow.repo.add_history(case_id, now, "resolved", by=by, text=outcome)
    policy = await policy_or_defaults(uow, shop_id)
    check_in_at = now + policy.recovery_check_in_after_timedelta
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{RESURVEY}:{case_id}",
            kind=RESURVEY,
            shop_id=shop_id,
            fire_at=check_in_at,
            payload={"case_id": str(case_id)},
        )
    )
    uow.emit(
        RecoveryCaseResolved(
            case_id=str(case_id),
            customer_id=case["customer_id"],
            outcome=outcome,
            resolved_at=now,
            resolved_by=by,
            repair_order_id=case["repair_order_id"],
            severity=case["severity"],
            opened_at=case["opened_at"],
            acknowledged_at=case["acknowledged_at"],
            escalation_level=case["escalation_level"],
            check_in_at=check_in_at,
        ),
        shop_id=shop_id,
        time=now,
    )


async def comment(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    shop_id: uuid.UUID,
    case_id: uuid.UUID,
    *,
    text: str,
    by: str | None,
) -> None:
    if await uow.repo.case(case_id, shop_id) is None:
        raise UnknownCase(f"no case {case_id} in this shop")
    await uow.repo.add_history(case_id, deps.clock(), "comment", by=by, text=text)
