"""Connectors on PostgreSQL, and Jobber's GraphQL API."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from ..domain.connectors.setup import Connector, Tally
from ..handlers import ClaimedFetch

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


class PostgresJobberFetches:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self,
        connector_id: uuid.UUID,
        shop_id: uuid.UUID,
        key: tuple[str, str, str],
        payload: dict[str, Any],
    ) -> bool:
        topic, item_id, occurred = key
        row = await self.conn.fetchrow(
            "INSERT INTO jobber_fetches (id, connector_id, shop_id, topic, item_id, occurred,"
            " payload) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (connector_id, topic, item_id, occurred) DO NOTHING RETURNING id",
            uuid.uuid4(),
            connector_id,
            shop_id,
            topic,
            item_id,
            occurred,
            payload,
        )
        return row is not None

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedFetch]:
        rows = await self.conn.fetch(
            "WITH due AS ("
            " SELECT id FROM jobber_fetches WHERE status = 'pending' AND next_attempt_at <= now()"
            " AND (lease_until IS NULL OR lease_until < now())"
            " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " UPDATE jobber_fetches f SET attempts = f.attempts + 1,"
            " lease_until = now() + $2::interval FROM due, connectors c"
            " WHERE f.id = due.id AND c.id = f.connector_id"
            " RETURNING f.id, f.payload, f.attempts, f.received_at, now() AS now,"
            " c.id AS connector_id, c.shop_id, c.system, c.choices, c.sealed_token,"
            " (SELECT policy->>'timezone' FROM policies WHERE shop_id = c.shop_id"
            " ORDER BY version DESC LIMIT 1) AS timezone",
            limit,
            lease,
        )
        return [
            ClaimedFetch(
                id=r["id"],
                connector=Connector(
                    r["connector_id"], r["shop_id"], r["system"], dict(r["choices"])
                ),
                timezone=r["timezone"] or "UTC",
                sealed_token=None if r["sealed_token"] is None else bytes(r["sealed_token"]),
                payload=dict(r["payload"]),
                attempts=r["attempts"],
                received_at=r["received_at"],
                now=r["now"],
            )
            for r in rows
        ]

    async def finish(
        self, claimed: ClaimedFetch, status: str, error: str | None, retry_in: timedelta | None
    ) -> bool:
        done: str = await self.conn.execute(
            "UPDATE jobber_fetches SET status = $3, last_error = $4, lease_until = NULL,"
            " next_attempt_at = CASE WHEN $3 = 'pending' THEN now() + $5::interval"
            " ELSE next_attempt_at END,"
            " finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END"
            " WHERE id = $1 AND attempts = $2 AND lease_until >= now() AND status = 'pending'",
            claimed.id,
            claimed.attempts,
            status,
            error,
            retry_in,
        )
        return done != "UPDATE 0"

    async def ask_again(self, connector_id: uuid.UUID) -> int:
        done: str = await self.conn.execute(
            "UPDATE jobber_fetches SET status = 'pending', next_attempt_at = now(),"
            " finished_at = NULL WHERE connector_id = $1 AND status = 'parked'",
            connector_id,
        )
        return int(done.split()[-1])


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
            " rejected, errors,"
            " (SELECT count(*) FROM jobber_fetches f WHERE f.connector_id = c.id"
            " AND f.status = 'pending') AS fetching,"
            " (SELECT count(*) FROM jobber_fetches f WHERE f.connector_id = c.id"
            " AND f.status = 'parked') AS parked"
            " FROM connectors c WHERE shop_id = $1 ORDER BY system",
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
            "fetching": int(r["fetching"]),
            "parked": int(r["parked"]),
        }
        for r in rows
    ]


class FetchFailed(Exception):
    """Jobber's API did not give the item (down, slow, refused the token)."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        #: worth asking again later (a timeout, 429, 5xx, Jobber's throttle), or not
        self.transient = transient


def _throttled(errors: Any) -> bool:
    # Jobber's GraphQL rate limit answers 200 with an error coded THROTTLED
    return isinstance(errors, list) and any(
        isinstance(e, dict) and obj_code(e) == "THROTTLED" for e in errors
    )


def obj_code(error: dict[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code if isinstance(code, str) else None


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
            raise FetchFailed(f"Jobber's API: {type(exc).__name__}", transient=True) from None
        if answer.status_code != 200:
            code = answer.status_code
            raise FetchFailed(f"Jobber's API answered {code}", transient=code == 429 or code >= 500)
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise FetchFailed(
                "Jobber's API answered something that is not JSON", transient=True
            ) from None
        if not isinstance(body, dict):
            raise FetchFailed(
                "Jobber's API answered something that is not an object", transient=True
            )
        data = body.get("data")
        item = data.get(field) if isinstance(data, dict) else None
        errors = body.get("errors")
        if item is None and errors:
            raise FetchFailed("Jobber's API: " + str(errors)[:200], transient=_throttled(errors))
        return item if isinstance(item, dict) else None
