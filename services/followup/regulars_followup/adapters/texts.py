"""Inbound texts on PostgreSQL: the provider's message sids kept (a retry is one text),
and the customers a number belongs to across shops."""

from __future__ import annotations

import uuid

import asyncpg

from ..domain.inbound_texts import InboundText, KnownNumber

#: the customer's number as typed, separators dropped, so that "+1 (555) 010-2030" and
#: "+15550102030" meet (the same expression as the index in 0007_sms_hooks.sql)
COMPACT_PHONE = "regexp_replace(c.phone, '[[:space:]().-]', '', 'g')"


class PostgresInboundTexts:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def record(self, text: InboundText) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO inbound_texts (message_sid, account_sid, from_number, to_number, body)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_sid) DO NOTHING RETURNING true",
            text.message_sid,
            text.account_sid,
            text.from_number,
            text.to_number,
            text.body,
        )
        return bool(added)

    async def known_numbers(self, phone: str) -> list[KnownNumber]:
        rows = await self.conn.fetch(
            "SELECT c.shop_id, c.customer_id, c.awaiting_opt_out_answer,"
            " (SELECT max(m.sent_at) FROM messages m WHERE m.shop_id = c.shop_id"
            "   AND m.customer_id = c.customer_id AND m.channel = 'sms'"
            "   AND m.sent_at IS NOT NULL) AS last_texted_at"
            f" FROM customers c WHERE {COMPACT_PHONE} = $1"
            " ORDER BY c.shop_id, c.customer_id",
            phone,
        )
        return [
            KnownNumber(
                r["shop_id"], r["customer_id"], r["last_texted_at"], r["awaiting_opt_out_answer"]
            )
            for r in rows
        ]

    async def answered(self, message_sid: str, outcome: str) -> None:
        await self.conn.execute(
            "UPDATE inbound_texts SET outcome = $2 WHERE message_sid = $1", message_sid, outcome
        )

    async def applied_here(self, event_id: uuid.UUID, event_type: str) -> None:
        await self.conn.execute(
            "INSERT INTO inbox (event_id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            event_id,
            event_type,
        )
