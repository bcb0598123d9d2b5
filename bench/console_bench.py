"""The staff console at a large shop's scale: server time per page, and Lighthouse.

On the 100,000-customer shop loyalty's bench loads (loyalty_bench), created with staff in
its policy (POLICY; a policy change after the load would rescore every customer from the
facts the set-based load leaves empty, and that rescore would compete with the reads):
1,000 follow-up calls due today go straight into followup's tables (scheduled, spread over
the shop's business day, each for a customer's latest visit, with followup's own call
script), and 200 open recovery cases into feedback's (mixed severities, some acknowledged,
some past a deadline, each with its history), with the rows loyalty keeps for them
(loyalty.cases, the open-case marks). One customer gets a long journey (loyalty.timeline).
The owner signs in by a one-time link, as staff do, and reads Today, Cases, that customer
and Metrics: a warm-up, then 100 sequential requests each, beside the same process's
/healthz as a baseline. Then Lighthouse (mobile) scores Today and Metrics, signed in.

    .venv/bin/python bench/run.py --console
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import cpu
import httpx
import lighthouse
import loyalty_bench
from regulars_followup.domain.tasks import call_script

T = TypeVar("T")

CALLS = 1_000
CASES = 200
#: how many of the cases are for customers with a call today (the call shows the mark)
CASES_WITH_CALLS = 100
JOURNEY = 1_500
REQUESTS = 100
WARMUP = 5
GOAL_P99_MS = 150.0
OTHER_LOAD_WARNING = 0.3  # cores busy outside the bench's processes (as run.py warns)
GOALS = {"performance": 90, "accessibility": 95, "best-practices": 95}
SHOP_NAME = "Bench Loyalty Auto"
OWNER = {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@bench.example"}
ADVISORS = [
    {"id": f"adv-{i}", "name": name, "role": "advisor", "email": f"adv{i}@bench.example"}
    for i, name in enumerate(("Sam Rivera", "Ana Reyes", "Lee Park", "Jo Novak"))
]
STAFF = [
    OWNER,
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@b.example"},
    *ADVISORS,
]
#: what the bench shop's policy says beyond the defaults (run.loyalty_reads creates it so)
POLICY: dict[str, Any] = {"staff": STAFF, "contact": {"name": SHOP_NAME}}
#: the shop's day: calls are due between these local hours
DAY_HOURS = (8, 18)
PAGES = {
    "today": "/?who=all",
    "cases": "/cases?who=all",
    "customer": "/customers/{customer}",
    "metrics": "/reports",
}
LIGHTHOUSE_PAGES = ("today", "metrics")
WORK = (
    ("front brake pads", "2019 Honda Civic"),
    ("oil change and tire rotation", "2021 Toyota RAV4"),
    ("replace serpentine belt", "2016 Ford F-150"),
    ("A/C recharge", None),
    ("check engine light diagnosis", "2018 Subaru Outback"),
)
COMPLAINTS = (
    "Brakes still squeal when cold",
    "Waited two hours past the promised time",
    "The invoice was higher than the estimate",
    "Check engine light came back the next day",
)
#: a long journey: one of each of these in turn, newest first every 17 hours
JOURNEY_TYPES = (
    "regulars.service.completed.v1",
    "regulars.followup.scheduled.v1",
    "regulars.followup.attempted.v1",
    "regulars.followup.completed.v1",
    "regulars.survey.requested.v1",
    "regulars.feedback.received.v1",
    "regulars.message.sent.v1",
    "regulars.invoice.issued.v1",
    "regulars.invoice.paid.v1",
    "regulars.appointment.booked.v1",
    "regulars.lifecycle.stage_changed.v1",
    "regulars.customer.replied.v1",
)
_JOURNEY_SQL = """
INSERT INTO loyalty.timeline (event_id, shop_id, customer_id, type, occurred_at, data)
SELECT gen_random_uuid(), $1, $2, ($3::text[])[1 + i % array_length($3::text[], 1)],
    $4::timestamptz - i * interval '17 hours',
    jsonb_build_object('repair_order_id', 'ro-j-' || i, 'work_performed', 'oil change',
        'total_cents', 4000 + i, 'advisor', 'adv-1', 'due_at', $4::timestamptz - i * interval
        '17 hours' + interval '2 days', 'attempt', 1, 'outcome', 'no_answer', 'satisfied', true,
        'score', 9, 'nps', 9, 'comment', 'Quick and friendly, thank you', 'channel', 'sms',
        'kind', 'follow_up', 'amount_cents', 4000 + i, 'starts_at', '2026-01-05T09:00:00',
        'from_stage', 'repeat', 'to_stage', 'loyal', 'reason', '3 visits in 24 months',
        'text', 'Thanks, see you in spring')
FROM generate_series(1, $5) i
"""
_LATEST_VISITS = """
SELECT v.customer_id, v.repair_order_id, v.completed_at, v.advisor, c.name, c.phone
FROM (SELECT DISTINCT ON (customer_id) customer_id, repair_order_id, completed_at, advisor
      FROM loyalty.visits WHERE shop_id = $1 ORDER BY customer_id, completed_at DESC) v
JOIN loyalty.customers c ON c.shop_id = $1 AND c.customer_id = v.customer_id
ORDER BY v.completed_at DESC LIMIT $2
"""


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _wait(what: str, check: Any, timeout: float, every: float = 0.2) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(every)
    raise RuntimeError(f"console bench: {what}: not within {timeout:.0f} s")


async def _fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# --- the shop's staff ------------------------------------------------------------------


def _knows_staff(database_url: str, shop_id: str, schemas: tuple[str, ...]) -> bool:
    """Each service (its schema) has the shop's policy with the staff."""
    staff = json.dumps([{"id": m["id"]} for m in STAFF])
    known = " UNION ALL ".join(
        f"SELECT policy FROM {schema}.shop_policies WHERE shop_id = $1" for schema in schemas
    )
    rows = asyncio.run(
        _fetch(
            database_url,
            f"SELECT count(*) FROM ({known}) p WHERE p.policy->'staff' @> $2::jsonb",
            uuid.UUID(shop_id),
            staff,
        )
    )
    return int(rows[0][0]) == len(schemas)


def policy_applied(database_url: str, shop_id: str) -> bool:
    """loyalty has the policy with the staff and has rescored the shop for it (no rescore
    left to run): a load after this is not rescored from its empty facts."""
    if not _knows_staff(database_url, shop_id, ("loyalty",)):
        return False
    rows = asyncio.run(
        _fetch(
            database_url,
            "SELECT count(*) FROM loyalty.timers WHERE shop_id = $1 AND kind = 'loyalty.rescore'"
            " AND fired_at IS NULL AND cancelled_at IS NULL",
            uuid.UUID(shop_id),
        )
    )
    return int(rows[0][0]) == 0


# --- the data ----------------------------------------------------------------------------


def _day(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    today = now.astimezone(zone).date()
    start = datetime(today.year, today.month, today.day, DAY_HOURS[0], tzinfo=zone)
    return start, start.replace(hour=DAY_HOURS[1])


async def load(database_url: str, shop_id: str, now: datetime) -> dict[str, Any]:
    """Calls, cases and a long journey, straight into the services' tables."""
    started = time.monotonic()
    shop = uuid.UUID(shop_id)
    rng = random.Random(11)
    conn = await asyncpg.connect(database_url)
    try:
        version, zone_name = (
            await conn.fetchrow(
                "SELECT version, policy->>'timezone' FROM followup.shop_policies"
                " WHERE shop_id = $1",
                shop,
            )
        ) or (1, "America/New_York")
        zone = ZoneInfo(zone_name or "America/New_York")
        visits = await conn.fetch(_LATEST_VISITS, shop, CALLS + CASES)
        callees, others = visits[:CALLS], visits[CALLS:]
        day_start, day_end = _day(now, zone)
        step = (day_end - day_start) / CALLS
        async with conn.transaction():
            await _load_followup(conn, shop, callees, version, day_start, step, rng)
            cased = [*callees[:CASES_WITH_CALLS], *others[: CASES - CASES_WITH_CALLS]]
            cases = await _load_cases(conn, shop, cased, now, rng)
            journey = await conn.fetchval(
                "SELECT customer_id FROM loyalty.customers WHERE shop_id = $1"
                " ORDER BY visits DESC, customer_id LIMIT 1",
                shop,
            )
            await conn.execute(_JOURNEY_SQL, shop, journey, list(JOURNEY_TYPES), now, JOURNEY)
        await conn.execute(
            "VACUUM (ANALYZE) followup.customers, followup.visits, followup.follow_up_tasks,"
            " feedback.cases, feedback.case_history, loyalty.cases, loyalty.timeline"
        )
    finally:
        await conn.close()
    return {
        "calls": len(callees),
        "cases": len(cases),
        "customer": journey,
        "journey": JOURNEY,
        "case": cases[0],
        "seconds": time.monotonic() - started,
    }


async def _load_followup(
    conn: asyncpg.Connection,
    shop: uuid.UUID,
    callees: list[asyncpg.Record],
    version: int,
    day_start: datetime,
    step: timedelta,
    rng: random.Random,
) -> None:
    customers: list[tuple[Any, ...]] = []
    visits: list[tuple[Any, ...]] = []
    tasks: list[tuple[Any, ...]] = []
    for i, v in enumerate(callees):
        work, unit = WORK[i % len(WORK)]
        data = {
            "repair_order_id": v["repair_order_id"],
            "customer_id": v["customer_id"],
            "completed_at": v["completed_at"].isoformat(),
            "advisor": ADVISORS[i % len(ADVISORS)]["id"],
            "work_performed": work,
            **({"asset_id": unit} if unit else {}),
        }
        customers.append((shop, v["customer_id"], v["name"], v["phone"]))
        visits.append(
            (shop, v["repair_order_id"], v["customer_id"], v["completed_at"], "completed",
             json.dumps(data), uuid.uuid4())
        )  # fmt: skip
        tasks.append(
            (uuid.uuid4(), shop, v["customer_id"], v["repair_order_id"], data["advisor"],
             "scheduled", day_start + i * step, rng.choice((0, 0, 0, 1, 2)),
             json.dumps(call_script(data, SHOP_NAME)), version, "visit")
        )  # fmt: skip
    await conn.executemany(
        "INSERT INTO followup.customers (shop_id, customer_id, name, phone)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        customers,
    )
    await conn.copy_records_to_table(
        "visits",
        schema_name="followup",
        records=visits,
        columns=[
            "shop_id", "repair_order_id", "customer_id", "completed_at", "status", "data",
            "first_event_id",
        ],
    )  # fmt: skip
    await conn.copy_records_to_table(
        "follow_up_tasks",
        schema_name="followup",
        records=tasks,
        columns=[
            "id", "shop_id", "customer_id", "repair_order_id", "assignee", "status", "due_at",
            "attempts", "script", "policy_version", "kind",
        ],
    )  # fmt: skip


async def _load_cases(
    conn: asyncpg.Connection,
    shop: uuid.UUID,
    cased: list[asyncpg.Record],
    now: datetime,
    rng: random.Random,
) -> list[str]:
    """Open cases: a third critical, a third high; 40% acknowledged; a quarter breached."""
    cases: list[tuple[Any, ...]] = []
    history: list[tuple[Any, ...]] = []
    marks: list[tuple[Any, ...]] = []
    for i, v in enumerate(cased):
        case_id = uuid.uuid4()
        severity = ("critical", "high", "normal")[i % 3]
        ack_window = timedelta(hours=1 if severity == "critical" else 4)
        acknowledged = i % 5 < 2
        breached = i % 4 == 0
        # a breached case was opened long enough ago for its clock to run out
        opened = now - (timedelta(days=3) if breached else timedelta(minutes=rng.randint(5, 50)))
        ack_due = opened + ack_window
        resolve_due = opened + timedelta(days=2)
        level, assignee = "advisor", ADVISORS[i % len(ADVISORS)]["id"]
        if breached:
            level, assignee = ("service_manager", "maria") if i % 8 else ("owner", "olga")
        acked_at = opened + ack_window / 2 if acknowledged else None
        ro = v["repair_order_id"]
        cases.append(
            (case_id, shop, v["customer_id"], ro, f"{v['customer_id']}|ro:{ro}", severity,
             "acknowledged" if acknowledged else "open", assignee, level, opened, opened,
             ack_due - ack_window / 4, ack_due, opened, resolve_due - timedelta(hours=12),
             resolve_due, acked_at, "maria" if acknowledged else None)
        )  # fmt: skip
        detail = {
            "source": ("survey", "follow_up_call", "reply")[i % 3],
            "reasons": ["low_nps"] if i % 2 else ["low_nps", "comeback"],
            "nps": i % 5,
            "csat": 1 + i % 2,
            "severity": severity,
        }
        history.append((case_id, opened, "opened", None, COMPLAINTS[i % 4], json.dumps(detail)))
        if breached:
            history.append(
                (case_id, ack_due, "escalated", None, None,
                 json.dumps({"clock": "acknowledge", "from": "advisor", "to": level,
                             "breached_due_at": ack_due.isoformat()}))
            )  # fmt: skip
        if acked_at is not None:
            history.append((case_id, acked_at, "acknowledged", "maria", "Calling them now", "{}"))
        marks.append((shop, str(case_id), v["customer_id"], severity, opened, ack_due,
                      resolve_due, acked_at))  # fmt: skip
    await conn.copy_records_to_table(
        "cases",
        schema_name="feedback",
        records=cases,
        columns=[
            "id", "shop_id", "customer_id", "repair_order_id", "incident_key", "severity",
            "status", "assignee", "escalation_level", "opened_at", "ack_window_start",
            "ack_at_risk_at", "ack_due_at", "resolve_window_start", "resolve_at_risk_at",
            "resolve_due_at", "acknowledged_at", "acknowledged_by",
        ],
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO feedback.case_history (case_id, at, kind, by, text, data)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        history,
    )
    await conn.copy_records_to_table(
        "cases",
        schema_name="loyalty",
        records=marks,
        columns=[
            "shop_id", "case_id", "customer_id", "severity", "opened_at", "ack_due_at",
            "resolve_due_at", "acknowledged_at",
        ],
    )  # fmt: skip
    return [str(c[0]) for c in cases]


# --- signing in and reading --------------------------------------------------------------


def sign_in(bench: Any, shop_id: str, email: str) -> str:
    """A one-time link from the CLI, opened and redeemed: the session's Cookie header."""
    base = bench.url("loyalty")
    out = subprocess.run(
        [sys.executable, "-m", "regulars_cli.main", "staff", "link", "--shop", shop_id,
         "--email", email, "--quiet"],
        env=bench.system.env(CONSOLE_PUBLIC_URL=base),
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    link = out.stdout.strip()
    if not link.startswith(f"{base}/sign-in/"):
        raise RuntimeError(f"console bench: not a sign-in link: {link!r} {out.stderr[:300]}")
    with httpx.Client(base_url=base, timeout=30) as http:
        page = http.get(link)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        if page.status_code != 200 or not csrf or not token:
            raise RuntimeError(f"console bench: sign-in page {page.status_code}")
        r = http.post("/sign-in/link", data={"csrf": csrf[1], "token": token[1]})
        session = http.cookies.get("regulars_session")
        if r.status_code != 303 or not session:
            raise RuntimeError(f"console bench: sign-in {r.status_code} {r.text[:300]}")
    return f"regulars_session={session}"


def _check(name: str, r: httpx.Response) -> None:
    if r.status_code != 200:
        raise RuntimeError(f"console bench: {name}: {r.status_code} {r.text[:300]}")
    if "cannot be reached" in r.text or "/sign-in" in str(r.url):
        raise RuntimeError(f"console bench: {name}: a service did not answer, or signed out")


async def _timed(http: httpx.AsyncClient, name: str, path: str) -> list[float]:
    for _ in range(WARMUP):
        _check(name, await http.get(path))
    samples = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        r = await http.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        _check(name, r)
    return samples


async def read_pages(base: str, cookie: str, customer: str) -> dict[str, Any]:
    headers = {"Cookie": cookie}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        baseline = await _timed(http, "healthz", "/healthz")
        pages = {
            name: await _timed(http, name, path.format(customer=customer))
            for name, path in PAGES.items()
        }
        shown = (await http.get(PAGES["today"])).text
        heading = re.search(r"\d+\+? calls? due today[^<]*", shown)
    together = [s for samples in pages.values() for s in samples]
    return {
        "baseline_p50_ms": statistics.median(baseline),
        "p50_ms": statistics.median(together),
        "p99_ms": _pct(together, 99),
        "today_heading": heading[0] if heading else None,
        "pages": {
            name: {"p50_ms": statistics.median(s), "p99_ms": _pct(s, 99), "samples_ms": s}
            for name, s in pages.items()
        },
    }


def _failing(report: dict[str, Any]) -> dict[str, list[str]]:
    """Per category, its audits that count and scored under 1: 'id (score, value)'."""
    audits = report.get("audits", {})
    found: dict[str, list[str]] = {}
    for name in lighthouse.CATEGORIES:
        for ref in report["categories"][name]["auditRefs"]:
            audit = audits.get(ref["id"], {})
            score = audit.get("score")
            if ref.get("weight", 0) > 0 and score is not None and score < 1:
                value = audit.get("displayValue")
                shown = f"{score:.2f}, {value}" if value else f"{score:.2f}"
                found.setdefault(name, []).append(f"{ref['id']} ({shown.replace(chr(160), ' ')})")
    return found


def lighthouse_pages(base: str, cookie: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in LIGHTHOUSE_PAGES:
        url = base + PAGES[name]
        try:
            got, report = lighthouse.scored_report(url, cookie_header=cookie)
        except lighthouse.LighthouseError as failed:
            print(f"bench: console lighthouse {name}: {failed}", flush=True)
            out[name] = {"error": str(failed)}
            continue
        out[name] = {"scores": got, "failing": _failing(report)}
    return out


# --- the run -------------------------------------------------------------------------------


def measure(bench: Any, shop_id: str, key: str) -> dict[str, Any]:
    """Everything above on loyalty_reads' shop; starts feedback if needed (and stops it)."""
    from run import SERVICE_ENV

    system = bench.system
    svc = system.services.get("feedback")
    started = svc is None or svc.proc is None or svc.proc.poll() is not None
    if started:
        print("bench: starting feedback", flush=True)
        system.start("feedback", **SERVICE_ENV)
    try:
        return _measure(bench, shop_id, key)
    finally:
        if started:
            system.services["feedback"].kill(signal.SIGTERM)


def _settled(bench: Any) -> float:
    """Waits for feedback to catch up with the backlog it came back to (its visits stop
    growing): a console read must not compete with a drain."""
    db = bench.system.database_url
    last, since = -1, time.monotonic()
    start = time.monotonic()
    while time.monotonic() - start < 180:
        n = int(asyncio.run(_fetch(db, "SELECT count(*) FROM feedback.visits"))[0][0])
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 3:
            break
        time.sleep(0.5)
    return time.monotonic() - start


def _busy(bench: Any, measured: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """``measured()``, and the cores the machine and the bench's processes kept busy meanwhile
    (the services, PostgreSQL, the broker, this process and the children it waited for:
    lighthouse and its chromium)."""
    roots = bench.pids()
    before, machine = cpu.snapshot(roots), cpu.machine()
    own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    started = time.monotonic()
    result = measured()
    seconds = time.monotonic() - started
    after, machine_after = cpu.snapshot(roots), cpu.machine()
    own_after = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    used = sum(cpu.used(before, after).values())
    for b, a in zip(own, own_after, strict=True):
        used += (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
    busy = {"machine": cpu.machine_cores_busy(machine, machine_after), "bench_processes": 0.0}
    busy["bench_processes"] = min(used / seconds, busy["machine"])
    return result, busy


def _measure(bench: Any, shop_id: str, key: str) -> dict[str, Any]:
    db = bench.system.database_url
    took = _wait(
        "the services to learn the staff",
        lambda: _knows_staff(db, shop_id, ("loyalty", "followup", "feedback")),
        120,
    )
    print(f"bench: loyalty, followup and feedback know the staff after {took:.1f} s", flush=True)
    loaded = asyncio.run(load(db, shop_id, datetime.now(UTC)))
    print(
        f"detail: console loaded calls={loaded['calls']} cases={loaded['cases']}"
        f" journey={loaded['journey']} in {loaded['seconds']:.1f} s",
        flush=True,
    )
    settled = _settled(bench)
    print(f"bench: feedback settled after {settled:.1f} s", flush=True)
    cookie = sign_in(bench, shop_id, OWNER["email"])
    base, customer = bench.url("loyalty"), loaded["customer"]
    with httpx.Client(base_url=base, headers={"Cookie": cookie}, timeout=30) as http:
        _check("case", http.get(f"/cases/{loaded['case']}"))
    reads, busy = _busy(bench, lambda: asyncio.run(read_pages(base, cookie, customer)))
    reads["cores_busy"] = busy
    wiped = asyncio.run(
        _fetch(
            db,
            "SELECT count(*) FROM loyalty.customers WHERE shop_id = $1 AND name IS NULL",
            uuid.UUID(shop_id),
        )
    )[0][0]
    if wiped:
        print(
            f"bench: warning: {wiped} customers lost their names and visits during the console"
            " bench (loyalty rescored them from the load's empty facts): its pages read less",
            flush=True,
        )
    print(f"bench: console Today says {reads['today_heading']!r}", flush=True)
    scored, busy = _busy(bench, lambda: lighthouse_pages(base, cookie))
    return {
        "loaded": loaded,
        "reads": reads,
        "lighthouse": {**scored, "cores_busy": busy},
    }


def lines(report: dict[str, Any]) -> list[str]:
    reads, loaded = report["reads"], report["loaded"]
    base = reads["baseline_p50_ms"]
    out = [
        f"console.page p50_ms={reads['p50_ms']:.1f} p99_ms={reads['p99_ms']:.1f}"
        f" baseline_p50_ms={base:.2f} ratio_p50={reads['p50_ms'] / base:.1f}"
        f" customers={loyalty_bench.CUSTOMERS} calls={loaded['calls']} cases={loaded['cases']}"
    ]
    for name, m in reads["pages"].items():
        out.append(f"detail: console.page.{name} p50_ms={m['p50_ms']:.1f} p99_ms={m['p99_ms']:.1f}")
    out += _busy_lines("console.page", reads["cores_busy"], "its times are longer")
    slow = [n for n, m in reads["pages"].items() if m["p99_ms"] >= GOAL_P99_MS]
    if slow:
        out.append(f"detail: console.page over the {GOAL_P99_MS:.0f} ms p99 goal: {slow}")
    scored = dict(report["lighthouse"])
    busy = scored.pop("cores_busy")
    for name, lh in scored.items():
        if "error" in lh:
            out.append(f"console.lighthouse page={name} error=see-log")
            continue
        s = lh["scores"]
        out.append(
            f"console.lighthouse page={name} performance={s['performance']}"
            f" accessibility={s['accessibility']} best_practices={s['best-practices']}"
        )
        for category, goal in GOALS.items():
            if s[category] < goal:
                failing = ", ".join(lh["failing"].get(category, [])) or "none listed"
                out.append(f"detail: console.lighthouse page={name} {category} failing: {failing}")
    # performance is timed on a throttled CPU: other work on the machine lowers it
    out += _busy_lines("console.lighthouse", busy, "its performance scores are lower")
    return out


def _busy_lines(name: str, busy: dict[str, float], lower: str) -> list[str]:
    out = [
        f"detail: {name} cores_busy machine={busy['machine']:.2f}"
        f" bench_processes={busy['bench_processes']:.2f} of {os.cpu_count()}"
    ]
    other = busy["machine"] - busy["bench_processes"]
    if other > OTHER_LOAD_WARNING:
        out.append(
            f"bench: warning: other processes kept {other:.1f} cores busy during {name};"
            f" {lower} than on a quiet machine"
        )
    return out
