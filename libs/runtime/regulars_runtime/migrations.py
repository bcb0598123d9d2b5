"""Forward-only, versioned migrations, applied under an advisory lock.

A service's migrations are its library parts (outbox, inbox, timers) followed by its own
``migrations/NNNN_name.sql`` files, each applied once, in order, in its own transaction,
in the service's schema alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

_LOCK_KEY = 0x72656775  # "regu": one lock for every migration run, on any replica
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Migration:
    version: str  # e.g. "events/0001_outbox_inbox" or "intake/0001_init"
    sql: str


def from_package(package: str, folder: str, prefix: str) -> list[Migration]:
    """The ``NNNN_*.sql`` files in ``package``/``folder``, in order."""
    root = resources.files(package).joinpath(folder)
    names = sorted(p.name for p in root.iterdir() if _FILE.match(p.name))
    return [
        Migration(f"{prefix}/{Path(name).stem}", root.joinpath(name).read_text()) for name in names
    ]


async def apply(
    conn: asyncpg.Connection, schema: str, migrations: Sequence[Migration]
) -> list[str]:
    """Apply what is not applied yet; returns the versions applied now."""
    if not _SCHEMA.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]
            for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
        }
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (version) VALUES ($1)",
                    migration.version,
                )
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


def library_migrations() -> list[Migration]:
    """What every service's schema starts with: outbox, inbox and the shop directory."""
    return from_package("regulars_events", "sql", "events") + from_package(
        "regulars_runtime", "sql", "runtime"
    )


def service_migrations(package: str, name: str) -> list[Migration]:
    return library_migrations() + from_package(package, "migrations", name)
