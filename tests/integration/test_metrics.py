"""Metrics an on-call engineer reads, on the real broker and database: a stuck handler's
lag grows and falls back once it is done; the table gauges count what the tables hold;
and each service's ``/metrics`` shows every metric the alerts and the dashboard use."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from harness import System, auth, wait_for
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from regulars_bus.consumer import EventConsumer
from regulars_bus.kafka import KafkaConfig, admin_client, ensure_topics, producer
from regulars_events.catalogue import CustomerReplied
from regulars_events.envelope import Envelope
from regulars_events.topics import dead_letter_topic
from regulars_runtime import metrics
from regulars_runtime.db import create_pool
from regulars_runtime.migrations import apply, library_migrations
from test_followup_flow import _authorised, person, post, visit

# Names of this run's own: a broker named by KAFKA_BOOTSTRAP_SERVERS outlives a test run.
SERVICE = f"lagtest_{uuid.uuid4().hex[:8]}"
TOPIC = f"regulars.{SERVICE}"


@pytest.fixture
async def schema(system: System) -> AsyncIterator[asyncpg.Pool]:
    """A service schema of this test's own (outbox, dead letters, timers), and its pool."""
    conn = await asyncpg.connect(system.database_url)
    try:
        await apply(conn, SERVICE, library_migrations())
    finally:
        await conn.close()
    pool = await create_pool(system.database_url, SERVICE, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


def _reply(n: int) -> Envelope:
    event = CustomerReplied(customer_id=f"c-{n}", channel="sms", text=f"reply {n}")
    return Envelope.wrap(event, source="test", shop_id=str(uuid.uuid4()))


async def _publish(kafka: KafkaConfig, envelopes: list[Envelope]) -> None:
    prod = producer(kafka, "lagtest-producer")
    await prod.start()
    try:
        for e in envelopes:
            # one key: one partition, so the lag of that partition is the whole count
            await prod.send_and_wait(TOPIC, value=e.value, key=b"one", headers=e.headers)
    finally:
        await prod.stop()


async def test_lag_grows_while_a_handler_is_stuck_and_falls_once_it_is_done(
    system: System, schema: asyncpg.Pool
) -> None:
    kafka = KafkaConfig(system.bootstrap)
    admin = admin_client(kafka, "lagtest-admin")
    await admin.start()
    try:
        await ensure_topics(admin, kafka, [TOPIC, dead_letter_topic(SERVICE)])
    finally:
        await admin.close()
    entered, release = asyncio.Event(), asyncio.Event()

    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        entered.set()
        await release.wait()

    consumer = EventConsumer(
        service=SERVICE,
        pool=schema,
        kafka=kafka,
        topics=[TOPIC],
        handle=handle,
        wants=lambda _t: True,
    )

    async def lag() -> int | None:
        marks = await consumer.watermarks()
        lags = [metrics.partition_lag(h, p) for h, p in marks.values()]
        known = [n for n in lags if n is not None]
        return sum(known) if known else None

    # a backlog before the consumer starts: it fetches all 8 and holds the first
    await _publish(kafka, [_reply(n) for n in range(8)])
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(entered.wait(), 30)
        # fetched is not applied: records in hand count until their effect commits
        assert await wait_for(lambda: _at_least(lag, 8)) == 8
        release.set()
        await wait_for(lambda: _equals(lag, 0))

        # stuck again: what arrives meanwhile is lag (as far as fetches have seen it;
        # aiokafka fetches a partition again only once its buffered records are taken)
        entered.clear()
        release.clear()
        await _publish(kafka, [_reply(n) for n in range(8, 12)])
        await asyncio.wait_for(entered.wait(), 30)
        assert 1 <= await wait_for(lambda: _at_least(lag, 1)) <= 4
        release.set()
        await wait_for(lambda: _equals(lag, 0))

        shown = metrics.set_lags(
            SERVICE,
            {
                tp: n
                for tp, (h, p) in (await consumer.watermarks()).items()
                if (n := metrics.partition_lag(h, p)) is not None
            },
            set(),
        )
        assert {tp[0] for tp in shown} == {TOPIC}
        assert all(
            REGISTRY.get_sample_value(
                "regulars_consumer_lag",
                {"service": SERVICE, "topic": topic, "partition": str(partition)},
            )
            == 0
            for topic, partition in shown
        )
    finally:
        release.set()
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 20)


async def _at_least(read: Any, n: int) -> int | None:
    value: int | None = await read()
    return value if value is not None and value >= n else None


async def _equals(read: Any, n: int) -> bool:
    value = await read()
    return bool(value == n)


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": SERVICE})


async def test_table_gauges_count_what_the_tables_hold(schema: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    async with schema.acquire() as conn:
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, key, headers, value, created_at, published_at)"
            " VALUES ($1, 't', 'k', '[]', 'v', now() - $2::interval, $3)",
            [
                (uuid.uuid4(), timedelta(seconds=120), None),
                (uuid.uuid4(), timedelta(seconds=30), None),
                # published long ago: neither backlog nor age
                (uuid.uuid4(), timedelta(hours=1), now),
            ],
        )
        await conn.executemany(
            "INSERT INTO dead_letters (topic, part, kafka_offset, error, replayed_at)"
            " VALUES ('t', 0, $1, 'ValueError()', $2)",
            [(1, None), (2, None), (3, now)],
        )
        await conn.executemany(
            "INSERT INTO timers (key, kind, fire_at, fired_at, cancelled_at)"
            " VALUES ($1, 'test', $2, $3, $4)",
            [
                ("late", now - timedelta(seconds=300), None, None),
                ("due", now - timedelta(seconds=5), None, None),
                ("later", now + timedelta(hours=1), None, None),
                ("fired", now - timedelta(hours=2), now, None),
                ("cancelled", now - timedelta(hours=2), None, now),
            ],
        )
    readings = metrics.TableReadings(SERVICE, schema, lambda: now)
    await readings.refresh()
    assert _gauge("regulars_outbox_backlog") == 2
    oldest = _gauge("regulars_outbox_oldest_unpublished_seconds")
    assert oldest is not None and 119 <= oldest < 180
    assert _gauge("regulars_dead_letters_waiting") == 2
    assert _gauge("regulars_timers_due") == 2
    assert _gauge("regulars_timers_late") == 1
    assert _gauge("regulars_timers_oldest_due_seconds") == pytest.approx(300, abs=1)
    pool_max = REGISTRY.get_sample_value(
        "regulars_db_pool_connections", {"service": SERVICE, "state": "max"}
    )
    assert pool_max == 3

    # the outbox drained, the dead letters replayed, the timers fired: all back to 0
    async with schema.acquire() as conn:
        await conn.execute("UPDATE outbox SET published_at = now()")
        await conn.execute("UPDATE dead_letters SET replayed_at = now()")
        await conn.execute("UPDATE timers SET fired_at = now()")
    await readings.refresh()  # within READ_EVERY: the last values stand
    assert _gauge("regulars_outbox_backlog") == 2
    readings.every = 0
    await readings.refresh()
    for name in (
        "regulars_outbox_backlog",
        "regulars_outbox_oldest_unpublished_seconds",
        "regulars_dead_letters_waiting",
        "regulars_timers_due",
        "regulars_timers_late",
        "regulars_timers_oldest_due_seconds",
    ):
        assert _gauge(name) == 0, name


async def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _one(found: dict[str, Any], name: str, **labels: str) -> float:
    values = [
        v for got, v in found.get(name, []) if all(got.get(k) == x for k, x in labels.items())
    ]
    assert len(values) == 1, f"{name}{labels}: {values} in {sorted(found)}"
    return float(values[0])


@pytest.fixture(scope="module")
async def services(running: System) -> System:
    if "feedback" not in running.services or running.services["feedback"].proc.poll() is not None:
        running.start("feedback")
    return running


async def test_each_service_shows_every_metric_with_a_sensible_value(services: System) -> None:
    shop_id, key = await services.create_shop("Metric Motors")
    await wait_for(lambda: _authorised(services, key))
    cid = f"c-{uuid.uuid4().hex[:6]}"
    assert (await post(services, key, person(cid))).status_code == 202
    completed = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await post(services, key, visit(f"ro-{cid}", cid, completed))).status_code == 202
    # a webhook to an address intake does not send to: a try whose result is "refused"
    async with httpx.AsyncClient(
        base_url=services.services["intake"].url, headers=auth(key), timeout=10
    ) as api:
        r = await api.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.2:9/hook", "event_types": ["customer.upserted"]},
        )
        assert r.status_code == 201, r.text
    assert (await post(services, key, person(cid) | {"id": f"again-{cid}"})).status_code == 202
    # a message of followup's, as its table holds one, for the count by channel and status
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(
            "INSERT INTO followup.messages (id, shop_id, customer_id, purpose, kind,"
            " channel, priority, status) VALUES ($1, $2, $3, 'metrics-test', 'survey',"
            " 'email', 1, 'sent')",
            uuid.uuid4(),
            uuid.UUID(shop_id),
            cid,
        )
    finally:
        await conn.close()

    for name in ("intake", "followup", "feedback"):
        found = await _scrape(services.services[name].url)
        assert _one(found, "regulars_build_info", service=name) == 1
        assert _one(found, "regulars_db_pool_connections", service=name, state="max") == 5
        in_use = _one(found, "regulars_db_pool_connections", service=name, state="in_use")
        assert 0 <= in_use <= 5
        for gauge in (
            "regulars_outbox_backlog",
            "regulars_outbox_oldest_unpublished_seconds",
            "regulars_dead_letters_waiting",
            "regulars_timers_due",
            "regulars_timers_late",
            "regulars_timers_oldest_due_seconds",
        ):
            assert _one(found, gauge, service=name) >= 0, (name, gauge)
        # every partition this replica holds of what it consumes, none behind for long
        lags = [(labels, v) for labels, v in found.get("regulars_consumer_lag", [])]
        assert lags and all(labels["service"] == name for labels, _ in lags), name
        assert all(v >= 0 for _, v in lags)

    # followup's lag names a partition of every topic it consumes (the lag falling back to
    # 0 once records are applied is proven on its own consumer above: here earlier tests'
    # records may still wait on this shared system's partitions)
    async def every_topic_shown() -> bool:
        found = await _scrape(services.services["followup"].url)
        shown = {labels["topic"] for labels, _ in found.get("regulars_consumer_lag", [])}
        return "regulars.service" in shown and "regulars.customer" in shown

    await wait_for(every_topic_shown)

    async def refused() -> float | None:
        found = await _scrape(services.services["intake"].url)
        assert _one(found, "regulars_webhook_deliveries_pending") >= 0
        got = [
            v
            for labels, v in found.get("regulars_webhook_deliveries_total", [])
            if labels["result"] == "refused"
        ]
        return got[0] if got else None

    assert (await wait_for(refused)) >= 1

    async def counted() -> float | None:
        found = await _scrape(services.services["followup"].url)
        got = [
            v
            for labels, v in found.get("regulars_messages", [])
            if labels == {"channel": "email", "status": "sent"}
        ]
        return got[0] if got else None

    # the count over the whole table is read at most twice a minute
    assert (await wait_for(counted, timeout=45)) >= 1

    feedback = await _scrape(services.services["feedback"].url)
    for clock in ("acknowledge", "resolve"):
        for escalated in ("yes", "no"):
            assert (
                _one(
                    feedback,
                    "regulars_recovery_sla_breaches_total",
                    clock=clock,
                    escalated=escalated,
                )
                >= 0
            )
