"""A completed visit becomes exactly one follow-up task, through Kafka, at the right time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import System, auth


async def wait_for(predicate: Any, timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last: {value!r})")
        await asyncio.sleep(every)


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
    assert "Lee" in task["script"]["lines"][0] or task["script"]["customer"] == "Lee Park"

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
