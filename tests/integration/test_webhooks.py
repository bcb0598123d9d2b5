"""Outbound webhooks end to end: intake's consumer, two delivery workers, a real receiver
that verifies every request with the `standardwebhooks` library."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from harness import ServiceProcess, System, auth, free_port, wait_for
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

CUSTOMER = "regulars.customer.upserted.v1"
WEBHOOK_ENV = {
    # the receiver is on this machine; 127.0.0.2 stays refused (loopback, not allowed)
    "REGULARS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "REGULARS_WEBHOOK_RETRY_SCHEDULE": "PT1S,PT1S,PT1S,PT1S",
}
OWNER = {"id": "olga", "name": "Olga Owner", "role": "owner", "email": "olga@hooks.example"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An integrator's endpoint: each path has a secret and a script of answers."""

    port: int
    secrets: dict[str, list[str]] = field(default_factory=dict)
    #: the answers a path gives, in turn; 200 once they are used up
    scripts: dict[str, list[int]] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    unverified: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        request = Received(path, headers, body)
        with self.lock:
            secrets = self.secrets.get(path, [])
            for secret in secrets:
                try:
                    Verifier(secret).verify(body, headers)
                except WebhookVerificationError:
                    self.unverified.append(request)
                    return 401
            if not secrets:
                self.unverified.append(request)
                return 401
            self.got.append(request)
            script = self.scripts.get(path, [])
            return script.pop(0) if script else 200


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            code = state.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # two replicas open up to 64 connections at once: the default backlog of 5
        # would refuse some, and a refused try is retried
        request_queue_size = 256

    server = Server(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


@pytest.fixture(scope="module")
def replicas(running: System) -> Iterator[list[ServiceProcess]]:
    """intake started again with the webhook settings, and a second replica beside it."""
    first = running.services["intake"]
    first.kill(15)
    running.start("intake", **WEBHOOK_ENV)
    second = ServiceProcess(
        "intake",
        free_port(),
        running.env(**WEBHOOK_ENV),
        running.workdir / "intake-replica.log",
    )
    second.start()
    second.wait_healthy()
    yield [running.services["intake"], second]
    second.kill(15)


@pytest.fixture(scope="module")
async def shop(running: System, replicas: list[ServiceProcess]) -> tuple[str, str]:
    return await running.create_shop("Webhook Garage", policy={"staff": [OWNER]})


@pytest.fixture
async def api(running: System, shop: tuple[str, str]) -> Any:
    async with httpx.AsyncClient(
        base_url=running.services["intake"].url, headers=auth(shop[1]), timeout=10
    ) as client:
        yield client


async def subscribe(
    api: httpx.AsyncClient, receiver: Receiver, path: str, host: str = "127.0.0.1"
) -> dict[str, Any]:
    r = await api.post(
        "/v1/webhooks",
        json={"url": receiver.url(path, host), "event_types": [CUSTOMER], "description": path},
    )
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["secret"].startswith("whsec_")
    receiver.secrets[path] = [made["secret"]]
    return made


async def post_customer(api: httpx.AsyncClient, customer_id: str) -> None:
    r = await api.post(
        "/v1/events",
        json={
            "type": "customer.upserted",
            "id": f"wh-{customer_id}",
            "occurred_at": "2026-11-20T10:00:00-05:00",
            "data": {"customer_id": customer_id, "name": "Dana Whitfield", "phone": "+15555550100"},
        },
    )
    assert r.status_code == 202, r.text


def for_customer(got: list[Received], customer_id: str) -> list[Received]:
    return [r for r in got if r.event["data"].get("customer_id") == customer_id]


async def deliveries(api: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 100})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["deliveries"]
    return found


async def test_every_delivery_verifies_as_a_structured_cloudevent(
    api: httpx.AsyncClient, receiver: Receiver, shop: tuple[str, str]
) -> None:
    made = await subscribe(api, receiver, "/ok")
    await post_customer(api, "c-ok")
    got = await wait_for(lambda: _async(for_customer(receiver.at("/ok"), "c-ok")))
    event = got[0].event
    assert event["specversion"] == "1.0" and event["type"] == CUSTOMER
    assert event["datacontenttype"] == "application/json"
    assert event["shopid"] == shop[0] and event["id"] and event["time"] and event["source"]
    assert event["data"]["customer_id"] == "c-ok"
    assert got[0].headers["webhook-id"].startswith("msg_")
    rows = await wait_for(
        lambda: _delivered(api, made["id"]),
    )
    assert rows[0]["attempts"] == 1 and rows[0]["last_status_code"] == 200
    assert not receiver.unverified
    listed = (await api.get("/v1/webhooks")).json()["webhooks"]
    assert made["id"] in [w["id"] for w in listed] and "secret" not in listed[0]


async def test_three_failures_then_the_fourth_try_with_the_same_webhook_id(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.scripts["/flaky"] = [500, 503, 429]
    made = await subscribe(api, receiver, "/flaky")
    await post_customer(api, "c-flaky")
    got = await wait_for(
        lambda: _async(len(for_customer(receiver.at("/flaky"), "c-flaky")) >= 4), timeout=40
    )
    assert got
    tries = for_customer(receiver.at("/flaky"), "c-flaky")
    assert len(tries) == 4
    assert len({t.message_id for t in tries}) == 1
    rows = await wait_for(lambda: _delivered(api, made["id"]))
    assert rows[0]["attempts"] == 4 and rows[0]["status"] == "delivered"


async def test_replay_by_id_and_since_sends_again(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await subscribe(api, receiver, "/replay")
    await post_customer(api, "c-replay")
    rows = await wait_for(lambda: _delivered(api, made["id"]))
    delivery = rows[0]
    r = await api.post(f"/v1/webhooks/{made['id']}/deliveries/{delivery['id']}/replay")
    assert r.status_code == 202 and r.json() == {"replayed": 1}
    await wait_for(lambda: _async(len(receiver.at("/replay")) >= 2))
    r = await api.post(f"/v1/webhooks/{made['id']}/replay", json={"since": "2020-01-01T00:00:00Z"})
    assert r.status_code == 202 and r.json() == {"replayed": 1}
    await wait_for(lambda: _async(len(receiver.at("/replay")) >= 3))
    assert len({t.message_id for t in receiver.at("/replay")}) == 1
    missing = await api.post(f"/v1/webhooks/{made['id']}/deliveries/{uuid.uuid4()}/replay")
    assert missing.status_code == 404


async def test_after_a_rotation_both_secrets_verify(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await subscribe(api, receiver, "/rotate")
    old = made["secret"]
    r = await api.post(f"/v1/webhooks/{made['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old and new.startswith("whsec_")
    # the receiver checks each secret alone: every request must verify with both
    receiver.secrets["/rotate"] = [old, new]
    await post_customer(api, "c-rotate")
    got = await wait_for(lambda: _async(for_customer(receiver.at("/rotate"), "c-rotate")))
    assert len(got[0].headers["webhook-signature"].split(" ")) == 2
    assert not receiver.unverified


async def test_410_disables_the_endpoint_and_tells_the_owner(
    running: System, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.scripts["/gone"] = [410]
    made = await subscribe(api, receiver, "/gone")
    await post_customer(api, "c-gone")

    async def disabled() -> dict[str, Any] | None:
        found: dict[str, Any] = (await api.get(f"/v1/webhooks/{made['id']}")).json()
        return found if not found["enabled"] else None

    found = await wait_for(disabled)
    assert "410" in found["disabled_reason"]
    rows = await deliveries(api, made["id"])
    assert rows[0]["status"] == "failed" and rows[0]["last_status_code"] == 410
    await post_customer(api, "c-gone-after")
    assert running.mail is not None
    await wait_for(lambda: _async(running.mail.to(OWNER["email"]) if running.mail else None))
    assert len(for_customer(receiver.at("/gone"), "c-gone")) == 1
    assert not for_customer(receiver.at("/gone"), "c-gone-after")


async def test_a_private_address_is_refused_unless_allowed(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await subscribe(api, receiver, "/private", host="127.0.0.2")
    await post_customer(api, "c-private")

    async def tried() -> list[dict[str, Any]] | None:
        rows = await deliveries(api, made["id"])
        return rows if rows and rows[0]["status"] == "failed" else None

    rows = await wait_for(tried)
    assert rows[0]["last_error"] == "refused" and rows[0]["last_status_code"] is None
    assert not receiver.at("/private")


async def test_two_replicas_never_send_the_same_try_twice(
    running: System, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await subscribe(api, receiver, "/pair")
    customers = [f"c-pair-{i}" for i in range(40)]
    for customer_id in customers:
        await post_customer(api, customer_id)
    await wait_for(lambda: _async(len(receiver.at("/pair")) >= len(customers)), timeout=60)

    async def recorded() -> list[Any] | None:
        rows = await running.fetch(
            "SELECT attempts, status, last_error, last_status_code"
            " FROM intake.webhook_deliveries WHERE webhook_id = $1",
            uuid.UUID(made["id"]),
        )
        done = len(rows) == len(customers) and all(r["status"] != "pending" for r in rows)
        return rows if done else None

    rows = await wait_for(recorded)
    assert all(r["attempts"] == 1 and r["status"] == "delivered" for r in rows), rows
    got = receiver.at("/pair")
    assert len(got) == len(customers)
    assert len({r.message_id for r in got}) == len(customers)


async def test_an_unknown_event_type_is_named(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example/x", "event_types": [CUSTOMER, "regulars.nope.v1"]},
    )
    assert r.status_code == 422
    assert "regulars.nope.v1" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "event_types[1]"
    types = (await api.get("/v1/webhooks/event-types")).json()["event_types"]
    assert CUSTOMER in types and "regulars.nope.v1" not in types


async def test_another_shop_sees_nothing(running: System, api: httpx.AsyncClient) -> None:
    mine = (
        await api.post(
            "/v1/webhooks", json={"url": "https://hooks.example/mine", "event_types": [CUSTOMER]}
        )
    ).json()
    _other, other_key = await running.create_shop("Other Hooks")
    async with httpx.AsyncClient(
        base_url=running.services["intake"].url, headers=auth(other_key), timeout=10
    ) as other:
        assert (await other.get(f"/v1/webhooks/{mine['id']}")).status_code == 404
        assert (await other.delete(f"/v1/webhooks/{mine['id']}")).status_code == 404
        assert (await other.get("/v1/webhooks")).json()["webhooks"] == []
    gone = await api.delete(f"/v1/webhooks/{mine['id']}")
    assert gone.status_code == 200 and gone.json() == {"deleted": mine["id"]}
    assert (await api.get(f"/v1/webhooks/{mine['id']}")).status_code == 404


async def _delivered(api: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]] | None:
    rows = await deliveries(api, webhook_id)
    return rows if rows and all(r["status"] == "delivered" for r in rows) else None


async def _async(value: Any) -> Any:
    return value
