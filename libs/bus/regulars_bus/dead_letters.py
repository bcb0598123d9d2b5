"""Replaying a service's dead letters once the cause is fixed.

A dead-lettered record is kept in the service's ``dead_letters`` table with its original
key, value and headers (and copied to ``regulars.dead_letter.<service>``, with ``dlq_*``
headers naming where it came from, for tools). Replay reads the table, publishes each
record not yet replayed back to its original topic (``acks=all``), then marks its row
replayed, in one transaction that holds the rows. The consuming service applies it like
any event; every other consumer of that topic already has it in its inbox and skips it.
A record that fails again is dead-lettered again, as a new row.

Rows parked before the table kept payloads are found on the dead-letter topic, read to
its end: until nothing more comes for ``idle_seconds``, not by ``end_offsets``, which the
embedded broker answers wrongly (see EMBEDDED.md).
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

from .consumer import headers_from_json
from .kafka import KafkaConfig, producer
from .kafka import consumer as kafka_consumer

DLQ_HEADER_PREFIX = "dlq_"


@dataclass(frozen=True)
class Replayed:
    found: int  # dead-letter records read
    replayed: int  # published again now
    already: int  # replayed by an earlier run
    skipped: int  # not among the event ids asked for
    missing: int = 0  # parked before payloads were kept, and no longer on the topic


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
    from_topic: bool = False,
) -> Replayed:
    """Publish the service's parked records again (those of ``event_ids`` only, if given).

    The records come from the ``dead_letters`` table, so a broker that lost its log loses
    no dead letter. The dead-letter topic is read only for rows parked before the table
    kept payloads, and with ``from_topic`` for records parked with no row at all.
    ``conn`` must have the service's schema on its search path.
    """
    wanted = set(event_ids) if event_ids is not None else None
    async with conn.transaction():
        rows = await conn.fetch("SELECT id, event_id, replayed_at FROM dead_letters")
        asked = [r for r in rows if wanted is None or r["event_id"] in wanted]
        already = sum(1 for r in asked if r["replayed_at"] is not None)
        # Locked: a second replay running at the same time leaves these to this one.
        todo = await conn.fetch(
            "SELECT id, event_id, topic, part, kafka_offset, record_key, record_value,"
            " record_headers FROM dead_letters WHERE id = ANY($1) AND replayed_at IS NULL"
            " ORDER BY id FOR UPDATE SKIP LOCKED",
            [r["id"] for r in asked if r["replayed_at"] is None],
        )
        out: list[tuple[int | None, _Parked]] = [
            (
                r["id"],
                _Parked(
                    r["record_key"],
                    r["record_value"],
                    headers_from_json(r["record_headers"]),
                    r["event_id"],
                    (r["topic"], r["part"], r["kafka_offset"]),
                ),
            )
            for r in todo
            if r["record_headers"] is not None
        ]
        legacy = {
            (r["topic"], r["part"], r["kafka_offset"]): r["id"]
            for r in todo
            if r["record_headers"] is None
        }
        missing = 0
        if legacy or from_topic:
            known = {
                (r["topic"], r["part"], r["kafka_offset"])
                for r in await conn.fetch("SELECT topic, part, kafka_offset FROM dead_letters")
            }
            found: dict[tuple[str, int, int], _Parked] = {}
            for record in await _read_all(kafka, dead_letter_topic(service), idle_seconds):
                p = _parked(record)
                if p is not None and (wanted is None or p.event_id in wanted):
                    found.setdefault(p.origin, p)
            for origin, row_id in legacy.items():
                if origin in found:
                    out.append((row_id, found[origin]))
                else:
                    missing += 1  # parked before payloads were kept; gone with the log
            if from_topic:
                out += [(None, p) for origin, p in found.items() if origin not in known]
        if out:
            prod = producer(kafka, f"regulars-{service}-dead-letter-replay")
            await prod.start()
            try:
                sent = [
                    await prod.send(p.origin[0], value=p.value, key=p.key, headers=p.headers)
                    for _, p in out
                ]
                await asyncio.gather(*sent)  # every one acknowledged before any is marked
            finally:
                await prod.stop()
            await conn.execute(
                "UPDATE dead_letters SET replayed_at = now() WHERE id = ANY($1)",
                [row_id for row_id, _ in out if row_id is not None],
            )
            for row_id, p in out:
                if row_id is None:
                    # Parked without its row (the database was away then): note it, replayed.
                    await conn.execute(
                        "INSERT INTO dead_letters (event_id, topic, part, kafka_offset, error,"
                        " replayed_at) VALUES ($1, $2, $3, $4, 'noted at replay', now())",
                        p.event_id,
                        *p.origin,
                    )
    return Replayed(
        found=len(rows) + sum(1 for row_id, _ in out if row_id is None),
        replayed=len(out),
        already=already,
        skipped=len(rows) - len(asked),
        missing=missing,
    )


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
