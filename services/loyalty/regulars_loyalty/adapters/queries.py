"""What loyalty's API reads, straight from its tables, scoped to one shop."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from regulars_runtime.shop_directory import policy_for
from regulars_shop.policy import Policy

from ..domain.metrics import Tally
from .repository import hour_of


async def journey_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    customer_id: str,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """A customer's events past ``after`` (keyset on time, then id): oldest first, or
    newest first (the console's timeline)."""
    beyond, order = ("<", "DESC") if newest_first else (">", "ASC")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id AS id, type, occurred_at, data FROM timeline"
            " WHERE shop_id = $1 AND customer_id = $2"
            f" AND ($3::timestamptz IS NULL OR (occurred_at, event_id) {beyond} ($3, $4::uuid))"
            f" ORDER BY occurred_at {order}, event_id {order} LIMIT $5",
            shop_id,
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    return [dict(r) for r in rows]


_LISTED = (
    "customer_id, name, phone, email, stage, stage_since, risk_score, at_risk, p_alive,"
    " visits, last_visit_at, expected_next_visit"
)


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


async def customers_page(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    *,
    stage: str | None,
    at_risk: bool | None,
    q: str | None,
    after: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Customers in id order from ``after`` on; ``q`` matches a name or an id (any part,
    case-insensitive) or a phone (its digits)."""
    digits = re.sub(r"\D", "", q or "")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_LISTED} FROM customers WHERE shop_id = $1 AND stage IS NOT NULL"
            " AND ($2::text IS NULL OR stage = $2)"
            " AND ($3::boolean IS NULL OR at_risk = $3)"
            " AND ($4::text IS NULL OR name ILIKE $4 OR customer_id ILIKE $4"
            "      OR ($5::text <> '' AND phone_digits LIKE $5))"
            " AND ($6::text IS NULL OR customer_id > $6)"
            " ORDER BY customer_id LIMIT $7",
            shop_id,
            stage,
            at_risk,
            None if q is None else _like(q),
            f"%{digits}%" if len(digits) >= 3 else "",
            after,
            limit,
        )
    return [dict(r) for r in rows]


async def customer(
    pool: asyncpg.Pool, shop_id: uuid.UUID, customer_id: str
) -> dict[str, Any] | None:
    """Everything the customer page shows, or None: not a customer of this shop."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT *, facts->'consent' AS consent FROM customers"
            " WHERE shop_id = $1 AND customer_id = $2 AND stage IS NOT NULL",
            shop_id,
            customer_id,
        )
        if row is None:
            return None
        made = await conn.fetch(
            "SELECT referred_id AS customer_id, at FROM referrals"
            " WHERE shop_id = $1 AND referrer_id = $2 ORDER BY at, referred_id LIMIT 100",
            shop_id,
            customer_id,
        )
        received = await conn.fetch(
            "SELECT referrer_id AS customer_id, at FROM referrals"
            " WHERE shop_id = $1 AND referred_id = $2 ORDER BY at, referrer_id LIMIT 100",
            shop_id,
            customer_id,
        )
        case = await conn.fetchrow(
            "SELECT case_id, severity, opened_at, ack_due_at, resolve_due_at, acknowledged_at"
            " FROM cases WHERE shop_id = $1 AND customer_id = $2 AND resolved_at IS NULL"
            " AND opened_at IS NOT NULL ORDER BY opened_at DESC LIMIT 1",
            shop_id,
            customer_id,
        )
        replies = await conn.fetch(
            "SELECT event_id, occurred_at, data->>'channel' AS channel, data->>'text' AS text"
            " FROM timeline WHERE shop_id = $1 AND customer_id = $2"
            " AND type = 'regulars.customer.replied.v1' ORDER BY occurred_at DESC LIMIT 5",
            shop_id,
            customer_id,
        )
    found = dict(row)
    found["referrals_made"] = [dict(r) for r in made]
    found["referrals_received"] = [dict(r) for r in received]
    found["open_case"] = None if case is None else dict(case)
    found["recent_replies"] = [dict(r) for r in replies]
    return found


async def risk_model(pool: asyncpg.Pool, shop_id: uuid.UUID) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM risk_models WHERE shop_id = $1", shop_id)
    return None if row is None else dict(row)


# -- metrics: the counts of domain.metrics.Tally, per interval, set-based -------------------


async def _fetch(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


# Who is active at each boundary. A customer is active at t through the last visit before
# t (next_at is the one after): each visit covers the boundaries from the first after it
# to the last before its next visit and before it is lapsed_after old, [lo, hi) in
# boundary indexes. Read in two halves of time ($7 to $8), one before the range and one in
# it, on two connections.
_ACTIVE = (
    "SELECT width_bucket(completed_at, $2::timestamptz[]) AS lo,"
    " least(coalesce(width_bucket(next_at, $2::timestamptz[]), $5), width_bucket("
    "  completed_at + $6::interval - interval '1 microsecond', $2::timestamptz[])) AS hi,"
    " count(*) AS n"
    " FROM visits WHERE shop_id = $1 AND standing AND completed_at < $4"
    " AND completed_at + $6::interval > $3 AND (next_at IS NULL OR next_at >= $3)"
    " AND completed_at >= $7 AND completed_at < $8"
    " GROUP BY lo, hi"
)
_VISIT_COUNTS = (
    "SELECT width_bucket(completed_at, $2::timestamptz[]) AS k, count(*) AS visits,"
    " count(*) FILTER (WHERE comeback) AS comebacks,"
    " count(*) FILTER (WHERE promised_at IS NOT NULL) AS promised,"
    " count(*) FILTER (WHERE completed_at <= promised_at) AS on_time,"
    " coalesce(sum(total_cents), 0)::bigint AS revenue_cents"
    " FROM visits WHERE shop_id = $1 AND standing AND completed_at >= $3 AND completed_at < $4"
    " GROUP BY k"
)
_NEW = (
    "SELECT width_bucket(first_visit_at, $2::timestamptz[]) AS k, count(*) AS new_customers,"
    " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM referrals r WHERE r.shop_id = c.shop_id"
    "  AND r.referred_id = c.customer_id AND r.referrer_id <> c.customer_id)) AS new_referred"
    " FROM customers c WHERE shop_id = $1 AND first_visit_at >= $3 AND first_visit_at < $4"
    " GROUP BY k"
)
_ANSWERS = (
    "SELECT width_bucket(at, $2::timestamptz[]) AS k, count(nps) AS nps_answers,"
    " count(*) FILTER (WHERE nps >= 9) AS promoters,"
    " count(*) FILTER (WHERE nps <= 6) AS detractors, count(csat) AS csat_answers,"
    " count(*) FILTER (WHERE csat >= 4) AS csat_satisfied"
    " FROM answers WHERE shop_id = $1 AND at >= $3 AND at < $4 GROUP BY k"
)
_FOLLOW_UPS = (
    "SELECT width_bucket(at, $2::timestamptz[]) AS k,"
    " count(*) FILTER (WHERE outcome = 'completed') AS follow_ups_completed,"
    " count(*) FILTER (WHERE outcome = 'missed') AS follow_ups_missed"
    " FROM follow_ups WHERE shop_id = $1 AND at >= $3 AND at < $4 GROUP BY k"
)
_PLANS = (
    "SELECT width_bucket(at, $2::timestamptz[]) AS k,"
    " count(*) FILTER (WHERE kind = 'renewed') AS plans_renewed,"
    " count(*) FILTER (WHERE kind = 'expired') AS plans_expired"
    " FROM plan_events WHERE shop_id = $1 AND at >= $3 AND at < $4 GROUP BY k"
)
_SLA_END = (
    "CASE WHEN resolved_at IS NOT NULL AND resolved_at <= resolve_due_at THEN resolved_at"
    " WHEN resolve_due_at <= $5 THEN resolve_due_at END"
)
_SLA = (
    f"SELECT width_bucket({_SLA_END}, $2::timestamptz[]) AS k, count(*) AS sla_ended,"
    " count(*) FILTER (WHERE acknowledged_at <= ack_due_at AND resolved_at <= resolve_due_at)"
    "  AS sla_met"
    " FROM cases WHERE shop_id = $1 AND ack_due_at IS NOT NULL AND resolve_due_at IS NOT NULL"
    f" AND {_SLA_END} >= $3 AND {_SLA_END} < $4 GROUP BY k"
)
_P50 = (
    "SELECT {group} AS k, count(*) AS n, percentile_cont(0.5) WITHIN GROUP"
    " (ORDER BY extract(epoch FROM {column} - opened_at)) AS p50"
    " FROM cases WHERE shop_id = $1 AND opened_at IS NOT NULL"
    " AND {column} >= $3 AND {column} < $4 GROUP BY 1"
)
_INVOICES = (
    "SELECT width_bucket(issued_at, $2::timestamptz[]) AS lo,"
    " coalesce(width_bucket(paid_at, $2::timestamptz[]), $5) AS hi,"
    " greatest(width_bucket(issued_at, $2::timestamptz[]), width_bucket(due_at, $2::timestamptz[]))"
    "  AS past_lo, sum(amount_cents)::bigint AS cents"
    " FROM invoices WHERE shop_id = $1 AND issued_at IS NOT NULL AND issued_at < $4"
    " AND (paid_at IS NULL OR paid_at >= $3) GROUP BY lo, hi, past_lo"
)


def _spread(rows: Sequence[asyncpg.Record], lo: str, hi: str, value: str, size: int) -> list[int]:
    """Sum each row's ``value`` over the boundary indexes [lo, hi) (0-based)."""
    delta = [0] * (size + 1)
    for r in rows:
        start, end = max(0, r[lo]), min(size, r[hi])
        if start < end:
            delta[start] += r[value]
            delta[end] -= r[value]
    out, running = [], 0
    for d in delta[:size]:
        running += d
        out.append(running)
    return out


#: the additive counts tally_hours keeps, in its column order
HOURLY = (
    "visits",
    "comebacks",
    "promised",
    "on_time",
    "revenue_cents",
    "new_customers",
    "new_referred",
    "nps_answers",
    "promoters",
    "detractors",
    "csat_answers",
    "csat_satisfied",
    "follow_ups_completed",
    "follow_ups_missed",
    "plans_renewed",
    "plans_expired",
)
_RECOUNT = (
    "WITH marked AS (DELETE FROM tally_dirty WHERE shop_id = $1 RETURNING hour),"
    " hours AS (SELECT DISTINCT hour, to_timestamp(hour * 3600) AS lo,"
    "  to_timestamp((hour + 1) * 3600) AS hi FROM marked)"
    f" INSERT INTO tally_hours (shop_id, hour, {', '.join(HOURLY)})"
    " SELECT $1, h.hour, v.*, n.*, a.*, f.*, p.* FROM hours h"
    " CROSS JOIN LATERAL (SELECT count(*), count(*) FILTER (WHERE comeback),"
    "  count(*) FILTER (WHERE promised_at IS NOT NULL),"
    "  count(*) FILTER (WHERE completed_at <= promised_at), coalesce(sum(total_cents), 0)"
    "  FROM visits WHERE shop_id = $1 AND standing"
    "  AND completed_at >= h.lo AND completed_at < h.hi) v"
    " CROSS JOIN LATERAL (SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1"
    "  FROM referrals r WHERE r.shop_id = c.shop_id AND r.referred_id = c.customer_id"
    "  AND r.referrer_id <> c.customer_id)) FROM customers c WHERE shop_id = $1"
    "  AND first_visit_at >= h.lo AND first_visit_at < h.hi) n"
    " CROSS JOIN LATERAL (SELECT count(nps), count(*) FILTER (WHERE nps >= 9),"
    "  count(*) FILTER (WHERE nps <= 6), count(csat), count(*) FILTER (WHERE csat >= 4)"
    "  FROM answers WHERE shop_id = $1 AND at >= h.lo AND at < h.hi) a"
    " CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE outcome = 'completed'),"
    "  count(*) FILTER (WHERE outcome = 'missed')"
    "  FROM follow_ups WHERE shop_id = $1 AND at >= h.lo AND at < h.hi) f"
    " CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE kind = 'renewed'),"
    "  count(*) FILTER (WHERE kind = 'expired')"
    "  FROM plan_events WHERE shop_id = $1 AND at >= h.lo AND at < h.hi) p"
    " ON CONFLICT (shop_id, hour) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in HOURLY)
)
_HOURLY = (
    "SELECT width_bucket(to_timestamp(hour * 3600), $2::timestamptz[]) AS k, "
    + ", ".join(f"sum({c})::bigint AS {c}" for c in HOURLY)
    + " FROM tally_hours WHERE shop_id = $1 AND hour >= $3 AND hour < $4"
    " AND NOT hour = ANY($5::int8[]) GROUP BY k"
)
_RAW_COUNTS = (_VISIT_COUNTS, _NEW, _ANSWERS, _FOLLOW_UPS, _PLANS)
HOUR = timedelta(hours=1)


async def recount_marked_hours(pool: asyncpg.Pool, shop_id: uuid.UUID) -> None:
    """Bring tally_hours up to date with the facts for every hour a write marked."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_RECOUNT, shop_id)


async def active_at(
    pool: asyncpg.Pool, shop_id: uuid.UUID, bounds: list[datetime], lapsed_after: timedelta
) -> list[int]:
    """Customers active at each of ``bounds``: counted once, kept in active_counts until a
    visit before the moment changes."""
    async with pool.acquire() as conn, conn.transaction():
        since = await conn.fetchval(
            "WITH d AS (DELETE FROM active_dirty WHERE shop_id = $1 RETURNING since)"
            " SELECT min(since) FROM d",
            shop_id,
        )
        if since is not None:
            await conn.execute(
                "DELETE FROM active_counts WHERE shop_id = $1 AND at > $2", shop_id, since
            )
        rows = await conn.fetch(
            "SELECT at, customers FROM active_counts WHERE shop_id = $1 AND lapsed_after = $2"
            " AND at = ANY($3::timestamptz[])",
            shop_id,
            lapsed_after,
            bounds,
        )
    known = {r["at"]: int(r["customers"]) for r in rows}
    missing = sorted({b for b in bounds if b not in known})
    if missing:
        first, last, size = missing[0], missing[-1], len(missing)
        common = (shop_id, missing, first, last, size, lapsed_after)
        before, within = await asyncio.gather(
            _fetch(pool, _ACTIVE, *common, first - lapsed_after, first),
            _fetch(pool, _ACTIVE, *common, first, last),
        )
        counted = _spread(before + within, "lo", "hi", "n", size)
        known.update(zip(missing, counted, strict=True))
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO active_counts (shop_id, at, lapsed_after, customers)"
                " SELECT $1, * FROM unnest($2::timestamptz[], $3::interval[], $4::int8[])"
                " ON CONFLICT DO NOTHING",
                shop_id,
                missing,
                [lapsed_after] * size,
                counted,
            )
    return [known[b] for b in bounds]


def _on_the_hour(at: datetime) -> bool:
    return at.timestamp() % 3600 == 0


async def _additive(
    pool: asyncpg.Pool, shop_id: uuid.UUID, b: list[datetime]
) -> list[list[asyncpg.Record]]:
    """The additive counts per interval: whole hours from tally_hours, and from the facts
    themselves every hour a boundary cuts (and the range's ragged ends)."""
    start, end = b[0], b[-1]
    cut = sorted({hour_of(x) for x in b if not _on_the_hour(x)})
    first, last = -(-int(start.timestamp()) // 3600), hour_of(end)
    reads = [_fetch(pool, _HOURLY, shop_id, b, first, last, cut)]
    for h in cut:
        lo = max(start, datetime.fromtimestamp(h * 3600, UTC))
        hi = min(end, datetime.fromtimestamp(h * 3600, UTC) + HOUR)
        if lo < hi:
            reads += [_fetch(pool, sql, shop_id, b, lo, hi) for sql in _RAW_COUNTS]
    return await asyncio.gather(*reads)


async def _moments(
    pool: asyncpg.Pool, shop_id: uuid.UUID, b: list[datetime], now: datetime
) -> list[list[asyncpg.Record]]:
    """The counts read from the facts each time: SLA ends, the medians, open invoices."""
    start, end, m = b[0], b[-1], len(b)
    common = (shop_id, b, start, end)
    return list(
        await asyncio.gather(
            _fetch(pool, _SLA, *common, now),
            _fetch(
                pool,
                _P50.format(
                    group="width_bucket(acknowledged_at, $2::timestamptz[])",
                    column="acknowledged_at",
                ),
                *common,
            ),
            _fetch(
                pool,
                _P50.format(
                    group="width_bucket(resolved_at, $2::timestamptz[])", column="resolved_at"
                ),
                *common,
            ),
            _fetch(
                pool,
                "SELECT 'ack' AS k, count(*) AS n, percentile_cont(0.5) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM acknowledged_at - opened_at)) AS p50 FROM cases"
                " WHERE shop_id = $1 AND opened_at IS NOT NULL AND acknowledged_at >= $2"
                " AND acknowledged_at < $3"
                " UNION ALL SELECT 'resolve', count(*), percentile_cont(0.5) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM resolved_at - opened_at)) FROM cases"
                " WHERE shop_id = $1 AND opened_at IS NOT NULL AND resolved_at >= $2"
                " AND resolved_at < $3",
                shop_id,
                start,
                end,
            ),
            _fetch(pool, _INVOICES, *common, m),
        )
    )


async def tallies(
    pool: asyncpg.Pool,
    shop_id: uuid.UUID,
    bounds: Sequence[datetime],
    lapsed_after: timedelta,
    now: datetime,
) -> tuple[list[Tally], Tally]:
    """The tally of each interval between consecutive ``bounds``, and of the whole range."""
    b = [x.astimezone(UTC) for x in bounds]
    n, m = len(b) - 1, len(b)
    await recount_marked_hours(pool, shop_id)
    additive, active, rows = await asyncio.gather(
        _additive(pool, shop_id, b),
        active_at(pool, shop_id, b, lapsed_after),
        _moments(pool, shop_id, b, now),
    )
    sla, acks, resolves, whole_p50, invoices = rows
    series = [Tally() for _ in range(n)]

    def add(rows: Sequence[asyncpg.Record]) -> None:
        for r in rows:
            k = r["k"]
            if 1 <= k <= n:
                t = series[k - 1]
                for name, value in r.items():
                    if name != "k":
                        setattr(t, name, getattr(t, name) + int(value or 0))

    for rows in (*additive, sla):
        add(rows)
    for rows, count, p50 in (
        (acks, "acknowledged", "ack_p50_s"),
        (resolves, "resolved", "resolve_p50_s"),
    ):
        for r in rows:
            if 1 <= r["k"] <= n:
                setattr(series[r["k"] - 1], count, int(r["n"]))
                setattr(series[r["k"] - 1], p50, float(r["p50"]))
    open_at = _spread(invoices, "lo", "hi", "cents", m)
    past_due_at = _spread(invoices, "past_lo", "hi", "cents", m)
    for i, t in enumerate(series):
        t.active_at_start, t.active_at_end = active[i], active[i + 1]
        t.open_cents, t.past_due_cents = open_at[i + 1], past_due_at[i + 1]
    whole = Tally()
    for t in series:
        for name, value in t.as_dict().items():
            if isinstance(value, int) and name not in _AT_A_MOMENT:
                setattr(whole, name, getattr(whole, name) + value)
    whole.active_at_start, whole.active_at_end = active[0], active[n]
    whole.open_cents, whole.past_due_cents = open_at[n], past_due_at[n]
    for r in whole_p50:
        if r["k"] == "ack":
            whole.acknowledged, whole.ack_p50_s = int(r["n"]), _float(r["p50"])
        else:
            whole.resolved, whole.resolve_p50_s = int(r["n"]), _float(r["p50"])
    return series, whole


_AT_A_MOMENT = {
    "active_at_start",
    "active_at_end",
    "open_cents",
    "past_due_cents",
    "acknowledged",
    "resolved",
}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def stage_counts(pool: asyncpg.Pool, shop_id: uuid.UUID) -> dict[str, int]:
    rows = await _fetch(
        pool,
        "SELECT stage, count(*) AS n FROM customers WHERE shop_id = $1 AND stage IS NOT NULL"
        " GROUP BY stage",
        shop_id,
    )
    return {r["stage"]: int(r["n"]) for r in rows}


async def shop_policy(pool: asyncpg.Pool, shop_id: uuid.UUID) -> Policy:
    """The shop's policy as loyalty last heard it (the defaults before it has)."""
    async with pool.acquire() as conn:
        known = await policy_for(conn, shop_id)
    return Policy.defaults() if known is None else known[1]


async def call_context(
    pool: asyncpg.Pool, shop_id: uuid.UUID, customer_ids: list[str], repair_order_ids: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """For a page of calls: each customer's name, phone and open case (the one opened
    last), and each visit's time and total; keyed by customer id and repair order id."""
    async with pool.acquire() as conn:
        people = await conn.fetch(
            "SELECT c.customer_id, c.name, c.phone, c.stage,"
            " (SELECT k.case_id FROM cases k WHERE k.shop_id = c.shop_id"
            "   AND k.customer_id = c.customer_id AND k.resolved_at IS NULL"
            "   ORDER BY k.opened_at DESC NULLS LAST LIMIT 1) AS open_case"
            " FROM customers c WHERE c.shop_id = $1 AND c.customer_id = ANY($2::text[])",
            shop_id,
            customer_ids,
        )
        visits = await conn.fetch(
            "SELECT repair_order_id, completed_at, advisor, total_cents FROM visits"
            " WHERE shop_id = $1 AND repair_order_id = ANY($2::text[])",
            shop_id,
            repair_order_ids,
        )
    return (
        {r["customer_id"]: dict(r) for r in people},
        {r["repair_order_id"]: dict(r) for r in visits},
    )


async def case_summary(pool: asyncpg.Pool, shop_id: uuid.UUID, now: datetime) -> dict[str, int]:
    """How many cases are open, and how many of them are past a deadline."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS open, count(*) FILTER (WHERE"
            " (acknowledged_at IS NULL AND ack_due_at < $2) OR resolve_due_at < $2) AS breached"
            " FROM cases WHERE shop_id = $1 AND resolved_at IS NULL AND opened_at IS NOT NULL",
            shop_id,
            now,
        )
    assert row is not None
    return {"open": int(row["open"]), "breached": int(row["breached"])}
