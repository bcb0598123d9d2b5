"""loyalty keeps every event about a customer, whatever its family, and parks none."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from harness import System, auth, wait_for


async def test_every_event_about_a_customer_reaches_loyalty(system: System) -> None:
    for name in ("intake", "followup", "loyalty"):
        proc = system.services[name].proc if name in system.services else None
        if proc is None or proc.poll() is not None:
            system.start(name)
    shop_id, key = await system.create_shop("Timeline Tires")
    cid = f"c-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()  # a visit of today, so followup schedules its call
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as intake:
        for body in (
            {
                "type": "customer.upserted",
                "occurred_at": "2026-11-20T10:00:00-05:00",
                "data": {"customer_id": cid, "name": "Ada Ruiz", "phone": "+15125550142"},
            },
            {
                "type": "service.completed",
                "occurred_at": now,
                "data": {"repair_order_id": f"ro-{cid}", "customer_id": cid, "completed_at": now},
            },
        ):
            r = await intake.post("/v1/events", json=body, headers=auth(key))
            assert r.status_code == 202, r.text

    async def kept() -> list[str] | None:
        rows = await system.fetch(
            "SELECT type FROM loyalty.timeline WHERE shop_id = $1 AND customer_id = $2",
            uuid.UUID(shop_id),
            cid,
        )
        types = sorted({r["type"] for r in rows})
        # the customer, the visit, followup's answer to it and loyalty's own stage changes
        # (other families, other topics)
        return types if len(types) >= 4 else None

    types = await wait_for(kept, timeout=30)
    assert types == [
        "regulars.customer.upserted.v1",
        "regulars.followup.scheduled.v1",
        "regulars.lifecycle.stage_changed.v1",
        "regulars.service.completed.v1",
    ]
    # the shop's own facts (its key, its policy) are applied, not parked
    parked = await system.fetch(
        "SELECT type, error FROM loyalty.dead_letters WHERE type LIKE 'regulars.shop.%'"
    )
    assert parked == []


async def test_a_customers_journey_is_read_a_page_at_a_time_by_its_shop_alone(
    system: System,
) -> None:
    for name in ("intake", "followup", "loyalty"):
        proc = system.services[name].proc if name in system.services else None
        if proc is None or proc.poll() is not None:
            system.start(name)
    _shop, key = await system.create_shop("Journey Garage")
    _other, other_key = await system.create_shop("Nosy Garage")
    cid = f"c-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as intake:
        for body in (
            {
                "type": "customer.upserted",
                "occurred_at": now,
                "data": {"customer_id": cid, "name": "Ada Ruiz", "phone": "+15125550142"},
            },
            {
                "type": "service.completed",
                "occurred_at": now,
                "data": {"repair_order_id": f"ro-{cid}", "customer_id": cid, "completed_at": now},
            },
        ):
            assert (
                await intake.post("/v1/events", json=body, headers=auth(key))
            ).status_code == 202
    path = f"/v1/customers/{cid}/journey"
    async with httpx.AsyncClient(base_url=system.services["loyalty"].url) as loyalty:

        async def whole() -> list[dict[str, Any]] | None:
            r = await loyalty.get(path, headers=auth(key))
            items = r.json()["items"] if r.status_code == 200 else []
            kinds = {s["type"] for s in items}
            return items if "regulars.followup.scheduled.v1" in kinds else None

        await wait_for(whole, timeout=30)
        # loyalty's own stage changes join the journey too: read it once it stops growing
        steps: list[dict[str, Any]] = []
        for _ in range(50):
            again = await whole() or []
            if again and len(again) == len(steps):
                break
            steps = again
            await asyncio.sleep(0.3)
        assert [s["occurred_at"] for s in steps] == sorted(s["occurred_at"] for s in steps)
        assert {s["type"] for s in steps} >= {
            "regulars.customer.upserted.v1",
            "regulars.service.completed.v1",
            "regulars.followup.scheduled.v1",
        }
        first = (await loyalty.get(path, params={"limit": 2}, headers=auth(key))).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        rest = await loyalty.get(
            path, params={"limit": 100, "cursor": first["next_cursor"]}, headers=auth(key)
        )
        paged = first["items"] + rest.json()["items"]
        assert [s["event_id"] for s in paged] == [s["event_id"] for s in steps]
        # another shop sees nothing of this customer, as if there were none
        nosy = await loyalty.get(path, headers=auth(other_key))
        assert nosy.status_code == 404
        assert nosy.headers["content-type"] == "application/problem+json"
        assert (await loyalty.get(path)).status_code == 401
