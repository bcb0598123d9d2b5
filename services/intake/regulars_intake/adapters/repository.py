"""Every SQL statement of intake. Each method runs on the caller's connection (and
transaction): the unit of work decides what commits together."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Received:
    """One posting's idempotency row, for the set-based insert."""

    shop_id: uuid.UUID
    client_id: str
    body_sha256: bytes
    event_id: uuid.UUID
    type: str
    #: nothing is recorded unless this customer is in the shop's directory
    required_customer: str | None


@dataclass(frozen=True)
class Visit:
    shop_id: uuid.UUID
    repair_order_id: str
    customer_id: str
    asset_id: str | None
    completed_at: datetime


class IntakeRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- shops and keys -------------------------------------------------------------
    async def add_shop(self, shop_id: uuid.UUID, name: str) -> None:
        await self.conn.execute("INSERT INTO shops (id, name) VALUES ($1, $2)", shop_id, name)

    async def shop_exists(self, shop_id: uuid.UUID) -> bool:
        return bool(await self.conn.fetchval("SELECT true FROM shops WHERE id = $1", shop_id))

    async def add_key(self, key_id: str, shop_id: uuid.UUID, secret_sha256: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO api_keys (key_id, shop_id, secret_sha256) VALUES ($1, $2, $3)",
            key_id,
            shop_id,
            secret_sha256,
        )

    async def list_shops(self) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT s.id, s.name, s.created_at, p.policy->>'timezone' AS timezone"
                " FROM shops s JOIN LATERAL (SELECT policy FROM policies WHERE shop_id = s.id"
                " ORDER BY version DESC LIMIT 1) p ON true ORDER BY s.created_at"
            )
        )

    # --- policy -----------------------------------------------------------------------
    async def latest_policy(self, shop_id: uuid.UUID) -> tuple[int, dict[str, Any]] | None:
        row = await self.conn.fetchrow(
            "SELECT version, policy FROM policies WHERE shop_id = $1 ORDER BY version DESC LIMIT 1",
            shop_id,
        )
        return None if row is None else (int(row["version"]), row["policy"])

    async def add_policy(self, shop_id: uuid.UUID, policy: dict[str, Any]) -> int:
        # The row lock on the shop serialises concurrent PUTs, so versions never collide.
        await self.conn.execute("SELECT 1 FROM shops WHERE id = $1 FOR UPDATE", shop_id)
        version: int = await self.conn.fetchval(
            "INSERT INTO policies (shop_id, version, policy)"
            " SELECT $1, coalesce(max(version), 0) + 1, $2 FROM policies WHERE shop_id = $1"
            " RETURNING version",
            shop_id,
            policy,
        )
        return version

    # --- idempotency ------------------------------------------------------------------
    async def record_received(
        self,
        shop_id: uuid.UUID,
        client_id: str,
        body_sha256: bytes,
        event_id: uuid.UUID,
        type_: str,
        *,
        required_customer: str | None = None,
    ) -> tuple[bool, bytes | None, uuid.UUID | None]:
        """(fresh, stored body hash, stored event id) for the shop's event id.

        With ``required_customer``, nothing is recorded unless that customer is in the
        shop's directory: then (False, None, None).
        """
        stored = await self.conn.fetchval(
            "INSERT INTO received_events (shop_id, client_id, body_sha256, event_id, type)"
            " SELECT $1, $2, $3, $4, $5 WHERE $6::text IS NULL OR EXISTS"
            " (SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $6)"
            " ON CONFLICT (shop_id, client_id) DO NOTHING RETURNING event_id",
            shop_id,
            client_id,
            body_sha256,
            event_id,
            type_,
            required_customer,
        )
        if stored is not None:
            return True, body_sha256, event_id
        # A separate statement: it must see a row committed while the insert waited on it.
        row = await self.conn.fetchrow(
            "SELECT body_sha256, event_id FROM received_events"
            " WHERE shop_id = $1 AND client_id = $2",
            shop_id,
            client_id,
        )
        if row is None:
            return False, None, None
        return False, bytes(row["body_sha256"]), row["event_id"]

    async def record_received_many(self, rows: Sequence[Received]) -> set[tuple[uuid.UUID, str]]:
        """The (shop, client id) of each row recorded now; one statement for all of them.

        A row is left out when its id is already taken (a duplicate or a conflict, for the
        caller to tell apart) or its required customer is not in the directory. Rows go in
        key order, so two concurrent batches lock the same keys in the same order.
        """
        recorded = await self.conn.fetch(
            "INSERT INTO received_events (shop_id, client_id, body_sha256, event_id, type)"
            " SELECT i.shop_id, i.client_id, i.body_sha256, i.event_id, i.type"
            " FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::uuid[], $5::text[],"
            " $6::text[]) AS i(shop_id, client_id, body_sha256, event_id, type, customer_id)"
            " WHERE i.customer_id IS NULL OR EXISTS (SELECT 1 FROM customers c"
            "   WHERE c.shop_id = i.shop_id AND c.customer_id = i.customer_id)"
            " ORDER BY i.shop_id, i.client_id"
            " ON CONFLICT (shop_id, client_id) DO NOTHING RETURNING shop_id, client_id",
            [r.shop_id for r in rows],
            [r.client_id for r in rows],
            [r.body_sha256 for r in rows],
            [r.event_id for r in rows],
            [r.type for r in rows],
            [r.required_customer for r in rows],
        )
        return {(r["shop_id"], r["client_id"]) for r in recorded}

    # --- customers and visits ---------------------------------------------------------
    async def upsert_customer(self, shop_id: uuid.UUID, data: dict[str, Any]) -> None:
        await self.conn.execute(
            "INSERT INTO customers (shop_id, customer_id, name, phone, email, state, timezone,"
            " birthday, consent, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::date,"
            " coalesce($9::jsonb, '{}'), $10)"
            " ON CONFLICT (shop_id, customer_id) DO UPDATE SET name = excluded.name,"
            " phone = excluded.phone, email = excluded.email, state = excluded.state,"
            " timezone = excluded.timezone, birthday = excluded.birthday,"
            " consent = CASE WHEN $9::jsonb IS NULL THEN customers.consent"
            "   ELSE customers.consent || $9::jsonb END,"
            " data = excluded.data, updated_at = now()",
            shop_id,
            data["customer_id"],
            data["name"],
            data.get("phone"),
            data.get("email"),
            data.get("state"),
            data.get("timezone"),
            data.get("birthday"),
            {k: v for k, v in (data.get("consent") or {}).items() if v is not None} or None,
            data,
        )

    async def customer_exists(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM customers WHERE shop_id = $1 AND customer_id = $2",
                shop_id,
                customer_id,
            )
        )

    async def customer(self, shop_id: uuid.UUID, customer_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT customer_id, name, phone, email, state, timezone, birthday, consent, data,"
            " updated_at FROM customers WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
        )
        return row

    async def set_consent(
        self, shop_id: uuid.UUID, customer_id: str, channel: str, granted: bool
    ) -> None:
        await self.conn.execute(
            "UPDATE customers SET consent = consent || jsonb_build_object($3::text, $4::boolean),"
            " updated_at = now() WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
            channel,
            granted,
        )

    async def record_visit(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        customer_id: str,
        asset_id: str | None,
        completed_at: datetime,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO repair_orders (shop_id, repair_order_id, customer_id, asset_id,"
            " completed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (shop_id, repair_order_id)"
            " DO UPDATE SET status = CASE WHEN repair_orders.status = 'reopened' THEN 'completed'"
            " ELSE repair_orders.status END",
            shop_id,
            repair_order_id,
            customer_id,
            asset_id,
            completed_at,
        )

    async def record_visits(self, visits: Sequence[Visit]) -> None:
        """``record_visit`` for many repair orders at once; each (shop, order) once at most."""
        await self.conn.execute(
            "INSERT INTO repair_orders (shop_id, repair_order_id, customer_id, asset_id,"
            " completed_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[],"
            " $4::text[], $5::timestamptz[]) AS v ORDER BY 1, 2"
            " ON CONFLICT (shop_id, repair_order_id)"
            " DO UPDATE SET status = CASE WHEN repair_orders.status = 'reopened' THEN 'completed'"
            " ELSE repair_orders.status END",
            [v.shop_id for v in visits],
            [v.repair_order_id for v in visits],
            [v.customer_id for v in visits],
            [v.asset_id for v in visits],
            [v.completed_at for v in visits],
        )

    async def visit_customer(self, shop_id: uuid.UUID, repair_order_id: str) -> str | None:
        """The visit's customer id, or None when the shop has no such repair order."""
        customer_id: str | None = await self.conn.fetchval(
            "SELECT customer_id FROM repair_orders WHERE shop_id = $1 AND repair_order_id = $2",
            shop_id,
            repair_order_id,
        )
        return customer_id

    async def set_visit_status(self, shop_id: uuid.UUID, repair_order_id: str, status: str) -> None:
        await self.conn.execute(
            "UPDATE repair_orders SET status = $3 WHERE shop_id = $1 AND repair_order_id = $2",
            shop_id,
            repair_order_id,
            status,
        )
