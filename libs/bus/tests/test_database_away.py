"""PostgreSQL that cannot be reached at all is not the record's fault: the record waits,
its transient budget untouched, and is not dead-lettered, however small that budget."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from regulars_bus.consumer import EventConsumer, RetryPolicy
from regulars_bus.kafka import KafkaConfig
from regulars_events.catalogue import CustomerReplied
from regulars_events.envelope import Envelope


async def test_a_record_waits_for_a_database_that_cannot_be_reached(tmp_path: Path) -> None:
    # a Unix socket directory with no server in it: every connection attempt is refused
    pool = await asyncpg.create_pool(f"postgresql://postgres@/postgres?host={tmp_path}", min_size=0)
    parked: list[Any] = []

    async def handle(_envelope: Envelope, _conn: asyncpg.Connection) -> None:
        raise AssertionError("never reached: there is no connection")

    consumer = EventConsumer(
        service="away",
        pool=pool,
        kafka=KafkaConfig("127.0.0.1:9"),
        topics=["regulars.away"],
        handle=handle,
        wants=lambda _t: True,
        retry=RetryPolicy(transient_for=0.0, max_backoff=2.0),
        on_dead_letter=parked.append,
    )

    async def dead_letter(*args: Any, **kwargs: Any) -> None:
        parked.append(args)

    consumer._dead_letter = dead_letter  # type: ignore[method-assign]
    envelope = Envelope.wrap(
        CustomerReplied(customer_id="c-1", channel="sms", text="hi"),
        source="test",
        shop_id=str(uuid.uuid4()),
    )
    record = SimpleNamespace(
        topic="regulars.away",
        partition=0,
        offset=41,
        key=envelope.key,
        value=envelope.value,
        headers=envelope.headers,
    )
    tp = TopicPartition("regulars.away", 0)
    try:
        for _ in range(3):
            assert await consumer._apply(tp, record) is False  # held, not done
            held = consumer.parked[tp]
            assert held.offset == 41 and held.transient_since is None
            assert held.resume_at - time.monotonic() > 1.0  # waits the longest backoff
        assert parked == []  # a zero transient budget, and still nothing dead-lettered
    finally:
        await pool.close()
