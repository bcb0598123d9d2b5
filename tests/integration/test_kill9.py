"""Kill -9 a service, or the broker, while a hundred visits arrive: after it is back,
exactly one follow-up task per visit, and each scheduled exactly once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from harness import System, auth, wait_for

VISITS = 100


async def post_until_accepted(url: str, key: str, event: dict[str, Any]) -> str:
    """What a shop system does: retry the same event (same id) until it is acknowledged."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for _ in range(600):
            try:
                r = await http.post("/v1/events", json=event, headers=auth(key))
                if r.status_code == 202:
                    status: str = r.json()["status"]
                    return status
                assert r.status_code >= 500, r.text
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("never accepted")


async def setup_shop(running: System) -> tuple[str, str, str]:
    shop_id, key = await running.create_shop(f"Kill Test {uuid.uuid4().hex[:4]}")
    cid = "c-kill"
    status = await post_until_accepted(
        running.services["intake"].url,
        key,
        {
            "type": "customer.upserted",
            "id": "c-kill",
            "occurred_at": "2026-11-20T09:00:00Z",
            "data": {"customer_id": cid, "name": "Kim Kill", "phone": "+15125550111"},
        },
    )
    assert status == "accepted"
    return shop_id, key, cid


def visit(i: int, cid: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "type": "service.completed",
        "id": f"visit-{i}",
        "occurred_at": now,
        "data": {
            "repair_order_id": f"ro-{i}",
            "customer_id": cid,
            "completed_at": now,
            "advisor": "sam",
        },
    }


async def send_visits(running: System, key: str, cid: str, kill_at: int, kill: Any) -> list[str]:
    statuses = []
    for i in range(VISITS):
        if i == kill_at:
            await kill()
        statuses.append(
            await post_until_accepted(running.services["intake"].url, key, visit(i, cid))
        )
        await asyncio.sleep(0.01)
    return statuses


async def assert_one_task_per_visit(running: System, shop_id: str) -> None:
    async def tasks_done() -> bool:
        rows = await running.fetch(
            "SELECT count(*) AS n FROM followup.follow_up_tasks WHERE shop_id = $1",
            uuid.UUID(shop_id),
        )
        return rows[0]["n"] == VISITS

    await wait_for(tasks_done, timeout=60)
    await asyncio.sleep(2)  # anything late or doubled would show by now
    per_visit = await running.fetch(
        "SELECT repair_order_id, count(*) AS n FROM followup.follow_up_tasks WHERE shop_id = $1"
        " GROUP BY 1",
        uuid.UUID(shop_id),
    )
    assert len(per_visit) == VISITS and all(r["n"] == 1 for r in per_visit)
    scheduled = await running.fetch(
        "SELECT count(*) AS n, count(DISTINCT value) AS distinct_values FROM followup.outbox"
        " WHERE topic = 'regulars.followup' AND headers @> $1::jsonb",
        f'[["shop_id", "{shop_id}"], ["ce_type", "regulars.followup.scheduled.v1"]]',
    )
    assert scheduled[0]["n"] == VISITS  # each visit scheduled once: no effect applied twice


async def test_kill_followup_mid_stream(running: System) -> None:
    shop_id, key, cid = await setup_shop(running)
    followup = running.services["followup"]

    async def kill() -> None:
        followup.kill(signal.SIGKILL)
        asyncio.get_running_loop().call_later(1.5, followup.start)

    statuses = await send_visits(running, key, cid, 30, kill)
    assert statuses.count("accepted") == VISITS
    followup.wait_healthy(60)
    await assert_one_task_per_visit(running, shop_id)


async def test_kill_intake_and_its_relay_mid_stream(running: System) -> None:
    shop_id, key, cid = await setup_shop(running)
    intake = running.services["intake"]

    async def kill() -> None:
        intake.kill(signal.SIGKILL)
        asyncio.get_running_loop().call_later(1.0, intake.start)

    statuses = await send_visits(running, key, cid, 50, kill)
    # Retried posts of an event accepted just before the kill come back as duplicates.
    assert set(statuses) <= {"accepted", "duplicate"}
    intake.wait_healthy(60)
    await assert_one_task_per_visit(running, shop_id)


async def test_broker_restart_loses_nothing_published(running: System) -> None:
    """Visits published while followup is down sit only in the broker's memory; the broker
    then dies. They reach followup all the same, because the relay publishes again."""
    assert running.broker is not None, "needs the embedded broker (it restarts it)"
    shop_id, key, cid = await setup_shop(running)
    broker, followup = running.broker, running.services["followup"]
    followup.kill(signal.SIGKILL)

    async def kill() -> None:
        broker.kill()
        await asyncio.sleep(0.5)
        broker.start()  # empty log, new cluster id

    statuses = await send_visits(running, key, cid, 60, kill)
    assert statuses.count("accepted") == VISITS

    async def all_published() -> bool:
        rows = await running.fetch(
            "SELECT count(*) AS n FROM intake.outbox WHERE published_at IS NULL"
        )
        return rows[0]["n"] == 0

    await wait_for(all_published, timeout=60)
    followup.start()
    followup.wait_healthy(60)
    await assert_one_task_per_visit(running, shop_id)
    async with httpx.AsyncClient(base_url=running.services["intake"].url) as http:
        text = (await http.get("/metrics")).text
    changes = [
        line
        for line in text.splitlines()
        if line.startswith('regulars_broker_changes_total{service="intake"}')
    ]
    assert changes and float(changes[0].split()[-1]) >= 1


async def test_a_new_shop_posted_while_followup_was_down_loses_nothing(running: System) -> None:
    # The shop's policy and its customer travel on other topics than its visits: when
    # followup comes back to all of them at once, a visit can come before the policy it
    # needs. It must wait for it (its partition parked), not be dead-lettered.
    followup = running.services["followup"]
    followup.kill(signal.SIGKILL)
    shop_id, key, cid = await setup_shop(running)
    async with httpx.AsyncClient(base_url=running.services["intake"].url, timeout=30) as http:
        r = await http.post(
            "/v1/events/batch",
            json={"events": [visit(i, cid) for i in range(VISITS)]},
            headers=auth(key),
        )
    assert r.status_code == 202 and {x["status"] for x in r.json()["results"]} == {"accepted"}
    dead_before = (await running.fetch("SELECT count(*) AS n FROM followup.dead_letters"))[0]["n"]
    followup.start()
    followup.wait_healthy(60)
    await assert_one_task_per_visit(running, shop_id)
    dead = (await running.fetch("SELECT count(*) AS n FROM followup.dead_letters"))[0]["n"]
    assert dead == dead_before


async def test_kill_intake_while_concurrent_posts_share_commits(running: System) -> None:
    # Eight shop systems post at once, so their events commit together (group commit);
    # intake is killed mid-stream, with batches in flight. Every visit is accepted once
    # (retries of one that had committed are duplicates) and becomes one task, once.
    shop_id, key, cid = await setup_shop(running)
    intake = running.services["intake"]
    visits = [visit(i, cid) for i in range(VISITS)]
    killed = asyncio.Event()

    async def poster(share: list[dict[str, Any]]) -> list[str]:
        statuses = []
        for event in share:
            statuses.append(await post_until_accepted(intake.url, key, event))
            if len(statuses) == 5 and not killed.is_set():
                killed.set()
                intake.kill(signal.SIGKILL)
                asyncio.get_running_loop().call_later(1.0, intake.start)
        return statuses

    results = await asyncio.gather(*(poster(visits[i::8]) for i in range(8)))
    statuses = [s for share in results for s in share]
    assert killed.is_set() and len(statuses) == VISITS
    assert set(statuses) <= {"accepted", "duplicate"}
    intake.wait_healthy(60)
    await assert_one_task_per_visit(running, shop_id)
    published = await running.fetch(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS events FROM intake.outbox"
        " WHERE headers @> $1::jsonb",
        f'[["shop_id", "{shop_id}"], ["ce_type", "regulars.service.completed.v1"]]',
    )
    assert published[0]["n"] == published[0]["events"] == VISITS  # one event per visit
