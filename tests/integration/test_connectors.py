"""Shop systems' own webhooks through real PostgreSQL and Kafka: signed payloads of each
system become the right customers, one visit per repair order and one follow-up task;
re-sends, floods and Completed-then-Posted change nothing; deletes void; a bad signature
is 403 and stores nothing. Jobber's thin payload is completed from a stand-in of its
GraphQL API (the HTTP boundary: the one place a stand-in is right)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import ServiceProcess, System, auth, free_port, wait_for

FIXTURES = Path(__file__).parents[2] / "services/intake/tests/connectors"
SHOPMONKEY_SECRET = "whsec_" + base64.b64encode(b"shopmonkey-secret-for-tests-0001").decode()
HCP_SECRET = "hcp-signing-secret-for-tests"
JOBBER_SECRET = "jobber-client-secret-for-tests"
JOBBER_TOKEN = "jobber-access-token-for-tests"
ST_SECRET = "servicetitan-hmac-key-0123456789abcdef"
TEK_TOKEN = "tekmetric-token-for-tests-77"


def fixture(system: str, name: str) -> Any:
    return json.loads((FIXTURES / system / f"{name}.json").read_text())


def recent(hours: float = 1) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=hours)).replace(microsecond=0)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- how each system signs -------------------------------------------------------------


def shopmonkey_sign(raw: bytes, wid: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    key = base64.b64decode(SHOPMONKEY_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{wid}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    return {
        "webhook-id": wid,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "webhook-version": "3",
    }


def hcp_sign(raw: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(HCP_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"Api-Timestamp": stamp, "Api-Signature": mac}


def jobber_sign(raw: bytes) -> dict[str, str]:
    mac = hmac.new(JOBBER_SECRET.encode(), raw, hashlib.sha256).digest()
    return {"X-Jobber-Hmac-SHA256": base64.b64encode(mac).decode()}


def st_sign(raw: bytes) -> dict[str, str]:
    mac = hmac.new(ST_SECRET.encode(), raw, hashlib.sha256).digest()
    return {"X-ServiceTitan-Signature": base64.b64encode(mac).decode()}


# -- Jobber's GraphQL API, as it answers ------------------------------------------------


class JobberStandIn:
    """Answers ``POST /api/graphql`` like Jobber: bearer token checked, the item by id,
    ``{"data": {...}}``, GraphQL errors (with 200) for an unknown id, 401 for a bad token.
    ``delay`` makes it slow; ``down`` makes it answer 503 as its load balancer does."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.down = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                asked = json.loads(raw)
                stand_in.requests.append({"headers": dict(self.headers), "body": asked})
                if stand_in.down:
                    return self._answer(503, {"message": "Service Unavailable"})
                time.sleep(stand_in.delay)
                if self.headers.get("Authorization") != f"Bearer {JOBBER_TOKEN}":
                    return self._answer(401, {"message": "Unauthorized"})
                if not self.headers.get("X-JOBBER-GRAPHQL-VERSION"):
                    return self._answer(400, {"message": "X-JOBBER-GRAPHQL-VERSION required"})
                item_id = asked.get("variables", {}).get("id")
                field = asked["query"].split("{", 2)[1].split("(")[0].strip()
                item = stand_in.items.get(item_id)
                if item is None:
                    return self._answer(
                        200,
                        {
                            "data": {field: None},
                            "errors": [{"message": f"{field} not found", "path": [field]}],
                        },
                    )
                return self._answer(200, {"data": {field: item}})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/graphql"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jobber_api() -> Iterator[JobberStandIn]:
    stand_in = JobberStandIn()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def hooks(running: System, jobber_api: JobberStandIn) -> Iterator[str]:
    """An intake replica of its own that reads Jobber from the stand-in; the session's
    intake reads it too (replicas share their settings), so either may fetch an item."""
    main = running.services["intake"]
    main.kill(signal.SIGTERM)
    main.env = running.env(JOBBER_API_URL=jobber_api.url)
    main.start()
    main.wait_healthy()
    svc = ServiceProcess(
        "intake",
        free_port(),
        running.env(JOBBER_API_URL=jobber_api.url, HOOK_RATE_PER_SECOND="1", HOOK_RATE_BURST="20"),
        running.workdir / "intake-connectors.log",
    )
    svc.start()
    svc.wait_healthy()
    yield svc.url
    svc.kill()
    main.kill(signal.SIGTERM)
    main.env = running.env()
    main.start()
    main.wait_healthy()


@pytest.fixture(scope="module")
async def shop(running: System, hooks: str) -> tuple[str, str]:
    created = await running.create_shop("Connector Garage", "America/Chicago")

    async def authorised() -> bool:
        async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
            return (await http.get("/v1/followups", headers=auth(created[1]))).status_code == 200

    await wait_for(authorised)
    return created


async def connect(hooks: str, key: str, system: str, **setup: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=hooks, headers=auth(key)) as http:
        r = await http.put(f"/v1/connectors/{system}", json=setup)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert "secret" not in answer and setup["secret"] not in r.text
    return answer


async def deliver(
    hooks: str, path: str, raw: bytes, headers: dict[str, str], query: str = ""
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hooks, timeout=10) as http:
        return await http.post(
            path + query, content=raw, headers={"Content-Type": "application/json", **headers}
        )


async def visits(running: System, shop_id: str) -> dict[str, str]:
    rows = await running.fetch(
        "SELECT repair_order_id, status FROM intake.repair_orders WHERE shop_id = $1::uuid",
        shop_id,
    )
    return {r["repair_order_id"]: r["status"] for r in rows}


async def tasks_for(running: System, key: str, order: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=running.services["followup"].url) as http:
        r = await http.get("/v1/followups", headers=auth(key), params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [t for t in r.json()["items"] if t.get("repair_order_id") == order]


async def received(running: System, shop_id: str) -> int:
    rows = await running.fetch(
        "SELECT count(*) AS n FROM intake.received_events WHERE shop_id = $1::uuid", shop_id
    )
    return int(rows[0]["n"])


async def one_task(running: System, key: str, order: str) -> None:
    await wait_for(lambda: _has_task(running, key, order), timeout=30)
    time.sleep(0.5)  # a second task would have come by now with the first
    assert len(await tasks_for(running, key, order)) == 1


async def _has_task(running: System, key: str, order: str) -> bool:
    return len(await tasks_for(running, key, order)) >= 1


# -- the systems ----------------------------------------------------------------------


async def test_shopmonkey_flood_completed_invoiced_and_deleted(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "shopmonkey", secret=SHOPMONKEY_SECRET)
    path = made["hook_path"]
    customer = fixture("shopmonkey", "customer_insert")
    raw = json.dumps(customer).encode()
    assert (await deliver(hooks, path, raw, shopmonkey_sign(raw, "m1"))).status_code == 200
    done = recent()
    order = fixture("shopmonkey", "order_completed")
    order["data"]["completedDate"] = z(done)
    invoiced = json.loads(json.dumps(order))
    invoiced["data"].update(status="Invoice", invoicedDate=z(done + timedelta(minutes=10)))
    flood = fixture("shopmonkey", "order_update_flood")
    sends = [flood] * 5 + [order, order] + [invoiced] * 3
    statuses = []
    for i, body in enumerate(sends):
        raw = json.dumps(body).encode()
        r = await deliver(hooks, path, raw, shopmonkey_sign(raw, f"m-{i}"))
        assert r.status_code == 200, r.text
        statuses += [(x["type"], x["status"]) for x in r.json()["results"]]
    completions = [s for t, s in statuses if t == "service.completed"]
    assert completions == ["accepted"] + ["duplicate"] * 4, statuses
    ro = order["data"]["id"]
    assert (await visits(running, shop_id))[ro] == "completed"
    await one_task(running, key, ro)
    customers = await running.fetch(
        "SELECT name, email FROM intake.customers WHERE shop_id = $1::uuid AND customer_id = $2",
        shop_id,
        customer["data"]["id"],
    )
    assert [(c["name"], c["email"]) for c in customers] == [
        ("Luis Ortega", "luis.ortega@example.com")
    ]
    deleted = json.loads(json.dumps(order))
    deleted["operation"] = "DELETE"
    raw = json.dumps(deleted).encode()
    assert (await deliver(hooks, path, raw, shopmonkey_sign(raw, "m-del"))).status_code == 200
    assert (await visits(running, shop_id))[ro] == "voided"


async def test_bad_or_missing_signatures_are_403_and_store_nothing(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "housecall_pro", secret=HCP_SECRET)
    job = fixture("housecall_pro", "job_completed")
    job["job"]["id"] = "job_forged"
    raw = json.dumps(job).encode()
    before = await received(running, shop_id)
    forged = {**hcp_sign(raw), "Api-Signature": "0" * 64}
    for headers in (forged, {}, hcp_sign(raw + b" ")):
        r = await deliver(hooks, made["hook_path"], raw, headers)
        assert r.status_code == 403, r.text
    other = made["hook_path"].rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    assert (await deliver(hooks, other, raw, hcp_sign(raw))).status_code == 403
    assert await received(running, shop_id) == before
    assert "job_forged" not in await visits(running, shop_id)
    async with httpx.AsyncClient(base_url=hooks, headers=auth(key)) as http:
        listed = (await http.get("/v1/connectors")).json()["connectors"]
    hcp = next(c for c in listed if c["system"] == "housecall_pro")
    assert (hcp["accepted"], hcp["rejected"], hcp["errors"]) == (0, 0, 0)
    assert hcp["last_delivery_at"] is None


async def test_housecall_pro_completed_then_paid_is_one_visit(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "housecall_pro", secret=HCP_SECRET)
    job = fixture("housecall_pro", "job_completed")
    job["job"]["work_timestamps"]["completed_at"] = z(recent(2))
    paid = json.loads(json.dumps(job))
    paid["event"] = "job.paid"
    for body in (job, job, paid):
        raw = json.dumps(body).encode()
        r = await deliver(hooks, made["hook_path"], raw, hcp_sign(raw))
        assert r.status_code == 200, r.text
    ro = job["job"]["id"]
    assert (await visits(running, shop_id))[ro] == "completed"
    await one_task(running, key, ro)
    outbox = await running.fetch(
        "SELECT count(*) AS n FROM intake.outbox WHERE headers @> $1::jsonb",
        f'[["shop_id", "{shop_id}"], ["ce_type", "regulars.invoice.paid.v1"]]',
    )
    assert outbox[0]["n"] == 1
    cancelled = json.loads(json.dumps(job))
    cancelled["event"] = "job.canceled"
    raw = json.dumps(cancelled).encode()
    assert (await deliver(hooks, made["hook_path"], raw, hcp_sign(raw))).status_code == 200
    assert (await visits(running, shop_id))[ro] == "voided"


async def test_tekmetric_resends_and_completed_then_posted(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "tekmetric", secret=TEK_TOKEN)
    assert made["hook_url"].endswith("?token=<secret>")
    query = f"?token={TEK_TOKEN}"
    customer = json.dumps(fixture("tekmetric", "customer")).encode()
    assert (await deliver(hooks, made["hook_path"], customer, {}, query)).status_code == 200
    order = fixture("tekmetric", "ro_completed")
    order["data"]["completedDate"] = z(recent(3))
    posted = json.loads(json.dumps(order))
    posted["data"].update(repairOrderStatus={"id": 5, "code": "POSTED"}, postedDate=z(recent(2)))
    for body in (order, order, order, posted, posted):
        raw = json.dumps(body).encode()
        r = await deliver(hooks, made["hook_path"], raw, {}, query)
        assert r.status_code == 200, r.text
    assert (
        await deliver(hooks, made["hook_path"], customer, {}, "?token=wrong")
    ).status_code == 403
    ro = str(order["data"]["id"])
    assert (await visits(running, shop_id))[ro] == "completed"
    await one_task(running, key, ro)


async def test_servicetitan_time_without_offset_in_the_shops_timezone(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "servicetitan", secret=ST_SECRET)
    job = fixture("servicetitan", "job_completed_v1")
    chicago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(ZoneInfo("America/Chicago"))
    job["completedOn"] = chicago.replace(tzinfo=None).isoformat()
    raw = json.dumps(job).encode()
    for _ in range(2):
        r = await deliver(hooks, made["hook_path"], raw, st_sign(raw))
        assert r.status_code == 200, r.text
    ro = str(job["id"])
    rows = await running.fetch(
        "SELECT completed_at FROM intake.repair_orders WHERE shop_id = $1::uuid"
        " AND repair_order_id = $2",
        shop_id,
        ro,
    )
    assert abs(rows[0]["completed_at"] - chicago) < timedelta(seconds=1)
    await one_task(running, key, ro)
    assert (await deliver(hooks, made["hook_path"], raw, {})).status_code == 403


def jobber_job(job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = fixture("jobber", "graphql_job")["data"]["job"]
    job["id"] = job_id
    job["completedAt"] = recent(1).isoformat()
    return job


def jobber_thin(item_id: str, topic: str = "JOB_CLOSED") -> bytes:
    thin = fixture("jobber", "webhook_job_closed")
    thin["data"]["webHookEvent"].update(itemId=item_id, topic=topic)
    return json.dumps(thin).encode()


def asked_for(jobber_api: JobberStandIn, item_id: str) -> list[dict[str, Any]]:
    return [r for r in jobber_api.requests if r["body"]["variables"] == {"id": item_id}]


async def jobber_row(running: System, connector_id: str, item_id: str) -> dict[str, Any]:
    rows = await running.fetch(
        "SELECT status, attempts, last_error FROM intake.jobber_fetches"
        " WHERE connector_id = $1::uuid AND item_id = $2",
        connector_id,
        item_id,
    )
    assert len(rows) == 1, rows
    return dict(rows[0])


async def test_jobber_thin_payload_is_completed_from_its_api(
    running: System, hooks: str, shop: tuple[str, str], jobber_api: JobberStandIn
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "jobber", secret=JOBBER_SECRET, access_token=JOBBER_TOKEN)
    job = fixture("jobber", "graphql_job")["data"]["job"]
    job["completedAt"] = recent(1).isoformat()
    jobber_api.items[job["id"]] = job
    thin = fixture("jobber", "webhook_job_closed")
    raw = json.dumps(thin).encode()
    answers = []
    for _ in range(3):  # at least once: Jobber says it may send a webhook more than once
        r = await deliver(hooks, made["hook_path"], raw, jobber_sign(raw))
        assert r.status_code == 202, r.text
        answers.append(r.json()["results"][0]["status"])
    assert answers[0] == "queued" and answers[1:] == ["duplicate", "duplicate"]
    await one_task(running, key, job["id"])
    assert (await visits(running, shop_id))[job["id"]] == "completed"
    [asked] = asked_for(jobber_api, job["id"])  # the re-sent event was read once
    assert asked["headers"]["Authorization"] == f"Bearer {JOBBER_TOKEN}"
    assert (await jobber_row(running, made["connector_id"], job["id"]))["status"] == "done"
    unknown = "Z2lkOi8vSm9iYmVyL0pvYi8w"
    raw = jobber_thin(unknown)
    r = await deliver(hooks, made["hook_path"], raw, jobber_sign(raw))
    assert r.status_code == 202, r.text

    async def parked() -> Any:
        async with httpx.AsyncClient(base_url=hooks, headers=auth(key)) as http:
            listed = (await http.get("/v1/connectors")).json()["connectors"]
        mine = next(c for c in listed if c["system"] == "jobber")
        return mine if mine["parked"] == 1 else None

    mine = await wait_for(parked, timeout=15)
    assert mine["errors"] == 1 and mine["accepted"] >= 2 and mine["last_delivery_at"]
    row = await jobber_row(running, made["connector_id"], unknown)
    # an item Jobber does not know is parked at once, not asked again
    assert row["attempts"] == 1 and "not found" in row["last_error"]
    assert len(asked_for(jobber_api, unknown)) == 1
    sealed = await running.fetch(
        "SELECT sealed_secret, sealed_token FROM intake.connectors WHERE id = $1::uuid",
        made["connector_id"],
    )
    assert JOBBER_SECRET.encode() not in bytes(sealed[0]["sealed_secret"])
    assert JOBBER_TOKEN.encode() not in bytes(sealed[0]["sealed_token"])


async def test_a_slow_jobber_still_gets_its_answer_within_a_second(
    running: System, hooks: str, shop: tuple[str, str], jobber_api: JobberStandIn
) -> None:
    _shop_id, key = shop
    made = await connect(hooks, key, "jobber", secret=JOBBER_SECRET, access_token=JOBBER_TOKEN)
    job = jobber_job("Z2lkOi8vSm9iYmVyL0pvYi83MDAwMDE=")
    jobber_api.items[job["id"]] = job
    raw = jobber_thin(job["id"])
    jobber_api.delay = 2.0
    try:
        started = time.monotonic()
        r = await deliver(hooks, made["hook_path"], raw, jobber_sign(raw))
        took = time.monotonic() - started
        assert r.status_code == 202, r.text
        assert took < 1.0, f"Jobber wants its answer within 1 s; took {took:.2f} s"
        await one_task(running, key, job["id"])
    finally:
        jobber_api.delay = 0.0
    assert len(asked_for(jobber_api, job["id"])) == 1


async def test_a_jobber_down_then_up_is_asked_again_and_the_visit_arrives_once(
    running: System, hooks: str, shop: tuple[str, str], jobber_api: JobberStandIn
) -> None:
    shop_id, key = shop
    made = await connect(hooks, key, "jobber", secret=JOBBER_SECRET, access_token=JOBBER_TOKEN)
    job = jobber_job("Z2lkOi8vSm9iYmVyL0pvYi83MDAwMDI=")
    jobber_api.items[job["id"]] = job
    raw = jobber_thin(job["id"])
    jobber_api.down = True
    try:
        r = await deliver(hooks, made["hook_path"], raw, jobber_sign(raw))
        assert r.status_code == 202, r.text

        async def refused_twice() -> bool:
            return len(asked_for(jobber_api, job["id"])) >= 2

        await wait_for(refused_twice, timeout=15)
        row = await jobber_row(running, made["connector_id"], job["id"])
        assert row["status"] == "pending" and "503" in row["last_error"]
        assert job["id"] not in await visits(running, shop_id)
    finally:
        jobber_api.down = False
    # Jobber re-sends what it thinks failed: still one event, one visit
    r = await deliver(hooks, made["hook_path"], raw, jobber_sign(raw))
    assert r.status_code == 202 and r.json()["results"][0]["status"] == "duplicate"
    await one_task(running, key, job["id"])
    assert (await visits(running, shop_id))[job["id"]] == "completed"
    row = await jobber_row(running, made["connector_id"], job["id"])
    assert row["status"] == "done" and row["attempts"] >= 3


async def test_connectors_are_the_shops_own(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    _other_id, other_key = await running.create_shop("Another Garage")
    async with httpx.AsyncClient(base_url=hooks, headers=auth(other_key)) as http:
        assert (await http.get("/v1/connectors")).json()["connectors"] == []
        r = await http.put("/v1/connectors/jobber", json={"secret": "long enough secret"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "access_token"
        r = await http.put("/v1/connectors/tekmetric", json={"secret": "short"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "secret"
    async with httpx.AsyncClient(base_url=hooks) as http:
        assert (await http.get("/v1/connectors")).status_code == 401


async def test_a_flood_from_one_connector_is_shed_and_forgeries_do_not_count(
    running: System, hooks: str, shop: tuple[str, str]
) -> None:
    _shop_id, key = await running.create_shop("Flood Garage")
    made = await connect(hooks, key, "jobber", secret=JOBBER_SECRET, access_token=JOBBER_TOKEN)
    destroy = json.dumps(fixture("jobber", "webhook_job_destroy")).encode()
    forged = {"X-Jobber-Hmac-SHA256": base64.b64encode(b"x" * 32).decode()}
    for _ in range(30):
        assert (await deliver(hooks, made["hook_path"], destroy, forged)).status_code == 403
    answers = [
        await deliver(hooks, made["hook_path"], destroy, jobber_sign(destroy)) for _ in range(25)
    ]
    codes = [a.status_code for a in answers]
    # the forged 30 took nothing from the burst of 20 the system itself has
    assert codes[:19].count(200) == 19, codes
    assert 429 in codes, codes
    shed = next(a for a in answers if a.status_code == 429)
    assert int(shed.headers["Retry-After"]) >= 1
