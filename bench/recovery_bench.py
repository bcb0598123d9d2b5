"""Service recovery: how fast a detractor's survey answer becomes a visible case, and how
late the acknowledge SLA escalates those cases.

A shop of its own with a short policy (open all day, so business time is real time; the
acknowledge windows a few seconds) and a staff ladder advisor -> service manager -> owner.
N customers each get a visit and a reached, satisfied follow-up call, so feedback sends
each a survey. Then, one at a time, each survey is answered NPS 2 and
``GET /v1/cases?customer_id=`` polled every 5 ms until the case is listed: the time from
sending the answer to the case being visible. Those cases' ack windows then run out and
escalate (twice, to the owner); the lag of each escalation is the moment it happened
(``case_history.at`` of the "escalated" entry) minus the ``ack_due_at`` it breached.

    .venv/bin/python bench/recovery_bench.py
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

N = 60
POLL_SECONDS = 0.005
VISIBLE_TIMEOUT = 10.0
SETUP_CONCURRENCY = 8
ACK_SLA = "PT3S"
ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@bench.example"},
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@b.example"},
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@bench.example"},
]
POLICY = {
    "business_hours": ALL_DAY,
    "ack_sla": ACK_SLA,
    "ack_sla_critical": ACK_SLA,
    "resolve_sla": "PT1H",  # only the acknowledge clock runs out during the bench
    "follow_up_missed_after": "PT1H",
    "staff": STAFF,
    "contact": {
        "name": "Bench Auto Recovery",
        "phone": "+15125550123",
        "postal_address": "1 Main St, Springfield",
        "review_url": "https://g.page/r/bench-auto/review",
    },
}
ESCALATIONS_SQL = """
SELECT h.case_id,
       extract(epoch FROM h.at - (h.data->>'breached_due_at')::timestamptz) * 1000 AS lag_ms
FROM feedback.case_history h JOIN feedback.cases c ON c.id = h.case_id
WHERE c.shop_id = $1 AND h.kind = 'escalated' AND h.data->>'clock' = 'acknowledge'
"""


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)


async def _until(what: str, check: Any, within: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"recovery bench: {what}: not within {within:.0f} s")
        await asyncio.sleep(every)


async def _items(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[Any]:
    r = await http.get(path, params=params, headers=_auth(key))
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
    items: list[Any] = r.json()["items"]
    return items


async def _feedback_knows(bench: Any, http: httpx.AsyncClient, shop_id: str, key: str) -> bool:
    if (await http.get("/v1/cases", headers=_auth(key))).status_code != 200:
        return False
    rows = await bench.system.fetch(
        "SELECT policy::text AS policy FROM feedback.shop_policies WHERE shop_id = $1",
        uuid.UUID(shop_id),
    )
    staff = json.loads(rows[0]["policy"]).get("staff") if rows else None
    return bool(staff) and [m["id"] for m in staff] == [m["id"] for m in STAFF]


async def _surveyed(bench: Any, key: str, cid: str, http: dict[str, httpx.AsyncClient]) -> str:
    """A visit and a reached, satisfied follow-up call for ``cid``: its survey token."""
    now = datetime.now(UTC).isoformat()
    ro = f"ro-{cid}"
    for event in (
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": now,
            "data": {"customer_id": cid, "name": "Robin Quick", "email": f"{cid}@example.com"},
        },
        {
            "type": "service.completed",
            "id": f"done-{ro}",
            "occurred_at": now,
            "data": {
                "repair_order_id": ro,
                "customer_id": cid,
                "completed_at": now,
                "advisor": "sam",
                "work_performed": "front brake pads",
            },
        },
    ):
        r = await http["intake"].post("/v1/events", json=event, headers=_auth(key))
        if r.status_code != 202:
            raise RuntimeError(f"intake: {r.status_code} {r.text[:300]}")
    fu = http["followup"]
    task = (
        await _until(
            "follow-up task", lambda: _items(fu, "/v1/followups", key, customer_id=cid), 30
        )
    )[0]
    r = await fu.post(
        f"/v1/followups/{task['id']}/attempts",
        json={"outcome": "reached", "satisfied": True, "notes": "all fine"},
        headers=_auth(key),
    )
    if r.status_code != 201:
        raise RuntimeError(f"attempt: {r.status_code} {r.text[:300]}")
    fb = http["feedback"]
    found = await _until("survey", lambda: _items(fb, "/v1/surveys", key, customer_id=cid), 30)
    token: str = found[0]["token"]
    return token


async def _measure(bench: Any) -> dict[str, Any]:
    system = bench.system
    shop_id, key = await system.create_shop("Bench Recovery", policy=POLICY)
    clients = {
        name: httpx.AsyncClient(base_url=bench.url(name), timeout=30)
        for name in ("intake", "followup", "feedback")
    }
    fb = clients["feedback"]
    try:
        await _until(
            "feedback to learn the shop", lambda: _feedback_knows(bench, fb, shop_id, key), 60
        )
        customers = [f"rec-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(N)]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(cid: str) -> str:
            async with gate:
                return await _surveyed(bench, key, cid, clients)

        t0 = time.monotonic()
        tokens = await asyncio.gather(*(one(cid) for cid in customers))
        print(f"bench: {N} surveys ready in {time.monotonic() - t0:.1f} s", flush=True)

        to_case: list[float] = []
        answer_ms: list[float] = []
        for cid, token in zip(customers, tokens, strict=True):
            sent = time.perf_counter()
            r = await fb.post(f"/v1/surveys/{token}/responses", json={"nps": 2})
            if r.status_code // 100 != 2:
                raise RuntimeError(f"answer: {r.status_code} {r.text[:300]}")
            answered = time.perf_counter()
            deadline = time.monotonic() + VISIBLE_TIMEOUT
            while not await _items(fb, "/v1/cases", key, status="open", customer_id=cid):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no case for {cid} within {VISIBLE_TIMEOUT:.0f} s")
                await asyncio.sleep(POLL_SECONDS)
            visible = time.perf_counter()
            to_case.append((visible - sent) * 1000)
            answer_ms.append((answered - sent) * 1000)
        last_opened = time.monotonic()

        # Every case climbs advisor -> service manager -> owner: two ack escalations each.
        async def escalated() -> list[Any] | None:
            rows = await system.fetch(ESCALATIONS_SQL, uuid.UUID(shop_id))
            return rows if len(rows) >= 2 * N else None

        rows = await _until("the escalations", escalated, 60, every=0.5)
        waited = time.monotonic() - last_opened
    finally:
        for client in clients.values():
            await client.aclose()
    lags = [float(r["lag_ms"]) for r in rows]
    return {
        "negative_to_case": {
            "p50_ms": _pct(to_case, 50),
            "p99_ms": _pct(to_case, 99),
            "n": len(to_case),
            "answer_p50_ms": _pct(answer_ms, 50),
            "samples_ms": [round(x, 2) for x in to_case],
        },
        "escalation_lag": {
            "p50_ms": round(statistics.median(lags), 1),
            "p99_ms": _pct(lags, 99),
            "max_ms": round(max(lags), 1),
            "n": len(lags),
            "cases": len({r["case_id"] for r in rows}),
            "ack_sla": ACK_SLA,
            "waited_after_last_case_s": round(waited, 1),
        },
    }


def measure(bench: Any) -> dict[str, Any]:
    """Both measurements; starts feedback if needed and stops it again if it started it."""
    from run import SERVICE_ENV

    svc = bench.system.services.get("feedback")
    started = svc is None or svc.proc is None or svc.proc.poll() is not None
    if started:
        print("bench: starting feedback", flush=True)
        bench.system.start("feedback", **SERVICE_ENV)
    try:
        return asyncio.run(_measure(bench))
    finally:
        if started:  # the later loads measure intake and followup without it
            bench.system.services["feedback"].kill(signal.SIGTERM)


def lines(r: dict[str, Any]) -> list[str]:
    c, e = r["negative_to_case"], r["escalation_lag"]
    return [
        f"e2e.negative_to_case p50_ms={c['p50_ms']:.1f} p99_ms={c['p99_ms']:.1f} n={c['n']}",
        f"timers.escalation_lag p50_ms={e['p50_ms']} p99_ms={e['p99_ms']} max_ms={e['max_ms']}"
        f" n={e['n']} cases={e['cases']} ack_sla={e['ack_sla']}",
    ]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run

    with run.embedded_system() as bench:
        run.prepare(bench)
        report = measure(bench)
    for line in lines(report):
        print(line, flush=True)


if __name__ == "__main__":
    main()
