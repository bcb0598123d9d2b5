"""Sign-in links, sign-in requests and staff sessions in PostgreSQL (hashes only)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from regulars_shop.policy import StaffMember

from ..domain.staff_access import SignInLink, StaffSession
from ..handlers.base import KnownStaff


class PostgresSignIns:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def staff_by_email(self, email: str) -> list[KnownStaff]:
        rows = await self.conn.fetch(
            "SELECT p.shop_id, p.policy->'contact'->>'name' AS shop_name, s.member"
            " FROM shop_policies p,"
            " LATERAL jsonb_array_elements(COALESCE(p.policy->'staff', '[]')) AS s(member)"
            " WHERE lower(s.member->>'email') = $1"
            " ORDER BY p.shop_id",
            email,
        )
        return [
            KnownStaff(
                r["shop_id"], r["shop_name"] or "your shop", StaffMember.model_validate(r["member"])
            )
            for r in rows
        ]

    async def count_requests(
        self, email_sha256: bytes, client: str, since: datetime
    ) -> tuple[int, int]:
        row = await self.conn.fetchrow(
            "SELECT (SELECT count(*) FROM sign_in_requests WHERE email_sha256 = $1 AND at >= $3),"
            " (SELECT count(*) FROM sign_in_requests WHERE client = $2 AND at >= $3)",
            email_sha256,
            client,
            since,
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def record_request(self, email_sha256: bytes, client: str, at: datetime) -> None:
        # what is older than any window is pruned as new requests come
        await self.conn.execute(
            "DELETE FROM sign_in_requests WHERE at < $1::timestamptz - interval '1 day'", at
        )
        await self.conn.execute(
            "INSERT INTO sign_in_requests (at, email_sha256, client) VALUES ($1, $2, $3)",
            at,
            email_sha256,
            client,
        )

    async def add_link(self, token_sha256: bytes, link: SignInLink) -> None:
        await self.conn.execute(
            "DELETE FROM sign_in_links WHERE expires_at < $1::timestamptz - interval '1 day'",
            link.issued_at,
        )
        await self.conn.execute(
            "INSERT INTO sign_in_links (token_sha256, shop_id, staff_id, issued_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            token_sha256,
            uuid.UUID(link.shop_id),
            link.staff_id,
            link.issued_at,
            link.expires_at,
        )

    async def take_link(self, token_sha256: bytes) -> SignInLink | None:
        row = await self.conn.fetchrow(
            "SELECT shop_id, staff_id, issued_at, expires_at, used_at FROM sign_in_links"
            " WHERE token_sha256 = $1 FOR UPDATE",
            token_sha256,
        )
        if row is None:
            return None
        return SignInLink(
            str(row["shop_id"]),
            row["staff_id"],
            row["issued_at"],
            row["expires_at"],
            row["used_at"],
        )

    async def spend_link(self, token_sha256: bytes, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE sign_in_links SET used_at = $2 WHERE token_sha256 = $1", token_sha256, at
        )

    async def add_session(self, token_sha256: bytes, session: StaffSession) -> None:
        await self.conn.execute(
            "INSERT INTO staff_sessions"
            " (token_sha256, shop_id, staff_id, csrf, started_at, last_seen_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            token_sha256,
            uuid.UUID(session.shop_id),
            session.staff_id,
            session.csrf,
            session.started_at,
            session.last_seen_at,
        )

    async def touch_session(self, token_sha256: bytes, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE staff_sessions SET last_seen_at = greatest(last_seen_at, $2)"
            " WHERE token_sha256 = $1 AND ended_at IS NULL",
            token_sha256,
            at,
        )

    async def end_session(self, token_sha256: bytes, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE staff_sessions SET ended_at = $2 WHERE token_sha256 = $1 AND ended_at IS NULL",
            token_sha256,
            at,
        )


async def session(pool: asyncpg.Pool, token_sha256: bytes) -> StaffSession | None:
    """The session a cookie names (a read: pages read, the bus writes)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT shop_id, staff_id, csrf, started_at, last_seen_at, ended_at"
            " FROM staff_sessions WHERE token_sha256 = $1",
            token_sha256,
        )
    if row is None:
        return None
    return StaffSession(
        str(row["shop_id"]),
        row["staff_id"],
        row["csrf"],
        row["started_at"],
        row["last_seen_at"],
        row["ended_at"],
    )
