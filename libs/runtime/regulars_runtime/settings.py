"""Settings from the environment: the one place a process learns where things are.

Each service has one settings class (a subclass of :class:`ServiceSettings`, declared in
its bootstrap), read and validated once at start: a missing or malformed value stops the
process with a message naming the variable. Nothing else in the code reads
``os.environ``.

Embedded mode (``REGULARS_EMBEDDED=1``, set by ``make run`` and the test harness) is the
one machine a developer runs everything on: there, a public URL may default to this
host. Anywhere else the URLs and sender identity that go into customers' messages must
be set, because a ``127.0.0.1`` link in a customer's email points at nothing.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from regulars_bus.kafka import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaConfig

from . import staff

DEFAULT_PORTS = {"intake": 8001, "followup": 8002, "feedback": 8003, "loyalty": 8004}

S = TypeVar("S", bound="ServiceSettings")


class KafkaSettings(BaseSettings):
    """``KAFKA_*``. Short session and fetch waits suit the embedded broker (it notices a
    departed member only after ~1.5 x the session timeout, and always waits the whole
    fetch wait); they are correct on Apache Kafka too, and each can be set for a cluster."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore", frozen=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    topic_partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = Field(6000, ge=1000)
    heartbeat_interval_ms: int = Field(2000, ge=100)
    fetch_max_wait_ms: int = Field(20, ge=0)
    linger_ms: int = Field(5, ge=0)
    max_batch_size: int = Field(256 * 1024, ge=1024)
    #: on for Apache Kafka (retries then neither duplicate nor reorder a partition's
    #: records); off for the embedded broker, which cannot
    enable_idempotence: bool = False
    #: TLS and SASL, for every producer, consumer and admin client of the process; in
    #: Kubernetes the password is the Secret Strimzi's User Operator writes for the
    #: service's KafkaUser and the CA the cluster CA Secret (deploy/k8s)
    security_protocol: str = Field("PLAINTEXT", description=" | ".join(SECURITY_PROTOCOLS))
    sasl_mechanism: str | None = Field(None, description=" | ".join(SASL_MECHANISMS))
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _usable_security(self) -> Self:
        # every problem at once, at start, before a client meets the broker
        problems = []
        try:
            self.config()
        except ValueError as exc:
            problems.append(str(exc))
        for name, value in (
            ("KAFKA_SSL_CAFILE", self.ssl_cafile),
            ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
            ("KAFKA_SSL_KEYFILE", self.ssl_keyfile),
        ):
            if value and not Path(value).is_file():
                problems.append(f"{name}: no file {value}")
        if problems:
            raise ValueError("Kafka security: " + "; ".join(problems))
        return self

    def config(self) -> KafkaConfig:
        values = self.model_dump()
        for secret in ("sasl_password", "ssl_password"):
            value = getattr(self, secret)
            values[secret] = value.get_secret_value() if value is not None else None
        return KafkaConfig(**values)


class ServiceSettings(BaseSettings):
    """What every service process needs; a service's own class adds its own keys."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    #: the service's name (its schema, topics' consumer group, default port)
    service: ClassVar[str] = ""

    database_url: str = Field(
        min_length=1,
        description="PostgreSQL URL; `make run` sets it for the embedded database",
    )
    kafka: KafkaConfig = Field(default_factory=lambda: KafkaSettings().config())
    port: int = Field(0, ge=0, le=65535)
    host: str = "127.0.0.1"
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    run_workers: bool = True
    db_pool_size: int = Field(16, ge=1, le=200)
    outbox_retention_days: int = Field(7, ge=1)
    #: longer than the outbox's: an event published again within the outbox's retention
    #: (a new cluster, `regulars outbox replay`) must still be known as applied
    inbox_retention_days: int = Field(14, ge=1)
    #: replayed dead letters are kept this long (waiting ones until they are replayed)
    dead_letter_retention_days: int = Field(30, ge=1)
    embedded: bool = Field(False, validation_alias=AliasChoices("REGULARS_EMBEDDED"))
    #: the commit the image was built from (the Dockerfile's REGULARS_BUILD_COMMIT), shown
    #: in regulars_build_info so a graph can say which release an incident began with
    build_commit: str = Field(
        "unknown", max_length=64, validation_alias=AliasChoices("REGULARS_BUILD_COMMIT")
    )
    #: verifies (and, in loyalty's console, signs) staff tokens; the same in every service
    staff_token_key: SecretStr | None = Field(
        None,
        min_length=staff.MIN_KEY_LENGTH,
        validation_alias=AliasChoices("REGULARS_STAFF_TOKEN_KEY"),
    )
    #: every API request of one shop, on every replica together (a shop's system in a
    #: loop must not take the service from the others); intake's events have their own
    shop_requests_per_second: float = Field(50.0, gt=0)
    shop_requests_burst: float = Field(500.0, ge=1)
    #: requests to a public page or form (a survey, the console's sign-in) per client
    #: address, on every replica together
    public_requests_per_second: float = Field(5.0, gt=0)
    public_requests_burst: float = Field(60.0, ge=1)
    #: failed authentications (a made-up or revoked key, a bad link) per client address,
    #: on every replica together; over it, the address is refused without a lookup
    failed_auth_per_minute: float = Field(30.0, gt=0)
    failed_auth_burst: float = Field(30.0, ge=1)
    #: composes survey links where they are sent (followup) and checks them where they are
    #: opened (feedback), so no link travels on the bus; unset, derived from the
    #: staff-token key, which both services already share
    survey_link_key: SecretStr | None = Field(
        None, min_length=32, validation_alias=AliasChoices("REGULARS_SURVEY_LINK_KEY")
    )

    @model_validator(mode="after")
    def _default_port(self) -> Self:
        if self.port == 0:
            object.__setattr__(self, "port", DEFAULT_PORTS.get(self.service, 8000))
        return self

    @model_validator(mode="after")
    def _inbox_outlives_outbox(self) -> Self:
        if self.inbox_retention_days <= self.outbox_retention_days:
            raise ValueError(
                "INBOX_RETENTION_DAYS must be longer than OUTBOX_RETENTION_DAYS: an event"
                " published again within the outbox's retention must still be recognised"
            )
        return self

    @property
    def outbox_retention(self) -> timedelta:
        return timedelta(days=self.outbox_retention_days)

    @property
    def inbox_retention(self) -> timedelta:
        return timedelta(days=self.inbox_retention_days)

    @property
    def dead_letter_retention(self) -> timedelta:
        return timedelta(days=self.dead_letter_retention_days)

    def staff_key(self) -> str | None:
        """The staff-token key; in embedded mode a well-known one when none is set."""
        if self.staff_token_key is not None:
            return self.staff_token_key.get_secret_value()
        return staff.EMBEDDED_KEY if self.embedded else None

    def survey_key(self) -> bytes | None:
        """The key of survey links: REGULARS_SURVEY_LINK_KEY, else derived from the
        staff-token key (None without either)."""
        if self.survey_link_key is not None:
            return self.survey_link_key.get_secret_value().encode()
        staff_key = self.staff_key()
        return None if staff_key is None else ("survey links\0" + staff_key).encode()

    def local_url(self) -> str:
        """This service on this machine: a public URL's default in embedded mode only."""
        return f"http://127.0.0.1:{self.port}"

    def public_url(self, value: str | None, variable: str) -> str:
        """A URL customers open: ``value`` if set, else this host in embedded mode."""
        if value:
            return value.rstrip("/")
        if self.embedded:
            return self.local_url()
        raise ValueError(
            f"{variable} is not set: customers open links to it, so outside embedded "
            "mode (REGULARS_EMBEDDED=1) it must be this service's public URL"
        )


def load(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; on a bad or missing value, exit naming it."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        sys.exit(f"{cls.service or 'regulars'}: bad settings:\n{explain(exc)}")
    except ValueError as exc:
        sys.exit(f"{cls.service or 'regulars'}: bad settings: {exc}")


def explain(exc: ValidationError) -> str:
    """Each problem as ``VARIABLE: what is wrong`` (the names the environment uses)."""
    prefix = "KAFKA_" if exc.title == KafkaSettings.__name__ else ""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        if not loc:  # a rule across settings: its message names the variables
            lines.append(f"  {message}")
            continue
        name = prefix + "_".join(loc).upper()
        if name in ("EMBEDDED", "STAFF_TOKEN_KEY", "SURVEY_LINK_KEY", "BUILD_COMMIT"):
            name = "REGULARS_" + name
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)
