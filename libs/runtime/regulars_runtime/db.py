"""The PostgreSQL pool: one per service, confined to that service's schema."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pooled connections carry no session state of ours (no LISTEN, advisory locks or SET
    on them: those use connections of their own), so the default reset query, a round
    trip on every release, buys nothing."""


async def create_pool(
    database_url: str, schema: str, *, min_size: int = 2, max_size: int = 16
) -> asyncpg.Pool:
    """A pool whose connections see only ``schema`` (and public) on their search path."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"search_path": schema, "application_name": f"regulars-{schema}"},
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def connect(database_url: str, schema: str | None = None) -> asyncpg.Connection:
    settings = {"search_path": schema} if schema else {}
    conn = await asyncpg.connect(database_url, server_settings=settings)
    await _init_connection(conn)
    return conn


async def server_version(database_url: str) -> str:
    """The PostgreSQL server's version (``regulars status``)."""
    conn = await connect(database_url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
