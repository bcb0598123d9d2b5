"""A shop's API keys and its customers' contact data, against the four real services.

Keys: issued, listed and revoked over intake's API and with the `regulars keys` command; a
revoked key stops on every service within 30 seconds, the shop's last key never can be
revoked. Contact data: a phone posted as staff typed it reaches every service in E.164
(followup's call list), an unusable one is a 422 naming the field.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from harness import System, auth, wait_for

#: what each service answers only with a good key
READS = {
    "intake": "/v1/policy",
    "followup": "/v1/followups",
    "feedback": "/v1/cases",
    "loyalty": "/v1/customers",
}


@pytest.fixture(scope="module")
async def four(running: System) -> System:
    for name in ("feedback", "loyalty"):
        svc = running.services.get(name)
        if svc is None or svc.proc is None or svc.proc.poll() is not None:
            running.start(name)
    return running


async def status_everywhere(system: System, key: str) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=5) as http:
        answers = await asyncio.gather(
            *(
                http.get(system.services[name].url + path, headers=auth(key))
                for name, path in READS.items()
            )
        )
    return {name: r.status_code for name, r in zip(READS, answers, strict=True)}


async def works_everywhere(system: System, key: str) -> bool:
    return set((await status_everywhere(system, key)).values()) == {200}


def cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regulars_cli.main", *args],
        env=system.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_keys_over_the_api_issue_list_and_revoke_everywhere_within_30_s(
    four: System,
) -> None:
    _shop_id, first = await four.create_shop("Key Ring Auto")
    await wait_for(lambda: works_everywhere(four, first), 30)
    intake = four.services["intake"].url
    async with httpx.AsyncClient(base_url=intake, timeout=10) as http:
        r = await http.post("/v1/keys", json={"label": "Tekmetric"}, headers=auth(first))
        assert r.status_code == 201, r.text
        issued = r.json()
        second = issued["api_key"]
        assert second.startswith(f"rk_{issued['key_id']}_") and issued["label"] == "Tekmetric"
        assert issued["revoked_at"] is None
        await wait_for(lambda: works_everywhere(four, second), 30)

        listed = (await http.get("/v1/keys", headers=auth(second))).json()
        first_id = first.split("_", 2)[1]
        assert [k["key_id"] for k in listed["items"]] == [first_id, issued["key_id"]]
        assert all("api_key" not in k and "secret" not in json.dumps(k) for k in listed["items"])
        assert first.split("_", 2)[2] not in r.text + json.dumps(listed)
        used = {k["key_id"]: k["last_used_at"] for k in listed["items"]}
        this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        assert datetime.fromisoformat(used[first_id]) == this_hour, used  # coarse: the hour
        page = (await http.get("/v1/keys", params={"limit": 1}, headers=auth(first))).json()
        assert [k["key_id"] for k in page["items"]] == [first_id] and page["next_cursor"]
        rest = await http.get(
            "/v1/keys", params={"limit": 1, "cursor": page["next_cursor"]}, headers=auth(first)
        )
        assert [k["key_id"] for k in rest.json()["items"]] == [issued["key_id"]]

        # not with itself (a script would lock itself out midway)
        r = await http.post(f"/v1/keys/{first_id}/revoke", headers=auth(first))
        assert r.status_code == 409 and "signed with" in r.json()["detail"], r.text
        # revoke the first key with the second: it stops on all four services
        revoked_at = time.monotonic()
        r = await http.post(f"/v1/keys/{first_id}/revoke", headers=auth(second))
        assert r.status_code == 200, r.text
        first_revoked_at = r.json()["revoked_at"]
        assert first_revoked_at is not None
        stopped: dict[str, float] = {}

        async def stopped_everywhere() -> bool:
            for name, status in (await status_everywhere(four, first)).items():
                if status == 401:
                    stopped.setdefault(name, time.monotonic() - revoked_at)
            return len(stopped) == len(READS)

        await wait_for(stopped_everywhere, 30, every=0.25)
        assert set(stopped) == set(READS) and max(stopped.values()) <= 30, stopped
        print(f"revoked key refused after (s): { {k: round(v, 1) for k, v in stopped.items()} }")
        assert await works_everywhere(four, second), "the other key goes on working"
        # once revoked it stays revoked (the cache expired long ago on every replica)
        assert set((await status_everywhere(four, first)).values()) == {401}

        # the last key in use cannot go; revoking again changes nothing
        r = await http.post(f"/v1/keys/{issued['key_id']}/revoke", headers=auth(second))
        assert r.status_code == 409, r.text
        assert "only key" in r.json()["detail"]
        again = await http.post(f"/v1/keys/{first_id}/revoke", headers=auth(second))
        assert again.status_code == 200 and again.json()["revoked_at"] == first_revoked_at
        assert await works_everywhere(four, second)


async def test_a_shop_sees_and_revokes_no_key_of_another_shop(four: System) -> None:
    _mine, my_key = await four.create_shop("Mine Motors")
    _theirs, their_key = await four.create_shop("Theirs Motors")
    async with httpx.AsyncClient(base_url=four.services["intake"].url, timeout=10) as http:
        made = await http.post("/v1/keys", headers=auth(their_key))
        assert made.status_code == 201, made.text  # no body: a key without a label
        spare = made.json()
        r = await http.post(f"/v1/keys/{spare['key_id']}/revoke", headers=auth(my_key))
        assert r.status_code == 404, r.text
        mine = (await http.get("/v1/keys", headers=auth(my_key))).json()["items"]
        assert spare["key_id"] not in [k["key_id"] for k in mine]
        assert (await http.get("/v1/policy", headers=auth(spare["api_key"]))).status_code == 200
        assert (
            await http.get("/v1/keys", headers={"Authorization": "Bearer rk_x"})
        ).status_code == 401
        bad = await http.post("/v1/keys", json={"label": "x" * 101}, headers=auth(my_key))
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "label"


async def test_keys_with_the_cli_issue_list_and_revoke(four: System) -> None:
    shop_id, first = await four.create_shop("Command Line Garage")
    out = cli(four, "keys", "issue", "--shop", shop_id, "--label", "reports", "--json")
    assert out.returncode == 0, out.stderr
    issued = json.loads(out.stdout)
    await wait_for(lambda: works_everywhere(four, issued["api_key"]), 30)

    listed = cli(four, "keys", "list", "--shop", shop_id, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    first_id = first.split("_", 2)[1]
    assert [r["key_id"] for r in rows] == [first_id, issued["key_id"]]
    assert issued["api_key"].split("_", 2)[2] not in listed.stdout
    text = cli(four, "keys", "list", "--shop", shop_id)
    assert "reports" in text.stdout and "active" in text.stdout and "never" in text.stdout

    gone = cli(four, "keys", "revoke", "--shop", shop_id, issued["key_id"])
    assert gone.returncode == 0 and "revoked" in gone.stdout, gone.stderr
    await wait_for(lambda: _refused_everywhere(four, issued["api_key"]), 30, every=0.25)
    assert await works_everywhere(four, first)
    last = cli(four, "keys", "revoke", "--shop", shop_id, first_id)
    assert last.returncode == 1 and "only key" in last.stderr
    other = cli(four, "keys", "revoke", "--shop", shop_id, "0123456789abcdef")
    assert other.returncode == 1 and "no API key" in other.stderr
    assert "revoked" in cli(four, "keys", "list", "--shop", shop_id).stdout


async def _refused_everywhere(system: System, key: str) -> bool:
    return set((await status_everywhere(system, key)).values()) == {401}


# -- contact data ------------------------------------------------------------------------


def customer(cid: str, **data: Any) -> dict[str, Any]:
    return {
        "type": "customer.upserted",
        "id": f"cust-{cid}",
        "occurred_at": "2026-11-20T10:00:00-06:00",
        "data": {"customer_id": cid, "name": "Dana Whitfield", **data},
    }


async def test_a_national_phone_reaches_followup_in_e164(four: System) -> None:
    _shop, key = await four.create_shop("Austin Auto", "America/Chicago")
    cid = f"c-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).isoformat()
    async with httpx.AsyncClient(base_url=four.services["intake"].url, timeout=10) as http:
        r = await http.post(
            "/v1/events",
            json=customer(cid, phone="(512) 555-0142", state="tx", timezone="america/chicago"),
            headers=auth(key),
        )
        assert r.status_code == 202, r.text
        r = await http.post(
            "/v1/events",
            json={
                "type": "service.completed",
                "id": f"ro-{cid}",
                "occurred_at": now,
                "data": {"repair_order_id": f"ro-{cid}", "customer_id": cid, "completed_at": now},
            },
            headers=auth(key),
        )
        assert r.status_code == 202, r.text
        stored = (await http.get(f"/v1/customers/{cid}", headers=auth(key))).json()
        assert (stored["phone"], stored["state"], stored["timezone"]) == (
            "+15125550142",
            "TX",
            "America/Chicago",
        )

    async def call_list() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=four.services["followup"].url) as http:
            r = await http.get("/v1/followups", params={"customer_id": cid}, headers=auth(key))
            items: list[dict[str, Any]] = r.json()["items"]
            return items

    [task] = await wait_for(call_list, 30)
    assert task["customer_phone"] == "+15125550142"

    async def phones() -> list[str] | None:
        rows = await four.fetch(
            "SELECT phone FROM followup.customers WHERE customer_id = $1 UNION ALL"
            " SELECT phone FROM loyalty.customers WHERE customer_id = $1",
            cid,
        )
        found = [r["phone"] for r in rows]
        return found if len(found) == 2 and None not in found else None

    assert await wait_for(phones, 30) == ["+15125550142", "+15125550142"]


async def test_a_shop_abroad_reads_national_numbers_in_its_country(four: System) -> None:
    _shop, key = await four.create_shop("Camden Motors", "Europe/London", policy={"country": "GB"})
    async with httpx.AsyncClient(base_url=four.services["intake"].url, timeout=10) as http:
        r = await http.post(
            "/v1/events", json=customer("uk-1", phone="020 7946 0958"), headers=auth(key)
        )
        assert r.status_code == 202, r.text
        r = await http.post(
            "/v1/events",
            json=customer("us-1", phone="(512) 555-0142", country="US"),
            headers=auth(key),
        )
        assert r.status_code == 202, r.text
        phones = [
            (await http.get(f"/v1/customers/{c}", headers=auth(key))).json()["phone"]
            for c in ("uk-1", "us-1")
        ]
        assert phones == ["+442079460958", "+15125550142"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"phone": "555-0100"}, "data.phone"),
        ({"phone": "call after 5"}, "data.phone"),
        ({"phone": "+1 512 555"}, "data.phone"),
        ({"email": "d@example.com", "timezone": "Central Time"}, "data.timezone"),
        ({"email": "d@example.com", "state": "ZZ"}, "data.state"),
        ({"phone": "(512) 555-0142", "country": "XX"}, "data.country"),
    ],
)
async def test_unusable_contact_data_is_a_422_naming_the_field(
    four: System, data: dict[str, Any], field: str
) -> None:
    _shop, key = await contact_shop(four)
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=four.services["intake"].url, timeout=10) as http:
        r = await http.post("/v1/events", json=customer(cid, **data), headers=auth(key))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field]
        # in a batch, that event alone is refused, the same way
        batch = await http.post(
            "/v1/events/batch",
            json={"events": [customer(cid, **data), customer(f"{cid}-ok", phone="5125550143")]},
            headers=auth(key),
        )
        refused, accepted = batch.json()["results"]
        assert refused["status"] == "rejected" and refused["code"] == 422
        assert [e["field"] for e in refused["errors"]] == [field]
        assert accepted["status"] == "accepted"
        # nothing of the refused one was kept: corrected, the same id is accepted
        assert (await http.get(f"/v1/customers/{cid}", headers=auth(key))).status_code == 404
        fixed = await http.post(
            "/v1/events", json=customer(cid, phone="(512) 555-0142"), headers=auth(key)
        )
        assert fixed.status_code == 202 and fixed.json()["status"] == "accepted", fixed.text


_CONTACT_SHOP: list[tuple[str, str]] = []


async def contact_shop(system: System) -> tuple[str, str]:
    if not _CONTACT_SHOP:
        _CONTACT_SHOP.append(await system.create_shop("Contact Checks Garage"))
    return _CONTACT_SHOP[0]
