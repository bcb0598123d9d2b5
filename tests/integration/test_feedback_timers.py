"""feedback's handlers and SLA timers on a real PostgreSQL with a fake clock: the business
calendar decides when a window ends, a stale timer stands down, acknowledging or
resolving stops the clocks, and nothing escalates twice.

A database of its own (the feedback schema alone, migrated here), so the fake clock never
fires the timers of the service processes other tests run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest
from harness import System
from regulars_events.catalogue import FollowUpCompleted, ServiceCompleted
from regulars_events.envelope import Envelope
from regulars_feedback import bootstrap, handlers
from regulars_feedback.bootstrap import migrations
from regulars_feedback.domain.classification import classify_survey
from regulars_feedback.handlers import cases, surveys
from regulars_runtime.db import create_pool
from regulars_runtime.migrations import apply
from regulars_runtime.timers import TimerScheduler
from regulars_shop.policy import Policy

NY = ZoneInfo("America/New_York")
STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@x.example"},
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@x.example"},
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@x.example"},
]
# The defaults (Mon-Sat 09:00-18:00, ack PT2H, critical PT30M, resolve P2D), with staff.
POLICY = Policy.defaults().merged({"staff": STAFF, "holidays": ["2026-07-03"]})


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=NY)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
async def db(system: System) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    base, _, rest = system.database_url.partition("?")
    server, _, _name = base.rpartition("/")
    name = f"feedback_timers_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(system.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = f"{server}/{name}" + (f"?{rest}" if rest else "")
    conn = await asyncpg.connect(url)
    await apply(conn, "feedback", migrations())
    await conn.close()
    pool = await create_pool(url, "feedback", min_size=1, max_size=4)
    try:
        yield url, pool
    finally:
        await pool.close()


class Shop:
    """One shop with the policy above, its clock, and ways to act and to look."""

    def __init__(self, url: str, pool: asyncpg.Pool, now: datetime) -> None:
        self.id = uuid.uuid4()
        self.pool = pool
        self.clock = FakeClock(now)
        self.deps = handlers.Deps(
            clock=self.clock, public_url="https://fb.example", survey_key=b"survey links"
        )
        self.bus = bootstrap.bus(self.deps, pool)
        self.scheduler = TimerScheduler(
            database_url=url,
            pool=pool,
            schema="feedback",
            handle=self.bus.handle_timer,
            clock=self.clock,
        )

    async def setup(self) -> Shop:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO shop_policies (shop_id, version, policy) VALUES ($1, 1, $2)",
                self.id,
                POLICY.model_dump(mode="json"),
            )
        return self

    async def deliver(self, event: Any) -> None:
        """An event as the consumer hands it over: through the message bus."""
        envelope = Envelope.wrap(event, source="test", shop_id=str(self.id), time=self.clock())
        async with self.pool.acquire() as conn, conn.transaction():
            await self.bus.handle_event(envelope, conn)

    async def visit(self, cid: str, ro: str, **extra: Any) -> None:
        await self.deliver(
            ServiceCompleted(
                repair_order_id=ro,
                customer_id=cid,
                completed_at=self.clock(),
                advisor="sam",
                **extra,
            )
        )

    async def unhappy_call(self, cid: str, ro: str, notes: str) -> None:
        await self.deliver(
            FollowUpCompleted(
                task_id=str(uuid.uuid4()),
                customer_id=cid,
                repair_order_id=ro,
                assignee="sam",
                satisfied=False,
                notes=notes,
                completed_at=self.clock(),
            )
        )

    async def at(self, when: datetime) -> int:
        """Move the clock to ``when`` and fire what is due."""
        self.clock.now = when
        fired = 0
        while (n := await self.scheduler.fire_due(when)) > 0:
            fired += n
        return fired

    async def case(self, cid: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM cases WHERE shop_id = $1 AND customer_id = $2", self.id, cid
            )
        assert len(rows) == 1, rows
        row: asyncpg.Record = rows[0]
        return row

    async def events(self, ce_type: str, cid: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT value FROM outbox WHERE headers @> $1::text::jsonb ORDER BY id",
                orjson.dumps([["shop_id", str(self.id)], ["ce_type", ce_type]]).decode(),
            )
        found = [orjson.loads(r["value"]) for r in rows]
        return [e for e in found if cid is None or e.get("customer_id") == cid]

    async def history(self, case_id: uuid.UUID) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT kind FROM case_history WHERE case_id = $1 ORDER BY id", case_id
            )
        return [r["kind"] for r in rows]


async def shop_at(db: tuple[str, asyncpg.Pool], now: datetime) -> Shop:
    return await Shop(db[0], db[1], now).setup()


ESCALATED = "regulars.recovery_case.escalated.v1"
AT_RISK = "regulars.recovery_case.sla_at_risk.v1"


async def test_a_critical_case_opened_friday_evening_escalates_in_saturdays_business_time(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 5, 17, 45))  # a Friday; the shop closes at 18:00
    await shop.visit("c1", "ro1")
    await shop.unhappy_call("c1", "ro1", "brakes grinding")
    case = await shop.case("c1")
    assert (case["severity"], case["assignee"], case["escalation_level"]) == (
        "critical",
        "sam",
        "advisor",
    )
    # 15 min on Friday, 15 on Saturday from 09:00; at risk with 7.5 min left.
    assert case["ack_due_at"] == ny(2026, 6, 6, 9, 15)
    assert case["ack_at_risk_at"] == ny(2026, 6, 6, 9, 7, 30)
    # P2D = 18 business hours: 15 min Fri, 9 h Sat, Sunday closed, 8 h 45 min Monday.
    assert case["resolve_due_at"] == ny(2026, 6, 8, 17, 45)

    assert await shop.at(ny(2026, 6, 5, 23, 59)) == 0  # the night counts for nothing
    await shop.at(ny(2026, 6, 6, 9, 8))
    assert [e["clock"] for e in await shop.events(AT_RISK, "c1")] == ["acknowledge"]
    assert await shop.events(ESCALATED, "c1") == []

    await shop.at(ny(2026, 6, 6, 9, 15))
    (up,) = await shop.events(ESCALATED, "c1")
    assert (up["from_level"], up["to_level"], up["assignee"]) == (
        "advisor",
        "service_manager",
        "maria",
    )
    assert up["assignee_email"] == "maria@x.example"
    case = await shop.case("c1")
    assert case["escalation_level"] == "service_manager"
    assert case["ack_due_at"] == ny(2026, 6, 6, 9, 45)  # a new window for the manager

    await shop.at(ny(2026, 6, 6, 9, 45))
    await shop.at(ny(2026, 6, 6, 9, 46))
    assert [e["to_level"] for e in await shop.events(ESCALATED, "c1")] == [
        "service_manager",
        "owner",
    ]
    # The owner's window passes too: the top of the ladder is recorded, not escalated.
    await shop.at(ny(2026, 6, 6, 10, 30))
    assert len(await shop.events(ESCALATED, "c1")) == 2
    assert "sla_breached" in await shop.history(case["id"])


async def test_acknowledging_stops_one_clock_and_the_resolve_clock_still_escalates(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 1, 10))  # a Monday
    await shop.visit("c2", "ro2")
    await shop.unhappy_call("c2", "ro2", "the wait was long")
    case = await shop.case("c2")
    assert case["severity"] == "normal" and case["ack_due_at"] == ny(2026, 6, 1, 12)
    shop.clock.now = ny(2026, 6, 1, 11)
    async with shop.bus.unit_of_work() as uow:
        assert await cases.acknowledge(
            cases.AcknowledgeCase(shop.id, case["id"], by="sam", note=None), uow, shop.deps
        )
    await shop.at(ny(2026, 6, 1, 17))
    assert await shop.events(ESCALATED, "c2") == []
    # Resolve: 18 business hours from Monday 10:00 -> Tuesday 19:00 is closed -> Wed 10:00.
    assert case["resolve_due_at"] == ny(2026, 6, 3, 10)
    await shop.at(ny(2026, 6, 3, 10))
    (up,) = await shop.events(ESCALATED, "c2")
    assert (up["clock"], up["to_level"]) == ("resolve", "service_manager")
    assert (await shop.case("c2"))["status"] == "acknowledged"


async def test_resolving_stops_every_clock_and_brings_the_resurvey(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 1, 10))
    await shop.visit("c3", "ro3")
    await shop.unhappy_call("c3", "ro3", "rude advisor")
    case = await shop.case("c3")
    async with shop.bus.unit_of_work() as uow:
        await cases.resolve(
            cases.ResolveCase(shop.id, case["id"], outcome="apologised", by="sam"), uow, shop.deps
        )
    (resolved,) = await shop.events("regulars.recovery_case.resolved.v1", "c3")
    assert resolved["repair_order_id"] == "ro3" and resolved["outcome"] == "apologised"
    await shop.at(ny(2026, 6, 5, 12))
    assert await shop.events(ESCALATED, "c3") == []
    assert await shop.events(AT_RISK, "c3") == []
    resurveys = [
        e
        for e in await shop.events("regulars.survey.requested.v1", "c3")
        if e["reason"] == "recovery_resurvey"
    ]
    assert resurveys == []
    await shop.at(ny(2026, 6, 8, 10))  # seven days after resolution
    resurveys = [
        e
        for e in await shop.events("regulars.survey.requested.v1", "c3")
        if e["reason"] == "recovery_resurvey"
    ]
    assert len(resurveys) == 1 and resurveys[0]["case_id"] == str(case["id"])
    # the page, never the link: its token is a credential, made again where it is sent
    assert resurveys[0]["survey_page"] == "https://fb.example/s/"
    assert resurveys[0].get("survey_url") is None


async def test_a_safety_signal_joining_a_case_makes_it_critical_and_shortens_its_window(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 1, 10))
    await shop.visit("c4", "ro4")
    await shop.unhappy_call("c4", "ro4", "took too long")
    case = await shop.case("c4")
    assert case["ack_due_at"] == ny(2026, 6, 1, 12)
    shop.clock.now = ny(2026, 6, 1, 10, 10)
    async with shop.bus.unit_of_work() as uow:
        await cases.report_negative(
            uow,
            shop.deps,
            cases.Signal(
                shop_id=shop.id,
                customer_id="c4",
                repair_order_id="ro4",
                source="survey",
                verdict=classify_survey(3, None, "and the brakes squeal"),
                nps=3,
                text="and the brakes squeal",
            ),
            POLICY,
        )
    case = await shop.case("c4")
    assert case["severity"] == "critical" and case["ack_due_at"] == ny(2026, 6, 1, 10, 30)
    await shop.at(ny(2026, 6, 1, 10, 30))
    await shop.at(ny(2026, 6, 1, 12, 0))  # the old window's end: it stands down
    ups = await shop.events(ESCALATED, "c4")
    assert [(e["from_level"], e["to_level"]) for e in ups] == [
        ("advisor", "service_manager"),
        ("service_manager", "owner"),
    ]
    assert [datetime.fromisoformat(e["breached_due_at"]) for e in ups] == [
        ny(2026, 6, 1, 10, 30),
        ny(2026, 6, 1, 11, 0),
    ]
    history = await shop.history(case["id"])
    assert history[:3] == ["opened", "joined", "severity"]


async def test_a_second_incident_within_90_days_is_critical(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 1, 10))
    await shop.visit("c5", "ro5a")
    await shop.unhappy_call("c5", "ro5a", "slow")
    first = await shop.case("c5")
    async with shop.bus.unit_of_work() as uow:
        await cases.resolve(
            cases.ResolveCase(shop.id, first["id"], outcome="discount", by=None), uow, shop.deps
        )
    shop.clock.now = ny(2026, 8, 1, 10)  # a Saturday, 61 days later
    await shop.visit("c5", "ro5b")
    await shop.unhappy_call("c5", "ro5b", "slow again")
    async with shop.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT repair_order_id, severity FROM cases WHERE shop_id = $1 ORDER BY opened_at",
            shop.id,
        )
    assert [(r["repair_order_id"], r["severity"]) for r in rows] == [
        ("ro5a", "normal"),
        ("ro5b", "critical"),
    ]


async def test_survey_answers_count_once_and_a_comeback_holds_back_the_review_ask(
    db: tuple[str, asyncpg.Pool],
) -> None:
    shop = await shop_at(db, ny(2026, 6, 1, 10))
    await shop.visit("c6", "ro6", comeback=True)
    await shop.visit("c7", "ro7")
    tokens = {}
    for cid, ro in (("c6", "ro6"), ("c7", "ro7")):
        async with shop.bus.unit_of_work() as uow:
            await surveys.request_survey(
                uow,
                shop.deps,
                shop_id=shop.id,
                customer_id=cid,
                repair_order_id=ro,
                reason="after_follow_up",
            )
        async with shop.pool.acquire() as conn:
            tokens[cid] = await conn.fetchval(
                "SELECT token FROM surveys WHERE shop_id = $1 AND customer_id = $2", shop.id, cid
            )
    for cid in ("c6", "c7"):
        for nps in (10, 0):
            async with shop.bus.unit_of_work() as uow:
                done = await surveys.answer_survey(
                    surveys.AnswerSurvey(tokens[cid], {"nps": nps}), uow, shop.deps
                )
            assert done.result["nps"] == 10 and done.first is (nps == 10)
    assert await shop.events("regulars.review.requested.v1", "c6") == []
    assert len(await shop.events("regulars.review.requested.v1", "c7")) == 1
    assert len(await shop.events("regulars.referral.requested.v1", "c6")) == 1
    assert len(await shop.events("regulars.feedback.received.v1", "c7")) == 1
    assert await shop.events("regulars.feedback.negative.v1") == []
    # Expired: unknown.
    shop.clock.now = ny(2026, 7, 2, 10)
    async with shop.bus.unit_of_work() as uow:
        await surveys.request_survey(
            uow,
            shop.deps,
            shop_id=shop.id,
            customer_id="c8",
            repair_order_id="ro8",
            reason="follow_up_missed",
        )
    async with shop.pool.acquire() as conn:
        token = await conn.fetchval("SELECT token FROM surveys WHERE customer_id = 'c8'")
    shop.clock.now = ny(2026, 8, 2, 10)
    with pytest.raises(surveys.UnknownSurvey):
        async with shop.bus.unit_of_work() as uow:
            await surveys.answer_survey(surveys.AnswerSurvey(token, {"nps": 5}), uow, shop.deps)
