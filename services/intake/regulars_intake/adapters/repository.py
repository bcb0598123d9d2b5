"""intake's repositories on PostgreSQL: every SQL statement that writes intake's state.

Each runs on the caller's connection (and transaction): the unit of work decides what
commits together. The set-based statements take their rows in key order, so two
concurrent batches lock the same keys in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
from regulars_events.catalogue import ConsentChanged, CustomerUpserted, InvoiceIssued

from ..domain.acceptance import ClaimFirst, Needs, Receipt, ReceiptKey
from ..domain.postings import as_posted, parse_posting
from ..domain.repair_orders import RepairOrder, VisitStatus
from ..domain.shop import Shop
from ..handlers import HeldPosting, ShopSummary


class PostgresShopRegistry:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, shop_id: uuid.UUID) -> Shop | None:
        # The row lock serialises concurrent policy changes; the version is read after
        # it, by a statement of its own, so it sees what the one before committed.
        name: str | None = await self.conn.fetchval(
            "SELECT name FROM shops WHERE id = $1 FOR UPDATE", shop_id
        )
        if name is None:
            return None
        version: int = await self.conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM policies WHERE shop_id = $1", shop_id
        )
        return Shop(shop_id, name, policy_version=version)

    async def save(self, shop: Shop) -> None:
        if shop.is_new:
            await self.conn.execute(
                "INSERT INTO shops (id, name) VALUES ($1, $2)", shop.id, shop.name
            )
        for policy in shop.new_policies:
            await self.conn.execute(
                "INSERT INTO policies (shop_id, version, policy, changed_by)"
                " VALUES ($1, $2, $3, $4)",
                shop.id,
                policy.version,
                policy.document,
                policy.changed_by,
            )
        for key in shop.new_keys:
            await self.conn.execute(
                "INSERT INTO api_keys (key_id, shop_id, secret_sha256) VALUES ($1, $2, $3)",
                key.key_id,
                shop.id,
                key.secret_sha256,
            )

    async def summaries(self) -> list[ShopSummary]:
        rows = await self.conn.fetch(
            "SELECT s.id, s.name, s.created_at, p.policy->>'timezone' AS timezone"
            " FROM shops s JOIN LATERAL (SELECT policy FROM policies WHERE shop_id = s.id"
            " ORDER BY version DESC LIMIT 1) p ON true ORDER BY s.created_at"
        )
        return [
            ShopSummary(
                id=r["id"], name=r["name"], created_at=r["created_at"], timezone=r["timezone"]
            )
            for r in rows
        ]


class PostgresReceipts:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, claims: Sequence[ClaimFirst]) -> dict[ReceiptKey, bool]:
        # The customer check rides on the insert: one round trip on the hot path.
        receipts = [c.receipt for c in claims]
        recorded = await self.conn.fetch(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::uuid[],"
            " $5::text[], $6::text[]) AS i(shop_id, client_id, body_sha256, event_id, type,"
            " customer_id)), r AS (INSERT INTO received_events (shop_id, client_id,"
            " body_sha256, event_id, type)"
            " SELECT i.shop_id, i.client_id, i.body_sha256, i.event_id, i.type FROM i"
            " ORDER BY i.shop_id, i.client_id"
            " ON CONFLICT (shop_id, client_id) DO NOTHING RETURNING shop_id, client_id)"
            " SELECT r.shop_id, r.client_id, (i.customer_id IS NULL OR EXISTS (SELECT 1"
            "   FROM customers c WHERE c.shop_id = i.shop_id AND c.customer_id = i.customer_id))"
            "   AS customer_known"
            " FROM r JOIN i USING (shop_id, client_id)",
            [r.shop_id for r in receipts],
            [r.client_id for r in receipts],
            [r.body_sha256 for r in receipts],
            [r.event_id for r in receipts],
            [r.type for r in receipts],
            [c.required_customer for c in claims],
        )
        return {(r["shop_id"], r["client_id"]): r["customer_known"] for r in recorded}

    async def stored(self, keys: Sequence[ReceiptKey]) -> dict[ReceiptKey, Receipt]:
        rows = await self.conn.fetch(
            "SELECT r.shop_id, r.client_id, r.body_sha256, r.event_id, r.type"
            " FROM received_events r JOIN unnest($1::uuid[], $2::text[]) AS k(shop_id, client_id)"
            " USING (shop_id, client_id)",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {
            (r["shop_id"], r["client_id"]): Receipt(
                r["shop_id"], r["client_id"], bytes(r["body_sha256"]), r["event_id"], r["type"]
            )
            for r in rows
        }


class PostgresRepairOrders:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(
        self, keys: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], RepairOrder]:
        rows = await self.conn.fetch(
            "SELECT o.shop_id, o.repair_order_id, o.customer_id, o.asset_id, o.completed_at,"
            " o.status FROM repair_orders o"
            " JOIN unnest($1::uuid[], $2::text[]) AS k(shop_id, repair_order_id)"
            " USING (shop_id, repair_order_id)",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        orders = (
            RepairOrder(
                r["shop_id"],
                r["repair_order_id"],
                r["customer_id"],
                r["asset_id"],
                r["completed_at"],
                VisitStatus(r["status"]),
            )
            for r in rows
        )
        return {o.key: o for o in orders}

    async def add_completed(self, orders: Sequence[RepairOrder]) -> None:
        # The conflict arm is RepairOrder.completed_again(), set-based.
        await self.conn.execute(
            "INSERT INTO repair_orders (shop_id, repair_order_id, customer_id, asset_id,"
            " completed_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[],"
            " $4::text[], $5::timestamptz[]) AS v ORDER BY 1, 2"
            " ON CONFLICT (shop_id, repair_order_id)"
            " DO UPDATE SET status = CASE WHEN repair_orders.status = 'reopened' THEN 'completed'"
            " ELSE repair_orders.status END",
            [o.shop_id for o in orders],
            [o.repair_order_id for o in orders],
            [o.customer_id for o in orders],
            [o.asset_id for o in orders],
            [o.completed_at for o in orders],
        )

    async def save(self, order: RepairOrder) -> None:
        await self.conn.execute(
            "UPDATE repair_orders SET status = $3 WHERE shop_id = $1 AND repair_order_id = $2",
            order.shop_id,
            order.repair_order_id,
            order.status.value,
        )


class PostgresCustomerDirectory:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def known(self, customers: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        rows = await self.conn.fetch(
            "SELECT c.shop_id, c.customer_id FROM customers c"
            " JOIN unnest($1::uuid[], $2::text[]) AS k(shop_id, customer_id)"
            " USING (shop_id, customer_id)",
            [k[0] for k in customers],
            [k[1] for k in customers],
        )
        return {(r["shop_id"], r["customer_id"]) for r in rows}

    async def save_details(self, shop_id: uuid.UUID, customer: CustomerUpserted) -> None:
        data = customer.model_dump(mode="json")
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

    async def change_consent(self, shop_id: uuid.UUID, change: ConsentChanged) -> None:
        await self.conn.execute(
            "UPDATE customers SET consent = consent || jsonb_build_object($3::text, $4::boolean),"
            " updated_at = now() WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            change.customer_id,
            change.channel,
            change.granted,
        )


class PostgresInvoices:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def issued(self, keys: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        rows = await self.conn.fetch(
            "SELECT i.shop_id, i.invoice_id FROM invoices i"
            " JOIN unnest($1::uuid[], $2::text[]) AS k(shop_id, invoice_id)"
            " USING (shop_id, invoice_id)",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["shop_id"], r["invoice_id"]) for r in rows}

    async def add(self, shop_id: uuid.UUID, invoice: InvoiceIssued) -> None:
        await self.conn.execute(
            "INSERT INTO invoices (shop_id, invoice_id, customer_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (shop_id, invoice_id) DO NOTHING",
            shop_id,
            invoice.invoice_id,
            invoice.customer_id,
        )


def _lock_key(needs: Needs) -> str:
    return f"{needs.shop_id}:{needs.kind}:{needs.id}"


class PostgresWaitingRoom:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock(self, needs: Sequence[Needs]) -> None:
        # A transaction-scoped advisory lock per need, taken in one order by everyone so
        # that two providers never wait on each other crosswise.
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(k, 0) AS h"
            " FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
            sorted({_lock_key(n) for n in needs}),
        )

    async def hold(self, held: HeldPosting) -> None:
        posted = as_posted(held.posting)
        await self.conn.execute(
            "INSERT INTO waiting_events (shop_id, event_id, client_id, type, occurred_at,"
            " needs_kind, needs_id, posting, received_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))"
            " ON CONFLICT (shop_id, event_id) DO UPDATE SET needs_kind = excluded.needs_kind,"
            " needs_id = excluded.needs_id",
            held.shop_id,
            held.event_id,
            held.posting.client_id,
            held.posting.short_type,
            held.posting.occurred_at,
            held.needs.kind,
            held.needs.id,
            posted,
            held.since,
        )

    async def take(self, needs: Sequence[Needs]) -> list[HeldPosting]:
        rows = await self.conn.fetch(
            "DELETE FROM waiting_events w USING unnest($1::uuid[], $2::text[], $3::text[])"
            " AS n(shop_id, kind, id) WHERE w.shop_id = n.shop_id AND w.needs_kind = n.kind"
            " AND w.needs_id = n.id"
            " RETURNING w.shop_id, w.event_id, w.occurred_at, w.received_at, w.needs_kind,"
            " w.needs_id, w.posting",
            [n.shop_id for n in needs],
            [n.kind for n in needs],
            [n.id for n in needs],
        )
        ordered = sorted(rows, key=lambda r: (r["occurred_at"], r["received_at"], r["event_id"]))
        return [
            HeldPosting(
                r["shop_id"],
                r["event_id"],
                parse_posting(r["posting"]),
                Needs(r["shop_id"], r["needs_kind"], r["needs_id"]),
                r["received_at"],
            )
            for r in ordered
        ]
