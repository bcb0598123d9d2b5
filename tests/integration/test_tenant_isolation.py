"""Tenant isolation, proven from the services' own route lists, against all four of them.

Two shops, A and B, each with customers, visits, follow-up tasks, a survey, a recovery
case, a webhook with a delivery, a connector and a second API key. Then every operation
of every service's ``/openapi.json``, and every console page of loyalty's app (its routes,
as the app lists them: the console is not in OpenAPI), is called with shop A's
credentials (its API key; a staff token of A's owner where the endpoint takes staff; A's
console session for a page) and B's ids put wherever a path parameter, a query parameter
or a body field is named for one. A new endpoint is covered without editing this test.

For each call: no answer holds anything of B's that the request did not carry itself;
a call naming B's object is a 4xx (404, so an id does not tell that it exists), and the
same call naming A's own object is not refused as malformed (so the 404 is the scoping,
not a body this test got wrong); and, over the whole sweep, B's rows in every schema are
the same before and after (a count and a hash per table).

Public endpoints carry their own credential: a survey or unsubscribe token (A's own is
used: a token is the whole credential, and it names no shop in its path), a shop system's
signature (A's connector's, sent to B's connector: 403), the SMS provider's signature.

Then bodies of several megabytes, declared and streamed, to every route: each is answered
at once (413, or 401/403/404/405 before the body is read), every service stays ready, and
events accepted meanwhile are all kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from harness import SERVICES, ServiceProcess, System, auth, free_port, wait_for
from regulars_runtime import staff
from test_staff_tokens import key_of_this_installation

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
WEBHOOK_ENV = {"REGULARS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
#: path parameters that are the console's words, not an object's id
CONSOLE_WORDS = {"command": "acknowledge", "name": "app.css"}
#: what a route list holds that is no endpoint of the product
NOT_ENDPOINTS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
MEGABYTES = 5 * 1024 * 1024
#: the whole suite shares two cores: setting up two shops' data can take minutes there
pytestmark = pytest.mark.timeout(600)


def trace(what: str) -> None:
    """ISOLATION_TRACE=1 (with pytest -s): each call and its answer, and the set-up's pace."""
    if os.environ.get("ISOLATION_TRACE"):
        print(f"{time.monotonic():.1f} {what}")


def policy(tag: str) -> dict[str, Any]:
    """Long deadlines: nothing of either shop moves by itself while the sweep runs."""
    return {
        "business_hours": ALL_DAY,
        "follow_up_delay": "PT0S",
        "follow_up_missed_after": "P2D",
        "ack_sla": "PT12H",
        "ack_sla_critical": "PT12H",
        "resolve_sla": "P5D",
        "staff": [
            {
                "id": f"adv{tag}",
                "name": f"Advisor Of{tag}shop",
                "role": "advisor",
                "email": f"advisor@{tag}-isolation.example",
            },
            {
                "id": f"own{tag}",
                "name": f"Owner Of{tag}shop",
                "role": "owner",
                "email": f"owner@{tag}-isolation.example",
            },
        ],
        "contact": {
            "name": f"Garage {tag.upper()} Isolation",
            "phone": "+15125550123",
            "postal_address": f"{tag.upper()} Main St, Springfield",
        },
    }


# -- a webhook receiver: answers 200 to everything --------------------------------------


@dataclass
class Receiver:
    url: str
    #: what each path was sent, in order
    got: dict[str, list[bytes]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.got.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


@pytest.fixture(scope="module")
async def services(system: System) -> AsyncIterator[System]:
    """All four services; intake allowed to deliver webhooks here, loyalty started last
    so that the console knows where the others are."""
    for name in SERVICES:
        svc = system.services.get(name)
        extra = WEBHOOK_ENV if name == "intake" else {}
        running = svc is not None and svc.proc is not None and svc.proc.poll() is None
        if svc is not None and running:
            if _as_wanted(system, name, svc.env, extra):
                continue
            svc.kill(signal.SIGTERM)
        if svc is None:
            svc = ServiceProcess(
                name, free_port(), system.env(**extra), system.workdir / f"{name}.log"
            )
            system.services[name] = svc
        else:
            svc.env = system.env(**extra)
        svc.start()
        # a loaded machine (the whole suite on two cores) can take more than 30 s
        svc.wait_healthy(120)
    yield system


def _as_wanted(system: System, name: str, env: dict[str, str], extra: dict[str, str]) -> bool:
    """A running service started with what this module needs: intake's webhook setting,
    and the console (loyalty) with where each of the others is."""
    wanted = {**extra}
    if name == "loyalty":
        wanted |= {
            f"{other.upper()}_URL": system.services[other].url
            for other in ("intake", "followup", "feedback")
        }
    return all(env.get(k) == v for k, v in wanted.items())


# -- one shop's data ----------------------------------------------------------------------


@dataclass
class Shop:
    tag: str
    shop_id: str
    key: str
    owner_token: str = ""
    #: ids by the name a path, query or body gives them (customer_id, case_id, ...)
    ids: dict[str, str] = field(default_factory=dict)
    #: a token a public endpoint takes, by the path it is for (/s/, /u/)
    tokens: dict[str, str] = field(default_factory=dict)
    connector_secret: str = ""
    #: what nobody else may see: ids, names, addresses, secrets
    secrets: set[str] = field(default_factory=set)
    session: str = ""
    csrf: str = ""


async def _ok(r: httpx.Response, *codes: int) -> dict[str, Any]:
    assert r.status_code in (codes or (200,)), f"{r.request.method} {r.request.url}: {r.text}"
    answer: dict[str, Any] = r.json()
    return answer


async def _known_everywhere(system: System, shop: Shop) -> bool:
    for name, path in (
        ("followup", "/v1/followups"),
        ("feedback", "/v1/cases"),
        ("loyalty", "/v1/customers"),
    ):
        async with httpx.AsyncClient(base_url=system.services[name].url) as http:
            if (await http.get(path, headers=auth(shop.key))).status_code != 200:
                return False
    rows = await system.fetch(
        "SELECT 1 FROM loyalty.shop_policies l, feedback.shop_policies f,"
        " followup.shop_policies u WHERE l.shop_id = $1 AND f.shop_id = $1"
        " AND u.shop_id = $1 AND l.policy->'staff' @> $2::jsonb"
        " AND f.policy->'staff' @> $2::jsonb",
        uuid.UUID(shop.shop_id),
        json.dumps([{"id": f"own{shop.tag}"}]),
    )
    return bool(rows)


async def _post_event(system: System, key: str, event: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as http:
        await _ok(await http.post("/v1/events", json=event, headers=auth(key)), 202)


async def _customer(system: System, shop: Shop, n: int) -> str:
    hexed = uuid.uuid4().hex[:8]
    cid = f"{shop.tag}cust{n}-{hexed}"
    email = f"{hexed}@{shop.tag}-customers.example"
    name = f"Person{shop.tag.upper()}{hexed}"
    now = datetime.now(UTC).isoformat()
    await _post_event(
        system,
        shop.key,
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": now,
            "data": {"customer_id": cid, "name": name, "email": email},
        },
    )
    ro = f"{shop.tag}ro{n}-{hexed}"
    await _post_event(
        system,
        shop.key,
        {
            "type": "service.completed",
            "id": f"done-{ro}",
            "occurred_at": now,
            "data": {
                "repair_order_id": ro,
                "customer_id": cid,
                "completed_at": now,
                "advisor": f"adv{shop.tag}",
                "work_performed": f"brakes for {name}",
            },
        },
    )
    shop.secrets |= {cid, email, name, ro}
    return cid


async def _task_of(system: System, shop: Shop, cid: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        r = await http.get("/v1/followups", params={"customer_id": cid}, headers=auth(shop.key))
    items: list[dict[str, Any]] = (await _ok(r))["items"]
    return items[0] if items else None


async def _listed(system: System, service: str, path: str, key: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=system.services[service].url) as http:
        r = await http.get(path, params=params, headers=auth(key))
    return (await _ok(r))["items"]


async def populate(system: System, shop: Shop, hooks: str) -> None:
    intake = system.services["intake"].url
    async with httpx.AsyncClient(base_url=intake, headers=auth(shop.key), timeout=10) as http:
        made = await _ok(
            await http.post(
                "/v1/webhooks",
                json={
                    "url": f"{hooks}/{shop.tag}-hook",
                    "event_types": ["regulars.customer.upserted.v1"],
                    "description": f"hook of {shop.tag}shop",
                },
            ),
            201,
        )
        shop.ids["webhook_id"] = made["id"]
        shop.secrets |= {made["id"], made["secret"], f"{shop.tag}-hook"}
        shop.connector_secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
        connector = await _ok(
            await http.put("/v1/connectors/shopmonkey", json={"secret": shop.connector_secret})
        )
        shop.ids["connector_id"] = connector["connector_id"]
        shop.secrets |= {connector["connector_id"], shop.connector_secret}
        key = await _ok(await http.post("/v1/keys", json={"label": f"spare of {shop.tag}"}), 201)
        shop.ids["key_id"] = key["key_id"]
        shop.secrets |= {key["key_id"], key["api_key"]}
    open_call, unhappy, happy = await asyncio.gather(
        *(_customer(system, shop, n) for n in (1, 2, 3))
    )
    shop.ids["customer_id"] = open_call

    async def reached(cid: str, satisfied: bool) -> None:
        called = await wait_for(lambda: _task_of(system, shop, cid), 60)
        body = {"outcome": "reached", "satisfied": satisfied, "score": 9 if satisfied else 2}
        async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
            r = await http.post(
                f"/v1/followups/{called['id']}/attempts", json=body, headers=auth(shop.key)
            )
        await _ok(r, 201)
        shop.secrets.add(called["id"])

    task, *_ = await asyncio.gather(
        wait_for(lambda: _task_of(system, shop, open_call), 60),
        reached(unhappy, False),
        reached(happy, True),
    )
    shop.ids["task_id"] = task["id"]
    shop.secrets.add(task["id"])
    trace(f"{shop.tag}: tasks and calls")
    case = (await wait_for(lambda: _listed(system, "feedback", "/v1/cases", shop.key), 30))[0]
    shop.ids["case_id"] = case["id"]
    survey = (
        await wait_for(
            lambda: _listed(system, "feedback", "/v1/surveys", shop.key, customer_id=happy), 30
        )
    )[0]
    shop.tokens["/s/"] = survey["token"]
    shop.ids["survey_id"] = survey.get("id", "")
    mails = await wait_for(lambda: _mails_with_unsubscribe(system, happy, shop), 30)
    found = re.search(r"/u/([A-Za-z0-9_.~-]+)", mails)
    assert found, mails
    shop.tokens["/u/"] = found.group(1)
    message = (
        await wait_for(
            lambda: _listed(system, "followup", "/v1/messages", shop.key, customer_id=happy), 30
        )
    )[0]
    shop.ids["message"] = message["id"]
    deliveries = await wait_for(lambda: _deliveries(system, shop), 30)
    shop.ids["delivery_id"] = deliveries[0]["id"]
    trace(f"{shop.tag}: case, survey, message and delivery")
    shop.secrets |= {
        case["id"],
        survey["token"],
        shop.tokens["/u/"],
        message["id"],
        deliveries[0]["id"],
        deliveries[0]["event_id"],
        shop.shop_id,
        shop.key,
        f"Owner Of{shop.tag}shop",
        f"Advisor Of{shop.tag}shop",
        f"owner@{shop.tag}-isolation.example",
        f"Garage {shop.tag.upper()} Isolation",
    }
    shop.secrets.discard("")


async def _mails_with_unsubscribe(system: System, cid: str, shop: Shop) -> str | None:
    assert system.mail is not None
    address = next(s for s in shop.secrets if s.endswith("-customers.example") and s[:8] in cid)
    for mail in system.mail.to(address):
        if "List-Unsubscribe" in mail:
            return str(mail["List-Unsubscribe"])
    return None


async def _deliveries(system: System, shop: Shop) -> list[dict[str, Any]]:
    webhook = shop.ids["webhook_id"]
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as http:
        r = await http.get(f"/v1/webhooks/{webhook}/deliveries", headers=auth(shop.key))
    items: list[dict[str, Any]] = (await _ok(r))["deliveries"]
    return items


async def sign_in(system: System, shop: Shop) -> None:
    """A's owner signs in to the console by a link, as the browser does."""
    console = system.services["loyalty"].url
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "regulars_cli.main",
            "staff",
            "link",
            "--shop",
            shop.shop_id,
            "--email",
            f"owner@{shop.tag}-isolation.example",
            "--quiet",
        ],
        env=system.env(CONSOLE_PUBLIC_URL=console),
        capture_output=True,
        text=True,
        check=True,
    )
    link = out.stdout.strip()
    async with httpx.AsyncClient(base_url=console) as http:
        r = await http.get(link)
        form = r.cookies["regulars_form"]
        r = await http.post(
            "/sign-in/link",
            data={"token": link.rsplit("/", 1)[1], "csrf": form},
            cookies={"regulars_form": form},
        )
        assert r.status_code == 303, r.text
        shop.session = r.cookies["regulars_session"]
        page = await http.get("/", cookies={"regulars_session": shop.session})
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:2000]
        shop.csrf = found.group(1)


@pytest.fixture(scope="module")
async def shops(services: System, receiver: Receiver) -> tuple[Shop, Shop]:
    made = []
    trace("services up")
    for tag in ("a", "b"):
        shop_id, key = await services.create_shop(
            f"Garage {tag.upper()} Isolation", policy=policy(tag)
        )
        made.append(Shop(tag, shop_id, key))

    async def ready(shop: Shop) -> None:
        await wait_for(lambda: _known_everywhere(services, shop), 120)
        await populate(services, shop, receiver.url)

    await asyncio.gather(*(ready(shop) for shop in made))
    for shop in made:
        shop.owner_token = staff.mint(
            key_of_this_installation(),
            staff.StaffPrincipal(uuid.UUID(shop.shop_id), f"own{shop.tag}", "owner"),
            datetime.now(UTC),
        )
    trace("populated")
    await wait_for(lambda: _journeys_known(services, made), 60)
    await sign_in(services, made[0])
    return made[0], made[1]


async def _journeys_known(system: System, shops: list[Shop]) -> bool:
    for shop in shops:
        rows = await system.fetch(
            "SELECT 1 FROM loyalty.customers WHERE shop_id = $1 AND customer_id = $2"
            " AND name IS NOT NULL",
            uuid.UUID(shop.shop_id),
            shop.ids["customer_id"],
        )
        if not rows:
            return False
    return True


# -- B's rows: a count and a hash per table, in every schema -------------------------------

#: what the relay writes as it hands a row to the broker: bookkeeping, not the shop's state
RELAY_COLUMNS = {"published_at", "published_to"}


async def snapshot(system: System, shop: Shop) -> dict[str, tuple[int, str]]:
    """B's rows in every table of every service schema: those whose shop_id is B's, and
    in a table without one, those that name B's shop or one of its objects' ids."""
    tables = await system.fetch(
        "SELECT table_schema, table_name, array_agg(column_name::text ORDER BY column_name)"
        " AS columns FROM information_schema.columns"
        " WHERE table_schema = ANY($1::text[]) GROUP BY table_schema, table_name",
        list(SERVICES),
    )
    named = [shop.shop_id, *(v for v in shop.ids.values() if _is_uuid(v))]
    found: dict[str, tuple[int, str]] = {}
    for table in tables:
        columns = [c for c in table["columns"] if c not in RELAY_COLUMNS]
        row = "(" + ", ".join(f'"{c}"' for c in columns) + ")::text"
        if "shop_id" in table["columns"]:
            where, args = "shop_id::text = $1", [shop.shop_id]
        else:
            where, args = f"{row} ~ $1", ["|".join(named)]
        name = f'"{table["table_schema"]}"."{table["table_name"]}"'
        rows = await system.fetch(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(r, ',' ORDER BY r), '')) AS h"
            f" FROM (SELECT {row} AS r FROM {name} WHERE {where}) t",
            *args,
        )
        found[name] = (rows[0]["n"], rows[0]["h"])
    return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _due_soon(system: System, shop: Shop) -> int:
    """The shop's own timers due within the next minutes, in every service."""
    due = 0
    tables = await system.fetch(
        "SELECT table_schema FROM information_schema.tables"
        " WHERE table_name = 'timers' AND table_schema = ANY($1::text[])",
        list(SERVICES),
    )
    for schema in (t["table_schema"] for t in tables):
        rows = await system.fetch(
            f'SELECT count(*) AS n FROM "{schema}".timers WHERE shop_id = $1'
            " AND fired_at IS NULL AND cancelled_at IS NULL"
            " AND fire_at < now() + interval '3 minutes'",
            uuid.UUID(shop.shop_id),
        )
        due += rows[0]["n"]
    return due


async def quiet_snapshot(system: System, shop: Shop) -> dict[str, tuple[int, str]]:
    """B's rows once nothing of B's is still moving: its timers due soon have fired (a
    risk model refitted 30 s after its first visits, say), its relay and consumers done."""

    async def none_due() -> bool:
        return not await _due_soon(system, shop)

    await wait_for(none_due, 240, every=0.5)
    last = await snapshot(system, shop)
    for _ in range(60):
        await asyncio.sleep(0.5)
        now = await snapshot(system, shop)
        if now == last:
            return now
        last = now
    raise AssertionError("shop B's rows kept changing by themselves")


# -- the routes: from OpenAPI, and the console's from loyalty's app ------------------------


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    spec: dict[str, Any]
    #: a console page: A's session cookie and a form, instead of a bearer credential
    console: bool = False

    @property
    def public(self) -> bool:
        """Signed by its own credential (a token, a signature), not a shop's key."""
        if self.console:
            return self.path.startswith("/sign-in")
        return bool(self.spec.get("security", []) == [])

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def __str__(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"


def operations(system: System) -> tuple[list[Operation], dict[str, dict[str, Any]]]:
    found, documents = [], {}
    for service in SERVICES:
        doc = httpx.get(f"{system.services[service].url}/openapi.json", timeout=10).json()
        documents[service] = doc
        for path, item in doc["paths"].items():
            for method, spec in item.items():
                found.append(Operation(service, method, path, spec))
    documented = {(o.service, o.method, o.path) for o in found}

    for service in SERVICES:
        for method, path in app_routes(system, service):
            if path in NOT_ENDPOINTS or (service, method, path) in documented:
                continue
            found.append(Operation(service, method, path, {}, console=True))
    return found, documents


def app_routes(system: System, service: str) -> list[tuple[str, str]]:
    """Every route the service's app has (pages included), listed from the app itself."""
    from regulars_runtime.service import create_app
    from regulars_runtime.settings import load

    module = __import__(f"regulars_{service}.bootstrap", fromlist=["DEFINITION"])
    definition = module.DEFINITION
    env = system.services[service].env
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        app = create_app(definition, load(definition.settings))
    finally:
        os.environ.clear()
        os.environ.update(saved)

    def walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                yield from walk(included.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None):
                # a path's convertors ({id:uuid}) are not part of it as OpenAPI spells it
                path = re.sub(r"{(\w+):\w+}", r"{\1}", prefix + route.path)
                for method in sorted(route.methods - {"HEAD"}):
                    yield method.lower(), path

    return list(walk(app.routes))


# -- plausible requests from the schemas ---------------------------------------------------

STRING_CANDIDATES = (
    "https://example.com/hook",
    "09:00",
    "PT1H",
    "P1D",
    "America/New_York",
    "US",
    "x",
)


class Body:
    """A plausible value for a JSON schema, with the ids of one shop where a field is
    named for one."""

    def __init__(self, document: dict[str, Any], ids: dict[str, str], full: bool = False) -> None:
        self.document = document
        self.ids = ids
        #: every property, not only the required ones (a field may be needed with another)
        self.full = full

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            target: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            schema = target
        return schema

    def value(self, schema: dict[str, Any], name: str = "") -> Any:
        schema = self.resolve(schema)
        if name in self.ids:
            return self.ids[name]
        for alternative in ("anyOf", "oneOf"):
            if alternative in schema:
                options = [self.resolve(s) for s in schema[alternative]]
                usable = [s for s in options if s.get("type") != "null"] or options
                return self.value(usable[0], name)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.value(merged, name)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        if "default" in schema and schema["default"] is not None:
            return schema["default"]
        if "example" in schema:
            return schema["example"]
        if schema.get("examples"):
            return schema["examples"][0]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties", {})
            wanted = set(schema.get("required", ())) | (set(properties) & set(self.ids))
            if self.full:
                wanted = set(properties)
            return {k: self.value(properties[k], k) for k in properties if k in wanted}
        if kind == "array":
            items = schema.get("items", {})
            return [self.value(items, name) for _ in range(max(1, schema.get("minItems", 1)))]
        if kind == "integer":
            return int(schema.get("minimum", 1))
        if kind == "number":
            return float(schema.get("minimum", 1))
        if kind == "boolean":
            return True
        if kind == "string":
            return self.string(schema)
        return None

    def string(self, schema: dict[str, Any]) -> str:
        form = schema.get("format")
        if form == "date-time":
            return datetime.now(UTC).isoformat()
        if form == "date":
            return date.today().isoformat()
        if form == "email":
            return "someone@isolation.example"
        if form == "uuid":
            return str(uuid.uuid4())
        low: int = schema.get("minLength", 1)
        high: int = schema.get("maxLength", 100)
        pattern = schema.get("pattern")
        for candidate in STRING_CANDIDATES:
            if low <= len(candidate) <= high and (pattern is None or re.search(pattern, candidate)):
                return candidate
        return "x" * max(low, 1)


@dataclass
class Call:
    operation: Operation
    url: str
    headers: dict[str, str]
    json_body: Any = None
    form_body: dict[str, str] | None = None
    #: the call names the other shop's object in its path
    names_other: bool = False

    def carried(self) -> str:
        return self.url + json.dumps(self.json_body) + json.dumps(self.form_body)


def ids_for(op: Operation, owner: Shop, values: Shop) -> dict[str, str]:
    """The ids a call uses: ``values``' objects, except a public endpoint's token, which
    is the credential and so ``owner``'s own."""
    ids = {**values.ids, **CONSOLE_WORDS}
    if "/s/" in op.path or "/surveys/{token}" in op.path:
        ids["token"] = owner.tokens["/s/"]
    elif "/u/" in op.path:
        ids["token"] = owner.tokens["/u/"]
    elif op.path.startswith("/sign-in"):
        ids["token"] = "not-a-link-" + uuid.uuid4().hex
    ids["system"] = "shopmonkey"
    # a connector's secret is the owner's credential (and a PUT of it keeps it so)
    ids["secret"] = owner.connector_secret
    return ids


def a_token(op: Operation, owner: Shop) -> str:
    return ids_for(op, owner, owner)["token"]


def forged_token(op: Operation, owner: Shop, other: Shop) -> str | None:
    """The other shop's token for this public path, its last character changed."""
    if not op.public or "token" not in op.params:
        return None
    prefix = "/u/" if "/u/" in op.path else "/s/" if "{token}" in op.path else None
    real = other.tokens.get(prefix) if prefix and not op.path.startswith("/sign-in") else None
    if real is None:
        return None
    return real[:-1] + ("A" if real[-1] != "A" else "B")


def build(
    op: Operation,
    doc: dict[str, Any],
    owner: Shop,
    values: Shop,
    staff_token: bool,
    base: str,
    current: Any = None,
    full: bool = False,
) -> Call:
    ids = ids_for(op, owner, values)
    path = op.path
    for name in op.params:
        path = path.replace("{" + name + "}", str(ids.get(name, uuid.uuid4())))
    names_other = values is not owner and any(
        name in values.ids for name in op.params if name != "token"
    )
    query: dict[str, str] = {}
    for param in op.spec.get("parameters", ()):
        if param["in"] == "query" and param["name"] in ids:
            query[param["name"]] = ids[param["name"]]
    if op.service == "followup" and op.path == "/hooks/sms/status":
        query["message"] = ids["message"]
    url = base + path + ("?" + urlencode(query) if query else "")
    headers: dict[str, str] = {}
    if op.console:
        headers = {"cookie": f"regulars_session={owner.session}"}
    elif not op.public:
        headers = auth(owner.owner_token if staff_token else owner.key)
    call = Call(op, url, headers, names_other=names_other)
    content = op.spec.get("requestBody", {}).get("content", {})
    body = Body(doc, ids, full)
    if "application/json" in content:
        schema = body.resolve(content["application/json"]["schema"])
        call.json_body = as_it_is(current, schema) or body.value(schema)
    elif "application/x-www-form-urlencoded" in content:
        form = body.value(content["application/x-www-form-urlencoded"]["schema"])
        call.form_body = {k: str(v) for k, v in form.items()}
    elif op.console and op.method == "post":
        call.form_body = {
            "csrf": owner.csrf,
            "outcome": "no_answer",
            "note": "from the isolation sweep",
            "text": "from the isolation sweep",
            "email": f"owner@{owner.tag}-isolation.example",
            "token": ids.get("token", ""),
        }
    if op.path.startswith("/hooks/{system}"):
        raw = json.dumps(call.json_body or {}).encode()
        call.headers.update(shopmonkey_signature(raw, owner.connector_secret))
        call.headers["content-type"] = "application/json"
    return call


def as_it_is(current: Any, schema: dict[str, Any]) -> dict[str, Any] | None:
    """For a PUT: what a GET of the same path answers, as far as the body's schema goes
    (the plausible body of a replace is the thing as it is)."""
    properties = set(schema.get("properties", ()))
    if not isinstance(current, dict) or not properties:
        return None
    candidates = [current, *(v for v in current.values() if isinstance(v, dict))]
    best = max(candidates, key=lambda c: len(properties & set(c)))
    kept = {k: v for k, v in best.items() if k in properties}
    return kept if set(schema.get("required", ())) <= set(kept) and kept else None


def shopmonkey_signature(raw: bytes, secret: str) -> dict[str, str]:
    wid = f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{wid}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    return {
        "webhook-id": wid,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


async def send(http: httpx.AsyncClient, call: Call) -> httpx.Response:
    if call.operation.path.startswith("/hooks/{system}"):
        content: bytes | None = json.dumps(call.json_body or {}).encode()
        return await http.request(
            call.operation.method, call.url, content=content, headers=call.headers
        )
    return await http.request(
        call.operation.method,
        call.url,
        headers=call.headers,
        json=call.json_body if call.form_body is None else None,
        data=call.form_body,
    )


def leaked(answer: httpx.Response, call: Call, other: Shop) -> list[str]:
    text = answer.text + json.dumps(dict(answer.headers))
    carried = call.carried()
    return sorted(s for s in other.secrets if s in text and s not in carried)


def proves(theirs: int, mine: int, public: bool) -> bool:
    """Whether the same request naming A's own object (``mine``) shows that the answer
    naming B's (``theirs``) is the scoping: A's own is found, and if its form is refused
    that happens past the point where B's was (the answers differ). On a public endpoint
    A's own credential must pass too."""
    if mine in (404, 405, 415) or (public and mine in (401, 403)):
        return False
    return mine not in (400, 422) or theirs != mine


def ordered(ops: list[Operation]) -> list[Operation]:
    """Reads first, then writes, removals last (a control call may remove A's object)."""
    rank = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
    return sorted(
        ops, key=lambda o: (o.path == "/sign-out", rank.get(o.method, 1), "/revoke" in o.path)
    )


# -- the sweep -----------------------------------------------------------------------------


async def test_what_reaches_one_shop_holds_nothing_of_the_other(
    services: System, shops: tuple[Shop, Shop], receiver: Receiver
) -> None:
    """A's webhook deliveries and the mail to A's customers and staff: A's alone."""
    _a, b = shops
    assert receiver.got.get("/a-hook") and receiver.got.get("/b-hook"), receiver.got.keys()
    for body in receiver.got["/a-hook"]:
        assert not [s for s in b.secrets if s in body.decode()], body
    assert services.mail is not None
    to_a = [m for m in services.mail.messages if "a-customers.example" in str(m["To"])]
    to_a += [m for m in services.mail.messages if "a-isolation.example" in str(m["To"])]
    assert to_a
    for mail in to_a:
        assert not [s for s in b.secrets if s in mail.as_string()], mail.as_string()[:2000]


async def test_every_endpoint_with_another_shops_ids_reads_and_changes_nothing(
    services: System, shops: tuple[Shop, Shop]
) -> None:
    a, b = shops
    ops, documents = operations(services)
    assert any(o.console for o in ops), "the console's pages were not listed"
    before = await quiet_snapshot(services, b)
    trace(f"B's rows: { {k: v[0] for k, v in before.items()} }")
    problems: list[str] = []
    calls = 0
    async with httpx.AsyncClient(timeout=20, follow_redirects=False) as http:
        for op in ordered(ops):
            if op.path in ("/healthz", "/readyz", "/metrics"):
                continue
            base = services.services[op.service].url
            doc = documents.get(op.service, {})
            current = None
            if op.method == "put" and not op.params:
                got = await http.get(base + op.path, headers=auth(a.key))
                current = got.json() if got.status_code == 200 else None
            for staff_token in [False] if op.public or op.console else [False, True]:
                who = "staff token" if staff_token else ("session" if op.console else "API key")
                refused_as_malformed = []
                # the body with its required fields, then with every field (one may be
                # required with another): the first the control call takes is the proof
                for full in (False, True):
                    attack = build(op, doc, a, b, staff_token, base, current, full)
                    answer = await send(http, attack)
                    calls += 1
                    where = f"{op} ({who}) -> {answer.status_code}"
                    trace(f"{where} {attack.url} {answer.text[:150]}")
                    found = leaked(answer, attack, b)
                    if found:
                        problems.append(f"{where}: answer holds B's {found}")
                    if not attack.names_other:
                        break
                    control = build(op, doc, a, a, staff_token, base, current, full)
                    mine = await send(http, control)
                    calls += 1
                    trace(f"   control {mine.status_code} {mine.text[:150]}")
                    # A's own object, as A sees it, holds nothing of B's either
                    found = leaked(mine, control, b)
                    if found:
                        problems.append(f"{op} ({who}) on A's own: answer holds B's {found}")
                    # a console form answers by sending the browser back with a notice:
                    # for B's object, not the notice A's own gets
                    elsewhere = answer.status_code == 303 and answer.headers.get(
                        "location"
                    ) != mine.headers.get("location")
                    if not (400 <= answer.status_code < 500 or (op.console and elsewhere)):
                        problems.append(f"{where}: B's object was not refused: {answer.text[:300]}")
                    if answer.status_code == 403 and mine.status_code != 403 and not op.public:
                        problems.append(f"{where}: 403 tells that B's object exists; 404 expected")
                    if proves(answer.status_code, mine.status_code, op.public):
                        break
                    refused_as_malformed.append(f"{mine.status_code}: {mine.text[:300]}")
                else:
                    problems.append(
                        f"{op} ({who}): the same call on A's own object is refused, so B's"
                        f" answer proves nothing: {refused_as_malformed}"
                    )
            forged = forged_token(op, a, b)
            if forged is not None:
                # B's token one character off: a guess near a real one opens nothing
                call = build(op, doc, a, b, False, base, current)
                call.url = call.url.replace(a_token(op, a), forged)
                answer = await send(http, call)
                calls += 1
                trace(f"{op} (B's token, forged) -> {answer.status_code} {answer.text[:150]}")
                # answered as a token nobody was given is: nothing tells it is near one
                call.url = call.url.replace(forged, "made-up-" + uuid.uuid4().hex)
                unknown = await send(http, call)
                calls += 1
                taken = answer.status_code < 400 and op.method != "get"
                if answer.status_code != unknown.status_code or taken:
                    problems.append(
                        f"{op} with a forged token: {answer.status_code}, with a made-up one"
                        f" {unknown.status_code}"
                    )
                found = leaked(answer, call, b)
                if found:
                    problems.append(f"{op} with a forged token: answer holds B's {found}")
    after = await quiet_snapshot(services, b)
    changed = {t: (before.get(t), after.get(t)) for t in after if before.get(t) != after.get(t)}
    if changed:
        problems.append(f"B's rows changed: {changed}")
    assert calls > 60, calls
    assert not problems, "\n".join(problems)


# -- bodies of several megabytes -----------------------------------------------------------

#: what a request of several megabytes may be answered: too large, or refused on its
#: credential or its path before the body is read
BEFORE_THE_BODY = {401, 403, 404, 413}


async def oversized(
    port: int, method: str, target: str, headers: dict[str, str], declared: bool
) -> tuple[int, float]:
    """Send ``MEGABYTES`` to ``target`` as a client would (declared, or streamed in
    chunks), reading the answer while it is still being sent: its status and how long
    it took to come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = f"Content-Length: {MEGABYTES}" if declared else "Transfer-Encoding: chunked"
    lines = [f"{method.upper()} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", framing]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    piece = b'{"pad": "' + b"x" * (64 * 1024 - 12) + b'"},'

    async def pump() -> None:
        sent = 0
        with contextlib.suppress(ConnectionError, OSError):
            while sent < MEGABYTES:
                chunk = piece[: MEGABYTES - sent]
                writer.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
            if not declared:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    started = time.monotonic()
    pumping = asyncio.create_task(pump())
    try:
        status = await asyncio.wait_for(reader.readline(), 30)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await pumping
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    took = time.monotonic() - started
    parts = status.split()
    return (int(parts[1]) if len(parts) > 1 else 0), took


async def _steady_events(system: System, shop: Shop, stop: asyncio.Event) -> list[str]:
    """Events posted one after another until ``stop``: the ids of those accepted."""
    accepted = []
    async with httpx.AsyncClient(base_url=system.services["intake"].url, timeout=30) as http:
        while not stop.is_set():
            cid = f"steady-{uuid.uuid4().hex[:10]}"
            event = {
                "type": "customer.upserted",
                "id": f"up-{cid}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": {
                    "customer_id": cid,
                    "name": "Steady Customer",
                    "email": f"{cid}@s.example",
                },
            }
            r = await http.post("/v1/events", json=event, headers=auth(shop.key))
            if r.status_code == 202:
                accepted.append(cid)
            await asyncio.sleep(0.05)
    return accepted


async def test_bodies_of_megabytes_are_refused_at_once_and_nothing_accepted_is_lost(
    services: System, shops: tuple[Shop, Shop]
) -> None:
    a, _b = shops
    ops, documents = operations(services)
    await sign_in(services, a)  # the sweep's last call signed A's owner out
    stop = asyncio.Event()
    steady = asyncio.create_task(_steady_events(services, a, stop))
    problems: list[str] = []
    slowest = 0.0
    sent = 0
    # four at once: the services are meant to shed them, not to take turns
    at_once = asyncio.Semaphore(4)

    async def one(op: Operation, declared: bool) -> None:
        nonlocal slowest, sent
        svc = services.services[op.service]
        call = build(op, documents.get(op.service, {}), a, a, False, "", None)
        content = op.spec.get("requestBody", {}).get("content", {})
        form = "application/x-www-form-urlencoded"
        media = next(iter(content), form if op.console else "application/json")
        headers = {**call.headers, "Content-Type": media}
        async with at_once:
            status, took = await oversized(svc.port, op.method, call.url, headers, declared)
        trace(f"{op} {'declared' if declared else 'streamed'}: {status} in {took:.2f} s")
        sent += 1
        slowest = max(slowest, took)
        how = "declared" if declared else "streamed"
        if status not in BEFORE_THE_BODY:
            problems.append(f"{op} ({how}): {status}")
        if took > 10:
            problems.append(f"{op} ({how}): answered after {took:.1f} s")

    try:
        await asyncio.gather(*(one(op, declared) for op in ops for declared in (True, False)))
    finally:
        stop.set()
        accepted = await steady
    for name in SERVICES:
        svc = services.services[name]
        assert svc.proc is not None and svc.proc.poll() is None, f"{name} died"
        ready = httpx.get(f"{svc.url}/readyz", timeout=10)
        assert ready.status_code == 200, f"{name}: {ready.text}"
    assert accepted, "no event was accepted while the bodies were sent"
    kept = await services.fetch(
        "SELECT client_id FROM intake.received_events WHERE shop_id = $1"
        " AND client_id = ANY($2::text[])",
        uuid.UUID(a.shop_id),
        [f"up-{cid}" for cid in accepted],
    )
    assert len(kept) == len(accepted)

    async def all_known() -> bool:
        rows = await services.fetch(
            "SELECT count(*) AS n FROM loyalty.customers WHERE shop_id = $1"
            " AND customer_id = ANY($2::text[])",
            uuid.UUID(a.shop_id),
            accepted,
        )
        return bool(rows[0]["n"] == len(accepted))

    # and each reached the service furthest down the bus
    await wait_for(all_known, 60)
    assert sent > 100, sent
    assert not problems, f"slowest {slowest:.1f} s\n" + "\n".join(problems)
