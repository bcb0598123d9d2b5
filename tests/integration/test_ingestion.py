"""intake through real PostgreSQL and Kafka: what a careless shop system gets back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from harness import System, auth, wait_for


def customer(cid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "customer.upserted",
        "id": f"cust-{cid}-{uuid.uuid4().hex[:6]}",
        "occurred_at": "2026-11-20T10:00:00-05:00",
        "data": {"customer_id": cid, "name": "Dana Whitfield", "phone": "+15555550100", **extra},
    }


def completed(ro: str, cid: str, event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "service.completed",
        "id": event_id or f"ro-{ro}",
        "occurred_at": "2026-11-20T16:30:00-05:00",
        "data": {
            "repair_order_id": ro,
            "customer_id": cid,
            "completed_at": "2026-11-20T16:30:00-05:00",
            "advisor": "sam",
            **extra,
        },
    }


@pytest.fixture(scope="module")
async def shop(running: System) -> tuple[str, str]:
    return await running.create_shop("Ingestion Garage")


@pytest.fixture
async def intake(running: System, shop: tuple[str, str]) -> Any:
    async with httpx.AsyncClient(
        base_url=running.services["intake"].url, headers=auth(shop[1]), timeout=10
    ) as client:
        yield client


async def test_accepted_then_duplicate_then_conflict(intake: httpx.AsyncClient) -> None:
    event = customer("c-dup")
    first = await intake.post("/v1/events", json=event)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted"
    again = await intake.post("/v1/events", json=event)
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_id"] == first.json()["event_id"]
    changed = {**event, "data": {**event["data"], "name": "Someone Else"}}
    conflict = await intake.post("/v1/events", json=changed)
    assert conflict.status_code == 409
    assert "already used" in conflict.json()["detail"]


async def test_missing_and_mistyped_fields_are_named(intake: httpx.AsyncClient) -> None:
    r = await intake.post(
        "/v1/events",
        json={
            "type": "service.completed",
            "occurred_at": "2026-11-20T10:00:00Z",
            "data": {"customer_id": "x"},
        },
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"data.repair_order_id", "data.completed_at"} <= fields
    r = await intake.post(
        "/v1/events",
        json={
            "type": "customer.upserted",
            "occurred_at": "2026-11-20T10:00:00Z",
            "data": {"customer_id": 5, "name": ["x"]},
        },
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"data.customer_id", "data.name"}
    r = await intake.post("/v1/events", json={"type": "nonsense", "occurred_at": "x", "data": {}})
    assert r.status_code == 422 and "type" in r.json()["detail"]
    r = await intake.post(
        "/v1/events", json={**customer("c-tz"), "occurred_at": "2026-11-20T10:00:00"}
    )
    assert r.status_code == 422 and "occurred_at" in r.json()["detail"]
    r = await intake.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["detail"]


async def test_bad_key_is_401(running: System) -> None:
    async with httpx.AsyncClient(base_url=running.services["intake"].url) as http:
        assert (await http.post("/v1/events", json=customer("c"))).status_code == 401
        bad = {"Authorization": "Bearer rk_0123456789abcdef_notthesecret"}
        assert (await http.post("/v1/events", json=customer("c"), headers=bad)).status_code == 401
        assert (await http.get("/v1/policy", headers=bad)).status_code == 401


async def test_another_shops_ids_are_not_this_shops(
    running: System, intake: httpx.AsyncClient
) -> None:
    assert (await intake.post("/v1/events", json=customer("c-mine"))).status_code == 202
    other_id, other_key = await running.create_shop("Other Shop")
    async with httpx.AsyncClient(
        base_url=running.services["intake"].url, headers=auth(other_key)
    ) as other:
        # Another shop's customer is not this shop's: the visit waits for one of its own.
        r = await other.post("/v1/events", json=completed("ro-x", "c-mine"))
        assert r.status_code == 202 and r.json()["status"] == "accepted"
        assert (await other.get("/v1/customers/c-mine")).status_code == 404
        r = await other.post(
            "/v1/events",
            json={
                "type": "service.voided",
                "occurred_at": "2026-11-20T10:00:00Z",
                "data": {"repair_order_id": "ro-mine"},
            },
        )
        assert r.status_code == 202
    held = await running.fetch(
        "SELECT needs_kind, needs_id FROM intake.waiting_events WHERE shop_id = $1 ORDER BY 1",
        uuid.UUID(other_id),
    )
    assert [(h["needs_kind"], h["needs_id"]) for h in held] == [
        ("customer", "c-mine"),
        ("repair_order", "ro-mine"),
    ]
    visits = await running.fetch(
        "SELECT 1 FROM intake.repair_orders WHERE shop_id = $1", uuid.UUID(other_id)
    )
    assert visits == []
    assert (await intake.get("/v1/customers/c-mine")).status_code == 200


async def test_size_limits_are_413(intake: httpx.AsyncClient) -> None:
    big_event = customer("c-big", notes="x" * (70 * 1024))
    r = await intake.post("/v1/events", json=big_event)
    assert r.status_code == 413 and "65536" in r.json()["detail"]
    huge = {"events": [customer(f"c{i}", notes="y" * 30_000) for i in range(40)]}
    r = await intake.post("/v1/events/batch", json=huge)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    too_many = {"events": [customer(f"c{i}") for i in range(501)]}
    r = await intake.post("/v1/events/batch", json=too_many)
    assert r.status_code == 413 and "500" in r.json()["detail"]


async def test_batch_answers_each_event_in_order(
    intake: httpx.AsyncClient, running: System, shop: tuple[str, str]
) -> None:
    good = customer("c-batch")
    batch = {
        "events": [
            good,
            {"type": "service.completed", "occurred_at": "2026-11-20T10:00:00Z", "data": {}},
            completed("ro-batch", "c-batch"),
            good,
            customer("c-big2", notes="z" * (70 * 1024)),
        ]
    }
    r = await intake.post("/v1/events/batch", json=batch)
    assert r.status_code == 202, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["accepted", "rejected", "accepted", "duplicate", "rejected"]
    assert r.json()["results"][1]["code"] == 422
    assert r.json()["results"][4]["code"] == 413
    rows = await running.fetch(
        "SELECT count(*) AS n FROM intake.outbox WHERE headers @> $1::jsonb",
        f'[["shop_id", "{shop[0]}"], ["ce_subject", "c-batch"]]',
    )
    assert rows[0]["n"] == 2  # the customer and the visit, once each


async def test_policy_is_validated_and_versioned(intake: httpx.AsyncClient) -> None:
    current = (await intake.get("/v1/policy")).json()
    assert current["policy"]["follow_up_delay"] == "PT48H"
    assert current["policy"]["follow_up_max_attempts"] == 3
    bad = {**current["policy"], "follow_up_delay": "soon"}
    r = await intake.put("/v1/policy", json=bad)
    assert r.status_code == 422 and "follow_up_delay" in r.json()["detail"]
    unknown = {**current["policy"], "colour": "red"}
    r = await intake.put("/v1/policy", json=unknown)
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = await intake.put("/v1/policy", json={**current["policy"], "follow_up_max_attempts": 4})
    assert r.status_code == 200
    assert r.json()["version"] == current["version"] + 1
    assert (await intake.get("/v1/policy")).json()["policy"]["follow_up_max_attempts"] == 4


async def test_the_at_risk_threshold_is_a_policy_key_validated_by_name(
    running: System,
) -> None:
    _shop_id, key = await running.create_shop("Threshold Garage")
    async with httpx.AsyncClient(
        base_url=running.services["intake"].url, headers=auth(key), timeout=10
    ) as http:
        current = (await http.get("/v1/policy")).json()
        assert current["policy"]["at_risk_threshold"] == 0.6
        r = await http.put("/v1/policy", json={**current["policy"], "at_risk_threshold": 1.5})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["at_risk_threshold"]
        r = await http.put("/v1/policy", json={**current["policy"], "at_risk_threshold": 0.75})
        assert r.status_code == 200, r.text
        assert (await http.get("/v1/policy")).json()["policy"]["at_risk_threshold"] == 0.75


async def test_rate_limit_is_429_with_retry_after(running: System, shop: tuple[str, str]) -> None:
    from harness import ServiceProcess, free_port

    slow = ServiceProcess(
        "intake",
        free_port(),
        running.env(INTAKE_RATE_PER_SECOND="1", INTAKE_RATE_BURST="2", RUN_WORKERS="0"),
        running.workdir / "intake-ratelimited.log",
    )
    slow.start()
    try:
        slow.wait_healthy()
        async with httpx.AsyncClient(base_url=slow.url, headers=auth(shop[1])) as http:
            codes = [
                (await http.post("/v1/events", json=customer("c-rate"))).status_code
                for _ in range(3)
            ]
            assert codes == [202, 202, 429]
            limited = await http.post("/v1/events", json=customer("c-rate"))
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
    finally:
        slow.kill()


async def test_a_batch_answers_as_if_posted_one_by_one(
    intake: httpx.AsyncClient, running: System, shop: tuple[str, str]
) -> None:
    # Set-based runs must not change an answer: a visit after its customer, a second id for
    # the same repair order, an id repeated (same body and another), an unknown customer.
    first = completed("ro-seq-1", "c-seq", event_id="seq-visit")
    batch = [
        completed("ro-seq-0", "c-seq"),  # the customer is not in the directory yet: held
        customer("c-seq"),
        first,
        completed("ro-seq-1", "c-seq", event_id="seq-visit-again"),  # same order, new id
        first,  # the same id and body: a duplicate
        {**first, "data": {**first["data"], "advisor": "kim"}},  # same id, other body
        completed("ro-seq-2", "c-nobody"),  # held: this customer never arrives
        completed("ro-seq-3", "c-seq"),
    ]
    r = await intake.post("/v1/events/batch", json={"events": batch})
    assert r.status_code == 202, r.text
    results = r.json()["results"]
    assert [(x["status"], x.get("code")) for x in results] == [
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", 409),
        ("accepted", None),
        ("accepted", None),
    ]
    assert results[4]["event_id"] == results[2]["event_id"]
    visits = await running.fetch(
        "SELECT repair_order_id FROM intake.repair_orders WHERE shop_id = $1"
        " AND customer_id = 'c-seq' ORDER BY 1",
        uuid.UUID(shop[0]),
    )
    assert [v["repair_order_id"] for v in visits] == ["ro-seq-0", "ro-seq-1", "ro-seq-3"]
    events = await running.fetch(
        "SELECT o.event_id FROM intake.outbox o WHERE o.headers @> $1::jsonb",
        f'[["shop_id", "{shop[0]}"], ["ce_subject", "c-seq"]]',
    )
    accepted = {uuid.UUID(x["event_id"]) for x in results if x["status"] == "accepted"}
    # one outbox row per accepted event of c-seq's (c-nobody's visit is still held)
    assert {e["event_id"] for e in events} == accepted - {uuid.UUID(results[6]["event_id"])}


async def test_concurrent_posts_each_get_their_own_answer(
    intake: httpx.AsyncClient, running: System, shop: tuple[str, str]
) -> None:
    # Requests that arrive together commit together; each still gets its own answer.
    r = await intake.post("/v1/events", json=customer("c-many"))
    assert r.status_code == 202, r.text
    posts = [completed(f"ro-many-{i}", "c-many") for i in range(60)]
    posts += [posts[0], posts[1]]  # retried while the first may still be in flight
    posts += [completed("ro-many-x", "c-unknown-many")]  # held for its customer
    answers = await asyncio.gather(*(intake.post("/v1/events", json=p) for p in posts))
    codes = [a.status_code for a in answers]
    assert codes == [202] * 63, codes
    assert codes[60:62] == [202, 202]
    by_id: dict[str, set[str]] = {}
    for a in answers[:62]:
        by_id.setdefault(a.json()["id"], set()).add(a.json()["status"])
    assert by_id["ro-ro-many-0"] == by_id["ro-ro-many-1"] == {"accepted", "duplicate"}
    assert sum(1 for a in answers if a.json()["status"] == "accepted") == 61
    stored = await running.fetch(
        "SELECT count(*) AS n FROM intake.repair_orders WHERE shop_id = $1"
        " AND customer_id = 'c-many'",
        uuid.UUID(shop[0]),
    )
    assert stored[0]["n"] == 60


async def test_a_nul_character_is_422_naming_the_field(intake: httpx.AsyncClient) -> None:
    body = completed("ro-nul", "c-1")
    body["data"]["advisor"] = "sam\u0000"
    r = await intake.post("/v1/events", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "data.advisor", "message": "NUL character"}]


async def test_post_event_is_in_the_openapi_document(running: System) -> None:
    async with httpx.AsyncClient(base_url=running.services["intake"].url) as http:
        document = (await http.get("/openapi.json")).json()
    operation = document["paths"]["/v1/events"]["post"]
    assert operation["operationId"] == "post_event"
    assert {"202", "401", "409", "413", "422", "429"} <= set(operation["responses"])
    assert "/v1/events/batch" in document["paths"]


async def test_one_failing_posting_fails_alone_not_its_batch(
    intake: httpx.AsyncClient, running: System, shop: tuple[str, str]
) -> None:
    # The group-commit seam itself, on the real database: a posting the database refuses
    # (built by hand: the API rejects NUL before this point) shares a batch with five good
    # ones; the batch is retried one by one, so only that posting fails.
    from regulars_intake import bootstrap, handlers
    from regulars_intake.domain.postings import parse_posting
    from regulars_intake.entrypoints.acceptance import AcceptanceQueue
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    assert (await intake.post("/v1/events", json=customer("c-fallback"))).status_code == 202
    good = [parse_posting(completed(f"ro-fb-{i}", "c-fallback")) for i in range(5)]
    bad = dataclasses.replace(good[0], client_id="bad\x00id")
    pool = await create_pool(running.database_url, "intake", max_size=2)
    try:
        bus = bootstrap.bus(handlers.Deps(clock=system_clock), pool)
        queue = AcceptanceQueue(bus.unit_of_work, writers=1)
        shop_id = uuid.UUID(shop[0])
        results = await asyncio.gather(
            *(queue.accept(shop_id, p) for p in [*good[:2], bad, *good[2:]]),
            return_exceptions=True,
        )
    finally:
        await pool.close()
    assert isinstance(results[2], asyncpg.CharacterNotInRepertoireError), results[2]
    outcomes = [r for i, r in enumerate(results) if i != 2]
    assert [getattr(o, "status", o) for o in outcomes] == ["accepted"] * 5
    stored = await running.fetch(
        "SELECT count(*) AS n FROM intake.repair_orders WHERE shop_id = $1"
        " AND customer_id = 'c-fallback'",
        shop_id,
    )
    assert stored[0]["n"] == 5


async def _record_on_kafka(bootstrap: str, topic: str, event_id: str) -> Any:
    """The record on ``topic`` whose ce_id is ``event_id``, read from the broker itself
    (from the start of every partition to its end), or None."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # the metadata that names the topic's partitions
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return None
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    if dict(record.headers).get("ce_id") == event_id.encode():
                        return record
            if all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                return None
    finally:
        await consumer.stop()


async def test_an_issued_invoice_is_taken_and_reaches_kafka_under_its_name(
    intake: httpx.AsyncClient, running: System, shop: tuple[str, str]
) -> None:
    assert (await intake.post("/v1/events", json=customer("c-inv"))).status_code == 202
    issued = {
        "type": "invoice.issued",
        "id": f"inv-{uuid.uuid4().hex[:8]}-issued",
        "occurred_at": "2026-11-20T17:00:00-05:00",
        "data": {
            "invoice_id": "inv-1",
            "customer_id": "c-inv",
            "amount_cents": 18_950,
            "due_at": "2026-12-20T00:00:00-05:00",
        },
    }
    incomplete = {
        **issued,
        "id": issued["id"] + "-bad",
        "data": {k: v for k, v in issued["data"].items() if k != "amount_cents"},
    }
    r = await intake.post("/v1/events", json=incomplete)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["data.amount_cents"]

    r = await intake.post("/v1/events", json=issued)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    event_id = r.json()["event_id"]
    record = await wait_for(
        lambda: _record_on_kafka(running.bootstrap, "regulars.invoice", event_id), timeout=30
    )
    headers = dict(record.headers)
    assert headers["ce_type"] == b"regulars.invoice.issued.v1"
    assert headers["ce_source"] == b"intake"
    assert record.key == f"{shop[0]}:c-inv".encode()
    assert json.loads(record.value) == issued["data"]
