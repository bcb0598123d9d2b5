"""Follow-up and outreach end to end, with a short policy (delays of seconds, open all day):
a missed call falls back to a survey by email or text, STOP is honoured at once, and no
message goes out twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from harness import System, auth
from test_followup_flow import _authorised, post, tasks, wait_for

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
SHORT = {
    "business_hours": ALL_DAY,
    "follow_up_delay": "PT1S",
    "follow_up_missed_after": "PT2S",
    "contact": {
        "name": "Quick Lube",
        "phone": "+15125550123",
        "postal_address": "1 Main St, Springfield",
    },
}


def daytime_zone() -> str:
    """A zone where it is early afternoon now, so quiet hours never hold the test's texts."""
    offset = (13 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 12 else offset
    # Etc/GMT zones have the POSIX sign: Etc/GMT-3 is UTC+3.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"


@pytest.fixture(scope="module")
async def outreach(running: System) -> System:
    if "feedback" not in running.services or running.services["feedback"].proc.poll() is not None:
        running.start("feedback")
    return running


@pytest.fixture(scope="module")
async def shop(outreach: System) -> tuple[str, str]:
    created = await outreach.create_shop("Quick Lube", "America/New_York", policy=SHORT)
    await wait_for(lambda: _authorised(outreach, created[1]))
    return created


async def customer(
    system: System,
    key: str,
    *,
    phone: str | None,
    email: str | None,
    sms_consent: bool | None = None,
) -> str:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    data: dict[str, Any] = {"customer_id": cid, "name": "Robin Quick", "timezone": daytime_zone()}
    if phone:
        data["phone"] = phone
    if email:
        data["email"] = email
    if sms_consent is not None:
        data["consent"] = {"sms": sms_consent}
    r = await post(
        system,
        key,
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": data,
        },
    )
    assert r.status_code == 202, r.text
    return cid


async def visit(system: System, key: str, cid: str, ro: str | None = None) -> str:
    ro = ro or f"ro-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    r = await post(
        system,
        key,
        {
            "type": "service.completed",
            "id": f"done-{ro}",
            "occurred_at": now,
            "data": {
                "repair_order_id": ro,
                "customer_id": cid,
                "completed_at": now,
                "advisor": "sam",
            },
        },
    )
    assert r.status_code == 202, r.text
    return ro


async def messages(system: System, key: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        r = await http.get("/v1/messages", params={"customer_id": cid}, headers=auth(key))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


def phone_number() -> str:
    # a number in use in Austin (intake refuses one that is not): 512, then 2-9 and 6 more
    n = uuid.uuid4().int
    return f"+1512{2 + n % 8}{n // 8 % 1_000_000:06d}"


async def test_missed_by_timer_falls_back_to_a_survey_by_email(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    cid = await customer(outreach, key, phone=None, email=address)
    await visit(outreach, key, cid)
    missed = await wait_for(lambda: tasks(outreach, key, customer_id=cid, status="missed"), 30)
    assert missed[0]["status_reason"] == "no_attempt_in_time"
    assert outreach.mail is not None
    mails = await wait_for(lambda: _async(outreach.mail.to(address)), 30)
    assert len(mails) == 1
    body = mails[0].get_body(("plain",)).get_content()
    assert "/s/" in body and "Robin" in body
    assert "List-Unsubscribe" in mails[0]
    sent = await messages(outreach, key, cid)
    assert [(m["kind"], m["channel"], m["status"]) for m in sent] == [("survey", "email", "sent")]


async def test_missed_by_three_attempts_falls_back_to_a_survey_by_text(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    number = phone_number()
    cid = await customer(outreach, key, phone=number, email=None)
    await visit(outreach, key, cid)
    task = (await wait_for(lambda: tasks(outreach, key, customer_id=cid)))[0]
    async with httpx.AsyncClient(
        base_url=outreach.services["followup"].url, headers=auth(key)
    ) as http:
        for outcome in ("no_answer", "voicemail", "no_answer"):
            r = await http.post(f"/v1/followups/{task['id']}/attempts", json={"outcome": outcome})
            assert r.status_code == 201, r.text
    assert r.json()["task"]["status"] == "missed"
    assert outreach.sms is not None
    survey = await wait_for(lambda: _kind(outreach, key, cid, "survey"), 30)
    await wait_for(lambda: _sent(outreach, key, cid), 30)
    assert survey[0]["channel"] == "sms", survey
    texts = await wait_for(lambda: _async(outreach.sms.to(number)), 30)
    assert len(texts) == 1 and "/s/" in texts[0]["body"] and "STOP" in texts[0]["body"]


async def test_stop_is_honoured_at_once_with_one_confirmation(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    number = phone_number()
    cid = await customer(outreach, key, phone=number, email=None)
    r = await post(
        outreach,
        key,
        {
            "type": "customer.replied",
            "id": f"stop-{cid}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"customer_id": cid, "channel": "sms", "text": "Stop"},
        },
    )
    assert r.status_code == 202
    assert outreach.sms is not None
    confirmation = await wait_for(lambda: _async(outreach.sms.to(number)), 30)
    assert len(confirmation) == 1 and "STOP" not in confirmation[0]["body"].split("\n")[-1:]
    # A survey after the opt-out: suppressed on SMS, and this customer has no email.
    await visit(outreach, key, cid)
    await wait_for(lambda: tasks(outreach, key, customer_id=cid, status="missed"), 30)
    surveys = await wait_for(lambda: _kind(outreach, key, cid, "survey"), 30)
    assert surveys[0]["status"] == "suppressed" and "opted out of sms" in surveys[0]["reason"]
    await asyncio.sleep(1)
    assert len(outreach.sms.to(number)) == 1
    ledger = await outreach.fetch(
        "SELECT channel, granted, source FROM followup.consent_ledger WHERE customer_id = $1", cid
    )
    assert [(r["channel"], r["granted"], r["source"]) for r in ledger] == [("sms", False, "reply")]


async def test_a_resent_visit_or_survey_never_messages_twice(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    cid = await customer(outreach, key, phone=None, email=address)
    ro = await visit(outreach, key, cid)
    now = datetime.now(UTC).isoformat()
    r = await post(
        outreach,
        key,
        {
            "type": "service.completed",
            "id": f"again-{ro}",
            "occurred_at": now,
            "data": {"repair_order_id": ro, "customer_id": cid, "completed_at": now},
        },
    )
    assert r.status_code == 202
    assert outreach.mail is not None
    await wait_for(lambda: _async(outreach.mail.to(address)), 30)
    await asyncio.sleep(3)
    assert len(outreach.mail.to(address)) == 1
    assert len(await messages(outreach, key, cid)) == 1


async def _kind(system: System, key: str, cid: str, kind: str) -> list[dict[str, Any]]:
    return [m for m in await messages(system, key, cid) if m["kind"] == kind]


async def _sent(system: System, key: str, cid: str) -> Any:
    found = await messages(system, key, cid)
    if any(m["status"] not in ("scheduled", "held", "due", "sending", "sent") for m in found):
        raise AssertionError(f"message not sent: {found}")
    return [m for m in found if m["status"] == "sent"]


async def _async(value: Any) -> Any:
    return value


async def test_kill_followup_while_timers_fire_each_fires_once_in_effect(
    outreach: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    numbers = {}
    for _ in range(40):
        number = phone_number()
        numbers[await customer(outreach, key, phone=number, email=None)] = number
    for cid in numbers:
        await visit(outreach, key, cid)
    followup = outreach.services["followup"]
    await asyncio.sleep(2.5)  # the first missed timers are firing now
    followup.kill()
    await asyncio.sleep(1.0)
    followup.start()
    followup.wait_healthy(60)
    assert outreach.sms is not None
    for number in numbers.values():
        await wait_for(lambda n=number: _async(outreach.sms.to(n)), 90)  # type: ignore[misc]
    await asyncio.sleep(2)
    for number in numbers.values():
        assert len(outreach.sms.to(number)) == 1, number
    missed = await outreach.fetch(
        "SELECT convert_from(value, 'UTF8')::jsonb->>'customer_id' AS cid, count(*) AS n"
        " FROM followup.outbox WHERE headers @> $1::jsonb GROUP BY 1",
        f'[["shop_id", "{shop_id}"], ["ce_type", "regulars.followup.missed.v1"]]',
    )
    per_customer = {r["cid"]: r["n"] for r in missed}
    assert all(per_customer.get(cid) == 1 for cid in numbers), per_customer
    surveys = await outreach.fetch(
        "SELECT customer_id, count(*) AS n FROM feedback.surveys WHERE shop_id = $1 GROUP BY 1",
        uuid.UUID(shop_id),
    )
    assert all(r["n"] == 1 for r in surveys if r["customer_id"] in numbers)


async def test_monthly_check_on_demand_and_on_the_calendar(outreach: System) -> None:
    import subprocess
    import sys
    from zoneinfo import ZoneInfo

    policy = {**SHORT, "contact": {**SHORT["contact"], "postal_address": "1 Main St, Springfield"}}
    shop_id, key = await outreach.create_shop("Sweep Garage", "America/Denver", policy=policy)
    await wait_for(lambda: _authorised(outreach, key))
    today = datetime.now(UTC)
    born = f"1985-{today.month:02d}-15"
    birthday_mail = f"b-{uuid.uuid4().hex[:6]}@example.com"
    oil_mail = f"o-{uuid.uuid4().hex[:6]}@example.com"
    for cid, mail, extra in (
        ("c-birthday", birthday_mail, {"birthday": born}),
        ("c-oil", oil_mail, {}),
    ):
        r = await post(
            outreach,
            key,
            {
                "type": "customer.upserted",
                "id": f"up-{cid}",
                "occurred_at": today.isoformat(),
                "data": {
                    "customer_id": cid,
                    "name": "Sam Sweep",
                    "email": mail,
                    "timezone": daytime_zone(),
                    **extra,
                },
            },
        )
        assert r.status_code == 202, r.text
    long_ago = (today - timedelta(days=200)).isoformat()
    r = await post(
        outreach,
        key,
        {
            "type": "service.completed",
            "id": "oil-1",
            "occurred_at": long_ago,
            "data": {
                "repair_order_id": "oil-1",
                "customer_id": "c-oil",
                "completed_at": long_ago,
                "mileage": 40000,
                "work_performed": "Oil and filter change",
            },
        },
    )
    assert r.status_code == 202
    await wait_for(lambda: _visit_known(outreach, shop_id, "oil-1"))

    def sweep() -> str:
        out = subprocess.run(
            [sys.executable, "-m", "regulars_cli.main", "sweep", "--shop", shop_id],
            env=outreach.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    assert "1 birthday" in sweep()
    first = await _all_kinds(outreach, key)
    assert ("c-birthday", "birthday") in first and ("c-oil", "reminder") in first
    assert "nothing new" in sweep()
    assert outreach.mail is not None
    await wait_for(lambda: _async(outreach.mail.to(oil_mail)), 30)
    reminder = outreach.mail.to(oil_mail)[0]
    assert "oil change" in reminder.get_body(("plain",)).get_content().lower()
    planned = await outreach.fetch(
        "SELECT fire_at FROM followup.timers"
        " WHERE kind = 'followup.monthly_check' AND shop_id = $1",
        uuid.UUID(shop_id),
    )
    assert len(planned) == 1
    local = planned[0]["fire_at"].astimezone(ZoneInfo("America/Denver"))
    assert (local.day, local.hour, local.minute) == (1, 8, 0) and local > today


async def _visit_known(system: System, shop_id: str, ro: str) -> bool:
    rows = await system.fetch(
        "SELECT 1 FROM followup.visits WHERE shop_id = $1 AND repair_order_id = $2",
        uuid.UUID(shop_id),
        ro,
    )
    return bool(rows)


async def _all_kinds(system: System, key: str) -> list[tuple[str, str]]:
    out = []
    for cid in ("c-birthday", "c-oil"):
        out += [(cid, m["kind"]) for m in await messages(system, key, cid)]
    return out


async def test_commercial_email_needs_the_shops_postal_address(outreach: System) -> None:
    import subprocess
    import sys

    no_address = {**SHORT, "contact": {"name": "No Address Auto"}}
    shop_id, key = await outreach.create_shop("No Address Auto", "UTC", policy=no_address)
    await wait_for(lambda: _authorised(outreach, key))
    month = datetime.now(UTC).month
    r = await post(
        outreach,
        key,
        {
            "type": "customer.upserted",
            "id": "up-bday",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {
                "customer_id": "c-bday",
                "name": "Bo Day",
                "email": "bo@example.com",
                "birthday": f"1990-{month:02d}-02",
            },
        },
    )
    assert r.status_code == 202
    await wait_for(lambda: _customer_known(outreach, shop_id, "c-bday"))
    subprocess.run(
        [sys.executable, "-m", "regulars_cli.main", "sweep", "--shop", shop_id],
        env=outreach.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = await messages(outreach, key, "c-bday")
    assert [(m["kind"], m["status"]) for m in found] == [("birthday", "suppressed")]
    assert "postal_address" in found[0]["reason"]


async def _customer_known(system: System, shop_id: str, cid: str) -> bool:
    rows = await system.fetch(
        "SELECT 1 FROM followup.customers WHERE shop_id = $1 AND customer_id = $2",
        uuid.UUID(shop_id),
        cid,
    )
    return bool(rows)
