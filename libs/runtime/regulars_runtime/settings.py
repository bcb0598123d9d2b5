"""Settings from the environment: the one place a service learns where things are."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from regulars_events.kafka import KafkaConfig

DEFAULT_PORTS = {"intake": 8001, "followup": 8002, "feedback": 8003, "loyalty": 8004}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from None


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def kafka_from_env() -> KafkaConfig:
    # Short session and fetch waits suit the embedded broker (it notices a departed member
    # only after ~1.5 x the session timeout, and always waits the whole fetch wait); they
    # are correct on Apache Kafka too. Each can be set for a real cluster.
    return KafkaConfig(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic_partitions=_int("KAFKA_TOPIC_PARTITIONS", 4),
        replication_factor=_int("KAFKA_REPLICATION_FACTOR", 1),
        session_timeout_ms=_int("KAFKA_SESSION_TIMEOUT_MS", 6000),
        heartbeat_interval_ms=_int("KAFKA_HEARTBEAT_INTERVAL_MS", 2000),
        fetch_max_wait_ms=_int("KAFKA_FETCH_MAX_WAIT_MS", 20),
        linger_ms=_int("KAFKA_LINGER_MS", 5),
        max_batch_size=_int("KAFKA_MAX_BATCH_SIZE", 256 * 1024),
    )


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    kafka: KafkaConfig
    port: int
    host: str = "127.0.0.1"
    smtp_url: str | None = None
    sms_api_url: str | None = None
    log_level: str = "INFO"
    run_workers: bool = True
    db_pool_size: int = 16
    outbox_retention: timedelta = field(default=timedelta(days=7))

    @classmethod
    def from_env(cls, service: str) -> Settings:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            raise ValueError(
                "DATABASE_URL is not set: point it at PostgreSQL, or start the system "
                "with `make run`, which sets it"
            )
        return cls(
            service=service,
            database_url=database_url,
            kafka=kafka_from_env(),
            port=_int("PORT", DEFAULT_PORTS.get(service, 8000)),
            host=os.environ.get("HOST", "127.0.0.1"),
            smtp_url=os.environ.get("SMTP_URL") or None,
            sms_api_url=os.environ.get("SMS_API_URL") or None,
            log_level=os.environ.get("LOG_LEVEL", "INFO"),
            run_workers=_flag("RUN_WORKERS", True),
            db_pool_size=_int("DB_POOL_SIZE", 16),
            outbox_retention=timedelta(days=_int("OUTBOX_RETENTION_DAYS", 7)),
        )
