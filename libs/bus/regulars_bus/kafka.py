"""Kafka clients set up one way everywhere: correct on Apache Kafka and on the embedded broker."""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31


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
    #: the idempotent producer (Apache Kafka): its retries neither duplicate nor reorder
    #: within a partition. Off for the embedded broker, which has no InitProducerId.
    enable_idempotence: bool = False
    #: how every client reaches the brokers: PLAINTEXT (the embedded broker, a private
    #: network), SSL (TLS, optionally a client certificate), SASL_PLAINTEXT or SASL_SSL
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    # repr=False: a config printed in a traceback or a log line shows no secret
    sasl_password: str | None = field(default=None, repr=False)
    #: the CA that signed the brokers' certificates (none: the system's trust store)
    ssl_cafile: str | None = None
    #: a client certificate and its key, for brokers that authenticate clients by TLS
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def security_problems(config: KafkaConfig) -> list[str]:
    """What makes the security settings unusable, in the variables' names; a combination
    that would be silently ignored (a password without SASL, a CA without TLS) is one."""
    protocol = config.security_protocol
    if protocol not in SECURITY_PROTOCOLS:
        return [f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}"]
    problems = []
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    if sasl:
        if config.sasl_mechanism is None:
            problems.append(
                f"KAFKA_SASL_MECHANISM is required with {protocol}"
                f" (one of {', '.join(SASL_MECHANISMS)})"
            )
        elif config.sasl_mechanism not in SASL_MECHANISMS:
            problems.append(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}")
        if not config.sasl_username:
            problems.append(f"KAFKA_SASL_USERNAME is required with {protocol}")
        if not config.sasl_password:
            problems.append(f"KAFKA_SASL_PASSWORD is required with {protocol}")
    else:
        given = [
            name
            for name, value in (
                ("KAFKA_SASL_MECHANISM", config.sasl_mechanism),
                ("KAFKA_SASL_USERNAME", config.sasl_username),
                ("KAFKA_SASL_PASSWORD", config.sasl_password),
            )
            if value
        ]
        if given:
            problems.append(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {protocol}:"
                " use SASL_SSL (or SASL_PLAINTEXT) for SASL"
            )
    files = [
        ("KAFKA_SSL_CAFILE", config.ssl_cafile),
        ("KAFKA_SSL_CERTFILE", config.ssl_certfile),
        ("KAFKA_SSL_KEYFILE", config.ssl_keyfile),
        ("KAFKA_SSL_PASSWORD", config.ssl_password),
    ]
    if not tls:
        given = [name for name, value in files if value]
        if given:
            problems.append(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {protocol}:"
                " use SSL or SASL_SSL for TLS"
            )
    else:
        # a certificate file may hold its key too; a key alone authenticates nothing
        if config.ssl_keyfile and not config.ssl_certfile:
            problems.append("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the key's certificate)")
        if config.ssl_password and not config.ssl_certfile:
            problems.append("KAFKA_SSL_PASSWORD is the client key's: it needs KAFKA_SSL_CERTFILE")
    return problems


@functools.lru_cache(maxsize=8)
def _ssl_context(
    cafile: str | None, certfile: str | None, keyfile: str | None, password: str | None
) -> ssl.SSLContext:
    # One context per set of files: built once, shared by every client of the process
    # (certificates are read at start; a rotated certificate takes a restart, as Strimzi's
    # renewal of the cluster CA does with a rolling restart).
    context: ssl.SSLContext = create_ssl_context(
        cafile=cafile, certfile=certfile, keyfile=keyfile, password=password
    )
    return context


def security(config: KafkaConfig) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin) takes to reach
    the brokers as config says: one place, so no client is left on PLAINTEXT."""
    out: dict[str, Any] = {"security_protocol": config.security_protocol}
    if config.security_protocol.endswith("SSL"):
        out["ssl_context"] = _ssl_context(
            config.ssl_cafile, config.ssl_certfile, config.ssl_keyfile, config.ssl_password
        )
    if config.security_protocol.startswith("SASL_"):
        out["sasl_mechanism"] = config.sasl_mechanism
        out["sasl_plain_username"] = config.sasl_username
        out["sasl_plain_password"] = config.sasl_password
    return out


def producer(config: KafkaConfig, client_id: str) -> AIOKafkaProducer:
    # Exactly-once effect comes from the outbox and the inbox, not from the producer; the
    # idempotent producer (KAFKA_ENABLE_IDEMPOTENCE, on Apache Kafka) keeps a retried
    # batch from landing twice or out of order. The embedded broker has no InitProducerId.
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=config.enable_idempotence,
        linger_ms=config.linger_ms,
        max_batch_size=config.max_batch_size,
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=15000,
        **security(config),
    )


def consumer(config: KafkaConfig, group_id: str | None, **options: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself (offsets are committed once the effect is in
    PostgreSQL) and reads a new group from the start; options are the caller's own."""
    return AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        **options,
        **security(config),
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
        if code in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED):
            # under ACLs a topic this user may not describe looks missing, and creating it is
            # the cluster's business (Strimzi's KafkaTopic), not the service's
            raise RuntimeError(
                f"topic {topic} is missing or not visible to this Kafka user, which may not"
                " create it: create the topic (deploy/k8s kafka-topics.yaml) and grant the"
                " user Describe on it (kafka-users.yaml)"
            )
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"could not create topic {topic}: {message} (code {code})")
    log.info("topics created", extra={"topics": missing})


def admin_client(config: KafkaConfig, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=10000,
        **security(config),
    )
