"""Staff record call attempts: reached completes, the third unanswered misses; bad input named."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from harness import System, auth
from test_followup_flow import _authorised, person, post, tasks, visit, wait_for


@pytest.fixture(scope="module")
async def shop(running: System) -> tuple[str, str]:
    created = await running.create_shop("Attempt Auto")
    await wait_for(lambda: _authorised(running, created[1]))
    return created


async def new_task(running: System, key: str) -> dict[str, Any]:
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await post(running, key, person(cid))
    await post(running, key, visit(f"ro-{cid}", cid, datetime.now(UTC).isoformat()))
    found = await wait_for(lambda: tasks(running, key, customer_id=cid))
    task: dict[str, Any] = found[0]
    return task


async def attempt(running: System, key: str, task_id: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        return await http.post(f"/v1/followups/{task_id}/attempts", json=body, headers=auth(key))


async def events_of(running: System, shop_id: str, ce_type: str, task_id: str) -> list[Any]:
    rows = await running.fetch(
        "SELECT convert_from(value, 'UTF8')::jsonb AS data FROM followup.outbox"
        " WHERE headers @> $1::jsonb AND convert_from(value, 'UTF8')::jsonb->>'task_id' = $2",
        f'[["shop_id", "{shop_id}"], ["ce_type", "{ce_type}"]]',
        task_id,
    )
    return [{"data": json.loads(r["data"])} for r in rows]


async def test_reached_unhappy_call_completes_with_what_feedback_needs(
    running: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    task = await new_task(running, key)
    r = await attempt(
        running,
        key,
        task["id"],
        {
            "outcome": "reached",
            "satisfied": False,
            "score": 3,
            "notes": "brakes still squeal",
            "by": "sam",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["task"]["status"] == "completed"
    assert r.json()["task"]["history"][0]["outcome"] == "reached"
    done = await events_of(running, shop_id, "regulars.followup.completed.v1", task["id"])
    assert len(done) == 1
    assert done[0]["data"]["satisfied"] is False and done[0]["data"]["score"] == 3
    assert done[0]["data"]["notes"] == "brakes still squeal"
    again = await attempt(running, key, task["id"], {"outcome": "no_answer"})
    assert again.status_code == 409 and "completed" in again.json()["detail"]


async def test_three_unanswered_attempts_miss_the_task(
    running: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    task = await new_task(running, key)
    for outcome, status in [
        ("no_answer", "scheduled"),
        ("voicemail", "scheduled"),
        ("wrong_number", "missed"),
    ]:
        r = await attempt(running, key, task["id"], {"outcome": outcome})
        assert r.status_code == 201, r.text
        assert r.json()["task"]["status"] == status
    missed = await events_of(running, shop_id, "regulars.followup.missed.v1", task["id"])
    assert [m["data"]["reason"] for m in missed] == ["max_attempts"]
    attempted = await events_of(running, shop_id, "regulars.followup.attempted.v1", task["id"])
    assert sorted(a["data"]["attempt"] for a in attempted) == [1, 2, 3]
    assert (await attempt(running, key, task["id"], {"outcome": "no_answer"})).status_code == 409


async def test_bad_attempts_are_named(running: System, shop: tuple[str, str]) -> None:
    _shop_id, key = shop
    task = await new_task(running, key)
    r = await attempt(running, key, task["id"], {"outcome": "texted"})
    assert r.status_code == 422 and "outcome" in r.json()["detail"]
    r = await attempt(running, key, task["id"], {"outcome": "reached"})
    assert r.status_code == 422 and "satisfied" in r.json()["detail"]
    r = await attempt(
        running, key, task["id"], {"outcome": "reached", "satisfied": True, "score": 11}
    )
    assert r.status_code == 422 and "score" in r.json()["detail"]
    assert (
        await attempt(running, key, str(uuid.uuid4()), {"outcome": "no_answer"})
    ).status_code == 404
    assert (await attempt(running, key, "not-a-task", {"outcome": "no_answer"})).status_code == 404
    _other, other_key = await running.create_shop("Someone Else's Shop")
    await wait_for(lambda: _authorised(running, other_key))
    r = await attempt(running, other_key, task["id"], {"outcome": "no_answer"})
    assert r.status_code == 404
    assert (
        await attempt(running, "rk_0000000000000000_nope", task["id"], {"outcome": "no_answer"})
    ).status_code == 401
    # none of that touched the task
    assert (await tasks(running, key, customer_id=task["customer_id"]))[0]["attempts"] == 0
