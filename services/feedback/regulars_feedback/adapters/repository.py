"""Every SQL statement of feedback, on the caller's connection and transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime import timeline

#: a case's columns as the handlers and the API read them
_CASE = (
    "id, shop_id, customer_id, repair_order_id, incident_key, severity, status, assignee,"
    " escalation_level, opened_at, ack_window_start, ack_at_risk_at, ack_due_at,"
    " resolve_window_start, resolve_at_risk_at, resolve_due_at, acknowledged_at,"
    " acknowledged_by, resolved_at, resolved_by, outcome, updated_at"
)
_SURVEY = (
    "id, shop_id, customer_id, repair_order_id, reason, token, status, created_at, expires_at,"
    " case_id"
)


class FeedbackRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- timeline -------------------------------------------------------------------------

    async def add_to_timeline(self, envelope: Envelope) -> None:
        await timeline.add_to_timeline(self.conn, envelope)

    # -- visits ---------------------------------------------------------------------------

    async def remember_visit(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        customer_id: str,
        *,
        advisor: str | None,
        comeback: bool | None,
        completed_at: datetime | None,
    ) -> None:
        """What a visit's events tell (the latest "completed" wins; a call's assignee only
        fills in an advisor not known yet)."""
        await self.conn.execute(
            "INSERT INTO visits (shop_id, repair_order_id, customer_id, advisor, comeback,"
            " completed_at) VALUES ($1, $2, $3, $4, coalesce($5, false), $6)"
            " ON CONFLICT (shop_id, repair_order_id) DO UPDATE SET"
            " advisor = CASE WHEN $6::timestamptz IS NULL"
            "   THEN coalesce(visits.advisor, excluded.advisor)"
            "   ELSE coalesce(excluded.advisor, visits.advisor) END,"
            " comeback = coalesce($5, visits.comeback),"
            " completed_at = coalesce(excluded.completed_at, visits.completed_at),"
            " updated_at = now()",
            shop_id,
            repair_order_id,
            customer_id,
            advisor,
            comeback,
            completed_at,
        )

    async def visit(self, shop_id: uuid.UUID, repair_order_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT repair_order_id, customer_id, advisor, comeback, completed_at FROM visits"
            " WHERE shop_id = $1 AND repair_order_id = $2",
            shop_id,
            repair_order_id,
        )
        return row

    async def had_comeback(self, shop_id: uuid.UUID, customer_id: str, since: datetime) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM visits WHERE shop_id = $1 AND customer_id = $2 AND comeback"
                " AND coalesce(completed_at, updated_at) >= $3 LIMIT 1",
                shop_id,
                customer_id,
                since,
            )
        )

    # -- surveys --------------------------------------------------------------------------

    async def add_survey(self, survey: dict[str, Any]) -> bool:
        """False when this visit already has its survey for this reason (and case)."""
        added = await self.conn.fetchval(
            "INSERT INTO surveys (id, shop_id, customer_id, repair_order_id, reason, token,"
            " expires_at, case_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT DO NOTHING RETURNING true",
            survey["id"],
            survey["shop_id"],
            survey["customer_id"],
            survey["repair_order_id"],
            survey["reason"],
            survey["token"],
            survey["expires_at"],
            survey.get("case_id"),
            survey["created_at"],
        )
        return bool(added)

    async def list_surveys(
        self, shop_id: uuid.UUID, customer_id: str | None, limit: int
    ) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                f"SELECT {_SURVEY} FROM surveys WHERE shop_id = $1"
                " AND ($2::text IS NULL OR customer_id = $2) ORDER BY created_at DESC LIMIT $3",
                shop_id,
                customer_id,
                limit,
            )
        )

    async def has_survey(self, shop_id: uuid.UUID, customer_id: str, since: datetime) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM surveys WHERE shop_id = $1 AND customer_id = $2"
                " AND created_at >= $3 LIMIT 1",
                shop_id,
                customer_id,
                since,
            )
        )

    async def survey_by_token(self, token: str, *, lock: bool = False) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {_SURVEY} FROM surveys WHERE token = $1{' FOR UPDATE' if lock else ''}",
            token,
        )
        return row

    async def response(self, survey_id: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT survey_id, nps, csat, comment, result, received_at FROM responses"
            " WHERE survey_id = $1",
            survey_id,
        )
        return row

    async def add_response(
        self,
        survey: asyncpg.Record,
        *,
        nps: int | None,
        csat: int | None,
        comment: str | None,
        result: dict[str, Any],
        received_at: datetime,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO responses (survey_id, shop_id, customer_id, nps, csat, comment, result,"
            " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            survey["id"],
            survey["shop_id"],
            survey["customer_id"],
            nps,
            csat,
            comment,
            result,
            received_at,
        )
        await self.conn.execute(
            "UPDATE surveys SET status = 'answered' WHERE id = $1", survey["id"]
        )

    # -- cases ----------------------------------------------------------------------------

    async def open_case_for_incident(
        self, shop_id: uuid.UUID, incident_key: str
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {_CASE} FROM cases WHERE shop_id = $1 AND incident_key = $2"
            " AND status <> 'resolved' FOR UPDATE",
            shop_id,
            incident_key,
        )
        return row

    async def latest_open_case(self, shop_id: uuid.UUID, customer_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {_CASE} FROM cases WHERE shop_id = $1 AND customer_id = $2"
            " AND status <> 'resolved' ORDER BY opened_at DESC LIMIT 1 FOR UPDATE",
            shop_id,
            customer_id,
        )
        return row

    async def has_open_case(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM cases WHERE shop_id = $1 AND customer_id = $2"
                " AND status <> 'resolved' LIMIT 1",
                shop_id,
                customer_id,
            )
        )

    async def add_case(self, case: dict[str, Any]) -> bool:
        """False when the incident already has an open case (another writer was first)."""
        added = await self.conn.fetchval(
            "INSERT INTO cases (id, shop_id, customer_id, repair_order_id, incident_key,"
            " severity, status, assignee, escalation_level, opened_at, ack_window_start,"
            " ack_at_risk_at, ack_due_at, resolve_window_start, resolve_at_risk_at,"
            " resolve_due_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11,"
            " $12, $13, $14, $15)"
            " ON CONFLICT (shop_id, incident_key) WHERE status <> 'resolved' DO NOTHING"
            " RETURNING true",
            case["id"],
            case["shop_id"],
            case["customer_id"],
            case["repair_order_id"],
            case["incident_key"],
            case["severity"],
            case["assignee"],
            case["escalation_level"],
            case["opened_at"],
            case["ack_window_start"],
            case["ack_at_risk_at"],
            case["ack_due_at"],
            case["resolve_window_start"],
            case["resolve_at_risk_at"],
            case["resolve_due_at"],
        )
        return bool(added)

    async def case(
        self, case_id: uuid.UUID, shop_id: uuid.UUID | None = None, *, lock: bool = False
    ) -> asyncpg.Record | None:
        """A case by id (of ``shop_id``, when given); ``lock`` holds it to the transaction."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {_CASE} FROM cases WHERE id = $1 AND ($2::uuid IS NULL OR shop_id = $2)"
            + (" FOR UPDATE" if lock else ""),
            case_id,
            shop_id,
        )
        return row

    async def update_case(self, case_id: uuid.UUID, **fields: Any) -> None:
        allowed = {
            "severity",
            "status",
            "assignee",
            "escalation_level",
            "ack_window_start",
            "ack_at_risk_at",
            "ack_due_at",
            "resolve_window_start",
            "resolve_at_risk_at",
            "resolve_due_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "outcome",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not case columns: {sorted(unknown)}")
        names = sorted(fields)
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        await self.conn.execute(
            f"UPDATE cases SET {assignments}, updated_at = now() WHERE id = $1",
            case_id,
            *(fields[n] for n in names),
        )

    async def list_cases(
        self,
        shop_id: uuid.UUID,
        *,
        status: str | None,
        customer_id: str | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                f"SELECT {_CASE} FROM cases WHERE shop_id = $1"
                " AND ($2::text IS NULL OR status = $2)"
                " AND ($3::text IS NULL OR customer_id = $3)"
                " ORDER BY opened_at DESC, id LIMIT $4",
                shop_id,
                status,
                customer_id,
                limit,
            )
        )

    async def add_history(
        self,
        case_id: uuid.UUID,
        at: datetime,
        kind: str,
        *,
        by: str | None = None,
        text: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO case_history (case_id, at, kind, by, text, data)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            case_id,
            at,
            kind,
            by,
            text,
            data or {},
        )

    async def history(self, case_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT case_id, at, kind, by, text, data FROM case_history"
                " WHERE case_id = ANY($1::uuid[]) ORDER BY id",
                list(case_ids),
            )
        )

    # -- negatives ------------------------------------------------------------------------

    async def add_negative(
        self,
        negative_id: uuid.UUID,
        shop_id: uuid.UUID,
        customer_id: str,
        incident_key: str,
        case_id: uuid.UUID,
        at: datetime,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO negatives (id, shop_id, customer_id, incident_key, case_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            negative_id,
            shop_id,
            customer_id,
            incident_key,
            case_id,
            at,
        )

    async def other_incidents(
        self, shop_id: uuid.UUID, customer_id: str, incident_key: str, since: datetime
    ) -> int:
        """How many other incidents of this customer had a negative since ``since``."""
        count: int = await self.conn.fetchval(
            "SELECT count(DISTINCT incident_key) FROM negatives WHERE shop_id = $1"
            " AND customer_id = $2 AND incident_key <> $3 AND at >= $4",
            shop_id,
            customer_id,
            incident_key,
            since,
        )
        return count

    # -- asks -----------------------------------------------------------------------------

    async def add_ask(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        subject: str,
        kind: str,
        survey_id: uuid.UUID | None,
        at: datetime,
    ) -> bool:
        """False when this visit already had this ask."""
        added = await self.conn.fetchval(
            "INSERT INTO asks (shop_id, customer_id, subject, kind, survey_id, asked_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            shop_id,
            customer_id,
            subject,
            kind,
            survey_id,
            at,
        )
        return bool(added)
