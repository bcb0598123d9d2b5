"""The console acts for a signed-in staff member with a staff token, against the real
services: who made a call, acknowledged or resolved a case, or changed the shop's
settings is the token's staff member; a token sees only its own shop; the shop's system
alone posts events; the console's lists (calls due today, cases by deadline)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from harness import System, auth, wait_for
from regulars_runtime import staff
from regulars_runtime.staff import StaffPrincipal
from test_feedback import ALL_DAY, call, customer_with_visit, one_case
from test_followup_flow import person, tasks, visit

STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@tokens.example"},
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@t.example"},
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@tokens.example"},
]
#: deadlines of an hour and more, so that no case escalates (and moves) while a test reads
POLICY = {
    "business_hours": ALL_DAY,
    "ack_sla_critical": "PT1H",
    "ack_sla": "PT2H",
    "resolve_sla": "P1D",
    "follow_up_missed_after": "P1D",
    "staff": STAFF,
}


def key_of_this_installation() -> str:
    # the harness starts the services in embedded mode, with the caller's environment
    return os.environ.get("REGULARS_STAFF_TOKEN_KEY") or staff.EMBEDDED_KEY


def token(shop_id: str, staff_id: str, role: staff.Role, at: datetime | None = None) -> str:
    principal = StaffPrincipal(uuid.UUID(shop_id), staff_id, role)
    return staff.mint(key_of_this_installation(), principal, at or datetime.now(UTC))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
async def services(running: System) -> System:
    svc = running.services.get("feedback")
    if svc is None or svc.proc is None or svc.proc.poll() is not None:
        running.start("feedback")
    return running


async def _known_everywhere(system: System, shop_id: str, key: str) -> bool:
    """The shop's key and policy (with its staff) have reached followup and feedback."""
    for name, path in (("followup", "/v1/followups"), ("feedback", "/v1/cases")):
        async with httpx.AsyncClient(base_url=system.services[name].url) as http:
            if (await http.get(path, headers=auth(key))).status_code != 200:
                return False
    rows = await system.fetch(
        "SELECT policy::text AS policy FROM feedback.shop_policies WHERE shop_id = $1",
        uuid.UUID(shop_id),
    )
    return bool(rows) and bool(json.loads(rows[0]["policy"]).get("staff"))


@pytest.fixture(scope="module")
async def shop(services: System) -> tuple[str, str]:
    created = await services.create_shop("Token Motors", "America/New_York", policy=POLICY)
    await wait_for(lambda: _known_everywhere(services, *created), 30)
    return created


@pytest.fixture(scope="module")
async def other_shop(services: System) -> tuple[str, str]:
    created = await services.create_shop("Across The Street Auto", policy=POLICY)
    await wait_for(lambda: _known_everywhere(services, *created), 30)
    return created


async def new_task(system: System, key: str) -> dict[str, Any]:
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as http:
        for event in (person(cid), visit(f"ro-{cid}", cid, datetime.now(UTC).isoformat())):
            r = await http.post("/v1/events", json=event, headers=auth(key))
            assert r.status_code == 202, r.text
    found: list[dict[str, Any]] = await wait_for(lambda: tasks(system, key, customer_id=cid))
    return found[0]


async def unhappy_case(system: System, key: str, advisor: str = "sam") -> dict[str, Any]:
    cid, _ro = await customer_with_visit(system, key, advisor=advisor)
    await call(system, key, cid, satisfied=False, score=2, notes="the noise is back")
    return await one_case(system, key, cid)


# -- followup ------------------------------------------------------------------------------


async def test_an_attempt_posted_with_a_staff_token_is_the_staff_members(
    services: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    task = await new_task(services, key)
    async with httpx.AsyncClient(base_url=services.services["followup"].url) as http:
        r = await http.post(
            f"/v1/followups/{task['id']}/attempts",
            json={"outcome": "no_answer", "by": "someone-else"},
            headers=bearer(token(shop_id, "sam", "advisor")),
        )
        assert r.status_code == 201, r.text
        assert r.json()["task"]["history"][0]["by_staff"] == "sam"
        r = await http.post(
            f"/v1/followups/{task['id']}/attempts",
            json={"outcome": "voicemail", "by": "maria"},
            headers=auth(key),
        )
        assert r.status_code == 201, r.text
    stored = await services.fetch(
        "SELECT by_staff FROM followup.follow_up_attempts WHERE task_id = $1 ORDER BY number",
        uuid.UUID(task["id"]),
    )
    assert [row["by_staff"] for row in stored] == ["sam", "maria"]


async def test_the_call_list_due_before_a_moment_pages_by_due_time(
    services: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    made = [await new_task(services, key) for _ in range(3)]
    ids = {t["id"] for t in made}
    dues = sorted(datetime.fromisoformat(t["due_at"]) for t in made)
    assert dues[0] < dues[-1], "the tasks are due at distinct moments"
    console = bearer(token(shop_id, "maria", "service_manager"))
    async with httpx.AsyncClient(
        base_url=services.services["followup"].url, headers=console
    ) as http:

        async def due_before(moment: datetime, limit: int = 1000) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            params: dict[str, Any] = {"due_before": moment.isoformat(), "limit": limit}
            while True:
                r = await http.get("/v1/followups", params=params)
                assert r.status_code == 200, r.text
                seen += [t for t in r.json()["items"] if t["id"] in ids]
                if not r.json()["next_cursor"]:
                    return seen
                params["cursor"] = r.json()["next_cursor"]

        everything = await due_before(dues[-1] + timedelta(seconds=1), limit=1)
        assert [t["id"] for t in everything] == [
            t["id"] for t in sorted(made, key=lambda t: (t["due_at"], t["id"]))
        ]
        # before, not at: the last one is due at that very moment
        assert len(await due_before(dues[-1])) == 2
        assert await due_before(dues[0]) == []
        in_new_york = dues[-1].astimezone(timezone(timedelta(hours=-5))) + timedelta(seconds=1)
        assert len(await due_before(in_new_york)) == 3
        for bad in ("tomorrow", "2026-12-02T23:59:59", "2026-12-02"):
            r = await http.get("/v1/followups", params={"due_before": bad})
            assert r.status_code == 422, (bad, r.text)
            assert [e["field"] for e in r.json()["errors"]] == ["due_before"]


# -- feedback ------------------------------------------------------------------------------


async def test_a_case_acknowledged_commented_and_resolved_at_the_console_is_theirs(
    services: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    case = await unhappy_case(services, key)
    assert case["next_due_at"] == case["ack_due_at"]
    async with httpx.AsyncClient(base_url=services.services["feedback"].url) as http:
        r = await http.post(
            f"/v1/cases/{case['id']}/acknowledge",
            json={"by": "olga", "note": "calling them now"},
            headers=bearer(token(shop_id, "sam", "advisor")),
        )
        assert r.status_code == 200, r.text
        acknowledged = r.json()
        assert acknowledged["acknowledged_by"] == "sam"
        assert acknowledged["next_due_at"] == acknowledged["resolve_due_at"]
        r = await http.post(
            f"/v1/cases/{case['id']}/comments",
            json={"text": "parts ordered"},
            headers=bearer(token(shop_id, "maria", "service_manager")),
        )
        assert r.status_code == 201, r.text
        r = await http.post(
            f"/v1/cases/{case['id']}/resolve",
            json={"outcome": "redid the brakes at no charge", "by": "sam"},
            headers=bearer(token(shop_id, "maria", "service_manager")),
        )
        assert r.status_code == 200, r.text
        resolved = r.json()
    assert (resolved["resolved_by"], resolved["next_due_at"]) == ("maria", None)
    by_kind = {h["kind"]: h["by"] for h in resolved["history"]}
    assert (by_kind["acknowledged"], by_kind["comment"], by_kind["resolved"]) == (
        "sam",
        "maria",
        "maria",
    )
    stored = await services.fetch(
        "SELECT acknowledged_by, resolved_by FROM feedback.cases WHERE id = $1",
        uuid.UUID(case["id"]),
    )
    assert (stored[0]["acknowledged_by"], stored[0]["resolved_by"]) == ("sam", "maria")


async def test_open_cases_by_their_next_deadline_a_page_at_a_time(
    services: System, other_shop: tuple[str, str]
) -> None:
    shop_id, key = other_shop
    first = await unhappy_case(services, key)
    second = await unhappy_case(services, key)
    third = await unhappy_case(services, key, advisor="tom")
    done = await unhappy_case(services, key)
    console = bearer(token(shop_id, "maria", "service_manager"))
    async with httpx.AsyncClient(
        base_url=services.services["feedback"].url, headers=console
    ) as http:
        # the first is acknowledged: its next deadline is the day it has to be resolved in
        r = await http.post(f"/v1/cases/{first['id']}/acknowledge", json={})
        assert r.status_code == 200, r.text
        r = await http.post(f"/v1/cases/{done['id']}/resolve", json={"outcome": "refunded"})
        assert r.status_code == 200, r.text

        async def listed(**params: Any) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            while True:
                r = await http.get("/v1/cases", params=params)
                assert r.status_code == 200, r.text
                seen += r.json()["items"]
                if not r.json()["next_cursor"]:
                    return seen
                params["cursor"] = r.json()["next_cursor"]

        by_deadline = await listed(open="true", order="sla", limit=1)
        assert [c["id"] for c in by_deadline] == [second["id"], third["id"], first["id"]]
        dues = [c["next_due_at"] for c in by_deadline]
        assert dues == sorted(dues) and None not in dues
        assert by_deadline[-1]["next_due_at"] == by_deadline[-1]["resolve_due_at"]
        assert by_deadline[0]["next_due_at"] == by_deadline[0]["ack_due_at"]
        # the resolved one too, by the deadline it had (its day to be resolved in)
        everything = await listed(order="sla", limit=2)
        assert {c["id"] for c in everything} == {c["id"] for c in (first, second, third, done)}
        assert everything[-1]["id"] in (first["id"], done["id"])
        newest = await listed(limit=3)
        assert [c["id"] for c in newest] == [done["id"], third["id"], second["id"], first["id"]]
        open_ones = await listed(open="true")
        assert [c["id"] for c in open_ones] == [third["id"], second["id"], first["id"]]
        assert [c["id"] for c in await listed(open="true", assignee="tom")] == [third["id"]]
        assert await listed(assignee="nobody") == []
        assert await listed(open="true", status="resolved") == []
        r = await http.get("/v1/cases", params={"order": "deadline"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "order"
        r = await http.get("/v1/cases", params={"open": "perhaps"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "open"


# -- intake --------------------------------------------------------------------------------


async def test_only_an_owner_changes_the_shops_settings_and_the_version_says_who(
    services: System,
) -> None:
    shop_id, key = await services.create_shop("Settings Garage")
    async with httpx.AsyncClient(base_url=services.services["intake"].url) as http:
        r = await http.get("/v1/policy", headers=bearer(token(shop_id, "sam", "advisor")))
        assert r.status_code == 200, r.text
        current = r.json()
        assert (current["version"], current["changed_by"]) == (1, None)
        changed = {**current["policy"], "follow_up_max_attempts": 5}
        for who, role in (("sam", "advisor"), ("maria", "service_manager")):
            r = await http.put(
                "/v1/policy", json=changed, headers=bearer(token(shop_id, who, role))
            )
            assert r.status_code == 403, r.text
            assert r.json()["detail"] == "only an owner changes the shop's settings"
        r = await http.put(
            "/v1/policy", json=changed, headers=bearer(token(shop_id, "olga", "owner"))
        )
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["changed_by"]) == (2, "olga")
        r = await http.get("/v1/policy", headers=bearer(token(shop_id, "maria", "service_manager")))
        assert (r.json()["version"], r.json()["changed_by"]) == (2, "olga")
        assert r.json()["policy"]["follow_up_max_attempts"] == 5
        # what GET answered goes back as it was, by the shop's system this time
        r = await http.put("/v1/policy", json=r.json(), headers=auth(key))
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["changed_by"]) == (3, None)
    stored = await services.fetch(
        "SELECT version, changed_by FROM intake.policies WHERE shop_id = $1 ORDER BY version",
        uuid.UUID(shop_id),
    )
    assert [(s["version"], s["changed_by"]) for s in stored] == [(1, None), (2, "olga"), (3, None)]
    rows = await services.fetch(
        "SELECT convert_from(value, 'UTF8')::jsonb AS data FROM intake.outbox"
        " WHERE headers @> $1::jsonb ORDER BY id",
        json.dumps([["shop_id", shop_id], ["ce_type", "regulars.shop.policy_changed.v1"]]),
    )
    events = [json.loads(r["data"]) for r in rows]
    assert [(e["version"], e.get("changed_by")) for e in events] == [
        (1, None),
        (2, "olga"),
        (3, None),
    ]


async def test_events_come_only_with_the_shops_api_key(
    services: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    owner = bearer(token(shop_id, "olga", "owner"))
    event = person(f"c-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(base_url=services.services["intake"].url) as http:
        r = await http.post("/v1/events", json=event, headers=owner)
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == "POST /v1/events takes the shop's API key, not a staff token"
        r = await http.post("/v1/events/batch", json={"events": [event]}, headers=owner)
        assert r.status_code == 403, r.text
        assert "takes the shop's API key, not a staff token" in r.json()["detail"]
        r = await http.post("/v1/events", json=event, headers=auth(key))
        assert r.status_code == 202, r.text


# -- every service -------------------------------------------------------------------------


async def test_a_staff_token_sees_nothing_of_another_shop(
    services: System, shop: tuple[str, str], other_shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    nosy_shop, _nosy_key = other_shop
    task = await new_task(services, key)
    case = await unhappy_case(services, key)
    nosy = bearer(token(nosy_shop, "olga", "owner"))
    async with httpx.AsyncClient(base_url=services.services["followup"].url, headers=nosy) as http:
        r = await http.get("/v1/followups", params={"customer_id": task["customer_id"]})
        assert r.status_code == 200 and r.json()["items"] == []
        r = await http.post(f"/v1/followups/{task['id']}/attempts", json={"outcome": "no_answer"})
        assert r.status_code == 404, r.text
    async with httpx.AsyncClient(base_url=services.services["feedback"].url, headers=nosy) as http:
        r = await http.get("/v1/cases", params={"customer_id": case["customer_id"]})
        assert r.status_code == 200 and r.json()["items"] == []
        assert (await http.get(f"/v1/cases/{case['id']}")).status_code == 404
        r = await http.post(f"/v1/cases/{case['id']}/acknowledge", json={})
        assert r.status_code == 404, r.text
    async with httpx.AsyncClient(base_url=services.services["intake"].url, headers=nosy) as http:
        r = await http.get(f"/v1/customers/{task['customer_id']}")
        assert r.status_code == 404, r.text
    # untouched by any of it
    async with httpx.AsyncClient(base_url=services.services["feedback"].url) as http:
        r = await http.get(f"/v1/cases/{case['id']}", headers=auth(key))
        assert r.json()["status"] == "open"


async def test_an_expired_or_forged_token_is_401_everywhere(
    services: System, shop: tuple[str, str]
) -> None:
    shop_id, _key = shop
    expired = token(shop_id, "olga", "owner", at=datetime.now(UTC) - timedelta(minutes=10))
    forged = staff.mint(
        "a-key-this-installation-never-had-" + "x" * 16,
        StaffPrincipal(uuid.UUID(shop_id), "olga", "owner"),
        datetime.now(UTC),
    )
    for bad in (expired, forged):
        for name, path in (
            ("intake", "/v1/policy"),
            ("followup", "/v1/followups"),
            ("feedback", "/v1/cases"),
        ):
            async with httpx.AsyncClient(base_url=services.services[name].url) as http:
                r = await http.get(path, headers=bearer(bad))
            assert r.status_code == 401, (name, r.text)
            assert r.json()["detail"] == "staff token: expired or not signed by this installation"
            assert r.headers["www-authenticate"].startswith("Bearer")
        async with httpx.AsyncClient(base_url=services.services["intake"].url) as http:
            r = await http.post("/v1/events", json=person("c-1"), headers=bearer(bad))
        assert r.status_code == 401, r.text
