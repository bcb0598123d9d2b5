"""What feedback's API reads, straight from the tables (no aggregate needed to show one):
the survey page's survey, lists of surveys and cases one page at a time, a case with its
history, the shop's name."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from regulars_runtime.shop_directory import policy_for

from ..domain.surveys import Survey
from .repository import CASE_COLUMNS, SURVEY_COLUMNS, survey_of

#: where a page ends: the last item's sort time and id
Cursor = tuple[datetime, uuid.UUID]


async def shop_name(pool: asyncpg.Pool, shop_id: uuid.UUID) -> str:
    async with pool.acquire() as conn:
        known = await policy_for(conn, shop_id)
    return (known[1].contact.name if known else None) or "the shop"


async def survey_by_token(pool: asyncpg.Pool, token: str) -> Survey | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {SURVEY_COLUMNS} FROM surveys WHERE token = $1", token)
    return None if row is None else survey_of(row)


async def surveys_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    *,
    customer_id: str | None,
    after: Cursor | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; ``after`` the last one of the page before."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {SURVEY_COLUMNS} FROM surveys WHERE shop_id = $1"
            " AND ($2::text IS NULL OR customer_id = $2)"
            " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))"
            " ORDER BY created_at DESC, id DESC LIMIT $5",
            shop_id,
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    return [dict(r) for r in rows]


#: the case's next deadline: acknowledging it while it is open, then resolving it (for a
#: resolved case, the one it had); the expression cases_by_deadline indexes
DEADLINE = "(CASE WHEN status = 'open' THEN ack_due_at ELSE resolve_due_at END)"

#: each order of the list: its keyset (on the sort time, then the id) and its ORDER BY
_ORDERS = {
    "newest": ("(opened_at, id) < ($4, $5::uuid)", "opened_at DESC, id DESC"),
    "sla": (f"({DEADLINE}, id) > ($4, $5::uuid)", f"{DEADLINE}, id"),
}


async def cases_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    *,
    status: str | None,
    customer_id: str | None,
    after: Cursor | None,
    limit: int,
    still_open: bool = False,
    assignee: str | None = None,
    order: str = "newest",
) -> list[dict[str, Any]]:
    """Newest first (or, ``order="sla"``, soonest deadline first), each with its history
    and its ``deadline``; ``after`` the last one of the page before."""
    keyset, order_by = _ORDERS[order]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {CASE_COLUMNS}, {DEADLINE} AS deadline FROM cases WHERE shop_id = $1"
            " AND ($2::text IS NULL OR status = $2)"
            " AND ($3::text IS NULL OR customer_id = $3)"
            f" AND ($4::timestamptz IS NULL OR {keyset})"
            " AND (NOT $7::boolean OR status IN ('open', 'acknowledged'))"
            " AND ($8::text IS NULL OR assignee = $8)"
            f" ORDER BY {order_by} LIMIT $6",
            shop_id,
            status,
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
            still_open,
            assignee,
        )
        return await _with_history(conn, rows)


async def case_with_history(
    pool: asyncpg.Pool, shop_id: uuid.UUID, case_id: uuid.UUID
) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1 AND shop_id = $2", case_id, shop_id
        )
        if row is None:
            return None
        return (await _with_history(conn, [row]))[0]


async def _with_history(
    conn: asyncpg.Connection, rows: list[asyncpg.Record]
) -> list[dict[str, Any]]:
    cases = [{**dict(r), "history": []} for r in rows]
    by_id = {c["id"]: c for c in cases}
    for h in await conn.fetch(
        "SELECT case_id, at, kind, by, text, data FROM case_history"
        " WHERE case_id = ANY($1::uuid[]) ORDER BY id",
        list(by_id),
    ):
        by_id[h["case_id"]]["history"].append(dict(h))
    return cases
