"""Every SQL statement of followup, on the caller's connection and transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True)
class NewVisit:
    shop_id: uuid.UUID
    repair_order_id: str
    customer_id: str
    completed_at: datetime
    data: dict[str, Any]
    event_id: uuid.UUID


class FollowUpRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def upsert_customer(self, shop_id: uuid.UUID, data: dict[str, Any]) -> None:
        await self.conn.execute(
            "INSERT INTO customers (shop_id, customer_id, name, phone, email, state, timezone,"
            " birthday) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::date)"
            " ON CONFLICT (shop_id, customer_id) DO UPDATE"
            " SET name = excluded.name, phone = excluded.phone, email = excluded.email,"
            " state = excluded.state, timezone = excluded.timezone, birthday = excluded.birthday,"
            " updated_at = now()",
            shop_id,
            data["customer_id"],
            data["name"],
            data.get("phone"),
            data.get("email"),
            data.get("state"),
            data.get("timezone"),
            data.get("birthday"),
        )

    async def contact(self, shop_id: uuid.UUID, customer_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT name, phone, email FROM customers WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
        )
        return row

    async def visit(self, shop_id: uuid.UUID, repair_order_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM visits WHERE shop_id = $1 AND repair_order_id = $2 FOR UPDATE",
            shop_id,
            repair_order_id,
        )
        return row

    async def add_visit(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        customer_id: str,
        completed_at: datetime,
        data: dict[str, Any],
        event_id: uuid.UUID,
    ) -> bool:
        """False when the visit was already known (a repeat of "completed")."""
        added = await self.conn.fetchval(
            "INSERT INTO visits (shop_id, repair_order_id, customer_id, completed_at, status,"
            " data, first_event_id) VALUES ($1, $2, $3, $4, 'completed', $5, $6)"
            " ON CONFLICT (shop_id, repair_order_id) DO NOTHING RETURNING true",
            shop_id,
            repair_order_id,
            customer_id,
            completed_at,
            data,
            event_id,
        )
        return bool(added)

    async def set_visit_status(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        status: str,
        completed_at: datetime | None = None,
    ) -> None:
        await self.conn.execute(
            "UPDATE visits SET status = $3, completed_at = coalesce($4, completed_at)"
            " WHERE shop_id = $1 AND repair_order_id = $2",
            shop_id,
            repair_order_id,
            status,
            completed_at,
        )

    async def add_visits(self, visits: Sequence[NewVisit]) -> set[tuple[uuid.UUID, str]]:
        """``add_visit`` for many visits at once: the (shop, repair order) of those new."""
        rows = await self.conn.fetch(
            "INSERT INTO visits (shop_id, repair_order_id, customer_id, completed_at, status,"
            " data, first_event_id) SELECT shop_id, repair_order_id, customer_id, completed_at,"
            " 'completed', data::jsonb, first_event_id FROM unnest($1::uuid[], $2::text[],"
            " $3::text[], $4::timestamptz[], $5::text[], $6::uuid[])"
            " AS v(shop_id, repair_order_id, customer_id, completed_at, data, first_event_id)"
            " ORDER BY shop_id, repair_order_id"
            " ON CONFLICT (shop_id, repair_order_id) DO NOTHING RETURNING shop_id, repair_order_id",
            [v.shop_id for v in visits],
            [v.repair_order_id for v in visits],
            [v.customer_id for v in visits],
            [v.completed_at for v in visits],
            [orjson.dumps(v.data).decode() for v in visits],
            [v.event_id for v in visits],
        )
        return {(r["shop_id"], r["repair_order_id"]) for r in rows}

    async def add_tasks(self, tasks: Sequence[dict[str, Any]]) -> None:
        """``add_task`` for many new visits' tasks at once."""
        await self.conn.execute(
            "INSERT INTO follow_up_tasks (id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind)"
            " SELECT id, shop_id, customer_id, repair_order_id, assignee, status, due_at,"
            " script::jsonb, policy_version, kind FROM unnest($1::uuid[], $2::uuid[],"
            " $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[],"
            " $9::int[], $10::text[]) AS t(id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind) ORDER BY shop_id, repair_order_id"
            " ON CONFLICT (shop_id, repair_order_id, kind) DO NOTHING",
            [t["id"] for t in tasks],
            [t["shop_id"] for t in tasks],
            [t["customer_id"] for t in tasks],
            [t["repair_order_id"] for t in tasks],
            [t["assignee"] for t in tasks],
            [t["status"] for t in tasks],
            [t["due_at"] for t in tasks],
            [orjson.dumps(t["script"]).decode() for t in tasks],
            [t["policy_version"] for t in tasks],
            [t.get("kind", "visit") for t in tasks],
        )

    async def add_task(self, task: dict[str, Any]) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO follow_up_tasks (id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (shop_id, repair_order_id, kind) DO NOTHING RETURNING true",
            task["id"],
            task["shop_id"],
            task["customer_id"],
            task["repair_order_id"],
            task["assignee"],
            task["status"],
            task["due_at"],
            task["script"],
            task["policy_version"],
            task.get("kind", "visit"),
        )
        return bool(added)

    async def task_for_visit(
        self, shop_id: uuid.UUID, repair_order_id: str
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM follow_up_tasks WHERE shop_id = $1 AND repair_order_id = $2"
            " AND kind = 'visit' FOR UPDATE",
            shop_id,
            repair_order_id,
        )
        return row

    async def set_task_status(self, task_id: uuid.UUID, status: str, reason: str | None) -> None:
        await self.conn.execute(
            "UPDATE follow_up_tasks SET status = $2, status_reason = $3, updated_at = now()"
            " WHERE id = $1",
            task_id,
            status,
            reason,
        )

    async def reschedule_task(
        self, task_id: uuid.UUID, due_at: datetime, policy_version: int, script: dict[str, Any]
    ) -> None:
        await self.conn.execute(
            "UPDATE follow_up_tasks SET status = 'scheduled', status_reason = NULL, due_at = $2,"
            " attempts = 0, policy_version = $3, script = $4, updated_at = now() WHERE id = $1",
            task_id,
            due_at,
            policy_version,
            script,
        )

    async def task_by_id(self, task_id: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM follow_up_tasks WHERE id = $1 FOR UPDATE", task_id
        )
        return row

    async def task(self, shop_id: uuid.UUID, task_id: uuid.UUID) -> asyncpg.Record | None:
        """The shop's task with its customer's name, locked for the change about to be made."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT t.*, c.name AS customer_name FROM follow_up_tasks t"
            " LEFT JOIN customers c USING (shop_id, customer_id)"
            " WHERE t.id = $1 AND t.shop_id = $2 FOR UPDATE OF t",
            task_id,
            shop_id,
        )
        return row

    async def add_attempt(
        self, task_id: uuid.UUID, shop_id: uuid.UUID, number: int, a: Any
    ) -> None:
        await self.conn.execute(
            "INSERT INTO follow_up_attempts (task_id, number, shop_id, outcome, satisfied, score,"
            " notes, by_staff, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            task_id,
            number,
            shop_id,
            str(a.outcome),
            a.satisfied,
            a.score,
            a.notes,
            a.by,
            a.at,
        )
        await self.conn.execute(
            "UPDATE follow_up_tasks SET attempts = $2, updated_at = now() WHERE id = $1",
            task_id,
            number,
        )

    async def attempts(self, task_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT number, outcome, satisfied, score, notes, by_staff, at"
                " FROM follow_up_attempts WHERE task_id = $1 ORDER BY number",
                task_id,
            )
        )

    # --- consent ledger ----------------------------------------------------------------
    async def customer(self, shop_id: uuid.UUID, customer_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE",
            shop_id,
            customer_id,
        )
        return row

    async def record_consent(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        change: Any,
        event_id: uuid.UUID | None,
        at: datetime,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO consent_ledger (shop_id, customer_id, channel, granted, source, text,"
            " event_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            shop_id,
            customer_id,
            change.channel,
            change.granted,
            change.source,
            change.text,
            event_id,
            at,
        )
        await self.conn.execute(
            "UPDATE customers SET consent = consent || jsonb_build_object($3::text, $4::boolean),"
            " sms_opted_out_at = CASE WHEN $3 = 'sms' AND NOT $4 THEN $5 ELSE sms_opted_out_at END,"
            " awaiting_opt_out_answer = CASE WHEN $3 = 'sms' THEN NOT $4"
            "   ELSE awaiting_opt_out_answer END"
            " WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
            change.channel,
            change.granted,
            at,
        )

    async def consent_history(self, shop_id: uuid.UUID, customer_id: str) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT channel, granted, source, text, at FROM consent_ledger"
                " WHERE shop_id = $1 AND customer_id = $2 ORDER BY id",
                shop_id,
                customer_id,
            )
        )

    # --- messages --------------------------------------------------------------------
    async def add_message(self, m: dict[str, Any]) -> bool:
        """False when this purpose already has its message: never the same message twice."""
        added = await self.conn.fetchval(
            "INSERT INTO messages (id, shop_id, customer_id, purpose, kind, channel, priority,"
            " status, reason, send_at, link, repair_order_id, context, to_staff)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (shop_id, customer_id, purpose) DO NOTHING RETURNING true",
            m["id"],
            m["shop_id"],
            m["customer_id"],
            m["purpose"],
            m["kind"],
            m["channel"],
            m["priority"],
            m["status"],
            m["reason"],
            m["send_at"],
            m.get("link"),
            m.get("repair_order_id"),
            m.get("context") or {},
            m.get("to_staff"),
        )
        return bool(added)

    async def message(self, message_id: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM messages WHERE id = $1 FOR UPDATE", message_id
        )
        return row

    async def set_message(self, message_id: uuid.UUID, **fields: Any) -> None:
        allowed = {"status", "reason", "send_at", "channel", "provider_id", "sent_at", "attempts"}
        assert set(fields) <= allowed, fields
        names = sorted(fields)
        assignments = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
        await self.conn.execute(
            f"UPDATE messages SET {assignments}, updated_at = now() WHERE id = $1",
            message_id,
            *(fields[n] for n in names),
        )

    async def budget_facts(
        self, shop_id: uuid.UUID, customer_id: str, since_24h: datetime
    ) -> asyncpg.Record:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT"
            " (SELECT max(sent_at) FROM messages WHERE shop_id = $1 AND customer_id = $2"
            "   AND priority = 2 AND sent_at IS NOT NULL) AS last_marketing_at,"
            " (SELECT count(*) FROM messages WHERE shop_id = $1 AND customer_id = $2"
            "   AND channel = 'sms' AND sent_at >= $3) AS sms_last_24h,"
            " EXISTS (SELECT 1 FROM open_recovery_cases WHERE shop_id = $1 AND customer_id = $2)"
            "   AS open_case",
            shop_id,
            customer_id,
            since_24h,
        )
        assert row is not None
        return row

    async def last_visit(self, shop_id: uuid.UUID, customer_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM visits WHERE shop_id = $1 AND customer_id = $2 AND status = 'completed'"
            " ORDER BY completed_at DESC LIMIT 1",
            shop_id,
            customer_id,
        )
        return row

    async def claim_due_messages(self, limit: int) -> list[asyncpg.Record]:
        """Due messages, claimed: marked 'sending' (committed by the caller before sending)."""
        return list(
            await self.conn.fetch(
                "UPDATE messages SET status = 'sending', attempts = attempts + 1,"
                " updated_at = now() WHERE id IN (SELECT id FROM messages WHERE status = 'due'"
                " ORDER BY priority, send_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *",
                limit,
            )
        )

    async def interrupted_messages(self, older_than: datetime) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT * FROM messages WHERE status = 'sending' AND updated_at < $1"
                " FOR UPDATE SKIP LOCKED",
                older_than,
            )
        )

    async def list_messages(
        self, shop_id: uuid.UUID, customer_id: str | None, limit: int
    ) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT id, customer_id, channel, kind, purpose, status, reason, send_at,"
                " sent_at, repair_order_id, created_at FROM messages WHERE shop_id = $1"
                " AND ($2::text IS NULL OR customer_id = $2) ORDER BY created_at DESC LIMIT $3",
                shop_id,
                customer_id,
                limit,
            )
        )

    async def message_by_unsubscribe_token(self, token: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT * FROM messages WHERE context->>'unsubscribe_token' = $1", token
        )
        return row

    async def sweep_population(
        self, shop_id: uuid.UUID
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        """The shop's customers and their completed visits, for the monthly check."""
        customers = await self.conn.fetch(
            "SELECT customer_id, birthday FROM customers WHERE shop_id = $1 ORDER BY customer_id",
            shop_id,
        )
        visits = await self.conn.fetch(
            "SELECT customer_id, repair_order_id, completed_at, data FROM visits"
            " WHERE shop_id = $1 AND status = 'completed' ORDER BY completed_at",
            shop_id,
        )
        return list(customers), list(visits)

    async def open_case(
        self, shop_id: uuid.UUID, customer_id: str, case_id: str, at: datetime
    ) -> None:
        await self.conn.execute(
            "INSERT INTO open_recovery_cases (shop_id, customer_id, case_id, opened_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            shop_id,
            customer_id,
            case_id,
            at,
        )

    async def close_case(self, shop_id: uuid.UUID, case_id: str) -> None:
        await self.conn.execute(
            "DELETE FROM open_recovery_cases WHERE shop_id = $1 AND case_id = $2", shop_id, case_id
        )

    async def notify(self, channel: str) -> None:
        """A wake-up for a worker LISTENing on ``channel``, delivered at commit."""
        await self.conn.execute(f"NOTIFY {channel}")

    async def list_tasks(
        self,
        shop_id: uuid.UUID,
        *,
        status: str | None,
        assignee: str | None,
        customer_id: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        # Keyset paging on (due_at, id): stable while tasks are added, and cheap at depth.
        return list(
            await self.conn.fetch(
                "SELECT t.id, t.customer_id, t.repair_order_id, t.assignee, t.status, t.due_at,"
                " t.attempts, t.script, t.status_reason, t.created_at, t.updated_at,"
                " c.name AS customer_name FROM follow_up_tasks t"
                " LEFT JOIN customers c USING (shop_id, customer_id)"
                " WHERE t.shop_id = $1 AND ($2::text IS NULL OR t.status = $2)"
                " AND ($3::text IS NULL OR t.assignee = $3)"
                " AND ($4::text IS NULL OR t.customer_id = $4)"
                " AND ($5::timestamptz IS NULL OR (t.due_at, t.id) > ($5, $6::uuid))"
                " ORDER BY t.due_at, t.id LIMIT $7",
                shop_id,
                status,
                assignee,
                customer_id,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        )
