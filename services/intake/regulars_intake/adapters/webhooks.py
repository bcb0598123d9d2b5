"""Webhook subscriptions and deliveries on PostgreSQL.

Every statement is scoped to its shop, except the delivery worker's claim, which takes
due tries of every shop under a lease compared in database time (several replicas).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ..domain.webhooks import Answer, DeliveryStatus, signing_secrets
from ..webhook_handlers import ClaimedDelivery, NewDelivery, Webhook
from .secret_box import SecretBox

MAX_PAGE = 100


_COLUMNS = (
    "id, shop_id, url, event_types, description, enabled, disabled_reason, created_at, updated_at"
)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        id=row["id"],
        shop_id=row["shop_id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        description=row["description"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresWebhooks:
    def __init__(self, conn: asyncpg.Connection, box: SecretBox | None) -> None:
        self.conn = conn
        self._box = box

    def _open(self, sealed: bytes) -> str:
        secret = self.box.open(sealed)
        if secret is None:
            raise RuntimeError(
                "a webhook secret does not open with REGULARS_WEBHOOK_SECRET_KEY:"
                " the key changed since it was stored"
            )
        return secret

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("REGULARS_WEBHOOK_SECRET_KEY is not set: webhooks are off")
        return self._box

    async def count(self, shop_id: uuid.UUID) -> int:
        found: int = await self.conn.fetchval(
            "SELECT count(*) FROM webhooks WHERE shop_id = $1", shop_id
        )
        return found

    async def add(self, webhook: Webhook, secret: str) -> None:
        await self.conn.execute(
            "INSERT INTO webhooks (id, shop_id, url, event_types, description, secret)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            webhook.id,
            webhook.shop_id,
            webhook.url,
            list(webhook.event_types),
            webhook.description,
            self.box.seal(secret),
        )

    async def get(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM webhooks WHERE shop_id = $1 AND id = $2 FOR UPDATE",
            shop_id,
            webhook_id,
        )
        return None if row is None else _webhook(row)

    async def save(self, webhook: Webhook) -> None:
        await self.conn.execute(
            "UPDATE webhooks SET url = $3, event_types = $4, description = $5, enabled = $6,"
            " disabled_reason = $7, updated_at = now(),"
            " failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END"
            " WHERE shop_id = $1 AND id = $2",
            webhook.shop_id,
            webhook.id,
            webhook.url,
            list(webhook.event_types),
            webhook.description,
            webhook.enabled,
            webhook.disabled_reason,
        )

    async def delete(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
        done: str = await self.conn.execute(
            "DELETE FROM webhooks WHERE shop_id = $1 AND id = $2", shop_id, webhook_id
        )
        return done != "DELETE 0"

    async def rotate(
        self, shop_id: uuid.UUID, webhook_id: uuid.UUID, secret: str, keep_old_for: timedelta
    ) -> bool:
        done: str = await self.conn.execute(
            "UPDATE webhooks SET previous_secret = secret, secret = $3,"
            " previous_secret_until = now() + $4::interval, updated_at = now()"
            " WHERE shop_id = $1 AND id = $2",
            shop_id,
            webhook_id,
            self.box.seal(secret),
            keep_old_for,
        )
        return done != "UPDATE 0"

    async def subscribers(self, shop_id: uuid.UUID, event_type: str) -> list[uuid.UUID]:
        rows = await self.conn.fetch(
            "SELECT id FROM webhooks WHERE shop_id = $1 AND enabled AND event_types @> $2",
            shop_id,
            [event_type],
        )
        return [r["id"] for r in rows]

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        rows = await self.conn.fetch(
            "INSERT INTO webhook_deliveries"
            " (id, webhook_id, shop_id, event_id, event_type, body, next_attempt_at)"
            " SELECT d.id, d.webhook_id, d.shop_id, d.event_id, d.event_type, d.body, now()"
            " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],"
            " $6::jsonb[]) AS d(id, webhook_id, shop_id, event_id, event_type, body)"
            " ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING id",
            [d.id for d in deliveries],
            [d.webhook_id for d in deliveries],
            [d.shop_id for d in deliveries],
            [d.event_id for d in deliveries],
            [d.event_type for d in deliveries],
            [d.body for d in deliveries],
        )
        return len(rows)

    async def replay(
        self,
        shop_id: uuid.UUID,
        webhook_id: uuid.UUID,
        *,
        delivery_id: uuid.UUID | None = None,
        since: datetime | None = None,
        limit: int,
    ) -> int:
        rows = await self.conn.fetch(
            "UPDATE webhook_deliveries SET status = 'pending', ladder = 0,"
            " next_attempt_at = now(), lease_until = NULL"
            " WHERE id IN (SELECT id FROM webhook_deliveries"
            "  WHERE shop_id = $1 AND webhook_id = $2"
            "  AND ($3::uuid IS NULL OR id = $3) AND ($4::timestamptz IS NULL OR created_at >= $4)"
            "  ORDER BY created_at, id LIMIT $5)"
            " RETURNING id",
            shop_id,
            webhook_id,
            delivery_id,
            since,
            limit,
        )
        return len(rows)

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedDelivery]:
        rows = await self.conn.fetch(
            "WITH due AS ("
            " SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled"
            " AND (d.lease_until IS NULL OR d.lease_until < now())"
            " ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET attempts = d.attempts + 1, ladder = d.ladder + 1,"
            " lease_until = now() + $2::interval"
            " FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id"
            " RETURNING d.id, d.webhook_id, d.shop_id, w.url, d.body, d.attempts, d.ladder,"
            " w.secret, w.previous_secret, w.previous_secret_until, w.failing_since,"
            " now() AS now",
            limit,
            lease,
        )
        claimed = []
        for r in rows:
            now: datetime = r["now"]
            previous = r["previous_secret"]
            kept = signing_secrets(
                self._open(r["secret"]),
                self._open(previous) if previous is not None else None,
                r["previous_secret_until"],
                now,
            )
            claimed.append(
                ClaimedDelivery(
                    id=r["id"],
                    webhook_id=r["webhook_id"],
                    shop_id=r["shop_id"],
                    url=r["url"],
                    body=r["body"],
                    secrets=tuple(kept),
                    attempts=r["attempts"],
                    ladder=r["ladder"],
                    failing_since=r["failing_since"],
                    now=now,
                )
            )
        return claimed

    async def record(
        self,
        claimed: ClaimedDelivery,
        answer: Answer,
        status: DeliveryStatus,
        retry_in: timedelta | None,
        healthy: bool,
    ) -> bool:
        done: str = await self.conn.execute(
            "UPDATE webhook_deliveries SET status = $3, last_status_code = $4,"
            " last_error = $5, last_attempt_at = now(), lease_until = NULL,"
            " next_attempt_at = CASE WHEN $3 = 'pending' THEN now() + $6::interval END,"
            " delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END"
            " WHERE id = $1 AND attempts = $2 AND lease_until IS NOT NULL",
            claimed.id,
            claimed.attempts,
            status,
            answer.status_code,
            answer.error,
            retry_in,
        )
        if done == "UPDATE 0":
            return False
        await self.conn.execute(
            "UPDATE webhooks SET failing_since ="
            " CASE WHEN $2 THEN NULL ELSE coalesce(failing_since, now()) END WHERE id = $1",
            claimed.webhook_id,
            healthy,
        )
        return True

    async def disable(self, webhook_id: uuid.UUID, reason: str) -> bool:
        done: str = await self.conn.execute(
            "UPDATE webhooks SET enabled = false, disabled_reason = $2, updated_at = now()"
            " WHERE id = $1 AND enabled",
            webhook_id,
            reason,
        )
        return done != "UPDATE 0"


# -- reads for the API (scoped to the shop) ---------------------------------------------


async def list_webhooks(conn: asyncpg.Connection, shop_id: uuid.UUID) -> list[Webhook]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM webhooks WHERE shop_id = $1 ORDER BY created_at, id", shop_id
    )
    return [_webhook(r) for r in rows]


async def webhook(
    conn: asyncpg.Connection, shop_id: uuid.UUID, webhook_id: uuid.UUID
) -> Webhook | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM webhooks WHERE shop_id = $1 AND id = $2", shop_id, webhook_id
    )
    return None if row is None else _webhook(row)


async def deliveries(
    conn: asyncpg.Connection,
    shop_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The webhook's deliveries, oldest first, from after the cursor ``after``."""
    rows = await conn.fetch(
        "SELECT id, event_id, event_type, status, attempts, last_status_code, last_error,"
        " last_attempt_at, next_attempt_at, created_at, delivered_at"
        " FROM webhook_deliveries WHERE shop_id = $1 AND webhook_id = $2"
        " AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))"
        " ORDER BY created_at, id LIMIT $5",
        shop_id,
        webhook_id,
        after[0] if after else None,
        after[1] if after else None,
        min(limit, MAX_PAGE),
    )
    return [dict(r) for r in rows]
