"""Kafka -> handler, with an inbox for exactly-once effect.

Each record is applied in a PostgreSQL transaction that also records its event id in
the inbox, so a redelivered event is recognised and skipped. Records fetched together
from one partition share that transaction (one commit for a backlog of them, not one
each); if any of them fails, the transaction is rolled back and they are applied one per
transaction, so the failure stays with its record. Offsets are committed by
hand after the effect commits. A handler error is retried with backoff; after the last
try the record goes to the dead-letter topic with the error in its headers and the
partition moves on. A handler that raises RetryLater (what it needs travels on another
topic and has not been applied yet) parks its partition instead: paused, rewound to that
record, resumed after a backoff, while every other partition keeps flowing, so the event
it waits for can arrive. Only after ``RetryPolicy.wait_for_prerequisite`` is it
dead-lettered. Losing the database is not the message's fault: that is retried
until the database is back, and nothing is dead-lettered for it. SIGTERM (stop) lets the
batch in hand finish, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from regulars_events.envelope import Envelope, EnvelopeError
from regulars_events.topics import dead_letter_topic

from .kafka import KafkaConfig, producer
from .kafka import consumer as kafka_consumer
from .supervise import keep_running

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, asyncpg.Connection], Awaitable[None]]
#: applies several new events, in order, in the caller's transaction (set-based if it can)
BatchHandler = Callable[[Sequence[Envelope], asyncpg.Connection], Awaitable[None]]

#: errors that say "the infrastructure is away", not "this message is bad"
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


#: records taken from the broker per round (a backlog goes in few, large transactions)
FETCHED_AT_ONCE = 2000
#: per partition and fetch: small enough that a round holds records of every partition
#: with a backlog (1 MB, the default, brought ~1,500 of one partition and a few of the
#: others, so one partition worked while the rest waited). A larger record batch still
#: comes whole, on Kafka and on the embedded broker alike.
PARTITION_FETCH_BYTES = 64 * 1024
#: records of one partition applied in one transaction at most
TOGETHER = 100
#: partitions applied concurrently (each holds one pooled connection while it works)
PARTITIONS_AT_ONCE = 4


class RetryLater(Exception):
    """Raised by a handler that cannot apply the event yet (something it needs has not arrived)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first_backoff: float = 0.2
    max_backoff: float = 5.0
    #: how long an event may wait for what it needs (RetryLater) before it is dead-lettered
    wait_for_prerequisite: float = 600.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * (4**attempt), self.max_backoff))

    def parked_backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * (2**attempt), self.max_backoff))


@dataclass
class _Parked:
    """A partition paused at a record whose prerequisite has not been applied yet."""

    offset: int
    since: float
    attempts: int = 0
    resume_at: float = field(default=0.0)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: EventConsumer) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runner.commit_processed()
        for tp in revoked:
            self.runner.parked.pop(tp, None)  # its new owner starts from the committed offset
            self.runner.applied.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        pool: asyncpg.Pool,
        kafka: KafkaConfig,
        topics: Sequence[str],
        handle: Handler,
        wants: Callable[[str], bool],
        retry: RetryPolicy = RetryPolicy(),
        on_result: Callable[[str, str], None] | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
        handle_many: BatchHandler | None = None,
        together: int = TOGETHER,
        partition_fetch_bytes: int = PARTITION_FETCH_BYTES,
    ) -> None:
        """``together`` and ``partition_fetch_bytes`` size the transactions: a service whose
        handler is set-based over a whole run (loyalty's projection) takes larger ones."""
        self.service = service
        self.together = together
        self.partition_fetch_bytes = partition_fetch_bytes
        self.pool = pool
        self.kafka = kafka
        self.topics = list(topics)
        self.handle = handle
        self.handle_many = handle_many
        self.wants = wants
        self.retry = retry
        self.on_result = on_result
        self.on_dead_letter = on_dead_letter
        self.group_id = f"regulars-{service}"
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self.parked: dict[TopicPartition, _Parked] = {}
        #: per partition, the next offset to apply: what the lag is counted from (the
        #: position runs ahead of it while fetched records are still being applied)
        self.applied: dict[TopicPartition, int] = {}
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("consumer", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        consumer = kafka_consumer(
            self.kafka,
            self.group_id,
            client_id=f"{self.group_id}-consumer",
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            max_poll_records=FETCHED_AT_ONCE,
            max_partition_fetch_bytes=self.partition_fetch_bytes,
            metadata_max_age_ms=5000,
        )
        dead_letters = producer(self.kafka, f"{self.group_id}-dead-letters")
        await consumer.start()
        await dead_letters.start()
        self._consumer = consumer
        self.applied = {}  # a new session starts from the committed offsets
        self.running = True
        try:
            consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
            while not stop.is_set():
                self._resume_due(consumer)
                batches = await consumer.getmany(timeout_ms=200, max_records=FETCHED_AT_ONCE)
                # Finish the batch in hand even when asked to stop: it is short. Partitions
                # are independent, so a few go at once: each waits on its own database
                # round trips, and order only matters within a partition.
                at_once = asyncio.Semaphore(PARTITIONS_AT_ONCE)
                async with asyncio.TaskGroup() as group:
                    for tp, records in batches.items():
                        group.create_task(
                            self._apply_partition(consumer, tp, records, dead_letters, at_once)
                        )
                await self.commit_processed()
        finally:
            self.running = False
            with contextlib.suppress(Exception):
                await self.commit_processed()
            self._consumer = None
            await dead_letters.stop()
            await consumer.stop()

    async def watermarks(self) -> dict[tuple[str, int], tuple[int | None, int]]:
        """Per assigned partition: the high watermark the last fetch saw (None before
        one) and the next offset to apply (records fetched and still being applied count
        as not applied; a parked partition waits at its record). Their difference is the
        lag; not ``end_offsets``, which the embedded broker answers wrongly once a batch
        holds several records."""
        consumer = self._consumer
        if consumer is None:
            return {}
        marks: dict[tuple[str, int], tuple[int | None, int]] = {}
        for tp in consumer.assignment():
            # no position yet (a reset pending, or just revoked): none shown this time
            with contextlib.suppress(Exception):
                position: int | None = self.applied.get(tp)
                if position is None:
                    position = int(await asyncio.wait_for(consumer.position(tp), 1))
                marks[(tp.topic, tp.partition)] = (consumer.highwater(tp), position)
        return marks

    async def commit_processed(self) -> None:
        if self._consumer is None or not self._processed:
            return
        offsets, self._processed = self._processed, {}
        try:
            await self._consumer.commit(offsets)
        except Exception:
            # Not fatal: the records will come again and the inbox will skip them.
            log.warning("offset commit failed", exc_info=True)

    async def _apply_partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        records: Sequence[Any],
        dead_letters: Any,
        at_once: asyncio.Semaphore,
    ) -> None:
        self.applied.setdefault(tp, records[0].offset)
        async with at_once:
            for start in range(0, len(records), self.together):
                chunk = records[start : start + self.together]
                if await self._apply_together(chunk):
                    self._processed[tp] = self.applied[tp] = chunk[-1].offset + 1
                elif not await self._apply_each(consumer, tp, chunk, dead_letters):
                    return

    async def _apply_each(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Any, dead_letters: Any
    ) -> bool:
        """One transaction per record; False when the partition was parked at one of them."""
        for record in records:
            if not await self._apply(tp, record, dead_letters):
                # Parked: this partition waits (from this record on); the others go on.
                consumer.pause(tp)
                consumer.seek(tp, record.offset)
                return False
            self._processed[tp] = self.applied[tp] = record.offset + 1
        return True

    async def _apply_together(self, records: Sequence[Any]) -> bool:
        """All of the records in one transaction; False (nothing applied) if any fails."""
        wanted = []
        for record in records:
            try:
                envelope = Envelope.from_kafka(record.headers, record.value)
            except EnvelopeError:
                return False  # for the dead-letter path of _apply
            if self.wants(envelope.type):
                wanted.append(envelope)
        if len(wanted) < 2:
            return not wanted  # a lone record takes the usual path, retries and all
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = {
                    r["event_id"]
                    for r in await conn.fetch(
                        "INSERT INTO inbox (event_id, type)"
                        " SELECT * FROM unnest($1::uuid[], $2::text[])"
                        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                        [e.id for e in wanted],
                        [e.type for e in wanted],
                    )
                }
                results, new = [], []
                for envelope in wanted:
                    # discard: an event delivered twice in this very chunk is applied once
                    if envelope.id in fresh:
                        fresh.discard(envelope.id)
                        new.append(envelope)
                        results.append((envelope.type, "applied"))
                    else:
                        results.append((envelope.type, "duplicate"))
                if self.handle_many is not None:
                    await self.handle_many(new, conn)
                else:
                    for envelope in new:
                        await self.handle(envelope, conn)
        except Exception as exc:
            log.debug("records applied together failed; one by one", extra={"error": repr(exc)})
            return False
        if self.on_result:
            for result in results:
                self.on_result(*result)
        return True

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        paused = consumer.paused()
        for tp, parked in self.parked.items():
            if tp in paused and parked.resume_at <= now:
                consumer.resume(tp)

    async def _apply(self, tp: TopicPartition, record: Any, dead_letters: Any) -> bool:
        """Done with the record (applied, skipped or dead-lettered); False: parked."""
        try:
            envelope = Envelope.from_kafka(record.headers, record.value)
        except EnvelopeError as exc:
            await self._dead_letter(record, dead_letters, exc, attempts=0)
            return True
        if not self.wants(envelope.type):
            return True
        attempt = 0
        while True:
            try:
                result = await self._apply_once(envelope)
                if self.on_result:
                    self.on_result(envelope.type, result)
                self.parked.pop(tp, None)
                return True
            except RetryLater as exc:
                if self._park(tp, record.offset, envelope, exc):
                    return False
                await self._dead_letter(record, dead_letters, exc, attempts=attempt + 1)
                if self.on_result:
                    self.on_result(envelope.type, "dead_letter")
                return True
            except TRANSIENT:
                log.warning("database or network away; retrying", exc_info=True)
                await asyncio.sleep(self.retry.max_backoff)
            except Exception as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    await self._dead_letter(record, dead_letters, exc, attempts=attempt)
                    if self.on_result:
                        self.on_result(envelope.type, "dead_letter")
                    return True
                log.info(
                    "handler failed; retrying",
                    extra={"event_id": str(envelope.id), "type": envelope.type, "error": repr(exc)},
                )
                await asyncio.sleep(self.retry.backoff(attempt - 1))

    def _park(self, tp: TopicPartition, offset: int, envelope: Envelope, exc: RetryLater) -> bool:
        """Park the partition at this record; False once it has waited long enough."""
        now = time.monotonic()
        parked = self.parked.get(tp)
        if parked is None or parked.offset != offset:
            parked = self.parked[tp] = _Parked(offset, since=now)
        if now - parked.since >= self.retry.wait_for_prerequisite:
            del self.parked[tp]
            return False
        parked.resume_at = now + self.retry.parked_backoff(parked.attempts)
        parked.attempts += 1
        log.info(
            "event waits for what it needs; its partition is parked",
            extra={
                "event_id": str(envelope.id),
                "type": envelope.type,
                "reason": str(exc),
                "partition": f"{tp.topic}/{tp.partition}",
                "attempt": parked.attempts,
            },
        )
        return True

    async def _apply_once(self, envelope: Envelope) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO inbox (event_id, type) VALUES ($1, $2)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING true",
                envelope.id,
                envelope.type,
            )
            if not fresh:
                return "duplicate"
            await self.handle(envelope, conn)
        return "applied"

    async def _dead_letter(
        self, record: Any, dead_letters: Any, exc: BaseException, attempts: int
    ) -> None:
        topic = dead_letter_topic(self.service)
        headers = [
            *(record.headers or ()),
            ("dlq_error", repr(exc)[:2000].encode()),
            ("dlq_trace", "".join(traceback.format_exception(exc))[-4000:].encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_consumer", self.group_id.encode()),
        ]
        # Must land before the offset moves past it, or the record would be lost.
        await dead_letters.send_and_wait(topic, value=record.value, key=record.key, headers=headers)
        log.error(
            "event parked on the dead-letter topic",
            extra={"topic": topic, "error": repr(exc), "offset": record.offset},
        )
        try:
            event_id = dict(record.headers or ()).get("ce_id", b"").decode() or None
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO dead_letters (event_id, type, topic, part, kafka_offset, error)"
                    " VALUES ($1::text::uuid, $2, $3, $4, $5, $6)",
                    event_id,
                    dict(record.headers or ()).get("ce_type", b"").decode() or None,
                    record.topic,
                    record.partition,
                    record.offset,
                    repr(exc)[:2000],
                )
        except Exception:
            log.warning("could not note the dead letter in the database", exc_info=True)
        if self.on_dead_letter:
            self.on_dead_letter(record.topic)
