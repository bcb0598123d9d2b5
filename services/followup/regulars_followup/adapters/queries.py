"""What the API reads (the staff call list, the message log): queries that change nothing,
each on a connection of its own."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

_TASK_VIEW = (
    "SELECT t.id, t.customer_id, t.repair_order_id, t.assignee, t.status, t.due_at,"
    " t.attempts, t.script, t.status_reason, t.created_at, t.updated_at,"
    " c.name AS customer_name, c.phone AS customer_phone FROM follow_up_tasks t"
    " LEFT JOIN customers c USING (shop_id, customer_id)"
)


async def list_tasks(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    *,
    status: str | None,
    assignee: str | None,
    customer_id: str | None,
    due_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    # Keyset paging on (due_at, id): stable while tasks are added, and cheap at depth.
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                _TASK_VIEW + " WHERE t.shop_id = $1 AND ($2::text IS NULL OR t.status = $2)"
                " AND ($3::text IS NULL OR t.assignee = $3)"
                " AND ($4::text IS NULL OR t.customer_id = $4)"
                " AND ($5::timestamptz IS NULL OR (t.due_at, t.id) > ($5, $6::uuid))"
                " AND ($8::timestamptz IS NULL OR t.due_at < $8)"
                " ORDER BY t.due_at, t.id LIMIT $7",
                shop_id,
                status,
                assignee,
                customer_id,
                after[0] if after else None,
                after[1] if after else None,
                limit,
                due_before,
            )
        )


async def task_with_history(
    pool: asyncpg.Pool, shop_id: uuid.UUID, task_id: uuid.UUID
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """The shop's task with its customer's name, and its attempts in order."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            _TASK_VIEW + " WHERE t.id = $1 AND t.shop_id = $2", task_id, shop_id
        )
        history = await conn.fetch(
            "SELECT number, outcome, satisfied, score, notes, by_staff, at"
            " FROM follow_up_attempts WHERE task_id = $1 ORDER BY number",
            task_id,
        )
    return row, list(history)


async def list_messages(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    customer_id: str | None,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    # Keyset paging on (created_at, id), newest first.
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT id, customer_id, channel, kind, purpose, status, reason, send_at,"
                " sent_at, repair_order_id, created_at FROM messages WHERE shop_id = $1"
                " AND ($2::text IS NULL OR customer_id = $2)"
                " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))"
                " ORDER BY created_at DESC, id DESC LIMIT $5",
                shop_id,
                customer_id,
                before[0] if before else None,
                before[1] if before else None,
                limit,
            )
        )
