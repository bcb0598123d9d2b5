"""Every SQL statement of followup's writes, on the caller's connection and transaction:
one repository per aggregate, each loading and saving domain objects."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from ..domain.attempts import Attempt
from ..domain.consent import ConsentChange
from ..domain.customers import Customer
from ..domain.follow_up import CompletedVisit, FollowUpTask
from ..domain.messages import MessageStatus, OutboundMessage
from ..domain.outreach import DECIDED_UNSENT, BudgetFacts, Spent
from ..domain.sweep import CustomerHistory, VisitFact
from ..domain.tasks import TaskStatus
from ..domain.visits import Visit, VisitStatus

#: the NOTIFY channel the dispatchers LISTEN on
DISPATCH_CHANNEL = "regulars_messages_due"


def _task(row: asyncpg.Record) -> FollowUpTask:
    return FollowUpTask(
        id=row["id"],
        shop_id=row["shop_id"],
        customer_id=row["customer_id"],
        repair_order_id=row["repair_order_id"],
        assignee=row["assignee"],
        status=TaskStatus(row["status"]),
        due_at=row["due_at"],
        script=row["script"],
        policy_version=row["policy_version"],
        attempts=row["attempts"],
        status_reason=row["status_reason"],
        kind=row["kind"],
    )


_TASK_COLUMNS = (
    "id, shop_id, customer_id, repair_order_id, assignee, status, due_at, script,"
    " policy_version, attempts, status_reason, kind"
)


class PostgresFollowUpTasks:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, task: FollowUpTask) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO follow_up_tasks (id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (shop_id, repair_order_id, kind) DO NOTHING RETURNING true",
            task.id,
            task.shop_id,
            task.customer_id,
            task.repair_order_id,
            task.assignee,
            task.status.value,
            task.due_at,
            task.script,
            task.policy_version,
            task.kind,
        )
        return bool(added)

    async def add_many(self, tasks: Sequence[FollowUpTask]) -> None:
        await self.conn.execute(
            "INSERT INTO follow_up_tasks (id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind)"
            " SELECT id, shop_id, customer_id, repair_order_id, assignee, status, due_at,"
            " script::jsonb, policy_version, kind FROM unnest($1::uuid[], $2::uuid[],"
            " $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[],"
            " $9::int[], $10::text[]) AS t(id, shop_id, customer_id, repair_order_id, assignee,"
            " status, due_at, script, policy_version, kind) ORDER BY shop_id, repair_order_id"
            " ON CONFLICT (shop_id, repair_order_id, kind) DO NOTHING",
            [t.id for t in tasks],
            [t.shop_id for t in tasks],
            [t.customer_id for t in tasks],
            [t.repair_order_id for t in tasks],
            [t.assignee for t in tasks],
            [t.status.value for t in tasks],
            [t.due_at for t in tasks],
            [orjson.dumps(t.script).decode() for t in tasks],
            [t.policy_version for t in tasks],
            [t.kind for t in tasks],
        )

    async def get(self, shop_id: uuid.UUID, task_id: uuid.UUID) -> FollowUpTask | None:
        row = await self.conn.fetchrow(
            f"SELECT {_TASK_COLUMNS} FROM follow_up_tasks WHERE id = $1 AND shop_id = $2"
            " FOR UPDATE",
            task_id,
            shop_id,
        )
        return None if row is None else _task(row)

    async def by_id(self, task_id: uuid.UUID) -> FollowUpTask | None:
        row = await self.conn.fetchrow(
            f"SELECT {_TASK_COLUMNS} FROM follow_up_tasks WHERE id = $1 FOR UPDATE", task_id
        )
        return None if row is None else _task(row)

    async def for_visit(self, shop_id: uuid.UUID, repair_order_id: str) -> FollowUpTask | None:
        row = await self.conn.fetchrow(
            f"SELECT {_TASK_COLUMNS} FROM follow_up_tasks WHERE shop_id = $1"
            " AND repair_order_id = $2 AND kind = 'visit' FOR UPDATE",
            shop_id,
            repair_order_id,
        )
        return None if row is None else _task(row)

    async def open_calls(
        self, shop_id: uuid.UUID, customer_id: str, kind: str
    ) -> list[FollowUpTask]:
        rows = await self.conn.fetch(
            f"SELECT {_TASK_COLUMNS} FROM follow_up_tasks WHERE shop_id = $1"
            " AND customer_id = $2 AND kind = $3 AND status = 'scheduled' ORDER BY id"
            " FOR UPDATE",
            shop_id,
            customer_id,
            kind,
        )
        return [_task(r) for r in rows]

    async def save(self, task: FollowUpTask) -> None:
        for number, attempt in task.new_attempts:
            await self._add_attempt(task, number, attempt)
        task.new_attempts.clear()
        await self.conn.execute(
            "UPDATE follow_up_tasks SET status = $2, status_reason = $3, due_at = $4,"
            " attempts = $5, policy_version = $6, script = $7, updated_at = now()"
            " WHERE id = $1",
            task.id,
            task.status.value,
            task.status_reason,
            task.due_at,
            task.attempts,
            task.policy_version,
            task.script,
        )

    async def _add_attempt(self, task: FollowUpTask, number: int, a: Attempt) -> None:
        await self.conn.execute(
            "INSERT INTO follow_up_attempts (task_id, number, shop_id, outcome, satisfied, score,"
            " notes, by_staff, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            task.id,
            number,
            task.shop_id,
            str(a.outcome),
            a.satisfied,
            a.score,
            a.notes,
            a.by,
            a.at,
        )


def _visit(row: asyncpg.Record) -> Visit:
    return Visit(
        shop_id=row["shop_id"],
        repair_order_id=row["repair_order_id"],
        customer_id=row["customer_id"],
        completed_at=row["completed_at"],
        status=VisitStatus(row["status"]),
        data=row["data"],
    )


class PostgresVisits:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_new(self, visits: Sequence[CompletedVisit]) -> set[tuple[uuid.UUID, str]]:
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

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None:
        row = await self.conn.fetchrow(
            "SELECT shop_id, repair_order_id, customer_id, completed_at, status, data"
            " FROM visits WHERE shop_id = $1 AND repair_order_id = $2 FOR UPDATE",
            shop_id,
            repair_order_id,
        )
        return None if row is None else _visit(row)

    async def save(self, visit: Visit) -> None:
        await self.conn.execute(
            "UPDATE visits SET status = $3, completed_at = $4"
            " WHERE shop_id = $1 AND repair_order_id = $2",
            visit.shop_id,
            visit.repair_order_id,
            visit.status.value,
            visit.completed_at,
        )

    async def last_of(self, shop_id: uuid.UUID, customer_id: str) -> Visit | None:
        row = await self.conn.fetchrow(
            "SELECT shop_id, repair_order_id, customer_id, completed_at, status, data"
            " FROM visits WHERE shop_id = $1 AND customer_id = $2 AND status = 'completed'"
            " ORDER BY completed_at DESC, repair_order_id DESC LIMIT 1",
            shop_id,
            customer_id,
        )
        return None if row is None else _visit(row)

    async def histories(
        self, shop_id: uuid.UUID, *, after: str | None, limit: int
    ) -> list[CustomerHistory]:
        customers = await self.conn.fetch(
            "SELECT customer_id, birthday, stage FROM customers WHERE shop_id = $1"
            " AND ($2::text IS NULL OR customer_id > $2) ORDER BY customer_id LIMIT $3",
            shop_id,
            after,
            limit,
        )
        if not customers:
            return []
        visits = await self.conn.fetch(
            "SELECT customer_id, repair_order_id, completed_at, data FROM visits"
            " WHERE shop_id = $1 AND customer_id = ANY($2::text[]) AND status = 'completed'"
            " ORDER BY completed_at",
            shop_id,
            [c["customer_id"] for c in customers],
        )
        by_customer: dict[str, list[VisitFact]] = defaultdict(list)
        for v in visits:
            data = v["data"]
            by_customer[v["customer_id"]].append(
                VisitFact(
                    v["repair_order_id"],
                    v["completed_at"],
                    data.get("asset_id"),
                    data.get("mileage"),
                    " ".join(str(data.get(k) or "") for k in ("work_performed", "concern")),
                )
            )
        return [
            CustomerHistory(
                c["customer_id"], c["birthday"], by_customer.get(c["customer_id"], []), c["stage"]
            )
            for c in customers
        ]


def _customer(row: asyncpg.Record) -> Customer:
    return Customer(
        customer_id=row["customer_id"],
        name=row["name"],
        phone=row["phone"],
        email=row["email"],
        state=row["state"],
        timezone=row["timezone"],
        birthday=row["birthday"],
        consent=dict(row["consent"] or {}),
        sms_opted_out_at=row["sms_opted_out_at"],
        awaiting_opt_out_answer=bool(row["awaiting_opt_out_answer"]),
        stage=row["stage"],
        stage_at=row["stage_at"],
    )


_CUSTOMER_COLUMNS = (
    "customer_id, name, phone, email, state, timezone, birthday, consent, sms_opted_out_at,"
    " awaiting_opt_out_answer, stage, stage_at"
)


class PostgresCustomers:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def upsert(self, shop_id: uuid.UUID, record: dict[str, Any]) -> None:
        await self.conn.execute(
            "INSERT INTO customers (shop_id, customer_id, name, phone, email, state, timezone,"
            " birthday) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::date)"
            " ON CONFLICT (shop_id, customer_id) DO UPDATE"
            " SET name = excluded.name, phone = excluded.phone, email = excluded.email,"
            " state = excluded.state, timezone = excluded.timezone, birthday = excluded.birthday,"
            " updated_at = now()",
            shop_id,
            record["customer_id"],
            record["name"],
            record.get("phone"),
            record.get("email"),
            record.get("state"),
            record.get("timezone"),
            record.get("birthday"),
        )

    async def get(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        row = await self.conn.fetchrow(
            f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE shop_id = $1 AND customer_id = $2"
            " FOR UPDATE",
            shop_id,
            customer_id,
        )
        return None if row is None else _customer(row)

    async def contact(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        row = await self.conn.fetchrow(
            f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer_id,
        )
        return None if row is None else _customer(row)

    async def record_consent(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        change: ConsentChange,
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

    async def save_stage(self, shop_id: uuid.UUID, customer: Customer) -> None:
        await self.conn.execute(
            "UPDATE customers SET stage = $3, stage_at = $4"
            " WHERE shop_id = $1 AND customer_id = $2",
            shop_id,
            customer.customer_id,
            customer.stage,
            customer.stage_at,
        )


_MESSAGE_COLUMNS = (
    "id, shop_id, customer_id, purpose, kind, channel, priority, status, reason, send_at,"
    " link, repair_order_id, context, to_staff, attempts, sent_at, provider_id,"
    " lease_owner, claimed_at, data_started_at"
)

#: a row 'sending' without a lease (a replica of a version before leases claimed it) is
#: taken for interrupted this long after its last change, in database time
_UNLEASED_AFTER = "interval '5 minutes'"


def _message(row: asyncpg.Record) -> OutboundMessage:
    return OutboundMessage(
        id=row["id"],
        shop_id=row["shop_id"],
        customer_id=row["customer_id"],
        purpose=row["purpose"],
        kind=row["kind"],
        channel=row["channel"],
        priority=row["priority"],
        status=MessageStatus(row["status"]),
        reason=row["reason"],
        send_at=row["send_at"],
        link=row["link"],
        repair_order_id=row["repair_order_id"],
        context=dict(row["context"] or {}),
        to_staff=row["to_staff"],
        attempts=row["attempts"],
        sent_at=row["sent_at"],
        provider_id=row["provider_id"],
        lease_owner=row["lease_owner"],
        claimed_at=row["claimed_at"],
        data_started_at=row["data_started_at"],
    )


class PostgresOutboundMessages:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, m: OutboundMessage) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO messages (id, shop_id, customer_id, purpose, kind, channel, priority,"
            " status, reason, send_at, link, repair_order_id, context, to_staff)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (shop_id, customer_id, purpose) DO NOTHING RETURNING true",
            m.id,
            m.shop_id,
            m.customer_id,
            m.purpose,
            m.kind,
            m.channel,
            m.priority,
            m.status.value,
            m.reason,
            m.send_at,
            m.link,
            m.repair_order_id,
            m.context,
            m.to_staff,
        )
        return bool(added)

    async def get(self, message_id: uuid.UUID) -> OutboundMessage | None:
        row = await self.conn.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = $1 FOR UPDATE", message_id
        )
        return None if row is None else _message(row)

    async def by_unsubscribe_token(self, token: str) -> OutboundMessage | None:
        row = await self.conn.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE context->>'unsubscribe_token' = $1",
            token,
        )
        return None if row is None else _message(row)

    async def by_provider_id(self, provider_id: str) -> OutboundMessage | None:
        row = await self.conn.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE provider_id = $1 FOR UPDATE",
            provider_id,
        )
        return None if row is None else _message(row)

    async def save(self, m: OutboundMessage) -> None:
        # Out of 'sending', no dispatcher holds it any more: its lease ends with the save.
        await self.conn.execute(
            "UPDATE messages SET status = $2, reason = $3, send_at = $4, channel = $5,"
            " provider_id = $6, sent_at = $7, attempts = $8, context = $9, updated_at = now(),"
            " lease_owner = CASE WHEN $2 = 'sending' THEN lease_owner END,"
            " lease_expires_at = CASE WHEN $2 = 'sending' THEN lease_expires_at END"
            " WHERE id = $1",
            m.id,
            m.status.value,
            m.reason,
            m.send_at,
            m.channel,
            m.provider_id,
            m.sent_at,
            m.attempts,
            m.context,
        )

    async def due(self, limit: int) -> list[OutboundMessage]:
        rows = await self.conn.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status = 'due'"
            " ORDER BY priority, send_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        return [_message(r) for r in rows]

    async def lease(
        self, message_id: uuid.UUID, owner: str, seconds: float, *, new_attempt: bool
    ) -> None:
        await self.conn.execute(
            "UPDATE messages SET lease_owner = $2,"
            " lease_expires_at = now() + make_interval(secs => $3),"
            " claimed_at = CASE WHEN $4 THEN now() ELSE claimed_at END,"
            " data_started_at = CASE WHEN $4 THEN NULL ELSE data_started_at END"
            " WHERE id = $1",
            message_id,
            owner,
            seconds,
            new_attempt,
        )

    async def renew(self, message_id: uuid.UUID, owner: str, attempt: int, seconds: float) -> bool:
        renewed = await self.conn.fetchval(
            # updated_at too: a replica of a version before leases, during a rolling
            # deploy, takes a 'sending' row unchanged for 30 s for an interrupted one
            "UPDATE messages SET lease_expires_at = now() + make_interval(secs => $4),"
            " updated_at = now()"
            " WHERE id = $1 AND status = 'sending' AND lease_owner = $2 AND attempts = $3"
            " RETURNING true",
            message_id,
            owner,
            attempt,
            seconds,
        )
        return bool(renewed)

    async def release(self, message_id: uuid.UUID, seconds: float) -> None:
        await self.conn.execute(
            "UPDATE messages SET lease_owner = NULL,"
            " lease_expires_at = now() + make_interval(secs => $2) WHERE id = $1",
            message_id,
            seconds,
        )

    async def data_started(self, message_id: uuid.UUID, owner: str, attempt: int) -> bool:
        marked = await self.conn.fetchval(
            "UPDATE messages SET data_started_at = now()"
            " WHERE id = $1 AND status = 'sending' AND lease_owner = $2 AND attempts = $3"
            " RETURNING true",
            message_id,
            owner,
            attempt,
        )
        return bool(marked)

    async def interrupted(self, limit: int) -> list[OutboundMessage]:
        rows = await self.conn.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status = 'sending'"
            " AND (lease_expires_at < now() OR (lease_expires_at IS NULL"
            f"  AND updated_at < now() - {_UNLEASED_AFTER}))"
            " ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        return [_message(r) for r in rows]

    async def provider_id_taken(self, provider_id: str, message_id: uuid.UUID) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE provider_id = $1 AND id <> $2)",
                provider_id,
                message_id,
            )
        )

    async def budget_facts(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        since: datetime,
        *,
        decided_before: uuid.UUID | None = None,
    ) -> BudgetFacts:
        # One round trip: every decision for the customer asks this. seq orders the
        # decisions; a message's own row and those decided after it are left out.
        row = await self.conn.fetchrow(
            "SELECT array(SELECT row(priority = 2, channel, coalesce(sent_at, send_at))"
            "   FROM messages WHERE shop_id = $1 AND customer_id = $2 AND to_staff IS NULL"
            "   AND (sent_at >= $3 OR (sent_at IS NULL AND send_at IS NOT NULL"
            "   AND status = ANY($4::text[]) AND ($5::uuid IS NULL"
            "   OR seq < (SELECT seq FROM messages WHERE id = $5))))) AS spent,"
            " EXISTS (SELECT 1 FROM open_recovery_cases WHERE shop_id = $1 AND customer_id = $2)"
            "   AS open_case, v.completed_at, v.data"
            " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT completed_at, data FROM visits"
            "   WHERE shop_id = $1 AND customer_id = $2 AND status = 'completed'"
            "   ORDER BY completed_at DESC LIMIT 1) AS v ON true",
            shop_id,
            customer_id,
            since,
            sorted(DECIDED_UNSENT),
            decided_before,
        )
        assert row is not None
        last_visit = row["completed_at"]
        return BudgetFacts(
            tuple(Spent(marketing, channel, at) for marketing, channel, at in row["spent"]),
            bool(row["open_case"]),
            None if last_visit is None else (last_visit, bool(row["data"].get("comeback"))),
        )

    async def wake_dispatcher(self) -> None:
        # Delivered at commit, so a dispatcher never wakes for a message it cannot see.
        await self.conn.execute(f"NOTIFY {DISPATCH_CHANNEL}")


class PostgresOpenCases:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def open(self, shop_id: uuid.UUID, customer_id: str, case_id: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO open_recovery_cases (shop_id, customer_id, case_id, opened_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            shop_id,
            customer_id,
            case_id,
            at,
        )

    async def close(self, shop_id: uuid.UUID, case_id: str) -> None:
        await self.conn.execute(
            "DELETE FROM open_recovery_cases WHERE shop_id = $1 AND case_id = $2", shop_id, case_id
        )

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM open_recovery_cases"
                " WHERE shop_id = $1 AND customer_id = $2)",
                shop_id,
                customer_id,
            )
        )
