"""Kafka clients set up one way everywhere: correct on Apache Kafka and on the embedded broker."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    topic_partitions: int = 4
    replication_factor: int = 1
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 2000
    fetch_max_wait_ms: int = 20
    linger_ms: int = 5
    max_batch_size: int = 256 * 1024


def producer(config: KafkaConfig, client_id: str) -> AIOKafkaProducer:
    # No idempotent producer: exactly-once effect comes from the outbox and the inbox, and
    # the embedded broker has no InitProducerId.
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=config.linger_ms,
        max_batch_size=config.max_batch_size,
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=15000,
    )


async def cluster_id(admin: AIOKafkaAdminClient) -> str:
    described = await admin.describe_cluster()
    return str(described.get("cluster_id") or "")


async def ensure_topics(
    admin: AIOKafkaAdminClient, config: KafkaConfig, topics: Iterable[str]
) -> None:
    """Create the topics that are missing; existing ones are left as they are."""
    wanted = sorted(set(topics))
    existing = set(await admin.list_topics())
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return
    response = await admin.create_topics(
        [NewTopic(t, config.topic_partitions, config.replication_factor) for t in missing]
    )
    for topic, code, message in getattr(response, "topic_errors", []):
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"could not create topic {topic}: {message} (code {code})")
    log.info("topics created", extra={"topics": missing})


def admin_client(config: KafkaConfig, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers, client_id=client_id, request_timeout_ms=10000
    )
