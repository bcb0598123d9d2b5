"""Every SQL statement loyalty writes with, on the caller's connection and transaction."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from regulars_events.base import Event
from regulars_events.catalogue import (
    AppointmentBooked,
    FeedbackReceived,
    FollowUpCompleted,
    FollowUpMissed,
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
    RecoveryCaseAcknowledged,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReferralReported,
    ServiceCompleted,
    ServicePlanExpired,
    ServicePlanRenewed,
    ServiceReopened,
    ServiceVoided,
)
from regulars_events.envelope import Envelope

from ..domain.rhythm import BgNbd
from ..domain.risk import RiskModel
from ..domain.standing import CustomerStanding
from ..handlers.base import CustomerKey


def hour_of(at: datetime) -> int:
    """The UTC hour a moment falls in (the key of tally_hours)."""
    return int(at.timestamp() // 3600)


async def mark_hours(conn: asyncpg.Connection, marks: set[tuple[uuid.UUID, int]]) -> None:
    """Mark hours whose counts changed, for the next metrics read to recount."""
    if marks:
        shops, hours = zip(*sorted(marks), strict=True)
        await conn.execute(
            "INSERT INTO tally_dirty (shop_id, hour) SELECT * FROM unnest($1::uuid[], $2::int8[])",
            list(shops),
            list(hours),
        )


async def mark_active_since(conn: asyncpg.Connection, hours: set[tuple[uuid.UUID, int]]) -> None:
    """Visits changed in these hours: counts of active customers after them are stale."""
    earliest: dict[uuid.UUID, int] = {}
    for shop, hour in hours:
        earliest[shop] = min(hour, earliest.get(shop, hour))
    if earliest:
        shops = sorted(earliest)
        await conn.execute(
            "INSERT INTO active_dirty (shop_id, since)"
            " SELECT s, to_timestamp(h * 3600) FROM unnest($1::uuid[], $2::int8[]) AS u(s, h)",
            shops,
            [earliest[s] for s in shops],
        )


class PostgresTimeline:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, envelopes: Sequence[Envelope]) -> None:
        await self.conn.executemany(
            "INSERT INTO timeline (shop_id, customer_id, event_id, type, occurred_at, data)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            [(uuid.UUID(e.shop_id), e.subject, e.id, e.type, e.time, e.data) for e in envelopes],
        )


_VISIT = (
    "INSERT INTO visits (shop_id, repair_order_id, customer_id, completed_at, advisor,"
    " total_cents, promised_at, comeback, standing) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)"
    " ON CONFLICT (shop_id, repair_order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,"
    " completed_at = EXCLUDED.completed_at, advisor = EXCLUDED.advisor,"
    " total_cents = EXCLUDED.total_cents, promised_at = EXCLUDED.promised_at,"
    " comeback = EXCLUDED.comeback, standing = true"
)
# The same, for a run of completions at once (the last of a repair order's in the run wins).
_VISITS = (
    "INSERT INTO visits (shop_id, repair_order_id, customer_id, completed_at, advisor,"
    " total_cents, promised_at, comeback, standing) SELECT *, true FROM unnest($1::uuid[],"
    " $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int8[], $7::timestamptz[],"
    " $8::boolean[])"
    " ON CONFLICT (shop_id, repair_order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,"
    " completed_at = EXCLUDED.completed_at, advisor = EXCLUDED.advisor,"
    " total_cents = EXCLUDED.total_cents, promised_at = EXCLUDED.promised_at,"
    " comeback = EXCLUDED.comeback, standing = true"
)
_VISIT_WITHDRAWN = "UPDATE visits SET standing = false WHERE shop_id = $1 AND repair_order_id = $2"
_ANSWER = (
    "INSERT INTO answers (event_id, shop_id, customer_id, at, nps, csat, source)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING"
)
_FOLLOW_UP = (
    "INSERT INTO follow_ups (shop_id, task_id, customer_id, outcome, at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (shop_id, task_id)"
    " DO UPDATE SET outcome = EXCLUDED.outcome, at = EXCLUDED.at"
)
_CASE_OPENED = (
    "INSERT INTO cases (shop_id, case_id, customer_id, severity, opened_at, ack_due_at,"
    " resolve_due_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (shop_id, case_id)"
    " DO UPDATE SET severity = EXCLUDED.severity, opened_at = EXCLUDED.opened_at,"
    " ack_due_at = EXCLUDED.ack_due_at, resolve_due_at = EXCLUDED.resolve_due_at"
)
_CASE_ACKNOWLEDGED = (
    "INSERT INTO cases (shop_id, case_id, customer_id, acknowledged_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (shop_id, case_id) DO UPDATE"
    " SET acknowledged_at = coalesce(cases.acknowledged_at, EXCLUDED.acknowledged_at)"
)
_CASE_RESOLVED = (
    "INSERT INTO cases (shop_id, case_id, customer_id, resolved_at, opened_at, acknowledged_at)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shop_id, case_id) DO UPDATE"
    " SET resolved_at = EXCLUDED.resolved_at,"
    " opened_at = coalesce(cases.opened_at, EXCLUDED.opened_at),"
    " acknowledged_at = coalesce(cases.acknowledged_at, EXCLUDED.acknowledged_at)"
)
_INVOICE = (
    "INSERT INTO invoices (shop_id, invoice_id, customer_id, amount_cents, due_at, {column})"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shop_id, invoice_id) DO UPDATE"
    " SET {column} = EXCLUDED.{column}{issued}"
)
_INVOICE_ISSUED = _INVOICE.format(
    column="issued_at",
    issued=", amount_cents = EXCLUDED.amount_cents, due_at = EXCLUDED.due_at,"
    " customer_id = EXCLUDED.customer_id",
)
_INVOICE_PAID = _INVOICE.format(column="paid_at", issued="")
_INVOICE_OVERDUE = _INVOICE.format(column="overdue_at", issued="")
_PLAN = (
    "INSERT INTO plan_events (event_id, shop_id, plan_id, customer_id, kind, at)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING"
)
_REFERRAL = (
    "INSERT INTO referrals (shop_id, referrer_id, referred_id, at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT DO NOTHING"
)
_APPOINTMENT = (
    "INSERT INTO appointments (event_id, shop_id, customer_id, starts_at)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING"
)
# A visit's next_at is the customer's next standing visit. A visit added or withdrawn
# changes it for itself and for the standing visit just before it, and for nothing else.
_NEXT_VISITS = (
    "WITH changed AS (SELECT shop_id, customer_id, completed_at, repair_order_id FROM visits"
    "  WHERE (shop_id, repair_order_id) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))),"
    " targets AS ("
    "  SELECT shop_id, repair_order_id FROM changed"
    "  UNION SELECT p.shop_id, p.repair_order_id FROM changed c CROSS JOIN LATERAL ("
    "   SELECT shop_id, repair_order_id FROM visits p WHERE p.shop_id = c.shop_id"
    "   AND p.customer_id = c.customer_id AND p.standing"
    "   AND (p.completed_at, p.repair_order_id) < (c.completed_at, c.repair_order_id)"
    "   ORDER BY p.completed_at DESC, p.repair_order_id DESC LIMIT 1) p)"
    " UPDATE visits v SET next_at = (SELECT w.completed_at FROM visits w"
    "  WHERE w.shop_id = v.shop_id AND w.customer_id = v.customer_id AND w.standing"
    "  AND (w.completed_at, w.repair_order_id) > (v.completed_at, v.repair_order_id)"
    "  ORDER BY w.completed_at, w.repair_order_id LIMIT 1)"
    " FROM targets t WHERE v.shop_id = t.shop_id AND v.repair_order_id = t.repair_order_id"
)


def _rows(envelope: Envelope, event: Event) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements one event asks for, with their arguments."""
    shop = uuid.UUID(envelope.shop_id)
    at = envelope.time
    match event:
        case ServiceCompleted():
            return [
                (
                    _VISIT,
                    (
                        shop,
                        event.repair_order_id,
                        event.customer_id,
                        event.completed_at,
                        event.advisor,
                        event.total_cents,
                        event.promised_at,
                        bool(event.comeback),
                    ),
                )
            ]
        case ServiceVoided() | ServiceReopened():
            return [(_VISIT_WITHDRAWN, (shop, event.repair_order_id))]
        case FeedbackReceived() if event.nps is not None or event.csat is not None:
            return [
                (
                    _ANSWER,
                    (
                        envelope.id,
                        shop,
                        event.customer_id,
                        event.received_at or at,
                        event.nps,
                        event.csat,
                        "survey",
                    ),
                )
            ]
        case FollowUpCompleted():
            rows: list[tuple[str, tuple[Any, ...]]] = [
                (
                    _FOLLOW_UP,
                    (shop, event.task_id, event.customer_id, "completed", event.completed_at),
                )
            ]
            if event.score is not None:
                rows.append(
                    (
                        _ANSWER,
                        (
                            envelope.id,
                            shop,
                            event.customer_id,
                            event.completed_at,
                            event.score,
                            None,
                            "call",
                        ),
                    )
                )
            return rows
        case FollowUpMissed():
            return [
                (_FOLLOW_UP, (shop, event.task_id, event.customer_id, "missed", event.missed_at))
            ]
        case RecoveryCaseOpened():
            return [
                (
                    _CASE_OPENED,
                    (
                        shop,
                        event.case_id,
                        event.customer_id,
                        event.severity,
                        event.opened_at or at,
                        event.ack_due_at,
                        event.resolve_due_at,
                    ),
                )
            ]
        case RecoveryCaseAcknowledged():
            return [
                (
                    _CASE_ACKNOWLEDGED,
                    (shop, event.case_id, event.customer_id, event.acknowledged_at or at),
                )
            ]
        case RecoveryCaseResolved():
            return [
                (
                    _CASE_RESOLVED,
                    (
                        shop,
                        event.case_id,
                        event.customer_id,
                        event.resolved_at,
                        event.opened_at,
                        event.acknowledged_at,
                    ),
                )
            ]
        case InvoiceIssued() | InvoicePaid() | InvoiceOverdue():
            sql = {
                InvoiceIssued: _INVOICE_ISSUED,
                InvoicePaid: _INVOICE_PAID,
                InvoiceOverdue: _INVOICE_OVERDUE,
            }[type(event)]
            return [
                (
                    sql,
                    (
                        shop,
                        event.invoice_id,
                        event.customer_id,
                        event.amount_cents,
                        event.due_at,
                        at,
                    ),
                )
            ]
        case ServicePlanRenewed() | ServicePlanExpired():
            kind = "renewed" if isinstance(event, ServicePlanRenewed) else "expired"
            return [(_PLAN, (envelope.id, shop, event.plan_id, event.customer_id, kind, at))]
        case ReferralReported():
            return [(_REFERRAL, (shop, event.referrer_customer_id, event.referred_customer_id, at))]
        case AppointmentBooked():
            return [(_APPOINTMENT, (envelope.id, shop, event.customer_id, event.starts_at))]
    return []


class PostgresHistory:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def record(self, events: Sequence[tuple[Envelope, Event]]) -> None:
        # In event order, runs of one statement sent together: a reopen and the completion
        # after it must land in that order.
        run_sql: str | None = None
        run: list[tuple[Any, ...]] = []
        changed: set[tuple[uuid.UUID, str]] = set()
        tasks: set[tuple[uuid.UUID, str]] = set()
        referred: set[tuple[uuid.UUID, str]] = set()
        marks: set[tuple[uuid.UUID, int]] = set()
        planned = [
            (sql, args) for envelope, event in events for sql, args in _rows(envelope, event)
        ]
        for sql, args in planned:
            if sql in (_VISIT, _VISIT_WITHDRAWN):
                changed.add((args[0], args[1]))
            if sql == _VISIT:
                marks.add((args[0], hour_of(args[3])))
            elif sql == _ANSWER:
                marks.add((args[1], hour_of(args[3])))
            elif sql == _FOLLOW_UP:
                tasks.add((args[0], args[1]))
                marks.add((args[0], hour_of(args[4])))
            elif sql == _PLAN:
                marks.add((args[1], hour_of(args[5])))
            elif sql == _REFERRAL:
                referred.add((args[0], args[2]))
        # the hours a changed visit or follow-up leaves (a void, a completion moved in time)
        left = await self._hours_of(
            "SELECT shop_id, completed_at AS at FROM visits", "repair_order_id", changed
        )
        visit_hours = {(a[0], hour_of(a[3])) for sql, a in planned if sql == _VISIT} | left
        marks |= left
        marks |= await self._hours_of("SELECT shop_id, at FROM follow_ups", "task_id", tasks)
        for sql, args in planned:
            if sql != run_sql and run:
                await self._write(run_sql, run)
                run = []
            run_sql = sql
            run.append(args)
        if run:
            await self._write(run_sql, run)
        if changed:
            shops, orders = zip(*sorted(changed), strict=True)
            await self.conn.execute(_NEXT_VISITS, list(shops), list(orders))
        # a new customer's referral counts in the hour of their first visit
        marks |= await self._hours_of(
            "SELECT shop_id, first_visit_at AS at FROM customers", "customer_id", referred
        )
        await mark_hours(self.conn, marks)
        await mark_active_since(self.conn, visit_hours)

    async def _hours_of(
        self, select: str, key: str, keys: set[tuple[uuid.UUID, str]]
    ) -> set[tuple[uuid.UUID, int]]:
        if not keys:
            return set()
        shops, ids = zip(*sorted(keys), strict=True)
        rows = await self.conn.fetch(
            f"{select} WHERE (shop_id, {key}) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))",
            list(shops),
            list(ids),
        )
        return {(r["shop_id"], hour_of(r["at"])) for r in rows if r["at"] is not None}

    async def _write(self, sql: str | None, run: list[tuple[Any, ...]]) -> None:
        if sql == _VISIT and len(run) > 1:
            last = {(args[0], args[1]): args for args in run}
            columns = zip(*last.values(), strict=True)
            await self.conn.execute(_VISITS, *(list(c) for c in columns))
        else:
            assert sql is not None
            await self.conn.executemany(sql, run)

    async def visits_by_customer(self, shop_id: uuid.UUID) -> list[list[datetime]]:
        rows = await self.conn.fetch(
            "SELECT array_agg(completed_at ORDER BY completed_at) AS visits FROM visits"
            " WHERE shop_id = $1 AND standing GROUP BY customer_id",
            shop_id,
        )
        return [list(r["visits"]) for r in rows]


_COLUMNS = (
    "shop_id, customer_id, name, phone, phone_digits, email, facts, stage, stage_since,"
    " stage_reason, next_change_at, risk_score, risk_reasons, risk_model, p_alive,"
    " expected_visits_12m, expected_next_visit, average_interval_s, at_risk, visits,"
    " first_visit_at, last_visit_at, lifetime_value_cents"
)
_TYPES = (
    "uuid, text, text, text, text, text, jsonb, text, timestamptz, text, timestamptz,"
    " float8, jsonb, text, float8, float8, timestamptz, float8, boolean, int4, timestamptz,"
    " timestamptz, int8"
)
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
# jsonb travels as text (asyncpg would read a JSON list as an array dimension), cast back
_SAVE = (
    f"INSERT INTO customers ({_COLUMNS}) SELECT "
    + ", ".join(
        f"{n}::jsonb" if t.strip() == "jsonb" else n
        for n, t in zip(_NAMES, _TYPES.split(","), strict=True)
    )
    + " FROM unnest("
    + ", ".join(
        f"${i}::{'text' if t.strip() == 'jsonb' else t.strip()}[]"
        for i, t in enumerate(_TYPES.split(","), start=1)
    )
    + f") AS u({', '.join(_NAMES)})"
    + " ON CONFLICT (shop_id, customer_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES[2:])
)


def _digits(phone: str | None) -> str | None:
    return None if phone is None else re.sub(r"\D", "", phone) or None


def _restore(row: asyncpg.Record) -> CustomerStanding:
    return CustomerStanding.restore(
        str(row["shop_id"]),
        row["customer_id"],
        row["facts"],
        stage=row["stage"],
        stage_since=row["stage_since"],
        at_risk=row["at_risk"],
        next_change_at=row["next_change_at"],
    )


class PostgresStandings:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        #: each locked customer's first visit as stored: a new customer counts in its hour
        self.first_visits: dict[CustomerKey, datetime | None] = {}

    async def lock(self, keys: Sequence[CustomerKey]) -> dict[CustomerKey, CustomerStanding]:
        ordered = sorted(set(keys))
        shops, customers = [uuid.UUID(s) for s, _c in ordered], [c for _s, c in ordered]
        # The row first: a lock needs something to lock, and a second transaction making
        # the same new customer waits here for the first to commit, then reads its work.
        await self.conn.execute(
            "INSERT INTO customers (shop_id, customer_id)"
            " SELECT * FROM unnest($1::uuid[], $2::text[]) ORDER BY 1, 2"
            " ON CONFLICT DO NOTHING",
            shops,
            customers,
        )
        rows = await self.conn.fetch(
            "SELECT shop_id, customer_id, facts, stage, stage_since, at_risk,"
            " next_change_at, first_visit_at FROM customers WHERE (shop_id, customer_id) IN"
            " (SELECT * FROM unnest($1::uuid[], $2::text[]))"
            " ORDER BY shop_id, customer_id FOR UPDATE",
            shops,
            customers,
        )
        found = {(str(r["shop_id"]), r["customer_id"]): _restore(r) for r in rows}
        for r in rows:
            self.first_visits[(str(r["shop_id"]), r["customer_id"])] = r["first_visit_at"]
        return {key: found.get(key) or CustomerStanding(key[0], key[1]) for key in ordered}

    async def lock_shop(
        self, shop_id: uuid.UUID, *, after: str, limit: int
    ) -> list[CustomerStanding]:
        rows = await self.conn.fetch(
            "SELECT shop_id, customer_id, facts, stage, stage_since, at_risk,"
            " next_change_at, first_visit_at FROM customers WHERE shop_id = $1"
            " AND stage IS NOT NULL"
            " AND customer_id > $2 ORDER BY customer_id LIMIT $3 FOR UPDATE",
            shop_id,
            after,
            limit,
        )
        for r in rows:
            self.first_visits[(str(r["shop_id"]), r["customer_id"])] = r["first_visit_at"]
        return [_restore(r) for r in rows]

    async def save(self, standings: Sequence[CustomerStanding]) -> None:
        if not standings:
            return
        columns = list(zip(*(_row(s) for s in standings), strict=True))
        await self.conn.execute(_SAVE, *(list(c) for c in columns))
        marks = set()
        for s in standings:
            before = self.first_visits.get((s.shop_id, s.customer_id))
            now = s.first_visit_at
            if before != now:
                shop = uuid.UUID(s.shop_id)
                marks |= {(shop, hour_of(at)) for at in (before, now) if at is not None}
            self.first_visits[(s.shop_id, s.customer_id)] = now
        await mark_hours(self.conn, marks)


def _row(s: CustomerStanding) -> tuple[Any, ...]:
    risk = s.risk
    assert risk is not None and s.stage is not None, "a standing is saved once assessed"
    interval = risk.average_interval
    return (
        uuid.UUID(s.shop_id),
        s.customer_id,
        s.name,
        s.phone,
        _digits(s.phone),
        s.email,
        orjson.dumps(s.facts()).decode(),
        s.stage,
        s.stage_since,
        s.stage_reason or "",
        s.next_change_at,
        risk.score,
        orjson.dumps(
            [{"code": r.code, "words": r.words, "weight": r.weight} for r in risk.reasons]
        ).decode(),
        risk.model,
        risk.p_alive,
        risk.expected_visits_12m,
        risk.expected_next_visit,
        None if interval is None else interval / timedelta(seconds=1),
        s.at_risk,
        len(s.visits),
        s.first_visit_at,
        s.last_visit_at,
        s.lifetime_value_cents,
    )


class PostgresRiskModels:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, shop_id: uuid.UUID) -> RiskModel:
        row = await self.conn.fetchrow("SELECT * FROM risk_models WHERE shop_id = $1", shop_id)
        if row is None or row["fitted_at"] is None:
            return RiskModel()
        if row["r"] is None:
            return RiskModel(fit=None, note=row["note"], fitted_at=row["fitted_at"])
        fit = BgNbd(
            r=row["r"],
            alpha=row["alpha"],
            a=row["a"],
            b=row["b"],
            log_likelihood=row["log_likelihood"],
            customers=row["fitted_customers"],
        )
        return RiskModel(fit=fit, note=row["note"], fitted_at=row["fitted_at"])

    async def save(self, shop_id: uuid.UUID, model: RiskModel, customers: int) -> None:
        fit = model.fit
        await self.conn.execute(
            "INSERT INTO risk_models (shop_id, r, alpha, a, b, log_likelihood,"
            " fitted_customers, note, fitted_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (shop_id) DO UPDATE"
            " SET r = $2, alpha = $3, a = $4, b = $5, log_likelihood = $6,"
            " fitted_customers = $7, note = $8, fitted_at = $9",
            shop_id,
            None if fit is None else fit.r,
            None if fit is None else fit.alpha,
            None if fit is None else fit.a,
            None if fit is None else fit.b,
            None if fit is None else fit.log_likelihood,
            customers,
            model.note,
            model.fitted_at,
        )
