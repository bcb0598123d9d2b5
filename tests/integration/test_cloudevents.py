"""The official CloudEvents SDK, reading what a service published to Kafka, sees the shop
and the trace context as extension attributes (Kafka binary mode, ``ce_`` headers)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer
from cloudevents.kafka import KafkaMessage, from_binary
from harness import System, wait_for
from test_followup_flow import _authorised, person, post

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


async def _records(bootstrap: str, topic: str) -> list[Any]:
    """Everything on ``topic`` so far, read by a consumer group of the test's own."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"cloudevents-sdk-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        got: list[Any] = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=500)
            got += [r for records in batch.values() for r in records]
        return got
    finally:
        await consumer.stop()


async def test_the_sdk_sees_the_shop_and_the_trace_of_a_published_event(running: System) -> None:
    shop_id, key = await running.create_shop("CloudEvents Tyres")
    await wait_for(lambda: _authorised(running, key))
    cid = f"c-{uuid.uuid4().hex[:6]}"
    assert (await post(running, key, person(cid))).status_code == 202

    async def published() -> list[Any]:
        return [
            from_binary(
                KafkaMessage(headers={k: v for k, v in r.headers}, key=r.key, value=r.value or b"")
            )
            for r in await _records(running.bootstrap, "regulars.customer")
            if (cid.encode() in (r.value or b""))
        ]

    [event] = await wait_for(published, timeout=60)
    assert event["type"] == "regulars.customer.upserted.v1"
    assert event["source"] and event["id"] and event["specversion"] == "1.0"
    # extension attributes: what the SDK hands a consumer beside the core ones
    attributes = event.get_attributes()
    assert attributes["shopid"] == shop_id
    assert TRACEPARENT.match(attributes["traceparent"])
    assert attributes["correlationid"]
    assert event.data["customer_id"] == cid
