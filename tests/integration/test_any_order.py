"""Shop systems deliver concurrently, at least once and out of order: a day of a shop's
traffic posted shuffled by several senders, to two intake replicas, ends where posting
it in order ends (the same follow-up tasks, the same intake state, the same events), and
no well-formed event is turned away. What still waits after 7 days is listed, to its shop
alone."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from harness import ServiceProcess, System, auth, free_port, wait_for
from regulars_intake.adapters.queries import waiting_counts
from regulars_runtime.db import connect

CUSTOMERS = 10
VISITS = 24
VOIDED = {3, 7, 11, 20}
REOPENED = {5, 9, 13, 20}  # 20: reopened, then voided (a void is final)
PAID = {0, 1, 2, 4, 6, 8}


def day_of_traffic(start: datetime) -> list[dict[str, Any]]:
    """One shop's day, in the order it happened (each event with the shop's own id)."""
    at = iter(start + timedelta(minutes=3 * i) for i in range(10_000))

    def event(kind: str, eid: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "id": eid, "occurred_at": next(at).isoformat(), "data": data}

    day = [
        event(
            "customer.upserted",
            f"cust-{c}",
            {"customer_id": f"c-{c}", "name": f"Customer {c}", "email": f"c{c}@example.com"},
        )
        for c in range(CUSTOMERS)
    ]
    for c in range(0, CUSTOMERS, 3):
        starts = (start + timedelta(days=30)).isoformat()
        day.append(
            event("appointment.booked", f"appt-{c}", {"customer_id": f"c-{c}", "starts_at": starts})
        )
    for v in range(VISITS):
        done = next(at).isoformat()
        ro, cid = f"ro-{v}", f"c-{v % CUSTOMERS}"
        day.append(
            {
                "type": "service.completed",
                "id": f"done-{ro}",
                "occurred_at": done,
                "data": {
                    "repair_order_id": ro,
                    "customer_id": cid,
                    "completed_at": done,
                    "advisor": "maria",
                },
            }
        )
        if v < 10:
            invoice = {
                "invoice_id": f"inv-{v}",
                "customer_id": cid,
                "amount_cents": 10_000 + v,
                "due_at": (start + timedelta(days=14)).isoformat(),
            }
            day.append(event("invoice.issued", f"issued-inv-{v}", invoice))
            if v in PAID:
                day.append(event("invoice.paid", f"paid-inv-{v}", invoice))
    for v in sorted(REOPENED):
        day.append(event("service.reopened", f"reopen-ro-{v}", {"repair_order_id": f"ro-{v}"}))
    for v in sorted(VOIDED):
        day.append(event("service.voided", f"void-ro-{v}", {"repair_order_id": f"ro-{v}"}))
    return day


@pytest.fixture(scope="module")
async def second_intake(running: System) -> Any:
    """Another intake replica on the same database and broker."""
    replica = ServiceProcess(
        "intake", free_port(), running.env(), running.workdir / "intake-replica.log"
    )
    replica.start()
    replica.wait_healthy()
    yield replica
    replica.kill()


async def _authorised(running: System, key: str) -> bool:
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        return (await http.get("/v1/followups", headers=auth(key))).status_code == 200


async def _tasks(running: System, key: str) -> list[tuple[str, str, str, str]]:
    async with httpx.AsyncClient(
        base_url=running.services["followup"].url, headers=auth(key)
    ) as http:
        r = await http.get("/v1/followups", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return sorted(
            (t["repair_order_id"], t["customer_id"], t["status"], t["due_at"])
            for t in r.json()["items"]
        )


async def _intake_state(running: System, shop_id: str) -> dict[str, Any]:
    shop = uuid.UUID(shop_id)
    orders = await running.fetch(
        "SELECT repair_order_id, customer_id, status FROM intake.repair_orders"
        " WHERE shop_id = $1 ORDER BY 1",
        shop,
    )
    customers = await running.fetch(
        "SELECT customer_id, name, email, consent FROM intake.customers WHERE shop_id = $1"
        " ORDER BY 1",
        shop,
    )
    invoices = await running.fetch(
        "SELECT invoice_id, customer_id FROM intake.invoices WHERE shop_id = $1 ORDER BY 1", shop
    )
    waiting = await running.fetch(
        "SELECT count(*) AS n FROM intake.waiting_events WHERE shop_id = $1", shop
    )
    events = await running.fetch(
        "SELECT o.headers, o.value FROM intake.outbox o WHERE o.headers @> $1::jsonb",
        f'[["shop_id", "{shop_id}"]]',
    )
    published: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        raw = e["headers"]
        headers = dict(json.loads(raw) if isinstance(raw, str) else raw)
        if not headers["ce_type"].startswith(
            ("regulars.shop.", "regulars.api_key", "regulars.policy")
        ):
            published[(headers["ce_type"], headers["ce_subject"], bytes(e["value"]).decode())] += 1
    return {
        "orders": [tuple(r) for r in orders],
        "customers": [tuple(r) for r in customers],
        "invoices": [tuple(r) for r in invoices],
        "waiting": waiting[0]["n"],
        "published": published,
    }


async def _post_in_order(url: str, key: str, day: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=url, headers=auth(key), timeout=30) as http:
        for event in day:
            r = await http.post("/v1/events", json=event)
            assert r.status_code == 202 and r.json()["status"] == "accepted", r.text


async def _sender(url: str, key: str, events: list[dict[str, Any]], batched: bool) -> list[str]:
    """One of the shop system's senders; answers' statuses, every one a 202."""
    statuses = []
    async with httpx.AsyncClient(base_url=url, headers=auth(key), timeout=30) as http:
        if batched:
            for i in range(0, len(events), 5):
                r = await http.post("/v1/events/batch", json={"events": events[i : i + 5]})
                assert r.status_code == 202, r.text
                statuses += [x["status"] for x in r.json()["results"]]
        else:
            for event in events:
                r = await http.post("/v1/events", json=event)
                assert r.status_code == 202, r.text
                statuses.append(r.json()["status"])
    return statuses


@pytest.mark.parametrize("seed", [12, 2026])
async def test_a_shuffled_day_from_concurrent_senders_ends_as_the_day_in_order(
    running: System, second_intake: ServiceProcess, seed: int
) -> None:
    in_order_shop, in_order_key = await running.create_shop(f"In Order Garage {seed}")
    shuffled_shop, shuffled_key = await running.create_shop(f"Shuffled Garage {seed}")
    await wait_for(lambda: _authorised(running, in_order_key))
    await wait_for(lambda: _authorised(running, shuffled_key))
    day = day_of_traffic(datetime.now(UTC) - timedelta(hours=5))

    await _post_in_order(running.services["intake"].url, in_order_key, day)

    rng = random.Random(seed)
    shuffled = day[:]
    rng.shuffle(shuffled)
    resent = rng.sample(day, 8)  # at least once: some delivered twice
    senders = [shuffled[i::4] for i in range(4)]
    senders[0] += resent[:4]
    senders[3] += resent[4:]
    urls = [running.services["intake"].url, second_intake.url]
    answers = await asyncio.gather(
        *(
            _sender(urls[i % 2], shuffled_key, events, batched=i >= 2)
            for i, events in enumerate(senders)
        )
    )
    statuses = Counter(s for sender in answers for s in sender)
    # no well-formed event turned away: each accepted once, a re-send a duplicate
    assert statuses == {"accepted": len(day), "duplicate": 8}, statuses

    expected_tasks = VISITS - len(VOIDED | REOPENED)
    await wait_for(
        lambda: _settled(running, in_order_key, shuffled_key, expected_tasks), timeout=60
    )
    in_order_tasks = await _tasks(running, in_order_key)
    shuffled_tasks = await _tasks(running, shuffled_key)
    assert shuffled_tasks == in_order_tasks
    scheduled = {t[0] for t in in_order_tasks if t[2] == "scheduled"}
    assert scheduled == {f"ro-{v}" for v in range(VISITS) if v not in VOIDED | REOPENED}

    in_order = await _intake_state(running, in_order_shop)
    after_shuffle = await _intake_state(running, shuffled_shop)
    assert after_shuffle["waiting"] == in_order["waiting"] == 0
    assert after_shuffle["orders"] == in_order["orders"]
    assert ("ro-20", "c-0", "voided") in in_order["orders"]
    assert after_shuffle["customers"] == in_order["customers"]
    assert after_shuffle["invoices"] == in_order["invoices"]
    assert after_shuffle["published"] == in_order["published"]
    assert sum(in_order["published"].values()) == len(day)


async def _settled(running: System, a: str, b: str, scheduled: int) -> bool:
    tasks_a, tasks_b = await _tasks(running, a), await _tasks(running, b)
    done = [
        sum(1 for t in tasks if t[2] == "scheduled") == scheduled and len(tasks) == VISITS
        for tasks in (tasks_a, tasks_b)
    ]
    return all(done)


async def test_what_waits_7_days_is_listed_to_its_shop_alone(
    running: System, second_intake: ServiceProcess
) -> None:
    shop_id, key = await running.create_shop("Waiting Garage")
    _other_id, other_key = await running.create_shop("Nosy Garage")
    url = running.services["intake"].url
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=url, headers=auth(key)) as http:
        for i in range(3):
            r = await http.post(
                "/v1/events",
                json={
                    "type": "service.completed",
                    "id": f"lonely-{i}",
                    "occurred_at": now.isoformat(),
                    "data": {
                        "repair_order_id": f"ro-lonely-{i}",
                        "customer_id": "c-never-sent",
                        "completed_at": now.isoformat(),
                    },
                },
            )
            assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        paid = await http.post(
            "/v1/events",
            json={
                "type": "invoice.paid",
                "id": "paid-early",
                "occurred_at": now.isoformat(),
                "data": {
                    "invoice_id": "inv-late",
                    "customer_id": "c-never-sent",
                    "amount_cents": 500,
                    "due_at": now.isoformat(),
                },
            },
        )
        assert paid.status_code == 202
        # fresh: not listed yet
        assert (await http.get("/v1/waiting")).json() == {"items": [], "next_cursor": None}
    # eight days on
    await running.fetch(
        "UPDATE intake.waiting_events SET received_at = now() - interval '8 days'"
        " WHERE shop_id = $1",
        uuid.UUID(shop_id),
    )
    async with httpx.AsyncClient(base_url=url, headers=auth(key)) as http:
        seen = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            r = await http.get("/v1/waiting", params=params)
            assert r.status_code == 200, r.text
            seen += r.json()["items"]
            cursor = r.json()["next_cursor"]
            if not cursor:
                break
        assert sorted(s["id"] for s in seen) == ["lonely-0", "lonely-1", "lonely-2", "paid-early"]
        assert {s["waiting_for"]["kind"] for s in seen} == {"customer"}
        assert {s["waiting_for"]["id"] for s in seen} == {"c-never-sent"}
        assert (await http.get("/v1/waiting", params={"limit": 201})).status_code == 422
        assert (await http.get("/v1/waiting", params={"cursor": "nope"})).status_code == 422
    async with httpx.AsyncClient(base_url=second_intake.url, headers=auth(other_key)) as other:
        assert (await other.get("/v1/waiting")).json()["items"] == []
    async with httpx.AsyncClient(base_url=url) as anonymous:
        assert (await anonymous.get("/v1/waiting")).status_code == 401
    # what `regulars status` prints per shop
    conn = await connect(running.database_url, "intake")
    try:
        counts = {c["shop_id"]: c["waiting"] for c in await waiting_counts(conn)}
    finally:
        await conn.close()
    assert counts[uuid.UUID(shop_id)] == 4
    assert uuid.UUID(_other_id) not in counts

    # never dropped: the customer arrives, and everything held for them goes out
    async with httpx.AsyncClient(base_url=second_intake.url, headers=auth(key)) as http:
        r = await http.post(
            "/v1/events",
            json={
                "type": "customer.upserted",
                "id": "cust-never-sent",
                "occurred_at": now.isoformat(),
                "data": {"customer_id": "c-never-sent", "name": "Late Larry", "email": "l@x.io"},
            },
        )
        assert r.status_code == 202
        # the payment now waits for its invoice, as long waited as before
        (still,) = (await http.get("/v1/waiting")).json()["items"]
        assert (still["id"], still["waiting_for"]) == (
            "paid-early",
            {"kind": "invoice", "id": "inv-late"},
        )
    held = await running.fetch(
        "SELECT needs_kind, needs_id FROM intake.waiting_events WHERE shop_id = $1",
        uuid.UUID(shop_id),
    )
    # the payment now waits for its invoice alone
    assert [(h["needs_kind"], h["needs_id"]) for h in held] == [("invoice", "inv-late")]
    orders = await running.fetch(
        "SELECT repair_order_id FROM intake.repair_orders WHERE shop_id = $1 ORDER BY 1",
        uuid.UUID(shop_id),
    )
    assert [o["repair_order_id"] for o in orders] == ["ro-lonely-0", "ro-lonely-1", "ro-lonely-2"]
