"""loyalty's set-based metric counts in PostgreSQL give what the definitions in
regulars_loyalty.domain.metrics give, on a random history applied through its bus."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from harness import System
from regulars_events.base import Event
from regulars_events.catalogue import (
    FeedbackReceived,
    FollowUpCompleted,
    FollowUpMissed,
    InvoiceIssued,
    InvoicePaid,
    RecoveryCaseAcknowledged,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReferralReported,
    ServiceCompleted,
    ServicePlanExpired,
    ServicePlanRenewed,
    ServiceVoided,
    ShopPolicyChanged,
)
from regulars_events.envelope import Envelope
from regulars_loyalty import bootstrap
from regulars_loyalty.adapters import queries
from regulars_loyalty.domain import metrics
from regulars_loyalty.handlers import Deps
from regulars_runtime import db
from regulars_shop.policy import Policy

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
YEAR = timedelta(days=365)


def when(rng: random.Random, days: int = 900) -> datetime:
    return NOW - timedelta(seconds=rng.randrange(days * 86400))


def history(rng: random.Random) -> tuple[list[tuple[Event, datetime]], metrics.ShopHistory]:
    events: list[tuple[Event, datetime]] = []
    visits, answers, follow_ups, cases, invoices, plans = [], [], [], [], [], []
    referred: set[str] = set()
    for c in range(60):
        cid = f"c-{c}"
        for n in range(rng.randrange(0, 6)):
            at = when(rng)
            ro = f"ro-{c}-{n}"
            promised = at + timedelta(hours=rng.choice([-3, 0, 2])) if rng.random() < 0.6 else None
            comeback = rng.random() < 0.1
            total = rng.randrange(1000, 90000)
            events.append(
                (
                    ServiceCompleted(
                        repair_order_id=ro,
                        customer_id=cid,
                        completed_at=at,
                        total_cents=total,
                        promised_at=promised,
                        comeback=comeback,
                    ),
                    at,
                )
            )
            if rng.random() < 0.15:
                events.append((ServiceVoided(repair_order_id=ro, customer_id=cid), at))
            else:
                visits.append(metrics.VisitRow(cid, at, total, comeback, promised))
        for n in range(rng.randrange(0, 3)):
            at = when(rng)
            nps = rng.randrange(0, 11)
            csat = rng.choice([None, 1, 2, 3, 4, 5])
            events.append(
                (
                    FeedbackReceived(
                        survey_id=f"s-{c}-{n}", customer_id=cid, nps=nps, csat=csat, received_at=at
                    ),
                    at,
                )
            )
            answers.append(metrics.AnswerRow(at, nps, csat))
        if rng.random() < 0.5:
            at, score = when(rng), rng.choice([None, 3, 9, 10])
            events.append(
                (
                    FollowUpCompleted(
                        task_id=f"t-{c}",
                        customer_id=cid,
                        repair_order_id="ro",
                        satisfied=True,
                        score=score,
                        completed_at=at,
                    ),
                    at,
                )
            )
            follow_ups.append(metrics.FollowUpRow(at, "completed"))
            if score is not None:
                answers.append(metrics.AnswerRow(at, score, None))
        elif rng.random() < 0.5:
            at = when(rng)
            events.append(
                (
                    FollowUpMissed(
                        task_id=f"t-{c}",
                        customer_id=cid,
                        repair_order_id="ro",
                        reason="max_attempts",
                        missed_at=at,
                    ),
                    at,
                )
            )
            follow_ups.append(metrics.FollowUpRow(at, "missed"))
        if rng.random() < 0.3:
            opened = when(rng, 400)
            ack_due, resolve_due = opened + timedelta(hours=2), opened + timedelta(days=2)
            acked = (
                opened + timedelta(minutes=rng.randrange(10, 300)) if rng.random() < 0.8 else None
            )
            resolved = (
                opened + timedelta(hours=rng.randrange(1, 80)) if rng.random() < 0.7 else None
            )
            events.append(
                (
                    RecoveryCaseOpened(
                        case_id=f"k-{c}",
                        customer_id=cid,
                        severity="normal",
                        assignee="adv",
                        escalation_level="advisor",
                        ack_due_at=ack_due,
                        resolve_due_at=resolve_due,
                        opened_at=opened,
                    ),
                    opened,
                )
            )
            if acked:
                events.append(
                    (
                        RecoveryCaseAcknowledged(
                            case_id=f"k-{c}", customer_id=cid, acknowledged_at=acked
                        ),
                        acked,
                    )
                )
            if resolved:
                events.append(
                    (
                        RecoveryCaseResolved(
                            case_id=f"k-{c}", customer_id=cid, outcome="done", resolved_at=resolved
                        ),
                        resolved,
                    )
                )
            cases.append(metrics.CaseRow(opened, ack_due, resolve_due, acked, resolved))
        for n in range(rng.randrange(0, 3)):
            issued = when(rng, 500)
            due = issued + timedelta(days=30)
            amount = rng.randrange(1000, 50000)
            paid = issued + timedelta(days=rng.randrange(1, 60)) if rng.random() < 0.7 else None
            invoice = {
                "invoice_id": f"i-{c}-{n}",
                "customer_id": cid,
                "amount_cents": amount,
                "due_at": due,
            }
            pair: list[tuple[Event, datetime]] = [(InvoiceIssued(**invoice), issued)]
            if paid:
                pair.append((InvoicePaid(**invoice), paid))
                rng.shuffle(pair)  # a payment can come before its invoice
            events.extend(pair)
            invoices.append(metrics.InvoiceRow(amount, due, issued, paid))
        if rng.random() < 0.3:
            at = when(rng)
            kind = rng.choice(["renewed", "expired"])
            cls = ServicePlanRenewed if kind == "renewed" else ServicePlanExpired
            events.append((cls(plan_id=f"p-{c}", customer_id=cid), at))
            plans.append(metrics.PlanRow(at, kind))  # type: ignore[arg-type]
        if c > 0 and rng.random() < 0.2:
            at = when(rng)
            events.append(
                (ReferralReported(referrer_customer_id=f"c-{c - 1}", referred_customer_id=cid), at)
            )
            referred.add(cid)
    return events, metrics.ShopHistory(
        visits=visits,
        answers=answers,
        follow_ups=follow_ups,
        cases=cases,
        invoices=invoices,
        plans=plans,
        referred=frozenset(referred),
    )


async def test_the_sql_counts_what_the_definitions_count(system: System) -> None:
    rng = random.Random(20261101)
    shop = str(uuid.uuid4())
    events, known = history(rng)
    pool = await db.create_pool(system.database_url, "loyalty", min_size=1, max_size=4)
    try:
        bus = bootstrap.bus(Deps(clock=lambda: NOW), pool)
        policy = Envelope.wrap(
            ShopPolicyChanged(version=1, policy=Policy.defaults().model_dump(mode="json")),
            source="intake",
            shop_id=shop,
        )
        envelopes = [policy] + [
            Envelope.wrap(e, source="intake", shop_id=shop, time=at) for e, at in events
        ]
        ranges: list[tuple[datetime, datetime, Any]] = [
            (NOW - YEAR, NOW, "month"),
            (NOW - 2 * YEAR, NOW - YEAR, "month"),
            (NOW - timedelta(days=90), NOW - timedelta(days=10), "week"),
            # boundaries off the hour (a half-hour timezone, a ragged start): the hours
            # they cut are counted from the facts, the others from tally_hours
            (
                (NOW - timedelta(days=200, minutes=17)).astimezone(ZoneInfo("Asia/Kolkata")),
                NOW - timedelta(seconds=5),
                "month",
            ),
        ]

        async def read(start: datetime, end: datetime, every: Any) -> Any:
            periods = metrics.intervals(start, end, every)
            bounds = [a for a, _b in periods] + [end]
            return periods, await queries.tallies(pool, uuid.UUID(shop), bounds, YEAR, NOW)

        half = len(envelopes) // 2
        for start in range(0, len(envelopes), 37):
            async with pool.acquire() as conn, conn.transaction():
                await bus.handle_events(envelopes[start : start + 37], conn)
            if start <= half < start + 37:
                # a read half-way: what it counted and kept (hours, active customers) is
                # recounted as the rest arrives, some of it earlier in time
                for r in ranges:
                    await read(*r)
        for start, end, every in ranges:
            periods, (series, whole) = await read(start, end, every)
            assert whole == metrics.tally(known, start, end, YEAR, NOW), (start, end)
            if end == NOW:  # the random history reaches every count of the last year
                zero = [k for k, v in whole.as_dict().items() if not v]
                assert zero == [], zero
            for (a, b), got in zip(periods, series, strict=True):
                assert got == metrics.tally(known, a, b, YEAR, NOW), (a, b)
        async with pool.acquire() as conn:
            hours = await conn.fetchval(
                "SELECT count(*) FROM loyalty.tally_hours WHERE shop_id = $1", uuid.UUID(shop)
            )
            marked = await conn.fetchval(
                "SELECT count(*) FROM loyalty.tally_dirty WHERE shop_id = $1", uuid.UUID(shop)
            )
        assert hours > 100 and marked == 0  # the whole hours were read from tally_hours
    finally:
        await pool.close()
