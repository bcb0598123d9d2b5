"""Replaying a service's dead letters once the cause is fixed.

A dead-lettered record sits on ``regulars.dead_letter.<service>`` with its original key,
value and headers, plus ``dlq_*`` headers naming where it came from; the service's
``dead_letters`` table notes each one. Replay reads the dead-letter topic from the start,
publishes each record not yet replayed back to its original topic (``acks=all``, the
dlq_* headers dropped), then marks its row replayed. The consuming service applies it
like any event; every other consumer of that topic already has it in its inbox and
skips it. A record that fails again is dead-lettered again, as a new row.

The end of the topic is found by reading until nothing more comes for ``idle_seconds``,
not by ``end_offsets``: the embedded broker answers that wrongly (see EMBEDDED.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from regulars_events.topics import dead_letter_topic

from .kafka import KafkaConfig, producer
from .kafka import consumer as kafka_consumer

DLQ_HEADER_PREFIX = "dlq_"


@dataclass(frozen=True)
class Replayed:
    found: int  # dead-letter records read
    replayed: int  # published again now
    already: int  # replayed by an earlier run
    skipped: int  # not among the event ids asked for


@dataclass(frozen=True)
class _Parked:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: uuid.UUID | None
    origin: tuple[str, int, int]  # original topic, partition, offset


def _parked(record: Any) -> _Parked | None:
    headers = list(record.headers or ())
    meta = {k: v.decode() for k, v in headers if k.startswith(DLQ_HEADER_PREFIX)}
    try:
        origin = (
            meta["dlq_original_topic"],
            int(meta["dlq_original_partition"]),
            int(meta["dlq_original_offset"]),
        )
    except (KeyError, ValueError):
        return None  # not written by our consumer: leave it alone
    kept = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
    ce_id = dict(kept).get("ce_id", b"").decode()
    try:
        event_id = uuid.UUID(ce_id) if ce_id else None
    except ValueError:
        event_id = None
    return _Parked(record.key, record.value, kept, event_id, origin)


async def _read_all(kafka: KafkaConfig, topic: str, idle_seconds: float) -> list[Any]:
    consumer = kafka_consumer(kafka, None)
    await consumer.start()
    try:
        await consumer.topics()  # metadata, so the topic's partitions are known
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return []
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        records: list[Any] = []
        last_seen = time.monotonic()
        while time.monotonic() - last_seen < idle_seconds:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
                last_seen = time.monotonic()
        return records
    finally:
        await consumer.stop()


async def replay(
    kafka: KafkaConfig,
    conn: asyncpg.Connection,
    service: str,
    *,
    event_ids: Collection[uuid.UUID] | None = None,
    idle_seconds: float = 3.0,
) -> Replayed:
    """Publish the service's parked records again (those of ``event_ids`` only, if given).

    ``conn`` must have the service's schema on its search path.
    """
    records = [
        p
        for r in await _read_all(kafka, dead_letter_topic(service), idle_seconds)
        if (p := _parked(r)) is not None
    ]
    done = {
        (r["topic"], r["part"], r["kafka_offset"])
        for r in await conn.fetch(
            "SELECT topic, part, kafka_offset FROM dead_letters WHERE replayed_at IS NOT NULL"
        )
    }
    wanted = set(event_ids) if event_ids is not None else None
    todo, already, skipped = [], 0, 0
    seen: set[tuple[str, int, int]] = set()
    for parked in records:
        if parked.origin in seen:
            continue  # the same record parked twice (a dead-letter send retried)
        seen.add(parked.origin)
        if wanted is not None and parked.event_id not in wanted:
            skipped += 1
        elif parked.origin in done:
            already += 1
        else:
            todo.append(parked)
    if todo:
        prod = producer(kafka, f"regulars-{service}-dead-letter-replay")
        await prod.start()
        try:
            sent = [
                await prod.send(p.origin[0], value=p.value, key=p.key, headers=p.headers)
                for p in todo
            ]
            await asyncio.gather(*sent)  # every one acknowledged before any is marked
        finally:
            await prod.stop()
        for p in todo:
            marked = await conn.execute(
                "UPDATE dead_letters SET replayed_at = now()"
                " WHERE topic = $1 AND part = $2 AND kafka_offset = $3 AND replayed_at IS NULL",
                *p.origin,
            )
            if marked == "UPDATE 0":
                # Parked without its row (the database was away then): note it, replayed.
                await conn.execute(
                    "INSERT INTO dead_letters (event_id, topic, part, kafka_offset, error,"
                    " replayed_at) VALUES ($1, $2, $3, $4, 'noted at replay', now())",
                    p.event_id,
                    *p.origin,
                )
    return Replayed(len(seen), len(todo), already, skipped)


async def parked(conn: asyncpg.Connection, *, include_replayed: bool = False) -> list[Any]:
    """What the service on the connection's search path parked, oldest first."""
    return list(
        await conn.fetch(
            "SELECT event_id, type, topic, part, kafka_offset, error, parked_at,"
            " replayed_at FROM dead_letters WHERE $1 OR replayed_at IS NULL"
            " ORDER BY parked_at",
            include_replayed,
        )
    )


async def waiting(conn: asyncpg.Connection) -> int:
    """How many dead letters of the service on the search path wait for a replay."""
    return int(await conn.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"))
