"""The monthly database check: on the first of the month at 08:00 shop time (a durable
timer per shop, the next one scheduled as each fires), and on demand (`regulars sweep`)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from regulars_runtime import timers
from regulars_runtime.clock import Clock
from regulars_runtime.timers import Timer
from regulars_shop.policy import Policy

from ..domain.sweep import first_of_next_month, monthly_check
from .base import Deps, FollowUpUnitOfWork
from .outreach import request_message

MONTHLY_CHECK = "followup.monthly_check"
SWEEP_HOUR = time(8, 0)


def _moment(month: date, policy: Policy) -> datetime:
    return datetime.combine(month, SWEEP_HOUR, ZoneInfo(policy.timezone))


async def plan_next_check(uow: FollowUpUnitOfWork, shop_id: uuid.UUID, now: datetime) -> None:
    """Make sure the shop's next monthly check is on the calendar (idempotent per month)."""
    _version, policy = await uow.policy(shop_id)
    local_today = now.astimezone(ZoneInfo(policy.timezone)).date()
    month = first_of_next_month(local_today)
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{MONTHLY_CHECK}:{shop_id}:{month:%Y-%m}",
            kind=MONTHLY_CHECK,
            shop_id=shop_id,
            fire_at=_moment(month, policy),
            payload={"shop_id": str(shop_id), "month": month.isoformat()},
        )
    )


async def on_monthly_check_timer(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    payload, clock = timer.payload, deps.clock
    shop_id = uuid.UUID(payload["shop_id"])
    await run_monthly_check(uow, clock, shop_id, date.fromisoformat(payload["month"]))
    await plan_next_check(uow, shop_id, clock())


async def run_monthly_check(
    uow: FollowUpUnitOfWork, clock: Clock, shop_id: uuid.UUID, month: date
) -> dict[str, int]:
    """Ask for every reminder, birthday, thank-you and win-back the shop's customers are
    owed this month (a win-back to each customer loyalty has as lapsed); each goes through
    the one message budget (and a second run of the same month asks for nothing new: each
    has its purpose key)."""
    now = clock()
    counts: dict[str, int] = defaultdict(int)
    for history in await uow.visits.histories(shop_id):
        for item in monthly_check(history, month, now):
            asked = await request_message(
                uow,
                clock,
                shop_id=shop_id,
                customer_id=history.customer_id,
                kind=item.kind,
                purpose=item.purpose,
                channels=["email", "sms"],
                context=item.context,
            )
            if asked is not None:
                counts[item.kind] += 1
    return dict(counts)
