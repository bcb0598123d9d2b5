"""feedback's repositories on PostgreSQL: one per aggregate, on the caller's connection
and transaction. Every SQL statement that writes feedback's state is here."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime import timeline

from ..domain.cases import CaseStatus, RecoveryCase, SlaWindow
from ..domain.surveys import Survey, SurveyResponse
from ..domain.verdicts import AskKind
from ..domain.visits import Visit

#: a case's columns, as a RecoveryCase is made of them
CASE_COLUMNS = (
    "id, shop_id, customer_id, repair_order_id, incident_key, severity, status, assignee,"
    " escalation_level, opened_at, ack_window_start, ack_at_risk_at, ack_due_at,"
    " resolve_window_start, resolve_at_risk_at, resolve_due_at, acknowledged_at,"
    " acknowledged_by, resolved_at, resolved_by, outcome, updated_at"
)
SURVEY_COLUMNS = (
    "id, shop_id, customer_id, repair_order_id, reason, token, status, created_at, expires_at,"
    " case_id"
)


def case_of(row: asyncpg.Record) -> RecoveryCase:
    return RecoveryCase(
        id=row["id"],
        shop_id=row["shop_id"],
        customer_id=row["customer_id"],
        repair_order_id=row["repair_order_id"],
        incident_key=row["incident_key"],
        severity=row["severity"],
        status=CaseStatus(row["status"]),
        assignee=row["assignee"],
        escalation_level=row["escalation_level"],
        opened_at=row["opened_at"],
        acknowledge_window=SlaWindow(
            row["ack_window_start"], row["ack_at_risk_at"], row["ack_due_at"]
        ),
        resolve_window=SlaWindow(
            row["resolve_window_start"], row["resolve_at_risk_at"], row["resolve_due_at"]
        ),
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        outcome=row["outcome"],
    )


def survey_of(row: asyncpg.Record, response: asyncpg.Record | None = None) -> Survey:
    return Survey(
        id=row["id"],
        shop_id=row["shop_id"],
        customer_id=row["customer_id"],
        repair_order_id=row["repair_order_id"],
        reason=row["reason"],
        token=row["token"],
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        case_id=row["case_id"],
        response=None
        if response is None
        else SurveyResponse(
            response["nps"],
            response["csat"],
            response["comment"],
            response["result"],
            response["received_at"],
        ),
    )


class PostgresRecoveryCases:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(
        self, case_id: uuid.UUID, shop_id: uuid.UUID | None = None, *, lock: bool = False
    ) -> RecoveryCase | None:
        row = await self.conn.fetchrow(
            f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1"
            " AND ($2::uuid IS NULL OR shop_id = $2)" + (" FOR UPDATE" if lock else ""),
            case_id,
            shop_id,
        )
        return None if row is None else case_of(row)

    async def open_for_incident(self, shop_id: uuid.UUID, incident_key: str) -> RecoveryCase | None:
        row = await self.conn.fetchrow(
            f"SELECT {CASE_COLUMNS} FROM cases WHERE shop_id = $1 AND incident_key = $2"
            " AND status <> 'resolved' FOR UPDATE",
            shop_id,
            incident_key,
        )
        return None if row is None else case_of(row)

    async def latest_open(self, shop_id: uuid.UUID, customer_id: str) -> RecoveryCase | None:
        row = await self.conn.fetchrow(
            f"SELECT {CASE_COLUMNS} FROM cases WHERE shop_id = $1 AND customer_id = $2"
            " AND status <> 'resolved' ORDER BY opened_at DESC LIMIT 1 FOR UPDATE",
            shop_id,
            customer_id,
        )
        return None if row is None else case_of(row)

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM cases WHERE shop_id = $1 AND customer_id = $2"
                " AND status <> 'resolved' LIMIT 1",
                shop_id,
                customer_id,
            )
        )

    async def add(self, case: RecoveryCase) -> bool:
        ack, resolve = case.acknowledge_window, case.resolve_window
        added = await self.conn.fetchval(
            "INSERT INTO cases (id, shop_id, customer_id, repair_order_id, incident_key,"
            " severity, status, assignee, escalation_level, opened_at, ack_window_start,"
            " ack_at_risk_at, ack_due_at, resolve_window_start, resolve_at_risk_at,"
            " resolve_due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
            " $13, $14, $15, $16)"
            " ON CONFLICT (shop_id, incident_key) WHERE status <> 'resolved' DO NOTHING"
            " RETURNING true",
            case.id,
            case.shop_id,
            case.customer_id,
            case.repair_order_id,
            case.incident_key,
            case.severity,
            case.status.value,
            case.assignee,
            case.escalation_level,
            case.opened_at,
            ack.start,
            ack.at_risk_at,
            ack.due_at,
            resolve.start,
            resolve.at_risk_at,
            resolve.due_at,
        )
        if not added:
            return False
        await self._add_history(case)
        return True

    async def save(self, case: RecoveryCase) -> None:
        ack, resolve = case.acknowledge_window, case.resolve_window
        await self.conn.execute(
            "UPDATE cases SET severity = $2, status = $3, assignee = $4, escalation_level = $5,"
            " ack_window_start = $6, ack_at_risk_at = $7, ack_due_at = $8,"
            " resolve_window_start = $9, resolve_at_risk_at = $10, resolve_due_at = $11,"
            " acknowledged_at = $12, acknowledged_by = $13, resolved_at = $14,"
            " resolved_by = $15, outcome = $16, updated_at = now() WHERE id = $1",
            case.id,
            case.severity,
            case.status.value,
            case.assignee,
            case.escalation_level,
            ack.start,
            ack.at_risk_at,
            ack.due_at,
            resolve.start,
            resolve.at_risk_at,
            resolve.due_at,
            case.acknowledged_at,
            case.acknowledged_by,
            case.resolved_at,
            case.resolved_by,
            case.outcome,
        )
        await self._add_history(case)

    async def _add_history(self, case: RecoveryCase) -> None:
        entries = case.taken()
        if not entries:
            return
        await self.conn.executemany(
            "INSERT INTO case_history (case_id, at, kind, by, text, data)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(case.id, e.at, e.kind, e.by, e.text, e.data) for e in entries],
        )

    async def record_negative(
        self, negative_id: uuid.UUID, case: RecoveryCase, at: datetime
    ) -> None:
        await self.conn.execute(
            "INSERT INTO negatives (id, shop_id, customer_id, incident_key, case_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            negative_id,
            case.shop_id,
            case.customer_id,
            case.incident_key,
            case.id,
            at,
        )

    async def other_incidents(
        self, shop_id: uuid.UUID, customer_id: str, incident_key: str, since: datetime
    ) -> int:
        count: int = await self.conn.fetchval(
            "SELECT count(DISTINCT incident_key) FROM negatives WHERE shop_id = $1"
            " AND customer_id = $2 AND incident_key <> $3 AND at >= $4",
            shop_id,
            customer_id,
            incident_key,
            since,
        )
        return count


class PostgresSurveys:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, survey: Survey) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO surveys (id, shop_id, customer_id, repair_order_id, reason, token,"
            " expires_at, case_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT DO NOTHING RETURNING true",
            survey.id,
            survey.shop_id,
            survey.customer_id,
            survey.repair_order_id,
            survey.reason,
            survey.token,
            survey.expires_at,
            survey.case_id,
            survey.created_at,
        )
        return bool(added)

    async def by_token(self, token: str, *, lock: bool = False) -> Survey | None:
        row = await self.conn.fetchrow(
            f"SELECT {SURVEY_COLUMNS} FROM surveys WHERE token = $1"
            + (" FOR UPDATE" if lock else ""),
            token,
        )
        if row is None:
            return None
        response = await self.conn.fetchrow(
            "SELECT nps, csat, comment, result, received_at FROM responses WHERE survey_id = $1",
            row["id"],
        )
        return survey_of(row, response)

    async def save_answer(self, survey: Survey) -> None:
        answer = survey.response
        assert answer is not None, "only an answered survey is saved"
        await self.conn.execute(
            "INSERT INTO responses (survey_id, shop_id, customer_id, nps, csat, comment, result,"
            " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            survey.id,
            survey.shop_id,
            survey.customer_id,
            answer.nps,
            answer.csat,
            answer.comment,
            answer.result,
            answer.received_at,
        )
        await self.conn.execute(
            "UPDATE surveys SET status = $2 WHERE id = $1", survey.id, survey.status
        )


class PostgresVisits:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def remember(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        customer_id: str,
        *,
        advisor: str | None,
        comeback: bool | None,
        completed_at: datetime | None,
    ) -> None:
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

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None:
        row = await self.conn.fetchrow(
            "SELECT repair_order_id, customer_id, advisor, comeback, completed_at FROM visits"
            " WHERE shop_id = $1 AND repair_order_id = $2",
            shop_id,
            repair_order_id,
        )
        if row is None:
            return None
        return Visit(
            row["repair_order_id"],
            row["customer_id"],
            row["advisor"],
            row["comeback"],
            row["completed_at"],
        )

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


class PostgresAsks:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        subject: str,
        kind: AskKind,
        survey_id: uuid.UUID | None,
        at: datetime,
    ) -> bool:
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


class PostgresTimeline:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, envelope: Envelope) -> None:
        await timeline.add_to_timeline(self.conn, envelope)
