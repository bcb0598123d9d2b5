"""Texts customers send to our number and the provider's delivery reports, end to end:
followup's signed Twilio-compatible hooks against the real database and broker, the
local SMS stand-in posting status callbacks, and `regulars sms reply` playing a customer.

The test signs as the provider does (the ``twilio`` library's RequestValidator, with the
auth token followup has, "local" in embedded mode, over followup's public URL).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from harness import SmsSink, System, auth
from test_followup_flow import tasks
from test_outreach import (
    _async,
    _kind,
    customer,
    messages,
    phone_number,
    visit,
    wait_for,
)
from test_outreach import (
    outreach as outreach,  # the module's fixtures, shared
)
from test_outreach import (
    shop as shop,
)
from twilio.request_validator import RequestValidator

TOKEN = "local"
OUR_NUMBER = "+15555550000"
INBOUND = "/hooks/sms/inbound"
STATUS = "/hooks/sms/status"


def inbound_form(sender: str, body: str, sid: str | None = None) -> dict[str, str]:
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AClocal",
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }


async def post_hook(
    system: System,
    path: str,
    form: dict[str, str],
    *,
    token: str | None = TOKEN,
    signed_url: str | None = None,
) -> httpx.Response:
    """POST as the provider: signed over the public URL (or ``signed_url``), or unsigned."""
    base = system.services["followup"].url
    headers = {}
    if token is not None:
        url = signed_url or base + path
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, form)
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post(path, data=form, headers=headers)


async def ledger(system: System, cid: str) -> list[tuple[str, bool, str]]:
    rows = await system.fetch(
        "SELECT channel, granted, source FROM followup.consent_ledger WHERE customer_id = $1"
        " ORDER BY id",
        cid,
    )
    return [(r["channel"], r["granted"], r["source"]) for r in rows]


async def replies_emitted(system: System, cid: str) -> int:
    rows = await system.fetch(
        "SELECT headers FROM followup.outbox WHERE convert_from(key, 'UTF8') LIKE $1",
        f"%:{cid}",
    )
    return sum(1 for r in rows if "regulars.customer.replied.v1" in json.dumps(r["headers"]))


async def known(system: System, shop_id: str, cid: str) -> bool:
    rows = await system.fetch(
        "SELECT 1 FROM followup.customers WHERE shop_id = $1 AND customer_id = $2",
        uuid.UUID(shop_id),
        cid,
    )
    return bool(rows)


async def texting_customer(system: System, shop: tuple[str, str], number: str) -> str:
    shop_id, key = shop
    cid = await customer(system, key, phone=number, email=None)
    await wait_for(lambda: known(system, shop_id, cid), 30)
    return cid


async def test_a_signed_stop_stops_texts(outreach: System, shop: tuple[str, str]) -> None:
    _shop_id, key = shop
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    r = await post_hook(outreach, INBOUND, inbound_form(number, "STOP"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert "<Response/>" in r.text
    # honoured in the answer's own transaction: no waiting for the topic
    assert await ledger(outreach, cid) == [("sms", False, "reply")]
    assert await replies_emitted(outreach, cid) == 1
    assert outreach.sms is not None
    # the provider confirmed the STOP itself (its default opt-out handling): ours is kept
    # as suppressed with why, never sent, so it cannot fail
    confirmation = await wait_for(lambda: message_of(outreach, key, cid, "opt_out_confirmation"))
    assert confirmation["status"] == "suppressed", confirmation
    assert confirmation["reason"] == "the provider confirms opt-outs"
    # a later message to that customer is not texted
    await visit(outreach, key, cid)
    await wait_for(lambda: tasks(outreach, key, customer_id=cid, status="missed"), 30)
    surveys = await wait_for(lambda: _kind(outreach, key, cid, "survey"), 30)
    assert surveys[0]["status"] == "suppressed" and "opted out of sms" in surveys[0]["reason"]
    await asyncio.sleep(1)
    assert outreach.sms.to(number) == []
    assert [m["status"] for m in await messages(outreach, key, cid)].count("failed") == 0
    # the reply came back from the topic to followup's own consumer: not applied twice
    assert await ledger(outreach, cid) == [("sms", False, "reply")]


async def test_an_unsigned_or_badly_signed_text_is_403_and_changes_nothing(
    outreach: System, shop: tuple[str, str]
) -> None:
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    base = outreach.services["followup"].url
    form = inbound_form(number, "STOP")
    refused = [
        await post_hook(outreach, INBOUND, form, token=None),
        await post_hook(outreach, INBOUND, form, token="not-the-token"),
        # signed for another address than the public one the provider was given
        await post_hook(outreach, INBOUND, form, signed_url="http://10.0.0.7:8002" + INBOUND),
        # a signature for another body
        await post_hook(
            outreach, INBOUND, {**form, "Body": "START"}, signed_url=base + INBOUND + "?x=1"
        ),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "X-Twilio-Signature" in answer.json()["detail"]
    assert await ledger(outreach, cid) == []
    assert await replies_emitted(outreach, cid) == 0
    kept = await outreach.fetch(
        "SELECT 1 FROM followup.inbound_texts WHERE message_sid = $1", form["MessageSid"]
    )
    assert kept == []


async def test_a_replayed_message_sid_acts_once(outreach: System, shop: tuple[str, str]) -> None:
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    form = inbound_form(number, "stop texting me please")
    answers = await asyncio.gather(*(post_hook(outreach, INBOUND, form) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    again = await post_hook(outreach, INBOUND, form)
    assert again.status_code == 200
    assert await ledger(outreach, cid) == [("sms", False, "reply")]
    assert await replies_emitted(outreach, cid) == 1
    assert outreach.sms is not None
    await wait_for(lambda: _async(outreach.sms.to(number)), 30)
    await asyncio.sleep(1)
    assert len(outreach.sms.to(number)) == 1  # one confirmation
    # a new text (a new sid) is news: START restores
    start = await post_hook(outreach, INBOUND, inbound_form(number, "START"))
    assert start.status_code == 200
    assert await ledger(outreach, cid) == [("sms", False, "reply"), ("sms", True, "reply")]


async def message_of(system: System, key: str, cid: str, kind: str) -> dict[str, Any]:
    found = [m for m in await messages(system, key, cid) if m["kind"] == kind]
    return found[0] if found else {}


async def status_is(system: System, key: str, cid: str, kind: str, status: str) -> Any:
    message = await message_of(system, key, cid, kind)
    return message if message.get("status") == status else None


async def test_status_callbacks_move_a_sent_text_to_delivered_or_failed(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    # "help please" is no keyword the provider answers: we send the shop's contact by
    # text, and the stand-in reports on it as the carrier does
    delivered_to = phone_number()
    ok = await texting_customer(outreach, shop, delivered_to)
    assert (
        await post_hook(outreach, INBOUND, inbound_form(delivered_to, "help please"))
    ).status_code == 200
    delivered = await wait_for(lambda: status_is(outreach, key, ok, "help", "delivered"), 30)
    # a late "sent" after "delivered" changes nothing
    (row,) = await outreach.fetch(
        "SELECT provider_id FROM followup.messages WHERE id = $1", uuid.UUID(delivered["id"])
    )
    late = {"MessageSid": row["provider_id"], "MessageStatus": "sent", "AccountSid": "AClocal"}
    answer = await post_hook(outreach, STATUS, late)
    assert answer.status_code == 200, answer.text
    assert (await message_of(outreach, key, ok, "help"))["status"] == "delivered"
    # unsigned: 403, nothing moves
    failed_late = {**late, "MessageStatus": "failed", "ErrorCode": "30008"}
    assert (await post_hook(outreach, STATUS, failed_late, token=None)).status_code == 403
    assert (await message_of(outreach, key, ok, "help"))["status"] == "delivered"

    for number, final, code in (
        (SmsSink.UNREACHABLE, "undelivered", "30003"),
        (SmsSink.FAILING, "failed", "30008"),
    ):
        cid = await texting_customer(outreach, shop, number)
        r = await post_hook(outreach, INBOUND, inbound_form(number, "Help please"))
        assert r.status_code == 200
        message = await wait_for(lambda c=cid, f=final: status_is(outreach, key, c, "help", f), 30)
        assert code in message["reason"], message
        failures = await outreach.fetch(
            "SELECT headers FROM followup.outbox WHERE convert_from(key, 'UTF8') LIKE $1",
            f"%:{cid}",
        )
        assert any("regulars.message.failed.v1" in json.dumps(f["headers"]) for f in failures)


async def test_regulars_sms_reply_plays_a_customer(outreach: System, shop: tuple[str, str]) -> None:
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    assert outreach.sms is not None
    env = outreach.env(
        REGULARS_SMS_URL=outreach.sms.url,
        REGULARS_FOLLOWUP_URL=outreach.services["followup"].url,
    )

    def reply(*more: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "regulars_cli.main", "sms", "reply", "--from", number, *more],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer

    first = await asyncio.to_thread(reply, "--text", "STOP", "--json")
    assert first["status_code"] == 200 and first["message_sid"].startswith("SM")
    assert await ledger(outreach, cid) == [("sms", False, "reply")]
    # the provider retrying the same text: acted on once
    again = await asyncio.to_thread(
        reply, "--text", "STOP", "--sid", first["message_sid"], "--json"
    )
    assert again["status_code"] == 200
    assert await ledger(outreach, cid) == [("sms", False, "reply")]
    kept = await outreach.fetch(
        "SELECT from_number, to_number, body, outcome FROM followup.inbound_texts"
        " WHERE message_sid = $1",
        first["message_sid"],
    )
    assert [(k["from_number"], k["to_number"], k["body"]) for k in kept] == [
        (number, OUR_NUMBER, "STOP")
    ]
    assert cid in kept[0]["outcome"]
    # the provider confirms the STOP and blocks the number (21610 after), as Twilio's
    # default opt-out handling does: we leave the confirmation to it, so none fails
    _shop_id, key = shop
    left = await wait_for(
        lambda: status_is(outreach, key, cid, "opt_out_confirmation", "suppressed"), 30
    )
    assert left["reason"] == "the provider confirms opt-outs"
    await asyncio.sleep(1)
    assert outreach.sms.to(number) == []
    assert "failed" not in [m["status"] for m in await messages(outreach, key, cid)]
    back = await asyncio.to_thread(reply, "--text", "START", "--json")
    assert back["status_code"] == 200
    assert await ledger(outreach, cid) == [("sms", False, "reply"), ("sms", True, "reply")]


async def test_without_the_providers_keyword_handling_our_confirmation_is_sent(
    outreach: System, shop: tuple[str, str]
) -> None:
    """SMS_PROVIDER_CONFIRMS_OPT_OUT=false: followup's handler, as its hook calls it, over
    the real database; the running followup's dispatcher sends what it decided."""
    from regulars_followup import bootstrap
    from regulars_followup.domain.inbound_texts import InboundText
    from regulars_followup.handlers.base import Deps
    from regulars_followup.handlers.texts import ReceiveText
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    _shop_id, key = shop
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    pool = await create_pool(outreach.database_url, "followup", max_size=2)
    try:
        bus = bootstrap.bus(Deps(clock=system_clock, provider_answers_keywords=False), pool)
        sid = "SM" + uuid.uuid4().hex
        received = await bus.handle(
            ReceiveText(InboundText(sid, "AClocal", number, OUR_NUMBER, "STOP"))
        )
    finally:
        await pool.close()
    assert received.replied and await ledger(outreach, cid) == [("sms", False, "reply")]
    assert outreach.sms is not None
    sent = await wait_for(lambda: _async(outreach.sms.to(number)), 30)
    assert len(sent) == 1 and sent[0]["body"]
    confirmation = await message_of(outreach, key, cid, "opt_out_confirmation")
    assert confirmation["status"] in ("sent", "delivered"), confirmation


async def test_the_hooks_bound_their_bodies_and_rate(
    outreach: System, shop: tuple[str, str]
) -> None:
    number = phone_number()
    await texting_customer(outreach, shop, number)
    huge = inbound_form(number, "x" * 20_000)
    assert (await post_hook(outreach, INBOUND, huge)).status_code == 413
    # at once: 10 from one number, then 1 a second (every replica together), however
    # long each text takes to handle on a loaded machine
    answered = await asyncio.gather(
        *(post_hook(outreach, INBOUND, inbound_form(number, f"note {i}")) for i in range(14))
    )
    answers = [a.status_code for a in answered]
    assert 10 <= answers.count(200) <= 11 and 429 in answers, answers
    shed = next(a for a in answered if a.status_code == 429)
    assert shed.json()["limit"] == "texts from one number" and int(shed.headers["retry-after"]) >= 1
    async with httpx.AsyncClient(base_url=outreach.services["followup"].url) as http:
        r = await http.post(INBOUND, json={"From": number})
    assert r.status_code == 415


@pytest.fixture(autouse=True, scope="module")
def _sink_is_running(outreach: System) -> None:
    assert outreach.sms is not None and outreach.sms.proc.poll() is None


async def test_a_texted_complaint_reaches_feedback_as_the_customers_reply(
    outreach: System, shop: tuple[str, str]
) -> None:
    _shop_id, key = shop
    number = phone_number()
    cid = await texting_customer(outreach, shop, number)
    complaint = "The brakes are grinding worse than before, I'm really unhappy"
    assert (await post_hook(outreach, INBOUND, inbound_form(number, complaint))).status_code == 200
    found = await wait_for(lambda: feedback_cases(outreach, key, cid), 30)
    assert found[0]["customer_id"] == cid
    assert await ledger(outreach, cid) == []  # a complaint is no opt-out


async def feedback_cases(system: System, key: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.services["feedback"].url) as http:
        r = await http.get("/v1/cases", params={"customer_id": cid}, headers=auth(key))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items
