"""The idempotent producer is a setting: off for the embedded broker, on for Apache Kafka."""

from __future__ import annotations

from regulars_bus.kafka import KafkaConfig, producer


async def test_the_producer_is_idempotent_when_configured() -> None:
    on = producer(KafkaConfig("127.0.0.1:9", enable_idempotence=True), "test")
    off = producer(KafkaConfig("127.0.0.1:9"), "test")
    # aiokafka's idempotent producer is its transaction manager (a producer id, sequences)
    assert on._txn_manager is not None
    assert off._txn_manager is None
