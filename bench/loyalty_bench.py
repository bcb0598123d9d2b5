"""loyalty's reads at a shop's scale, and its drain of a backlog.

One shop with 100,000 customers and about 1,000,000 events over 3 years, loaded
set-based straight into loyalty's projections (what the events would have left there),
then the API read as staff read it: the metrics of a 12-month range, and a filtered page
of customers. Latencies are printed beside the same process's /healthz as a baseline.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from regulars_loyalty.adapters import queries
from regulars_runtime import db

CUSTOMERS = 100_000
YEARS = 3
REQUESTS = 100
WARMUP = 5

_LOAD = [
    # visits: 0 to 6 per customer (about 350,000), spread over the 3 years; each knows the
    # customer's next one, as the projection keeps it
    """
    INSERT INTO loyalty.visits (shop_id, repair_order_id, customer_id, completed_at, advisor,
        total_cents, promised_at, comeback, standing, next_at)
    SELECT $1, 'ro-' || c || '-' || n, 'c-' || lpad(c::text, 6, '0'), at, 'adv-' || (c % 12),
        (5000 + random() * 60000)::bigint,
        CASE WHEN random() < 0.6 THEN at + (random() * 8 - 2) * interval '1 hour' END,
        random() < 0.04, true, lead(at) OVER (PARTITION BY c ORDER BY at, n)
    FROM (SELECT c, n, $2::timestamptz - random() * ($3 * interval '1 day') AS at
          FROM generate_series(1, $4) c,
          LATERAL generate_series(1, (random() * 6.99 + c * 0)::int) n) v
    """,
    # customers, their stage from their visits (as the standing would have decided it)
    """
    INSERT INTO loyalty.customers (shop_id, customer_id, name, phone, phone_digits, facts,
        stage, stage_since, stage_reason, risk_score, risk_reasons, risk_model, p_alive,
        at_risk, visits, first_visit_at, last_visit_at, lifetime_value_cents)
    SELECT $1, id, 'Customer ' || c, '+1555' || lpad(c::text, 7, '0'),
        '1555' || lpad(c::text, 7, '0'),
        '{}', stage, coalesce(last_at, $2::timestamptz), stage, risk, '[]', 'rules',
        greatest(0, 1 - extract(epoch FROM $2::timestamptz - coalesce(last_at, $2::timestamptz))
            / (730 * 86400)),
        risk >= 0.6, coalesce(n, 0), first_at, last_at, coalesce(ltv, 0)
    FROM (
        SELECT c, 'c-' || lpad(c::text, 6, '0') AS id, random() AS risk, n, first_at, last_at, ltv,
            CASE WHEN n IS NULL THEN 'prospect'
                 WHEN last_at < $2::timestamptz - interval '730 days' THEN 'lost'
                 WHEN last_at < $2::timestamptz - interval '365 days' THEN 'lapsed'
                 WHEN recent24 >= 3 THEN 'loyal'
                 WHEN recent18 >= 2 THEN 'repeat'
                 ELSE 'customer' END AS stage
        FROM generate_series(1, $4) c
        LEFT JOIN (SELECT customer_id, count(*) AS n, min(completed_at) AS first_at,
                max(completed_at) AS last_at, sum(total_cents) AS ltv,
                count(*) FILTER (WHERE completed_at > $2::timestamptz - interval '24 months')
                    AS recent24,
                count(*) FILTER (WHERE completed_at > $2::timestamptz - interval '18 months')
                    AS recent18
            FROM loyalty.visits WHERE shop_id = $1 GROUP BY customer_id) v
        ON v.customer_id = 'c-' || lpad(c::text, 6, '0')
    ) s
    """,
    # NPS/CSAT answers (surveys and calls): about 150,000
    """
    INSERT INTO loyalty.answers (event_id, shop_id, customer_id, at, nps, csat, source)
    SELECT gen_random_uuid(), $1, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        $2::timestamptz - random() * ($3 * interval '1 day'), (random() * 10)::int,
        CASE WHEN random() < 0.5 THEN 1 + (random() * 4)::int END,
        CASE WHEN random() < 0.7 THEN 'survey' ELSE 'call' END
    FROM generate_series(1, $4 * 3 / 2)
    """,
    # follow-up outcomes: about 200,000
    """
    INSERT INTO loyalty.follow_ups (shop_id, task_id, customer_id, outcome, at)
    SELECT $1, 't-' || i, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        CASE WHEN random() < 0.85 THEN 'completed' ELSE 'missed' END,
        $2::timestamptz - random() * ($3 * interval '1 day')
    FROM generate_series(1, $4 * 2) i
    """,
    # recovery cases (opened, acknowledged, resolved: about 45,000 events)
    """
    INSERT INTO loyalty.cases (shop_id, case_id, customer_id, severity, opened_at, ack_due_at,
        resolve_due_at, acknowledged_at, resolved_at)
    SELECT $1, 'k-' || i, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        'normal', at, at + interval '2 hours', at + interval '2 days',
        CASE WHEN random() < 0.9 THEN at + random() * interval '4 hours' END,
        CASE WHEN random() < 0.85 THEN at + random() * interval '3 days' END
    FROM (SELECT i, $2::timestamptz - random() * ($3 * interval '1 day') AS at
          FROM generate_series(1, $4 * 15 / 100) i) k
    """,
    # invoices issued and mostly paid: about 190,000 events
    """
    INSERT INTO loyalty.invoices (shop_id, invoice_id, customer_id, amount_cents, due_at,
        issued_at, paid_at)
    SELECT $1, 'inv-' || i, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        (2000 + random() * 80000)::bigint, at + interval '30 days', at,
        CASE WHEN random() < 0.9 THEN at + random() * interval '45 days' END
    FROM (SELECT i, $2::timestamptz - random() * ($3 * interval '1 day') AS at
          FROM generate_series(1, $4) i) v
    """,
    """
    INSERT INTO loyalty.plan_events (event_id, shop_id, plan_id, customer_id, kind, at)
    SELECT gen_random_uuid(), $1, 'pl-' || i,
        'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        CASE WHEN random() < 0.7 THEN 'renewed' ELSE 'expired' END,
        $2::timestamptz - random() * ($3 * interval '1 day')
    FROM generate_series(1, $4 / 5) i
    """,
    """
    INSERT INTO loyalty.referrals (shop_id, referrer_id, referred_id, at)
    SELECT $1, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        $2::timestamptz - random() * ($3 * interval '1 day')
    FROM generate_series(1, $4 / 10) ON CONFLICT DO NOTHING
    """,
    # every hour with a fact marked for the rollup, as the projection's writes would have
    """
    INSERT INTO loyalty.tally_dirty (shop_id, hour)
    SELECT DISTINCT $1::uuid, floor(extract(epoch FROM at) / 3600)::int8 FROM (
        SELECT completed_at AS at FROM loyalty.visits WHERE shop_id = $1
        UNION ALL SELECT at FROM loyalty.answers WHERE shop_id = $1
        UNION ALL SELECT at FROM loyalty.follow_ups WHERE shop_id = $1
        UNION ALL SELECT at FROM loyalty.plan_events WHERE shop_id = $1
        UNION ALL SELECT first_visit_at FROM loyalty.customers
            WHERE shop_id = $1 AND first_visit_at IS NOT NULL) t
    """,
    """
    INSERT INTO loyalty.appointments (event_id, shop_id, customer_id, starts_at)
    SELECT gen_random_uuid(), $1, 'c-' || lpad((1 + (random() * ($4 - 1))::int)::text, 6, '0'),
        $2::timestamptz - random() * ($3 * interval '1 day')
    FROM generate_series(1, $4 * 35 / 100)
    """,
]

_EVENTS = (
    "SELECT (SELECT count(*) FROM loyalty.customers WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.visits WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.answers WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.follow_ups WHERE shop_id = $1)"
    " + (SELECT count(*) + count(acknowledged_at) + count(resolved_at) FROM loyalty.cases"
    "    WHERE shop_id = $1)"
    " + (SELECT count(*) + count(paid_at) FROM loyalty.invoices WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.plan_events WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.referrals WHERE shop_id = $1)"
    " + (SELECT count(*) FROM loyalty.appointments WHERE shop_id = $1)"
)


async def load(database_url: str, shop_id: str, now: datetime) -> dict[str, Any]:
    """The shop's 3 years, set-based; how many events they stand for, and how long it took."""
    started = time.monotonic()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT setseed(0.42)")
        shop = uuid.UUID(shop_id)
        for sql in _LOAD:
            args: list[Any] = [shop, now, YEARS * 365, CUSTOMERS]
            # each statement uses some of the four: numbered again from $1, in order
            used = sorted({int(n) for n in re.findall(r"\$(\d)", sql)})
            numbered = re.sub(r"\$(\d)", lambda m, used=used: f"${used.index(int(m[1])) + 1}", sql)
            await conn.execute(numbered, *(args[i - 1] for i in used))
        # settled, as after a restore: statistics and the visibility map (autovacuum
        # would get there on its own, and would compete with the measurement meanwhile)
        await conn.execute(
            "VACUUM (ANALYZE) loyalty.visits, loyalty.customers, loyalty.answers,"
            " loyalty.follow_ups, loyalty.cases, loyalty.invoices, loyalty.plan_events,"
            " loyalty.referrals, loyalty.appointments"
        )
        events = int(await conn.fetchval(_EVENTS, shop))
    finally:
        await conn.close()
    counted = await db.connect(database_url, "loyalty")
    try:
        await counted.execute(queries._RECOUNT, shop)
        await counted.execute("VACUUM (ANALYZE) loyalty.tally_hours")
    finally:
        await counted.close()
    return {"events": events, "customers": CUSTOMERS, "seconds": time.monotonic() - started}


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _timed(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], key: str
) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(WARMUP):
        r = await http.get(path, params=params, headers=headers)
        assert r.status_code == 200, r.text
    samples = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        r = await http.get(path, params=params, headers=headers)
        samples.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, r.text
    return samples


async def measure(loyalty_url: str, api_key: str, now: datetime) -> dict[str, Any]:
    to = now.date()
    start = (now - timedelta(days=365)).date() + timedelta(days=1)
    async with httpx.AsyncClient(base_url=loyalty_url, timeout=30) as http:
        baseline = await _timed(http, "/healthz", {}, api_key)
        metrics = await _timed(
            http, "/v1/metrics", {"from": start.isoformat(), "to": to.isoformat()}, api_key
        )
        customers = await _timed(
            http, "/v1/customers", {"stage": "lapsed", "at_risk": "true", "limit": 50}, api_key
        )
        found = await _timed(http, "/v1/customers", {"q": "Customer 4242", "limit": 50}, api_key)
    return {
        "baseline_p50_ms": statistics.median(baseline),
        "metrics": {"p50_ms": statistics.median(metrics), "p99_ms": _percentile(metrics, 99)},
        "customers": {
            "p50_ms": statistics.median(customers),
            "p99_ms": _percentile(customers, 99),
        },
        "search": {"p50_ms": statistics.median(found), "p99_ms": _percentile(found, 99)},
    }


def lines(report: dict[str, Any]) -> list[str]:
    base = report["reads"]["baseline_p50_ms"]
    loaded = report["loaded"]
    out = []
    for name in ("metrics", "customers", "search"):
        m = report["reads"][name]
        out.append(
            f"loyalty.{name} p50_ms={m['p50_ms']:.1f} p99_ms={m['p99_ms']:.1f}"
            f" baseline_p50_ms={base:.2f} ratio_p50={m['p50_ms'] / base:.1f}"
            f" customers={loaded['customers']} events={loaded['events']}"
        )
    return out


def now() -> datetime:
    return datetime.now(UTC)
