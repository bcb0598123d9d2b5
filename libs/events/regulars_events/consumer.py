"""Kafka -> handler, with an inbox for exactly-once effect.

Each record is applied in one PostgreSQL transaction that also records its event id in
the inbox, so a redelivered event is recognised and skipped. Offsets are committed by
hand after the effect commits. A handler error is retried with backoff; after the last
try the record goes to the dead-letter topic with the error in its headers and the
partition moves on. Losing the database is not the message's fault: that is retried
until the database is back, and nothing is dead-lettered for it. SIGTERM (stop) lets the
batch in hand finish, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from .envelope import Envelope, EnvelopeError
from .kafka import KafkaConfig, producer
from .supervise import keep_running
from .topics import dead_letter_topic

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, asyncpg.Connection], Awaitable[None]]

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


class RetryLater(Exception):
    """Raised by a handler that cannot apply the event yet (something it needs has not arrived)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first_backoff: float = 0.2
    max_backoff: float = 5.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * (4**attempt), self.max_backoff))


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: EventConsumer) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runner.commit_processed()

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
    ) -> None:
        self.service = service
        self.pool = pool
        self.kafka = kafka
        self.topics = list(topics)
        self.handle = handle
        self.wants = wants
        self.retry = retry
        self.on_result = on_result
        self.on_dead_letter = on_dead_letter
        self.group_id = f"regulars-{service}"
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("consumer", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms,
            max_poll_records=500,
            metadata_max_age_ms=5000,
        )
        dead_letters = producer(self.kafka, f"{self.group_id}-dead-letters")
        await consumer.start()
        await dead_letters.start()
        self._consumer = consumer
        self.running = True
        try:
            consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        # Finish the batch in hand even when asked to stop: it is short.
                        await self._apply(record, dead_letters)
                        self._processed[tp] = record.offset + 1
                await self.commit_processed()
        finally:
            self.running = False
            with contextlib.suppress(Exception):
                await self.commit_processed()
            self._consumer = None
            await dead_letters.stop()
            await consumer.stop()

    async def commit_processed(self) -> None:
        if self._consumer is None or not self._processed:
            return
        offsets, self._processed = self._processed, {}
        try:
            await self._consumer.commit(offsets)
        except Exception:
            # Not fatal: the records will come again and the inbox will skip them.
            log.warning("offset commit failed", exc_info=True)

    async def _apply(self, record: Any, dead_letters: Any) -> None:
        try:
            envelope = Envelope.from_kafka(record.headers, record.value)
        except EnvelopeError as exc:
            await self._dead_letter(record, dead_letters, exc, attempts=0)
            return
        if not self.wants(envelope.type):
            return
        attempt = 0
        while True:
            try:
                result = await self._apply_once(envelope)
                if self.on_result:
                    self.on_result(envelope.type, result)
                return
            except TRANSIENT:
                log.warning("database or network away; retrying", exc_info=True)
                await asyncio.sleep(self.retry.max_backoff)
            except Exception as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    await self._dead_letter(record, dead_letters, exc, attempts=attempt)
                    if self.on_result:
                        self.on_result(envelope.type, "dead_letter")
                    return
                log.info(
                    "handler failed; retrying",
                    extra={"event_id": str(envelope.id), "type": envelope.type, "error": repr(exc)},
                )
                await asyncio.sleep(self.retry.backoff(attempt - 1))

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
