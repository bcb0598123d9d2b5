"""loyalty's reactions to events and to time. Every write of loyalty's state happens here.

Every event about a customer, from every service, goes on their timeline and into the
facts the metrics count, and is applied to the customer's standing, which is then
reassessed: the stage and the churn risk, emitting LifecycleStageChanged and
CustomerAtRisk when they change. Time passing is a durable timer per customer at the
next moment their stage would change, and a monthly refit of the shop's visit rhythm.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from regulars_events.envelope import Envelope
from regulars_events.topics import FAMILIES
from regulars_runtime import timers
from regulars_runtime.bus import Command, Received
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy, parse_duration

from ..domain.metrics import COUNTED
from ..domain.rhythm import TooLittleHistory, VisitRhythm, fit
from ..domain.risk import RiskModel
from ..domain.stages import StageRules
from ..domain.standing import MOVED_BY, CustomerStanding, moves_standing
from .base import CustomerKey, Deps, LoyaltyUnitOfWork

TOPICS: list[str] = [f"regulars.{family}" for family in FAMILIES]
READ_FURTHER = frozenset(c.type for c in (*COUNTED, *MOVED_BY))

REVIEW = "loyalty.review"
REFIT = "loyalty.refit"
RESCORE = "loyalty.rescore"
RESCORE_CHUNK = 1000
#: a refit waits this long after the history grew enough, so an import is fitted once
REFIT_SETTLE = timedelta(seconds=30)
MONTHLY_REFIT_AT = time(3, 0)


def rules_of(policy: Policy) -> StageRules:
    return StageRules(parse_duration(policy.lapsed_after), parse_duration(policy.lost_after))


def threshold_of(policy: Policy) -> float:
    return policy.at_risk_threshold


async def project(messages: Sequence[Received[Any]], uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """A run of events: timeline, facts, then each customer they touch reassessed once."""
    about = [m for m in messages if m.envelope.subject is not None]
    if not about:
        return
    await uow.timeline.add([m.envelope for m in about])
    # Only what the metrics count or a standing is moved by is read further (most of a
    # customer's events, messages and scheduled calls, are timeline alone); a type newer
    # than this service's catalogue is on the timeline, and nothing more.
    known = [(m.envelope, m.event) for m in about if m.envelope.type in READ_FURTHER]
    if not known:
        return
    await uow.history.record(known)
    # Only what can change a standing locks it: a customer's other events (messages,
    # scheduled calls, loyalty's own) come on other topics at the same time.
    moving = [(e, ev) for e, ev in known if moves_standing(ev)]
    if not moving:
        return
    shops = {shop: await _shop(uow, shop) for shop in sorted({e.shop_id for e, _ev in moving})}
    last_cause: dict[CustomerKey, Envelope] = {}
    for envelope, _event in moving:
        last_cause[(envelope.shop_id, envelope.subject or "")] = envelope
    standings = await uow.standings.lock(sorted(last_cause))
    with_new_customers: set[str] = set()
    for envelope, event in moving:
        standing = standings[(envelope.shop_id, envelope.subject or "")]
        had_visits = bool(standing.visits)
        standing.apply(event, envelope.time)
        if not had_visits and standing.visits:
            with_new_customers.add(envelope.shop_id)
    now, plan = deps.clock(), _TimerPlan()
    for key, standing in sorted(standings.items()):
        _reassess(uow, standing, now, shops[standing.shop_id], plan, cause=last_cause[key])
    await uow.standings.save(list(standings.values()))
    await plan.write(uow)
    for shop in sorted(with_new_customers):
        await _refit_when_grown(uow, uuid.UUID(shop), now, shops[shop].model)


@dataclass(frozen=True)
class _ShopView:
    policy: Policy
    model: RiskModel


async def _shop(uow: LoyaltyUnitOfWork, shop_id: str, *, waits: bool = True) -> _ShopView:
    shop = uuid.UUID(shop_id)
    # An event can come before its shop's policy (another topic): wait for it, since
    # lapsed_after and lost_after decide the stage. Time passing cannot wait.
    _version, policy = await (uow.policy(shop) if waits else uow.policy_or_defaults(shop))
    return _ShopView(policy, await uow.models.get(shop))


class _TimerPlan:
    """The review timers a unit of work moves, written together at its end."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.scheduled: list[timers.NewTimer] = []

    async def write(self, uow: LoyaltyUnitOfWork) -> None:
        await uow.timers.cancel_many(self.cancelled)
        await uow.timers.schedule_many(self.scheduled)


def _reassess(
    uow: LoyaltyUnitOfWork,
    standing: CustomerStanding,
    now: datetime,
    shop: _ShopView,
    plan: _TimerPlan,
    *,
    cause: Envelope | None,
) -> None:
    before = standing.next_change_at
    standing.reassess(now, rules_of(shop.policy), shop.model, threshold_of(shop.policy))
    shop_id = uuid.UUID(standing.shop_id)
    for event in standing.take_events():
        uow.emit(event, shop_id=shop_id, cause=cause)
    if standing.next_change_at == before:
        return
    if before is not None:
        plan.cancelled.append(_review_key(standing, before))
    if standing.next_change_at is not None:
        plan.scheduled.append(
            timers.NewTimer(
                key=_review_key(standing, standing.next_change_at),
                kind=REVIEW,
                shop_id=shop_id,
                fire_at=standing.next_change_at,
                payload={"shop_id": standing.shop_id, "customer_id": standing.customer_id},
            )
        )


def _review_key(standing: CustomerStanding, at: datetime) -> str:
    return f"{REVIEW}:{standing.shop_id}:{standing.customer_id}:{at.isoformat()}"


async def on_review(timer: Timer, uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """Time has come for a customer's stage to change (a window passed): reassess them."""
    key = (timer.payload["shop_id"], timer.payload["customer_id"])
    standing = (await uow.standings.lock([key]))[key]
    # The timer that fired is spent; the standing must not try to cancel it.
    standing.next_change_at = None
    shop, plan = await _shop(uow, standing.shop_id, waits=False), _TimerPlan()
    _reassess(uow, standing, deps.clock(), shop, plan, cause=None)
    await uow.standings.save([standing])
    await plan.write(uow)


async def _refit_when_grown(
    uow: LoyaltyUnitOfWork, shop_id: uuid.UUID, now: datetime, model: RiskModel
) -> None:
    """New customers came in: a shop without a fit tries one soon (at most hourly), so an
    imported history has its rhythm within the hour, not at the month's end."""
    await plan_monthly_refit(uow, shop_id, now)
    if model.fit is not None:
        return
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{REFIT}:{shop_id}:soon:{now:%Y-%m-%dT%H}",
            kind=REFIT,
            shop_id=shop_id,
            fire_at=now + REFIT_SETTLE,
            payload={"shop_id": str(shop_id)},
        )
    )


async def plan_monthly_refit(uow: LoyaltyUnitOfWork, shop_id: uuid.UUID, now: datetime) -> None:
    _version, policy = await uow.policy_or_defaults(shop_id)
    zone = ZoneInfo(policy.timezone)
    today = now.astimezone(zone).date()
    month = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{REFIT}:{shop_id}:{month:%Y-%m}",
            kind=REFIT,
            shop_id=shop_id,
            fire_at=datetime.combine(month, MONTHLY_REFIT_AT, zone),
            payload={"shop_id": str(shop_id), "month": month.isoformat()},
        )
    )


def fit_shop(visits: list[list[datetime]], now: datetime) -> RiskModel:
    """The shop's BG/NBD fit on its customers' visits, or the rules alone and why."""
    rhythms = [VisitRhythm.of(v, now) for v in visits if any(at <= now for at in v)]
    try:
        return RiskModel(fit=fit(rhythms), note="BG/NBD fitted on the shop's visits", fitted_at=now)
    except TooLittleHistory as why:
        return RiskModel(fit=None, note=f"rules alone: {why}", fitted_at=now)


async def on_refit(timer: Timer, uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """The monthly refit (and the one after an import grew the history)."""
    shop_id, now = uuid.UUID(timer.payload["shop_id"]), deps.clock()
    await _refit(uow, shop_id, now)
    if "month" in timer.payload:
        await plan_monthly_refit(uow, shop_id, now)


async def _refit(uow: LoyaltyUnitOfWork, shop_id: uuid.UUID, now: datetime) -> None:
    """Refit the shop's visit rhythm, then rescore its customers with it, a chunk at a time
    (each its own timer and transaction, so a large shop's customers are not all locked
    while the rest of its events wait)."""
    visits = await uow.history.visits_by_customer(shop_id)
    model = fit_shop(visits, now)
    await uow.models.save(shop_id, model, customers=len(visits))
    await _rescore_from(uow, shop_id, now, after="", run=f"refit-{now.isoformat()}")


async def _rescore_from(
    uow: LoyaltyUnitOfWork, shop_id: uuid.UUID, now: datetime, *, after: str, run: str
) -> None:
    """The chunk of a rescoring ``run`` (a refit, a policy change) after customer ``after``."""
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{RESCORE}:{shop_id}:{run}:{after}",
            kind=RESCORE,
            shop_id=shop_id,
            fire_at=now,
            payload={"shop_id": str(shop_id), "after": after, "run": run},
        )
    )


async def on_rescore(timer: Timer, uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """The next chunk of a shop's customers, rescored with its current model."""
    shop_id, now = uuid.UUID(timer.payload["shop_id"]), deps.clock()
    _version, policy = await uow.policy_or_defaults(shop_id)
    shop = _ShopView(policy, await uow.models.get(shop_id))
    standings = await uow.standings.lock_shop(
        shop_id, after=timer.payload["after"], limit=RESCORE_CHUNK
    )
    plan = _TimerPlan()
    for standing in standings:
        _reassess(uow, standing, now, shop, plan, cause=None)
    await uow.standings.save(standings)
    await plan.write(uow)
    if len(standings) == RESCORE_CHUNK:
        await _rescore_from(
            uow, shop_id, now, after=standings[-1].customer_id, run=timer.payload["run"]
        )


async def on_policy_changed(message: Received[Any], uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """A new policy can move lapsed_after, lost_after or the at-risk threshold: every
    customer of the shop is reassessed by it, a chunk at a time (the policy itself is
    already in the shop book: the bus applies shop facts first)."""
    run = f"policy-{message.envelope.id}"
    await _rescore_from(uow, message.shop_id, deps.clock(), after="", run=run)


@dataclass(frozen=True)
class RefitRiskModel(Command[RiskModel]):
    """Refit a shop's visit rhythm now (after an import, or from the CLI)."""

    shop_id: uuid.UUID


async def refit_risk_model(
    command: RefitRiskModel, uow: LoyaltyUnitOfWork, deps: Deps
) -> RiskModel:
    await _refit(uow, command.shop_id, deps.clock())
    return await uow.models.get(command.shop_id)


__all__ = [
    "TOPICS",
    "Deps",
    "LoyaltyUnitOfWork",
    "RefitRiskModel",
    "on_policy_changed",
    "on_refit",
    "on_rescore",
    "on_review",
    "project",
    "refit_risk_model",
]
