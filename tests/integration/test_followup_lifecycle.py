"""followup hears loyalty through the real broker and database: a stage change moves the
customer's stage (an older one, arriving later, does not move it back), the monthly check
sends the win-back by that stage, and a crossing of the churn-risk threshold becomes one
call for the advisor of the last visit, however often it is delivered.

loyalty's own stages are built elsewhere; its events are published here as it would."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness import System, wait_for
from regulars_bus.kafka import KafkaConfig, producer
from regulars_events.base import Event
from regulars_events.catalogue import CustomerAtRisk, LifecycleStageChanged
from regulars_events.envelope import Envelope
from test_followup_flow import _authorised, post, tasks


@pytest.fixture(scope="module", autouse=True)
def loyalty_stopped(running: System) -> Iterator[None]:
    """The stages here are published by the test alone: the real loyalty, if an earlier
    test started it, would add its own for the same customers."""
    loyalty = running.services.get("loyalty")
    was_running = loyalty is not None and loyalty.proc is not None and loyalty.proc.poll() is None
    if loyalty is not None and was_running:
        loyalty.kill(signal.SIGTERM)
    yield
    if was_running:
        running.start("loyalty")


@pytest.fixture(scope="module")
async def shop(running: System) -> tuple[str, str]:
    created = await running.create_shop("Lifecycle Motors", "America/New_York")
    await wait_for(lambda: _authorised(running, created[1]))
    return created


def from_loyalty(shop_id: str, event: Event, at: datetime | None = None) -> Envelope:
    return Envelope.wrap(event, source="loyalty", shop_id=shop_id, time=at)


async def publish(system: System, *envelopes: Envelope) -> None:
    prod = producer(KafkaConfig(system.bootstrap), "lifecycle-test")
    await prod.start()
    try:
        for e in envelopes:
            await prod.send_and_wait(e.topic, value=e.value, key=e.key, headers=e.headers)
    finally:
        await prod.stop()


async def applied(system: System, *envelopes: Envelope) -> bool:
    rows = await system.fetch(
        "SELECT event_id FROM followup.inbox WHERE event_id = ANY($1)", [e.id for e in envelopes]
    )
    return len(rows) == len(envelopes)


async def a_customer_with_a_visit(system: System, key: str, shop_id: str, days_ago: int = 0) -> str:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    done = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    events: list[dict[str, Any]] = [
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": done,
            "data": {"customer_id": cid, "name": "Lee Park", "email": f"{cid}@example.com"},
        },
        {
            "type": "service.completed",
            "id": f"ro-{cid}",
            "occurred_at": done,
            "data": {
                "repair_order_id": f"ro-{cid}",
                "customer_id": cid,
                "completed_at": done,
                "advisor": "maria",
                "work_performed": "front brake pads",
            },
        },
    ]
    for event in events:
        r = await post(system, key, event)
        assert r.status_code == 202, r.text

    async def visit_known() -> bool:
        rows = await system.fetch(
            "SELECT 1 FROM followup.visits WHERE shop_id = $1 AND repair_order_id = $2",
            uuid.UUID(shop_id),
            f"ro-{cid}",
        )
        return bool(rows)

    await wait_for(visit_known)
    return cid


async def test_a_crossing_is_one_call_for_the_last_advisor(
    running: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    cid = await a_customer_with_a_visit(running, key, shop_id)
    crossing = from_loyalty(
        shop_id, CustomerAtRisk(customer_id=cid, reasons=["missed_follow_up"], score=0.7)
    )
    await publish(running, crossing, crossing)  # delivered twice

    async def at_risk_calls() -> list[dict[str, Any]]:
        found = await tasks(running, key, customer_id=cid)
        return [t for t in found if t["repair_order_id"].startswith("at_risk:")]

    (call,) = await wait_for(at_risk_calls)
    assert call["repair_order_id"] == f"at_risk:{crossing.id}"
    assert (call["assignee"], call["status"]) == ("maria", "scheduled")
    assert call["script"]["customer"] == "Lee Park"
    assert any("front brake pads" in line for line in call["script"]["lines"])
    await wait_for(lambda: applied(running, crossing))
    assert len(await at_risk_calls()) == 1
    announced = await running.fetch(
        "SELECT count(*) AS n FROM followup.outbox WHERE headers @> $1::jsonb",
        f'[["ce_type", "regulars.followup.scheduled.v1"], ["ce_subject", "{cid}"]]',
    )
    assert announced[0]["n"] == 2  # the visit's call and the at-risk call, once each


async def test_the_stage_moves_forward_only_and_decides_the_win_back(
    running: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    cid = await a_customer_with_a_visit(running, key, shop_id, days_ago=400)
    now = datetime.now(UTC)
    lapsed = from_loyalty(
        shop_id,
        LifecycleStageChanged(
            customer_id=cid, from_stage="customer", to_stage="lapsed", reason="12 months"
        ),
        now,
    )
    older = from_loyalty(
        shop_id,
        LifecycleStageChanged(
            customer_id=cid, from_stage="prospect", to_stage="customer", reason="first visit"
        ),
        now - timedelta(days=400),
    )
    await publish(running, lapsed, older)  # the older one arrives last
    await wait_for(lambda: applied(running, lapsed, older))
    (row,) = await running.fetch(
        "SELECT stage, stage_at FROM followup.customers WHERE shop_id = $1 AND customer_id = $2",
        uuid.UUID(shop_id),
        cid,
    )
    assert (row["stage"], row["stage_at"]) == ("lapsed", now)

    out = subprocess.run(
        [sys.executable, "-m", "regulars_cli.main", "sweep", "--shop", shop_id],
        env=running.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "1 win_back" in out, out
    messages = await running.fetch(
        "SELECT kind, purpose FROM followup.messages WHERE shop_id = $1 AND customer_id = $2",
        uuid.UUID(shop_id),
        cid,
    )
    assert [(m["kind"], m["purpose"]) for m in messages] == [("win_back", f"win_back:ro-{cid}")]
