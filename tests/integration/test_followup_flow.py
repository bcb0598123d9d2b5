"""A completed visit becomes exactly one follow-up task, through Kafka, at the right time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import System, auth, wait_for


@pytest.fixture(scope="module")
async def shop(running: System) -> tuple[str, str]:
    created = await running.create_shop("Followup Motors", "America/Chicago")
    await wait_for(lambda: _authorised(running, created[1]))
    return created


async def tasks(running: System, key: str, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        r = await http.get("/v1/followups", params=params, headers=auth(key))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def post(running: System, key: str, event: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.services["intake"].url) as http:
        return await http.post("/v1/events", json=event, headers=auth(key))


def visit(ro: str, cid: str, completed_at: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "service.completed",
        "id": event_id or f"done-{ro}",
        "occurred_at": completed_at,
        "data": {
            "repair_order_id": ro,
            "customer_id": cid,
            "completed_at": completed_at,
            "advisor": "maria",
            "asset_id": "2019 Honda CR-V",
            "work_performed": "front brake pads and rotors",
        },
    }


def person(cid: str) -> dict[str, Any]:
    return {
        "type": "customer.upserted",
        "id": f"p-{cid}",
        "occurred_at": "2026-11-20T09:00:00Z",
        "data": {"customer_id": cid, "name": "Lee Park", "email": "lee@example.com"},
    }


async def test_completed_visit_becomes_one_task_due_in_business_hours(
    running: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    assert (await post(running, key, person(cid))).status_code == 202
    # Friday 17:00 in Chicago + 48 h = Sunday 17:00; Sunday closed -> Monday 09:00.
    now_year = datetime.now(ZoneInfo("America/Chicago")).year + 1
    friday = next(
        datetime(now_year, 1, d, 17, 0, tzinfo=ZoneInfo("America/Chicago"))
        for d in range(1, 8)
        if datetime(now_year, 1, d).weekday() == 4
    )
    r = await post(running, key, visit("ro-1", cid, friday.isoformat()))
    assert r.status_code == 202, r.text
    found = await wait_for(lambda: tasks(running, key, customer_id=cid))
    assert len(found) == 1
    task = found[0]
    due = datetime.fromisoformat(task["due_at"]).astimezone(ZoneInfo("America/Chicago"))
    assert (due.weekday(), due.hour, due.minute) == (0, 9, 0)
    assert (due.date() - friday.date()).days == 3
    assert task["status"] == "scheduled" and task["assignee"] == "maria"
    assert task["repair_order_id"] == "ro-1" and task["attempts"] == 0
    assert task["script"]["customer"] == "Lee Park"
    assert task["script"]["lines"][0] == "Hi Lee, this is {advisor} from Followup Motors."

    # The same order again, under a new event id, and the identical post again: still one.
    assert (
        await post(running, key, visit("ro-1", cid, friday.isoformat(), "another-id"))
    ).status_code == 202
    assert (await post(running, key, visit("ro-1", cid, friday.isoformat()))).json()[
        "status"
    ] == "duplicate"
    await asyncio.sleep(1.0)
    assert len(await tasks(running, key, customer_id=cid)) == 1


async def test_voided_visit_cancels_its_task(running: System, shop: tuple[str, str]) -> None:
    _shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await post(running, key, person(cid))
    soon = datetime.now(ZoneInfo("UTC")).isoformat()
    await post(running, key, visit("ro-void", cid, soon))
    await wait_for(lambda: tasks(running, key, customer_id=cid, status="scheduled"))
    r = await post(
        running,
        key,
        {
            "type": "service.voided",
            "id": "void-1",
            "occurred_at": soon,
            "data": {"repair_order_id": "ro-void"},
        },
    )
    assert r.status_code == 202, r.text
    cancelled = await wait_for(lambda: tasks(running, key, customer_id=cid, status="cancelled"))
    assert cancelled[0]["status_reason"] == "service voided"
    assert await tasks(running, key, customer_id=cid, status="scheduled") == []


async def test_a_renamed_customer_is_called_by_the_new_name(
    running: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await post(running, key, person(cid))
    soon = datetime.now(ZoneInfo("UTC")).isoformat()
    await post(running, key, visit(f"ro-made-{cid}", cid, soon))
    await post(running, key, visit(f"ro-open-{cid}", cid, soon))

    async def both() -> list[dict[str, Any]] | None:
        found = await tasks(running, key, customer_id=cid, status="scheduled")
        return found if len(found) == 2 else None

    found = await wait_for(both)
    assert {t["script"]["customer"] for t in found} == {"Lee Park"}
    made = next(t for t in found if t["repair_order_id"] == f"ro-made-{cid}")
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        r = await http.post(
            f"/v1/followups/{made['id']}/attempts",
            json={"outcome": "reached", "satisfied": True, "by": "maria"},
            headers=auth(key),
        )
    assert r.status_code == 201, r.text
    assert r.json()["task"]["script"]["lines"][0].startswith("Hi Lee, this is {advisor}")
    renamed = person(cid)
    renamed["id"] = f"rename-{cid}"
    renamed["data"]["name"] = "MORENO, ALEX"
    assert (await post(running, key, renamed)).status_code == 202

    async def by_new_name() -> list[dict[str, Any]] | None:
        found = await tasks(running, key, customer_id=cid)
        return found if {t["script"]["customer"] for t in found} == {"MORENO, ALEX"} else None

    for task in await wait_for(by_new_name):
        assert task["script"]["lines"][0].startswith("Hi Alex, this is {advisor}")
        assert task["script"]["work_performed"] == "front brake pads and rotors"


async def test_historical_visit_schedules_no_call(running: System, shop: tuple[str, str]) -> None:
    _shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await post(running, key, person(cid))
    await post(running, key, visit("ro-old", cid, "2024-03-01T15:00:00-06:00"))
    fresh = datetime.now(ZoneInfo("UTC")).isoformat()
    await post(running, key, visit("ro-new", cid, fresh))
    found = await wait_for(lambda: tasks(running, key, customer_id=cid))
    await asyncio.sleep(0.5)
    assert [t["repair_order_id"] for t in await tasks(running, key, customer_id=cid)] == ["ro-new"]
    assert found


async def test_list_pages_filters_and_scopes_to_the_shop(
    running: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await post(running, key, person(cid))
    now = datetime.now(ZoneInfo("UTC")).isoformat()
    for i in range(5):
        await post(running, key, visit(f"ro-page-{cid}-{i}", cid, now))
    await wait_for(lambda: _count(running, key, cid, 5))
    async with httpx.AsyncClient(
        base_url=running.services["followup"].url, headers=auth(key)
    ) as http:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"customer_id": cid, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/v1/followups", params=params)).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 5 and len(set(seen)) == 5
        assert (await http.get("/v1/followups", params={"limit": 0})).status_code == 422
        assert (await http.get("/v1/followups", params={"limit": 1001})).status_code == 422
        assert (await http.get("/v1/followups", params={"status": "done"})).status_code == 422
        assert (await http.get("/v1/followups", params={"cursor": "garbage"})).status_code == 422
        assert (await http.get("/v1/followups", params={"assignee": "maria"})).status_code == 200
    _other, other_key = await running.create_shop("Nosy Shop")
    await wait_for(lambda: _authorised(running, other_key))
    assert await tasks(running, other_key, customer_id=cid) == []


async def _count(running: System, key: str, cid: str, n: int) -> bool:
    return len(await tasks(running, key, customer_id=cid, limit=100)) == n


async def _authorised(running: System, key: str) -> bool:
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        return (await http.get("/v1/followups", headers=auth(key))).status_code == 200


async def test_a_backlog_applied_together_gives_what_one_by_one_would(
    running: System, shop: tuple[str, str]
) -> None:
    # followup down while a shop's system sends a burst: when it comes back, the burst is
    # applied in shared transactions, visits set-based. The result must be what applying
    # the events one at a time gives: a task per repair order (a second id for the same
    # order ignored), the voided one cancelled, the reopened-and-completed one scheduled
    # again, the customer's name on every call to make, one FollowUpScheduled per scheduling.
    import signal

    shop_id, key = shop
    cid = f"c-{uuid.uuid4().hex[:6]}"
    now = datetime.now(ZoneInfo("UTC")).isoformat()
    followup = running.services["followup"]
    followup.kill(signal.SIGKILL)
    try:

        def change(kind: str, ro: str) -> dict[str, Any]:
            return {
                "type": f"service.{kind}",
                "id": f"{kind}-{ro}-{uuid.uuid4().hex[:4]}",
                "occurred_at": now,
                "data": {"repair_order_id": ro},
            }

        burst = [
            person(cid),
            *(visit(f"ro-b{i}", cid, now) for i in range(20)),
            visit("ro-b3", cid, now, event_id="ro-b3-again"),  # same order, new id
            change("voided", "ro-b5"),
            change("reopened", "ro-b7"),
            visit("ro-b7", cid, now, event_id="ro-b7-done-again"),
            *(visit(f"ro-b{i}", cid, now) for i in range(20, 40)),
        ]
        async with httpx.AsyncClient(base_url=running.services["intake"].url) as http:
            r = await http.post("/v1/events/batch", json={"events": burst}, headers=auth(key))
        assert r.status_code == 202, r.text
        assert {x["status"] for x in r.json()["results"]} == {"accepted"}
    finally:
        followup.start()
    followup.wait_healthy(60)

    async def settled() -> list[dict[str, Any]] | None:
        found = await tasks(running, key, customer_id=cid, limit=1000)
        cancelled = any(t["status"] == "cancelled" for t in found)
        return found if len(found) == 40 and cancelled else None

    await wait_for(settled, timeout=60)
    await asyncio.sleep(1.0)  # anything doubled would show by now
    found = await tasks(running, key, customer_id=cid, limit=1000)
    by_order = {t["repair_order_id"]: t for t in found}
    assert len(found) == len(by_order) == 40
    assert by_order["ro-b5"]["status"] == "cancelled"
    assert {t["status"] for o, t in by_order.items() if o != "ro-b5"} == {"scheduled"}

    # The customer's record travels on its own topic, so it may be applied after some of
    # the visits, or alongside them: every call must show the name all the same.
    assert {t["script"]["customer"] for t in found} == {"Lee Park"}
    assert {t["script"]["lines"][0].split(",")[0] for t in found} == {"Hi Lee"}
    scheduled = await running.fetch(
        "SELECT count(*) AS n FROM followup.outbox WHERE headers @> $1::jsonb",
        f'[["shop_id", "{shop_id}"], ["ce_subject", "{cid}"],'
        ' ["ce_type", "regulars.followup.scheduled.v1"]]',
    )
    # 40 visits scheduled once each, and ro-b7 once more after its reopening
    assert scheduled[0]["n"] == 41
    timers = await running.fetch(
        "SELECT count(*) AS n FROM followup.timers t JOIN followup.follow_up_tasks f"
        " ON t.payload->>'task_id' = f.id::text WHERE f.customer_id = $1"
        " AND t.kind = 'followup.missed'",
        cid,
    )
    assert timers[0]["n"] >= 40  # every task will be missed if nobody calls
