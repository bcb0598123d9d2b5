"""Connectors on PostgreSQL, and Jobber's GraphQL API."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from ..domain.connectors.setup import Connector, Tally

#: sealed connector secrets open only under this purpose, never under the webhooks'
CONNECTOR_SECRETS = b"regulars connectors\0"


def _connector(row: asyncpg.Record) -> Connector:
    return Connector(row["id"], row["shop_id"], row["system"], dict(row["choices"]))


class PostgresConnectors:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def for_system(self, shop_id: uuid.UUID, system: str) -> Connector | None:
        row = await self.conn.fetchrow(
            "SELECT id, shop_id, system, choices FROM connectors"
            " WHERE shop_id = $1 AND system = $2 FOR UPDATE",
            shop_id,
            system,
        )
        return None if row is None else _connector(row)

    async def save(
        self, connector: Connector, sealed_secret: bytes, sealed_token: bytes | None
    ) -> None:
        await self.conn.execute(
            "INSERT INTO connectors (id, shop_id, system, sealed_secret, sealed_token, choices)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shop_id, system) DO UPDATE SET"
            " sealed_secret = excluded.sealed_secret, sealed_token = excluded.sealed_token,"
            " choices = excluded.choices, updated_at = now()",
            connector.id,
            connector.shop_id,
            connector.system,
            sealed_secret,
            sealed_token,
            connector.choices,
        )

    async def tally(self, connector_id: uuid.UUID, tally: Tally) -> None:
        await self.conn.execute(
            "UPDATE connectors SET accepted = accepted + $2, rejected = rejected + $3,"
            " errors = errors + $4, last_delivery_at = now() WHERE id = $1",
            connector_id,
            tally.accepted,
            tally.rejected,
            tally.errors,
        )


async def hook_target(
    pool: asyncpg.Pool, connector_id: uuid.UUID, system: str
) -> dict[str, Any] | None:
    """What a delivery to ``/hooks/{system}/{id}`` is checked and read with, or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT c.id, c.shop_id, c.system, c.choices, c.sealed_secret, c.sealed_token,"
            " p.policy->>'timezone' AS timezone FROM connectors c"
            " JOIN LATERAL (SELECT policy FROM policies WHERE shop_id = c.shop_id"
            " ORDER BY version DESC LIMIT 1) p ON true WHERE c.id = $1 AND c.system = $2",
            connector_id,
            system,
        )
    if row is None:
        return None
    return {
        "connector": _connector(row),
        "sealed_secret": bytes(row["sealed_secret"]),
        "sealed_token": None if row["sealed_token"] is None else bytes(row["sealed_token"]),
        "timezone": row["timezone"] or "UTC",
    }


async def listed(pool: asyncpg.Pool, shop_id: uuid.UUID) -> list[dict[str, Any]]:
    """The shop's connectors with their counts (never their secrets)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, system, choices, created_at, updated_at, last_delivery_at, accepted,"
            " rejected, errors FROM connectors WHERE shop_id = $1 ORDER BY system",
            shop_id,
        )
    return [
        {
            "connector_id": str(r["id"]),
            "system": r["system"],
            "choices": r["choices"],
            "created_at": r["created_at"].isoformat(),
            "updated_at": r["updated_at"].isoformat(),
            "last_delivery_at": (
                None if r["last_delivery_at"] is None else r["last_delivery_at"].isoformat()
            ),
            "accepted": int(r["accepted"]),
            "rejected": int(r["rejected"]),
            "errors": int(r["errors"]),
        }
        for r in rows
    ]


class FetchFailed(Exception):
    """Jobber's API did not give the item (down, slow, refused the token)."""


class JobberApi:
    """Jobber's GraphQL API, read with the connector's access token."""

    #: Jobber pins the schema per request; this is the version the queries are written for
    VERSION = "2025-04-16"

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    async def fetch(
        self, token: str, query: str, variables: dict[str, Any], field: str
    ) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.post(
                    self.url,
                    content=orjson.dumps({"query": query, "variables": variables}),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "X-JOBBER-GRAPHQL-VERSION": self.VERSION,
                    },
                )
        except httpx.HTTPError as exc:
            raise FetchFailed(f"Jobber's API: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise FetchFailed(f"Jobber's API answered {answer.status_code}")
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise FetchFailed("Jobber's API answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise FetchFailed("Jobber's API answered something that is not an object")
        data = body.get("data")
        item = data.get(field) if isinstance(data, dict) else None
        if item is None and body.get("errors"):
            raise FetchFailed("Jobber's API: " + str(body["errors"])[:200])
        return item if isinstance(item, dict) else None
