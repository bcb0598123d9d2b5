"""The consumer under faults, on the real broker and database: a record that keeps failing
holds only its own partition and is dead-lettered with its payload once its budget is
spent; SIGTERM and a rebalance do not wait on a stuck record but abandon it, rolled back
and uncommitted, so it comes again and is applied once; a record held on a partition that
is revoked does not crash the consumer."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from harness import System, wait_for
from regulars_bus.consumer import EventConsumer, RetryLater, RetryPolicy, headers_from_json
from regulars_bus.kafka import KafkaConfig, admin_client, ensure_topics, producer
from regulars_events.catalogue import CustomerReplied
from regulars_events.envelope import Envelope
from regulars_events.topics import dead_letter_topic
from regulars_runtime.db import create_pool
from regulars_runtime.migrations import apply, library_migrations


@dataclass
class World:
    service: str
    topic: str
    kafka: KafkaConfig
    pool: asyncpg.Pool
    #: event id -> what the handler does with it before applying (raise, hang...)
    trouble: dict[uuid.UUID, Callable[[asyncpg.Connection], Any]] = field(default_factory=dict)
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    async def handle(self, envelope: Envelope, conn: asyncpg.Connection) -> None:
        trouble = self.trouble.get(envelope.id)
        if trouble is not None:
            await trouble(conn)
        await conn.execute("INSERT INTO applied (event_id) VALUES ($1)", envelope.id)

    def consumer(self, retry: RetryPolicy | None = None, drain: float = 10.0) -> EventConsumer:
        return EventConsumer(
            service=self.service,
            pool=self.pool,
            kafka=self.kafka,
            topics=[self.topic],
            handle=self.handle,
            wants=lambda _t: True,
            retry=retry or RetryPolicy(),
            drain=drain,
        )

    def start(self, consumer: EventConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
        # _run, not run: a crash must fail the test, not be restarted quietly
        stop = asyncio.Event()
        task = asyncio.create_task(consumer._run(stop))
        self.tasks.append((stop, task))
        return stop, task

    async def publish(self, envelope: Envelope, partition: int) -> None:
        prod = producer(self.kafka, f"{self.service}-producer")
        await prod.start()
        try:
            await prod.send_and_wait(
                self.topic,
                value=envelope.value,
                key=envelope.key,
                headers=envelope.headers,
                partition=partition,
            )
        finally:
            await prod.stop()

    async def applied(self) -> list[uuid.UUID]:
        return [r["event_id"] for r in await self.pool.fetch("SELECT event_id FROM applied")]


@pytest.fixture
async def world(system: System) -> AsyncIterator[World]:
    """A schema, a 4-partition topic and a consumer group of this test's own."""
    service = f"faults_{uuid.uuid4().hex[:8]}"
    topic = f"regulars.{service}"
    kafka = KafkaConfig(system.bootstrap, topic_partitions=4)
    conn = await asyncpg.connect(system.database_url)
    try:
        await apply(conn, service, library_migrations())
        await conn.execute(f"CREATE TABLE {service}.applied (event_id uuid)")
    finally:
        await conn.close()
    admin = admin_client(kafka, f"{service}-admin")
    await admin.start()
    try:
        await ensure_topics(admin, kafka, [topic, dead_letter_topic(service)])
    finally:
        await admin.close()
    pool = await create_pool(system.database_url, service, max_size=8)
    w = World(service, topic, kafka, pool)
    try:
        yield w
    finally:
        for stop, _ in w.tasks:
            stop.set()
        for _, task in w.tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 30)
        await pool.close()


def reply(n: int) -> Envelope:
    event = CustomerReplied(customer_id=f"c-{n}", channel="sms", text=f"reply {n}")
    return Envelope.wrap(event, source="test", shop_id=str(uuid.uuid4()))


def always(exc: BaseException) -> Callable[[asyncpg.Connection], Any]:
    async def fail(_conn: asyncpg.Connection) -> None:
        raise exc

    return fail


def hang_once(seen: list[str]) -> Callable[[asyncpg.Connection], Any]:
    """The first application hangs in the database (its transaction open); later ones pass."""

    async def hang(conn: asyncpg.Connection) -> None:
        if not seen:
            seen.append("hung")
            await conn.execute("INSERT INTO applied (event_id) VALUES (gen_random_uuid())")
            await conn.execute("SELECT pg_sleep(600)")

    return hang


async def sleeping_backends(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query LIKE 'SELECT pg_sleep(600)%' AND state = 'active'"
        )
    )


async def test_a_record_failing_transiently_holds_only_its_partition_then_is_dead_lettered(
    world: World,
) -> None:
    stuck = reply(0)
    # a serialization failure every time: transient, with the database answering
    world.trouble[stuck.id] = always(
        asyncpg.exceptions.SerializationError("could not serialize access")
    )
    retry = RetryPolicy(first_backoff=0.05, max_backoff=0.5, transient_for=6.0)
    world.start(world.consumer(retry))
    await world.publish(stuck, partition=0)
    others = [reply(n) for n in range(1, 13)]
    for n, envelope in enumerate(others):
        await world.publish(envelope, partition=1 + n % 3)

    async def others_applied() -> bool:
        return set(await world.applied()) >= {e.id for e in others}

    # the other partitions flow while partition 0 retries its record
    await wait_for(others_applied, timeout=5)
    assert stuck.id not in await world.applied()
    assert not await world.pool.fetchval("SELECT count(*) FROM dead_letters")

    async def parked() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await world.pool.fetchrow(
            "SELECT * FROM dead_letters WHERE event_id = $1", stuck.id
        )
        return row

    # ...not forever: past its transient window it is dead-lettered, payload and all
    row = await wait_for(parked, timeout=20)
    assert "SerializationError" in row["error"]
    assert row["record_value"] == stuck.value and row["record_key"] == stuck.key
    assert dict(headers_from_json(row["record_headers"]))["ce_id"] == str(stuck.id).encode()
    assert row["attempts"] > 1

    # and the partition moves on
    after = reply(99)
    await world.publish(after, partition=0)
    await wait_for(lambda: _has(world, after.id), timeout=10)


async def test_a_handlers_bug_is_dead_lettered_after_its_attempts(world: World) -> None:
    bad = reply(0)
    world.trouble[bad.id] = always(KeyError("customer_id"))
    world.start(world.consumer(RetryPolicy(attempts=3, first_backoff=0.05, transient_for=600)))
    await world.publish(bad, partition=2)
    row = await wait_for(
        lambda: world.pool.fetchrow("SELECT * FROM dead_letters WHERE event_id = $1", bad.id),
        timeout=20,
    )
    assert row["attempts"] == 3 and "KeyError" in row["error"]


async def test_stop_abandons_a_stuck_record_uncommitted_and_it_comes_again(
    world: World,
) -> None:
    stuck = reply(0)
    seen: list[str] = []
    world.trouble[stuck.id] = hang_once(seen)
    stop, task = world.start(world.consumer(drain=1.0))
    await world.publish(stuck, partition=3)
    await wait_for(lambda: sleeping_backends(world.pool), timeout=20)

    stop.set()
    # the drain does not wait on the stuck record (600 s of pg_sleep)
    await asyncio.wait_for(asyncio.shield(task), 15)
    # its transaction was rolled back: nothing of it applied, its backend idle
    assert await sleeping_backends(world.pool) == 0
    assert await world.applied() == []

    # it was not committed: the next consumer of the group gets it, and applies it once
    world.start(world.consumer())
    await wait_for(lambda: _has(world, stuck.id), timeout=30)
    await asyncio.sleep(1)
    assert await world.applied() == [stuck.id]


async def test_a_revoke_abandons_in_flight_work_before_it_completes(world: World) -> None:
    stuck = reply(0)
    seen: list[str] = []
    world.trouble[stuck.id] = hang_once(seen)
    first = world.consumer(drain=1.0)
    _, first_task = world.start(first)
    await world.publish(stuck, partition=1)
    await wait_for(lambda: sleeping_backends(world.pool), timeout=20)

    # a second replica joins: a rebalance revokes the first one's partitions, and the
    # revoke does not complete with the stuck record's transaction still open
    world.start(world.consumer())

    async def abandoned() -> bool:
        return await sleeping_backends(world.pool) == 0

    await wait_for(abandoned, timeout=30)
    # whoever owns partition 1 now applies it, once
    await wait_for(lambda: _has(world, stuck.id), timeout=40)
    await asyncio.sleep(1)
    assert await world.applied() == [stuck.id]
    assert not first_task.done(), first_task  # the first replica goes on


async def test_a_held_record_of_a_revoked_partition_does_not_crash_the_consumer(
    world: World,
) -> None:
    # Two records wait for what they need, on partitions 1 and 2; each try takes 8 s, so
    # the new assignment is made while one is being tried (the former consumer then
    # paused a partition no longer its own: IllegalStateError, and it stopped). Two
    # members split the 4 partitions in halves, so one of the two moves while held.
    waiting = [reply(0), reply(1)]
    ready = asyncio.Event()

    async def needs_something(_conn: asyncpg.Connection) -> None:
        if not ready.is_set():
            await asyncio.sleep(8)
            raise RetryLater("what it needs has not arrived")

    for envelope in waiting:
        world.trouble[envelope.id] = needs_something
    retry = RetryPolicy(first_backoff=0.2, max_backoff=0.5)
    first = world.consumer(retry)
    _, first_task = world.start(first)
    await world.publish(waiting[0], partition=1)
    await world.publish(waiting[1], partition=2)

    async def held() -> bool:
        return len(first.parked) == 2

    await wait_for(held, timeout=20)
    _, second_task = world.start(world.consumer(retry))
    others = [reply(n) for n in range(2, 10)]
    for n, envelope in enumerate(others):
        await world.publish(envelope, partition=(0, 3)[n % 2])

    async def others_applied() -> bool:
        return set(await world.applied()) >= {e.id for e in others}

    # the rebalance comes and goes while the partitions are held; both replicas go on
    await wait_for(others_applied, timeout=40)
    assert not first_task.done(), first_task
    assert not second_task.done(), second_task
    ready.set()
    await wait_for(lambda: _has_all(world, [e.id for e in waiting]), timeout=30)
    assert not first_task.done(), first_task
    assert not second_task.done(), second_task
    await asyncio.sleep(1)
    applied = await world.applied()
    assert sorted(applied) == sorted(e.id for e in [*waiting, *others])


async def _has_all(world: World, event_ids: list[uuid.UUID]) -> bool:
    return set(event_ids) <= set(await world.applied())


async def _has(world: World, event_id: uuid.UUID) -> bool:
    return event_id in await world.applied()
