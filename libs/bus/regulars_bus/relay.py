"""Outbox -> Kafka.

One relay per service is active at a time (an advisory lock elects it, so per-key order
holds); others stand by. It claims unpublished rows with FOR UPDATE SKIP LOCKED, publishes
them with acks=all, waits for every acknowledgement, then marks them published, all in
one transaction: a crash before the mark re-publishes (consumers' inboxes drop the copy),
never loses. LISTEN/NOTIFY wakes it at commit; polling covers a missed notification.

Per-key order survives a partial failure: each partition's rows of a round go as one
batch, acknowledged or failed as a whole (:func:`send_rows`), and only the rows of
acknowledged batches are marked. A row the broker refuses for good (too large, not
authorised) is parked with the broker's error instead of stalling the rows behind it.
With ``KAFKA_ENABLE_IDEMPOTENCE`` (Apache Kafka) the producer's retries cannot reorder or
duplicate within a partition either.

The leader also prunes, in small batches: outbox rows past the retention window counted
from publication, inbox rows past theirs (longer), dead letters replayed long ago.

When the cluster id it publishes to changes (the embedded broker restarted with an empty
log, or ops pointed us at a new cluster), every row of the retention window that went to
another cluster is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka import errors as Errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from regulars_events.topics import all_topics, dead_letter_topic

from .kafka import KafkaConfig, admin_client, cluster_id, ensure_topics, producer
from .outbox import notify_channel
from .supervise import keep_running

log = logging.getLogger(__name__)


def _lock_key(schema: str) -> int:
    return zlib.crc32(f"regulars.relay.{schema}".encode())


class OutboxRelay:
    def __init__(
        self,
        *,
        database_url: str,
        pool: asyncpg.Pool,
        schema: str,
        kafka: KafkaConfig,
        retention: timedelta = timedelta(days=7),
        inbox_retention: timedelta = timedelta(days=14),
        dead_letter_retention: timedelta = timedelta(days=30),
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        cluster_check_interval: float = 2.0,
        on_published: Any = None,
        on_backlog: Any = None,
        on_cluster_change: Any = None,
        on_parked: Any = None,
        topics: Sequence[str] | None = None,
    ) -> None:
        self.database_url = database_url
        #: what a new cluster must have before anything is re-published: the service's own
        #: topics (under Kafka ACLs the others look missing); none given: every topic
        self.topics = (
            list(topics) if topics is not None else [*all_topics(), dead_letter_topic(schema)]
        )
        self.pool = pool
        self.schema = schema
        self.kafka = kafka
        self.retention = retention
        self.inbox_retention = inbox_retention
        self.dead_letter_retention = dead_letter_retention
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.cluster_check_interval = cluster_check_interval
        self.on_published = on_published
        self.on_backlog = on_backlog
        self.on_cluster_change = on_cluster_change
        self.on_parked = on_parked
        #: partitions whose last batch the broker refused: their rows go one at a time
        self._solo: set[TopicPartition] = set()
        #: rows were held back by the per-partition cap: go again at once
        self.more = False
        self._wake = asyncio.Event()
        self._cluster: str | None = None
        self.is_leader = False

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("outbox relay", self._run_once, stop)

    async def _run_once(self, stop: asyncio.Event) -> None:
        # A new attempt may meet another cluster: check it before publishing anything.
        self._cluster = None
        listen = await asyncpg.connect(
            self.database_url, server_settings={"search_path": self.schema}
        )
        try:
            while not stop.is_set():
                if await listen.fetchval("SELECT pg_try_advisory_lock($1)", _lock_key(self.schema)):
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
            if stop.is_set():
                return
            self.is_leader = True
            await listen.add_listener(notify_channel(self.schema), self._notified)
            prod = producer(self.kafka, f"regulars-{self.schema}-relay")
            admin = admin_client(self.kafka, f"regulars-{self.schema}-relay-admin")
            await prod.start()
            try:
                await admin.start()
                try:
                    await self._publish_loop(stop, prod, admin, listen)
                finally:
                    await admin.close()
            finally:
                await prod.stop()
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await listen.close()

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _publish_loop(
        self,
        stop: asyncio.Event,
        prod: AIOKafkaProducer,
        admin: AIOKafkaAdminClient,
        listen: asyncpg.Connection,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_check = 0.0
        next_prune = loop.time() + 60
        while not stop.is_set():
            now = loop.time()
            if now >= next_check:
                await self._check_cluster(admin)
                await listen.execute("SELECT 1")  # the lock dies with this connection
                next_check = now + self.cluster_check_interval
            if now >= next_prune:
                await self._prune()
                next_prune = now + 600
            published = await self.publish_batch(prod)
            if published >= self.batch_size or self.more:
                continue  # more is waiting
            self._wake.clear()
            if self.on_backlog is not None and published == 0:
                self.on_backlog(0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    _first(self._wake.wait(), stop.wait()),
                    min(self.poll_interval, self.cluster_check_interval),
                )

    async def _check_cluster(self, admin: AIOKafkaAdminClient) -> None:
        current = await cluster_id(admin)
        if current == self._cluster:
            return
        await ensure_topics(admin, self.kafka, self.topics)
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE outbox SET published_at = NULL, published_to = NULL"
                " WHERE published_at IS NOT NULL AND published_to IS DISTINCT FROM $1"
                " AND published_at > now() - $2::interval",
                current,
                self.retention,
            )
        again = int(status.split()[-1])
        if self._cluster is not None or again:
            log.warning(
                "new Kafka cluster: re-publishing the retained outbox",
                extra={"cluster_id": current, "rows": again},
            )
            if self.on_cluster_change is not None:
                self.on_cluster_change()
        self._cluster = current

    async def publish_batch(self, prod: AIOKafkaProducer) -> int:
        """One round: the rows published or parked (rows left for the next round are not)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, headers, value FROM outbox"
                " WHERE published_at IS NULL AND parked_at IS NULL"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                self.more = False
                return 0
            done = await send_rows(prod, rows, self._solo)
            if done.sent:
                await conn.execute(
                    "UPDATE outbox SET published_at = now(), published_to = $2 WHERE id = ANY($1)",
                    done.sent,
                    self._cluster,
                )
            if done.refused:
                await conn.executemany(
                    "UPDATE outbox SET parked_at = now(), park_error = $2 WHERE id = $1",
                    [(row_id, error) for row_id, error in done.refused.items()],
                )
        for row_id, error in done.refused.items():
            log.error(
                "the broker refuses an outbox row for good; parked",
                extra={"outbox_id": row_id, "error": error},
            )
        if done.refused and self.on_parked is not None:
            self.on_parked(len(done.refused))
        if done.sent and self.on_published is not None:
            self.on_published(len(done.sent))
        # rows held back by the per-partition cap go next round, at once; a failed
        # partition's rows wait for the usual pause
        self.more = done.capped and not done.failed
        return len(done.sent) + len(done.refused)

    async def _prune(self) -> None:
        """Delete what is past its retention, in small batches (nothing locked for long).
        The outbox counts from publication; the inbox outlives it, so an event published
        again within the outbox's retention is still recognised as applied."""
        for sql, window in (
            (
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                " WHERE published_at < now() - $1::interval LIMIT $2)",
                self.retention,
            ),
            (
                "DELETE FROM inbox WHERE event_id IN (SELECT event_id FROM inbox"
                " WHERE processed_at < now() - $1::interval LIMIT $2)",
                self.inbox_retention,
            ),
            (
                "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                " WHERE replayed_at < now() - $1::interval LIMIT $2)",
                self.dead_letter_retention,
            ),
        ):
            await prune(self.pool, sql, window)


#: rows deleted per statement, and statements per prune and table
PRUNE_BATCH = 1000
PRUNE_BATCHES = 200


async def prune(pool: asyncpg.Pool, sql: str, window: timedelta) -> int:
    deleted = 0
    for _ in range(PRUNE_BATCHES):
        status = await pool.execute(sql, window, PRUNE_BATCH)
        count = int(status.split()[-1])
        deleted += count
        if count < PRUNE_BATCH:
            break
        await asyncio.sleep(0.05)  # let other work at the table between batches
    return deleted


#: what the broker says of a record it will never take: parked, not retried
REFUSED: tuple[type[BaseException], ...] = (
    Errors.MessageSizeTooLargeError,
    Errors.RecordListTooLargeError,
    Errors.RecordTooLargeError,
    Errors.TopicAuthorizationFailedError,
    Errors.InvalidTopicError,
    Errors.CorruptRecordException,
    Errors.UnsupportedForMessageFormatError,
    Errors.PolicyViolationError,
    Errors.InvalidTimestampError,
)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition aiokafka's and Java's default partitioner give a key."""
    ordered = sorted(partitions)
    index = int(murmur2(key)) & 0x7FFFFFFF
    return ordered[index % len(ordered)]


@dataclass
class Round:
    """What one relay round did with the rows it claimed."""

    sent: list[int] = field(default_factory=list)  # acknowledged: mark published
    refused: dict[int, str] = field(default_factory=dict)  # refused for good: park
    failed: bool = False  # a partition's batch failed: its rows wait
    capped: bool = False  # rows held back by the per-partition byte cap


async def send_rows(prod: Any, rows: Sequence[Any], solo: set[TopicPartition]) -> Round:
    """Publish the rows, each partition's as one batch (one produce, acknowledged or not
    as a whole), so a failure can never put a key's later event before an earlier one:
    a partition whose batch fails has none of its rows marked, and the rows after them
    (in the batch or held back) wait with them. A batch is capped below the producer's
    batch size, so aiokafka never splits it. A partition whose batch the broker refused
    for good (or in ``solo``) sends its rows one at a time, in order, to park only the one
    it will not take."""
    done = Round()
    by_partition: dict[TopicPartition, list[Any]] = {}
    partitions: dict[str, list[int]] = {}
    for row in rows:
        topic = row["topic"]
        if topic not in partitions:
            try:
                partitions[topic] = sorted(await prod.partitions_for(topic))
            except REFUSED as exc:
                partitions[topic] = []
                log.error("topic refused", extra={"topic": topic, "error": repr(exc)})
                done.refused.update({r["id"]: repr(exc) for r in rows if r["topic"] == topic})
            except Exception as exc:
                partitions[topic] = []
                done.failed = True
                log.warning("no metadata for a topic", extra={"topic": topic, "error": repr(exc)})
        if not partitions[topic]:
            continue
        tp = TopicPartition(topic, partition_for(row["key"], partitions[topic]))
        by_partition.setdefault(tp, []).append(row)
    in_flight: list[tuple[TopicPartition, Any, list[Any]]] = []
    for tp, group in by_partition.items():
        if tp in solo:
            continue
        batch = prod.create_batch()
        taken = []
        for row in group:
            if (
                batch.append(
                    key=row["key"], value=row["value"], timestamp=None, headers=_headers(row)
                )
                is None
            ):
                done.capped = True
                break
            taken.append(row)
        try:
            future = await prod.send_batch(batch, tp.topic, partition=tp.partition)
        except Exception as exc:
            _failed(done, tp, taken, exc, solo)
            continue
        in_flight.append((tp, future, taken))
    results = await asyncio.gather(*(f for _, f, _ in in_flight), return_exceptions=True)
    for (tp, _, taken), result in zip(in_flight, results, strict=True):
        if isinstance(result, BaseException):
            _failed(done, tp, taken, result, solo)
        else:
            done.sent.extend(r["id"] for r in taken)
    for tp in [tp for tp in by_partition if tp in solo]:
        await _send_one_by_one(prod, tp, by_partition[tp], done)
        solo.discard(tp)
    return done


def _failed(
    done: Round, tp: TopicPartition, taken: list[Any], exc: BaseException, solo: set[TopicPartition]
) -> None:
    if isinstance(exc, REFUSED):
        if len(taken) == 1:
            done.refused[taken[0]["id"]] = repr(exc)[:2000]
            return
        solo.add(tp)  # which of them? one at a time, after this round's batches
    done.failed = True
    log.warning(
        "a partition's batch failed; its rows wait for the next round",
        extra={"partition": f"{tp.topic}/{tp.partition}", "rows": len(taken), "error": repr(exc)},
    )


async def _send_one_by_one(prod: Any, tp: TopicPartition, rows: Sequence[Any], done: Round) -> None:
    for row in rows:
        batch = prod.create_batch()
        batch.append(key=row["key"], value=row["value"], timestamp=None, headers=_headers(row))
        try:
            await (await prod.send_batch(batch, tp.topic, partition=tp.partition))
        except REFUSED as exc:
            done.refused[row["id"]] = repr(exc)[:2000]
            continue
        except Exception as exc:
            done.failed = True
            log.warning(
                "a partition's row failed; it and the rows after it wait",
                extra={"partition": f"{tp.topic}/{tp.partition}", "error": repr(exc)},
            )
            return
        done.sent.append(row["id"])


def _headers(row: Any) -> list[tuple[str, bytes]]:
    headers = row["headers"]
    if isinstance(headers, (str, bytes)):
        headers = orjson.loads(headers)
    return [(k, v.encode()) for k, v in headers]


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def backlog(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL"
        )
    )


async def parked_rows(conn: asyncpg.Connection) -> int:
    """Outbox rows the broker refused for good (``park_error`` says why)."""
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL"))


async def replay_since(conn: asyncpg.Connection, since: Any) -> int:
    """Mark published rows created since ``since`` for publishing again (``outbox replay``)."""
    status = await conn.execute(
        "UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL AND created_at >= $1",
        since,
    )
    return int(status.split()[-1])
