"""The monthly database check: on the first of the month at 08:00 shop time (a durable
timer per shop, the next one scheduled as each fires), and on demand (`regulars sweep`).

A shop's customers are checked a page at a time (a keyset over customer ids), one
transaction per page: a shop of 100,000 customers never holds a transaction (nor its
customers' locks) open for the whole shop. On the calendar each page is a timer of its
own, scheduled by the page before it in that page's transaction, so the cursor and the
messages of a page commit together: a page that fails is rolled back and its timer
retried alone, and a crash resumes at the page it stopped in, neither from the start
nor past it. A page asks again only what its purpose keys have not had.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
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
#: the pages after the first, each a timer of its own
MONTHLY_CHECK_PAGE = "followup.monthly_check.page"
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


@dataclass
class CheckedPage:
    """What one page of the check asked for, and where the next page starts (None: the
    shop's last page)."""

    counts: dict[str, int] = field(default_factory=dict)
    next_after: str | None = None
    customers: int = 0


async def on_monthly_check_timer(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    """The month's check begins: its first page, and the next month on the calendar."""
    payload, clock = timer.payload, deps.clock
    shop_id = uuid.UUID(payload["shop_id"])
    month = date.fromisoformat(payload["month"])
    page = await check_page(uow, clock, shop_id, month, after=None, size=deps.monthly_check_page)
    await _next_page(uow, clock, shop_id, month, page, number=2)
    await plan_next_check(uow, shop_id, clock())


async def on_monthly_check_page(timer: Timer, uow: FollowUpUnitOfWork, deps: Deps) -> None:
    payload, clock = timer.payload, deps.clock
    shop_id = uuid.UUID(payload["shop_id"])
    month = date.fromisoformat(payload["month"])
    page = await check_page(
        uow, clock, shop_id, month, after=payload["after"], size=deps.monthly_check_page
    )
    await _next_page(uow, clock, shop_id, month, page, number=int(payload["page"]) + 1)


async def _next_page(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    shop_id: uuid.UUID,
    month: date,
    page: CheckedPage,
    *,
    number: int,
) -> None:
    if page.next_after is None:
        return
    # Keyed by the page's number: a redone page schedules the same next page, once.
    await uow.timers.schedule(
        timers.NewTimer(
            key=f"{MONTHLY_CHECK_PAGE}:{shop_id}:{month:%Y-%m}:{number}",
            kind=MONTHLY_CHECK_PAGE,
            shop_id=shop_id,
            fire_at=clock(),
            payload={
                "shop_id": str(shop_id),
                "month": month.isoformat(),
                "after": page.next_after,
                "page": number,
            },
        )
    )


async def check_page(
    uow: FollowUpUnitOfWork,
    clock: Clock,
    shop_id: uuid.UUID,
    month: date,
    *,
    after: str | None,
    size: int,
) -> CheckedPage:
    """Ask for every reminder, birthday, thank-you and win-back the ``size`` customers
    after ``after`` are owed this month (a win-back to each customer loyalty has as
    lapsed); each goes through the one message budget, and a second run of the same month
    asks for nothing new: each has its purpose key."""
    now = clock()
    counts: dict[str, int] = defaultdict(int)
    histories = await uow.visits.histories(shop_id, after=after, limit=size)
    for history in histories:
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
    last = histories[-1].customer_id if len(histories) == size else None
    return CheckedPage(dict(counts), last, len(histories))


async def run_monthly_check(
    transaction: Callable[[], AbstractAsyncContextManager[FollowUpUnitOfWork]],
    clock: Clock,
    shop_id: uuid.UUID,
    month: date,
    *,
    size: int = 500,
) -> dict[str, int]:
    """The whole check now, page after page, each in a ``transaction`` of its own (the
    CLI's): what was asked for, by kind."""
    counts: dict[str, int] = defaultdict(int)
    after: str | None = None
    while True:
        async with transaction() as uow:
            page = await check_page(uow, clock, shop_id, month, after=after, size=size)
        for kind, n in page.counts.items():
            counts[kind] += n
        if page.next_after is None:
            return dict(counts)
        after = page.next_after
