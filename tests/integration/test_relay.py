"""The outbox relay on the real broker and database: each partition's rows go as one
batch, to the partition the default partitioner gives their key, in order; retention
counts from publication (the prune and a new cluster's re-publish alike), and inbox and
replayed dead letters are pruned after theirs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from harness import System, wait_for
from regulars_bus import outbox
from regulars_bus.kafka import KafkaConfig, admin_client, consumer
from regulars_bus.relay import OutboxRelay, partition_for
from regulars_events.catalogue import CustomerReplied
from regulars_events.envelope import Envelope
from regulars_runtime.db import create_pool
from regulars_runtime.migrations import apply, library_migrations


@pytest.fixture
async def relay_world(system: System) -> AsyncIterator[dict[str, Any]]:
    schema = f"relaytest_{uuid.uuid4().hex[:8]}"
    topic = f"regulars.{schema}"
    kafka = KafkaConfig(system.bootstrap, topic_partitions=4)
    conn = await asyncpg.connect(system.database_url)
    try:
        await apply(conn, schema, library_migrations())
    finally:
        await conn.close()
    pool = await create_pool(system.database_url, schema, max_size=4)
    relay = OutboxRelay(
        database_url=system.database_url,
        pool=pool,
        schema=schema,
        kafka=kafka,
        topics=[topic],
        batch_size=200,
        poll_interval=0.2,
    )
    try:
        yield {"schema": schema, "topic": topic, "kafka": kafka, "pool": pool, "relay": relay}
    finally:
        await pool.close()


def _event(customer: str, n: int) -> Envelope:
    event = CustomerReplied(customer_id=customer, channel="sms", text=f"{customer} #{n}")
    return Envelope.wrap(event, source="test", shop_id="00000000-0000-0000-0000-000000000001")


async def _write(pool: asyncpg.Pool, schema: str, topic: str, envelopes: list[Envelope]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.write(conn, envelopes, schema)
        # this run's own topic, so nothing else reads or writes it
        await conn.execute("UPDATE outbox SET topic = $1", topic)


async def _read(kafka: KafkaConfig, topic: str, n: int) -> list[Any]:
    reader = consumer(kafka, None)
    await reader.start()
    try:
        await reader.topics()
        partitions = reader.partitions_for_topic(topic) or set()
        reader.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await reader.seek_to_beginning()
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(records) < n and asyncio.get_running_loop().time() < deadline:
            for batch in (await reader.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await reader.stop()


async def test_each_keys_events_arrive_in_order_on_the_default_partition(
    relay_world: dict[str, Any],
) -> None:
    w = relay_world
    customers = [f"c-{i}" for i in range(6)]
    envelopes = [_event(c, n) for n in range(40) for c in customers]
    await _write(w["pool"], w["schema"], w["topic"], envelopes)
    stop = asyncio.Event()
    task = asyncio.create_task(w["relay"].run(stop))
    try:

        async def all_published() -> bool:
            return not await w["pool"].fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )

        await wait_for(all_published, timeout=30)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 10)
    records = await _read(w["kafka"], w["topic"], len(envelopes))
    assert len(records) == len(envelopes)
    order = {str(e.id): i for i, e in enumerate(envelopes)}
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        assert r.partition == partition_for(r.key, [0, 1, 2, 3])
        by_key.setdefault(r.key, []).append(order[dict(r.headers)["ce_id"].decode()])
    assert len(by_key) == len(customers)
    for positions in by_key.values():
        assert positions == sorted(positions)  # a customer's events in the order written
    assert not await w["pool"].fetchval("SELECT count(*) FROM outbox WHERE published_to IS NULL")


async def test_retention_counts_from_publication_and_prunes_inbox_and_dead_letters(
    relay_world: dict[str, Any],
) -> None:
    w = relay_world
    pool, relay = w["pool"], w["relay"]
    day = timedelta(days=1)
    async with pool.acquire() as conn:
        for label, created, published in (
            ("waited long, published lately", 12 * day, 2 * day),
            ("published long ago", 12 * day, 9 * day),
            ("unpublished", 12 * day, None),
        ):
            await conn.execute(
                "INSERT INTO outbox (event_id, topic, key, headers, value, created_at,"
                " published_at, published_to) VALUES ($1, $2, 'k', '[]', $3,"
                " now() - $4::interval, now() - $5::interval, 'old-cluster')",
                uuid.uuid4(),
                w["topic"],
                label.encode(),
                created,
                published,
            )
        for age in (20 * day, 3 * day):
            await conn.execute(
                "INSERT INTO inbox (event_id, type, processed_at)"
                " VALUES ($1, 'x', now() - $2::interval)",
                uuid.uuid4(),
                age,
            )
        for error, parked, replayed in (
            ("replayed long ago", 60 * day, 40 * day),
            ("replayed lately", 60 * day, 2 * day),
            ("waiting", 60 * day, None),
        ):
            await conn.execute(
                "INSERT INTO dead_letters (topic, part, kafka_offset, error, parked_at,"
                " replayed_at) VALUES ('t', 0, 0, $1, now() - $2::interval,"
                " now() - $3::interval)",
                error,
                parked,
                replayed,
            )

    # a new cluster: what was published within the retention window goes out again,
    # however long it waited before it was first published
    admin = admin_client(w["kafka"], "relaytest-admin")
    await admin.start()
    try:
        await relay._check_cluster(admin)
    finally:
        await admin.close()
    again = await pool.fetch("SELECT value FROM outbox WHERE published_at IS NULL")
    assert sorted(r["value"] for r in again) == [b"unpublished", b"waited long, published lately"]
    await pool.execute(
        "UPDATE outbox SET published_at = now() - interval '2 days'"
        " WHERE value = 'waited long, published lately'"
    )

    await relay._prune()
    kept = await pool.fetch("SELECT value FROM outbox ORDER BY value")
    assert [r["value"] for r in kept] == [b"unpublished", b"waited long, published lately"]
    ages = await pool.fetch("SELECT now() - processed_at AS age FROM inbox")
    assert [r["age"] < 4 * day for r in ages] == [True]
    left = await pool.fetch("SELECT error FROM dead_letters ORDER BY error")
    assert [r["error"] for r in left] == ["replayed lately", "waiting"]
