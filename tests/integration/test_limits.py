"""Limits that hold across replicas, and no bearer secret on the bus (issue 13, items 8, 9).

- Two intake processes share one shop's rate: what both accept together stays within the
  one limit (and its burst), where two buckets of their own would accept twice as much.
- A flood of made-up API keys costs a handful of key lookups (counted on /metrics), not
  one each; a key already in use keeps working from elsewhere.
- Bodies of megabytes get 413 from every endpoint of every service, at once.
- A survey goes out by email with a working link, and no record on any topic of the
  broker (values or headers) holds that link's token or a shop's API key.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from harness import ServiceProcess, System, auth, free_port, wait_for
from test_feedback import POLICY, _ready, surveyed
from test_ingestion import customer

#: a source address of this machine's own (all of 127/8 is loopback) for the floods, so
#: that refusing it leaves every other test's 127.0.0.1 alone
FLOODER = "127.0.0.9"


def replica(system: System, label: str, **env: str) -> ServiceProcess:
    proc = ServiceProcess(
        "intake",
        free_port(),
        system.env(RUN_WORKERS="0", **env),
        system.workdir / f"intake-{label}.log",
    )
    proc.start()
    proc.wait_healthy(120)  # a loaded machine takes its time
    return proc


@pytest.fixture(scope="module")
def limited_pair(running: System) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two replicas of intake with a low per-shop rate and a low failed-auth limit."""
    env = {
        "INTAKE_RATE_PER_SECOND": "5",
        "INTAKE_RATE_BURST": "10",
        "FAILED_AUTH_PER_MINUTE": "6",
        "FAILED_AUTH_BURST": "5",
    }
    first = replica(running, "limited-a", **env)
    try:
        second = replica(running, "limited-b", **env)
    except Exception:
        first.kill()
        raise
    try:
        yield first, second
    finally:
        first.kill()
        second.kill()


async def test_two_replicas_share_one_shops_limit(
    running: System, limited_pair: tuple[ServiceProcess, ServiceProcess]
) -> None:
    _shop_id, key = await running.create_shop("Shared Limit Garage")
    accepted: list[float] = []
    refused: list[httpx.Response] = []

    async def post_from(url: str, n: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=auth(key), timeout=10) as http:
            for i in range(n):
                r = await http.post("/v1/events", json=customer(f"c-share-{url[-5:]}-{i}"))
                assert r.status_code in (202, 429), r.text
                if r.status_code == 202:
                    accepted.append(time.monotonic())
                else:
                    refused.append(r)
                await asyncio.sleep(0.02)

    started = time.monotonic()
    await asyncio.gather(*(post_from(p.url, 60) for p in limited_pair))
    elapsed = time.monotonic() - started
    # one bucket: the burst of 10, then 5 a second, whichever replica is asked; two buckets
    # of their own would have let through about twice as much
    assert 10 <= len(accepted) <= 10 + 5 * elapsed + 2, (len(accepted), elapsed)
    assert len(accepted) < 2 * (10 + 5 * elapsed) - 5
    shed = refused[0]
    assert int(shed.headers["retry-after"]) >= 1
    problem = shed.json()
    assert problem["status"] == 429 and problem["limit"] == "events per shop"
    assert problem["retry_after"] == int(shed.headers["retry-after"])


def _lookups(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("regulars_api_key_lookups_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _metrics(proc: ServiceProcess) -> str:
    async with httpx.AsyncClient(base_url=proc.url) as http:
        return (await http.get("/metrics")).text


def made_up_key() -> str:
    return f"rk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


@pytest.fixture
async def flooder(limited_pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[Any]:
    transport = httpx.AsyncHTTPTransport(local_address=FLOODER)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        yield http


async def test_a_flood_of_made_up_keys_costs_a_handful_of_lookups(
    running: System, limited_pair: tuple[ServiceProcess, ServiceProcess], flooder: Any
) -> None:
    _shop_id, key = await running.create_shop("Flooded Garage")
    before = [_lookups(await _metrics(p)) for p in limited_pair]
    codes: list[int] = []
    last: httpx.Response | None = None
    for i in range(500):
        target = limited_pair[i % 2]
        # the bare event path and a FastAPI route alike
        path = "/v1/events" if i % 4 < 2 else "/v1/policy"
        method = "POST" if path == "/v1/events" else "GET"
        last = await flooder.request(
            method,
            f"{target.url}{path}",
            headers=auth(made_up_key()),
            json=customer("c-flood") if method == "POST" else None,
        )
        codes.append(last.status_code)
    after = [_lookups(await _metrics(p)) for p in limited_pair]
    made = sum(after) - sum(before)
    # the burst of 5 failures, shared, and one more per replica that learns of it late
    assert made <= 5 + 2 * 2, (made, codes[:20])
    assert set(codes) == {401, 429}, set(codes)
    assert codes.count(429) >= 480
    assert last is not None and last.status_code == 429
    assert last.json()["limit"] == "failed authentications per client address"
    assert int(last.headers["retry-after"]) >= 1

    # the same made-up key again and again, from an address not refused: one lookup
    again = made_up_key()
    proc = limited_pair[0]
    start = _lookups(await _metrics(proc))
    async with httpx.AsyncClient(base_url=proc.url) as http:
        for _ in range(3):
            assert (await http.get("/v1/policy", headers=auth(again))).status_code == 401
        assert _lookups(await _metrics(proc)) - start == 1
        # and a shop's own key works from here while the flooder waits
        assert (await http.get("/v1/policy", headers=auth(key))).status_code == 200


_STREAMED = b"x" * (64 * 1024)


async def _megabytes() -> AsyncIterator[bytes]:
    for _ in range(80):  # 5 MB, without a Content-Length
        yield _STREAMED


def ensure(system: System, name: str) -> None:
    """``name`` running, given the time a loaded machine takes to catch up on the topics."""
    svc = system.services.get(name)
    if svc is None:
        svc = ServiceProcess(name, free_port(), system.env(), system.workdir / f"{name}.log")
        system.services[name] = svc
    if svc.proc is None or svc.proc.poll() is not None:
        svc.start()
        svc.wait_healthy(120)


def _routes_of(service: str) -> set[tuple[str, str]]:
    """Every route the service's routers declare, as (path, method)."""
    import importlib

    bootstrap = importlib.import_module(f"regulars_{service}.bootstrap")
    return {
        (route.path, method.lower())
        for router in bootstrap.definition().routers
        for route in router.routes
        for method in getattr(route, "methods", None) or ()
    }


async def test_bodies_of_megabytes_are_413_on_every_endpoint_at_once(running: System) -> None:
    for name in ("feedback", "loyalty"):
        ensure(running, name)
    body = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    # signed, so that no endpoint answers 401 first (intake's events path checks the key
    # before it reads a streamed body)
    _shop_id, key = await running.create_shop("Big Bodies Garage")
    headers = {"content-type": "application/json", **auth(key)}
    checked = 0
    for name in ("intake", "followup", "feedback", "loyalty"):
        url = running.services[name].url
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            document = (await http.get("/openapi.json")).json()
            routes = {(path, method) for path, item in document["paths"].items() for method in item}
            routes |= _routes_of(name)  # the console's pages too, which OpenAPI leaves out
            for path, method in sorted(routes):
                if method not in ("post", "put", "patch"):
                    continue
                concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
                started = time.monotonic()
                declared = await http.request(
                    method.upper(), concrete, content=body, headers=headers
                )
                streamed = await http.request(
                    method.upper(), concrete, content=_megabytes(), headers=headers
                )
                took = time.monotonic() - started
                assert declared.status_code == 413, (name, method, path, declared.text)
                assert streamed.status_code == 413, (name, method, path, streamed.text)
                assert took < 5, (name, method, path, took)
                checked += 1
    assert checked >= 20, checked


async def _every_record(bootstrap: str) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    """Every record on every topic of the broker, from the start of each partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    found: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
    try:
        topics = await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while not all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    headers = [(k, bytes(v or b"")) for k, v in record.headers]
                    found.append((tp.topic, record.value or b"", headers))
    finally:
        await consumer.stop()
    return found


async def test_no_survey_token_nor_api_key_travels_on_any_topic(running: System) -> None:
    ensure(running, "feedback")
    shop_id, key = await running.create_shop("Secret Keeping Garage", policy=POLICY)
    await wait_for(lambda: _ready(running, shop_id, key), 30)
    cid, _ro, token = await surveyed(running, key)

    # followup made the link from the survey's id: the customer's email holds the token
    # feedback keeps, and the link opens the survey
    async def mailed() -> list[str]:
        assert running.mail is not None
        bodies = [m.get_body(("plain", "html")) for m in running.mail.to(f"{cid}@example.com")]
        return [b.get_content() for b in bodies if b is not None and "/s/" in b.get_content()]

    (text,) = await wait_for(mailed, 30)
    link = re.search(r"https?://\S+/s/([A-Za-z0-9_-]+)", text)
    assert link is not None and link.group(1) == token, text
    async with httpx.AsyncClient() as http:
        page = await http.get(link.group(0))
    assert page.status_code == 200 and "<form" in page.text

    secrets_seen = {token: "survey token", key: "API key", key.rsplit("_", 1)[1]: "key secret"}
    records = await _every_record(running.bootstrap)
    # the scan saw the survey's own announcement (so it read where the link once went)
    assert any(
        (("ce_type", b"regulars.survey.requested.v1") in headers) and cid.encode() in value
        for _topic, value, headers in records
    )
    for topic, value, headers in records:
        for secret, what in secrets_seen.items():
            assert secret.encode() not in value, f"a {what} on {topic}"
            for name, header in headers:
                assert secret.encode() not in header, f"a {what} in header {name} on {topic}"
