"""Outbox -> Kafka.

One relay per service is active at a time (an advisory lock elects it, so per-key order
holds); others stand by. It claims unpublished rows with FOR UPDATE SKIP LOCKED, publishes
them with acks=all, waits for every acknowledgement, then marks them published, all in
one transaction: a crash before the mark re-publishes (consumers' inboxes drop the copy),
never loses. LISTEN/NOTIFY wakes it at commit; polling covers a missed notification.

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
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from regulars_events.topics import all_topics, dead_letter_topic

from . import tracing
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
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        cluster_check_interval: float = 2.0,
        on_published: Any = None,
        on_backlog: Any = None,
        on_cluster_change: Any = None,
        topics: Sequence[str] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """``tracer``: a span "publish <topic>" per row, its parent the event's
        traceparent (None: tracing is off, no spans)."""
        self.database_url = database_url
        self.tracer = tracer
        #: what a new cluster must have before anything is re-published: the service's own
        #: topics (under Kafka ACLs the others look missing); none given: every topic
        self.topics = (
            list(topics) if topics is not None else [*all_topics(), dead_letter_topic(schema)]
        )
        self.pool = pool
        self.schema = schema
        self.kafka = kafka
        self.retention = retention
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.cluster_check_interval = cluster_check_interval
        self.on_published = on_published
        self.on_backlog = on_backlog
        self.on_cluster_change = on_cluster_change
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
            if published >= self.batch_size:
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
                " AND created_at > now() - $2::interval",
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
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, headers, value FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                return 0
            futures = []
            spans: list[Span] = []
            for r in rows:
                if self.tracer is not None:
                    spans.append(self._publishing(r["topic"], r["headers"]))
                headers = [(k, v.encode()) for k, v in r["headers"]]
                futures.append(
                    await prod.send(r["topic"], value=r["value"], key=r["key"], headers=headers)
                )
            try:
                await asyncio.gather(*futures)
            except BaseException as exc:
                for span in spans:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                for span in spans:
                    span.end()
            await conn.execute(
                "UPDATE outbox SET published_at = now(), published_to = $2 WHERE id = ANY($1)",
                [r["id"] for r in rows],
                self._cluster,
            )
        if self.on_published is not None:
            self.on_published(len(rows))
        return len(rows)

    def _publishing(self, topic: str, headers: Sequence[Sequence[str]]) -> Span:
        """The span of one row's publishing: a child of the context the event was
        created in (its stored traceparent), which the record carries on unchanged."""
        assert self.tracer is not None
        named = {k: v for k, v in headers}
        return self.tracer.start_span(
            f"publish {topic}",
            context=tracing.parent_context(named.get("traceparent")),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.message.id": named.get("ce_id", ""),
                "cloudevents.event_id": named.get("ce_id", ""),
                "cloudevents.event_type": named.get("ce_type", ""),
                "regulars.shop_id": named.get("shop_id", ""),
            },
        )

    async def _prune(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM outbox WHERE published_at IS NOT NULL"
                " AND created_at < now() - $1::interval",
                self.retention,
            )


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def backlog(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def replay_since(conn: asyncpg.Connection, since: Any) -> int:
    """Mark published rows created since ``since`` for publishing again (``outbox replay``)."""
    status = await conn.execute(
        "UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL AND created_at >= $1",
        since,
    )
    return int(status.split()[-1])
