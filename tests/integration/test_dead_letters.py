"""Dead letters, end to end on the real broker and database: an event a handler cannot
apply is parked on the dead-letter topic and noted; once the cause is fixed, replay
publishes it again and it is applied exactly once; a second replay publishes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from harness import System, wait_for
from regulars_bus.consumer import EventConsumer, RetryPolicy
from regulars_bus.dead_letters import replay
from regulars_bus.kafka import KafkaConfig, admin_client, ensure_topics, producer
from regulars_events.catalogue import CustomerReplied, ServiceCompleted
from regulars_events.envelope import Envelope
from regulars_events.topics import dead_letter_topic, topic_for
from regulars_runtime.db import create_pool
from regulars_runtime.migrations import apply, library_migrations

# Names of this run's own: a broker named by KAFKA_BOOTSTRAP_SERVERS outlives a test run.
SERVICE = f"replaytest_{uuid.uuid4().hex[:8]}"
TOPIC = f"regulars.{SERVICE}"


@pytest.fixture
async def world(system: System) -> AsyncIterator[dict[str, Any]]:
    """A consumer of its own (schema, topic, dead-letter topic), whose handler fails for
    the event ids in ``broken``."""
    kafka = KafkaConfig(system.bootstrap)
    conn = await asyncpg.connect(system.database_url)
    try:
        await apply(conn, SERVICE, library_migrations())
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {SERVICE}.applied (event_id uuid)")
    finally:
        await conn.close()
    admin = admin_client(kafka, "replaytest-admin")
    await admin.start()
    try:
        await ensure_topics(admin, kafka, [TOPIC, dead_letter_topic(SERVICE)])
    finally:
        await admin.close()
    pool = await create_pool(system.database_url, SERVICE, max_size=4)
    broken: set[uuid.UUID] = set()

    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if envelope.id in broken:
            raise ValueError(f"cannot apply {envelope.id} yet")
        await conn.execute("INSERT INTO applied (event_id) VALUES ($1)", envelope.id)

    consumer = EventConsumer(
        service=SERVICE,
        pool=pool,
        kafka=kafka,
        topics=[TOPIC],
        handle=handle,
        wants=lambda _t: True,
        retry=RetryPolicy(attempts=2, first_backoff=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield {"kafka": kafka, "pool": pool, "broken": broken}
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 20)
        await pool.close()


async def _publish(kafka: KafkaConfig, envelopes: list[Envelope]) -> None:
    prod = producer(kafka, "replaytest-producer")
    await prod.start()
    try:
        for e in envelopes:
            await prod.send_and_wait(TOPIC, value=e.value, key=e.key, headers=e.headers)
    finally:
        await prod.stop()


def _reply(n: int) -> Envelope:
    event = CustomerReplied(customer_id=f"c-{n}", channel="sms", text=f"reply {n}")
    return Envelope.wrap(event, source="test", shop_id=str(uuid.uuid4()))


async def test_a_dead_letter_is_replayed_once_the_cause_is_fixed(world: dict[str, Any]) -> None:
    kafka, pool, broken = world["kafka"], world["pool"], world["broken"]
    envelopes = [_reply(n) for n in range(4)]
    bad = envelopes[1]
    broken.add(bad.id)
    await _publish(kafka, envelopes)

    async def applied() -> list[uuid.UUID]:
        return [r["event_id"] for r in await pool.fetch("SELECT event_id FROM applied")]

    async def parked() -> list[asyncpg.Record]:
        return list(await pool.fetch("SELECT * FROM dead_letters"))

    rows = await wait_for(parked)
    await wait_for(lambda: _has(applied, 3))
    assert [r["event_id"] for r in rows] == [bad.id]  # one bad event parks alone
    assert bad.id not in await applied()

    broken.clear()  # the cause is fixed
    async with pool.acquire() as conn:
        first = await replay(kafka, conn, SERVICE, idle_seconds=1.5)
    assert (first.found, first.replayed, first.already) == (1, 1, 0)
    await wait_for(lambda: _has(applied, 4))
    async with pool.acquire() as conn:
        second = await replay(kafka, conn, SERVICE, idle_seconds=1.5)
    assert (second.found, second.replayed, second.already) == (1, 0, 1)
    await asyncio.sleep(1)  # a second application would show by now
    ids = await applied()
    assert sorted(ids) == sorted(e.id for e in envelopes)  # each exactly once
    assert all(r["replayed_at"] is not None for r in await parked())


async def test_replay_can_pick_events_by_id(world: dict[str, Any]) -> None:
    kafka, pool, broken = world["kafka"], world["pool"], world["broken"]
    envelopes = [_reply(n) for n in range(10, 13)]
    broken.update(e.id for e in envelopes)
    await _publish(kafka, envelopes)

    async def parked_now() -> bool:
        rows = await pool.fetch(
            "SELECT event_id FROM dead_letters WHERE event_id = ANY($1) AND replayed_at IS NULL",
            [e.id for e in envelopes],
        )
        return len(rows) == 3

    await wait_for(parked_now)
    broken.clear()
    async with pool.acquire() as conn:
        done = await replay(kafka, conn, SERVICE, event_ids=[envelopes[0].id], idle_seconds=1.5)
    assert done.replayed == 1 and done.skipped >= 2
    await wait_for(
        lambda: _has_id(pool, envelopes[0].id),
    )
    waiting = await pool.fetch(
        "SELECT event_id FROM dead_letters WHERE event_id = ANY($1) AND replayed_at IS NULL",
        [e.id for e in envelopes],
    )
    assert {r["event_id"] for r in waiting} == {envelopes[1].id, envelopes[2].id}


async def test_replay_works_after_the_broker_lost_its_log(world: dict[str, Any]) -> None:
    # The dead letter is kept in PostgreSQL, payload and headers: the dead-letter topic
    # gone (an embedded broker restarted, a cluster rebuilt), it is replayed all the same.
    kafka, pool, broken = world["kafka"], world["pool"], world["broken"]
    lost = _reply(20)
    broken.add(lost.id)
    await _publish(kafka, [lost])

    async def parked() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await pool.fetchrow(
            "SELECT * FROM dead_letters WHERE event_id = $1 AND replayed_at IS NULL", lost.id
        )
        return row

    row = await wait_for(parked)
    assert row["record_value"] == lost.value and row["record_key"] == lost.key
    admin = admin_client(kafka, "replaytest-admin")
    await admin.start()
    try:
        await admin.delete_topics([dead_letter_topic(SERVICE)])
    finally:
        await admin.close()
    broken.clear()
    async with pool.acquire() as conn:
        done = await replay(kafka, conn, SERVICE, event_ids=[lost.id], idle_seconds=0.5)
    assert done.replayed == 1 and done.missing == 0
    await wait_for(lambda: _has_id(pool, lost.id))
    await asyncio.sleep(1)
    count = await pool.fetchval("SELECT count(*) FROM applied WHERE event_id = $1", lost.id)
    assert count == 1


async def _has(applied: Any, n: int) -> bool:
    return len(await applied()) >= n


async def _has_id(pool: asyncpg.Pool, event_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT true FROM applied WHERE event_id = $1", event_id))


async def test_the_cli_lists_and_replays_a_services_dead_letters(running: System) -> None:
    # A record no consumer can read (no CloudEvents headers) on a topic followup consumes:
    # followup parks it at once; replay sends it back, and it is parked again, as a new row.
    kafka = KafkaConfig(running.bootstrap)
    marker = uuid.uuid4().hex
    prod = producer(kafka, "cli-test")
    await prod.start()
    try:
        await prod.send_and_wait(
            topic_for(ServiceCompleted.type),
            value=b'{"garbled": "%s"}' % marker.encode(),
            key=b"shop:nobody",
            headers=[("ce_specversion", b"1.0"), ("marker", marker.encode())],
        )
    finally:
        await prod.stop()

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "regulars_cli.main", "dead-letters", *args],
            env=running.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    async def parked(n: int) -> list[dict[str, Any]] | None:
        rows = json.loads(cli("list", "--service", "followup", "--all", "--json"))
        mine = [r for r in rows if "missing CloudEvents headers" in r["error"]]
        return mine if len(mine) >= n else None

    before = len(await wait_for(lambda: parked(1)))
    out = cli("replay", "--service", "followup")
    assert "followup: " in out and "published again" in out, out
    rows = await wait_for(lambda: parked(before + 1))
    assert sum(1 for r in rows if r["replayed_at"] is None) == 1  # the new one waits
    assert "missing CloudEvents headers" in cli("list", "--service", "followup")
