"""Feedback and service recovery end to end, through intake, followup and feedback
processes, with a short policy (open all day, SLA windows of seconds):

- an unhappy call opens one critical case that escalates advisor -> service manager ->
  owner as its windows pass, then is acknowledged and resolved with an outcome;
- a survey answer of NPS 2 opens one high case, however often it is submitted;
- every answer gets a review ask (no gating) unless a case is open; promoters a referral;
- kill -9 of feedback while SLAs run out: each case escalates exactly once per level.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from harness import System, auth
from test_followup_flow import post, tasks, wait_for

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@quick.example"},
    {"id": "maria", "name": "Maria Lopez", "role": "service_manager", "email": "maria@q.example"},
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@quick.example"},
]
POLICY = {
    "business_hours": ALL_DAY,
    "ack_sla_critical": "PT3S",
    "ack_sla": "PT6S",
    "resolve_sla": "PT60S",
    "follow_up_missed_after": "PT1H",
    "recovery_check_in_after": "PT2S",
    "staff": STAFF,
    "contact": {
        "name": "Quick & Sons <Auto>",
        "phone": "+15125550123",
        "postal_address": "1 Main St, Springfield",
        "review_url": "https://g.page/r/quick-and-sons/review",
    },
}


@pytest.fixture(scope="module")
async def feedback(running: System) -> System:
    svc = running.services.get("feedback")
    if svc is None or svc.proc is None or svc.proc.poll() is not None:
        running.start("feedback")
    return running


@pytest.fixture(scope="module")
async def shop(feedback: System) -> tuple[str, str]:
    created = await feedback.create_shop("Quick & Sons", "America/New_York", policy=POLICY)
    await wait_for(lambda: _ready(feedback, *created), 30)
    return created


async def _ready(system: System, shop_id: str, key: str) -> bool:
    """The shop's key and its policy (with the staff) have reached feedback."""
    if not await _authorised(system, key):
        return False
    rows = await system.fetch(
        "SELECT policy::text AS policy FROM feedback.shop_policies WHERE shop_id = $1",
        uuid.UUID(shop_id),
    )
    staff = json.loads(rows[0]["policy"]).get("staff") if rows else None
    return bool(staff) and [m["id"] for m in staff] == [m["id"] for m in STAFF]


# -- helpers ------------------------------------------------------------------------------------


async def customer_with_visit(system: System, key: str, advisor: str = "sam") -> tuple[str, str]:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    ro = f"ro-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    r = await post(
        system,
        key,
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": now,
            "data": {"customer_id": cid, "name": "Robin Quick", "email": f"{cid}@example.com"},
        },
    )
    assert r.status_code == 202, r.text
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
                "advisor": advisor,
                "work_performed": "front brake pads",
            },
        },
    )
    assert r.status_code == 202, r.text
    return cid, ro


async def call(system: System, key: str, cid: str, **body: Any) -> None:
    """Staff reach the customer on the follow-up call and record how it went."""
    task = (await wait_for(lambda: tasks(system, key, customer_id=cid), 30))[0]
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        r = await http.post(
            f"/v1/followups/{task['id']}/attempts",
            json={"outcome": "reached", **body},
            headers=auth(key),
        )
    assert r.status_code == 201, r.text


async def cases(system: System, key: str, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.services["feedback"].url) as http:
        r = await http.get("/v1/cases", params=params, headers=auth(key))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def one_case(system: System, key: str, cid: str) -> dict[str, Any]:
    found = await wait_for(lambda: cases(system, key, customer_id=cid), 30)
    assert len(found) == 1, found
    case: dict[str, Any] = found[0]
    return case


async def surveys(system: System, key: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.services["feedback"].url) as http:
        r = await http.get("/v1/surveys", params={"customer_id": cid}, headers=auth(key))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def surveyed(system: System, key: str, satisfied: bool = True) -> tuple[str, str, str]:
    """A customer after a follow-up call: (customer id, repair order, survey token)."""
    cid, ro = await customer_with_visit(system, key)
    await call(system, key, cid, satisfied=satisfied, notes="all fine")
    survey = (await wait_for(lambda: surveys(system, key, cid), 30))[0]
    return cid, ro, survey["token"]


async def answer(system: System, token: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=system.services["feedback"].url) as http:
        return await http.post(f"/v1/surveys/{token}/responses", json=body)


async def emitted(system: System, shop_id: str, ce_type: str) -> list[dict[str, Any]]:
    """The data of every event of ``ce_type`` feedback emitted for the shop, in order."""
    rows = await system.fetch(
        "SELECT convert_from(value, 'UTF8') AS data FROM feedback.outbox"
        " WHERE headers @> $1::jsonb ORDER BY id",
        json.dumps([["shop_id", shop_id], ["ce_type", ce_type]]),
    )
    return [json.loads(r["data"]) for r in rows]


async def of_customer(system: System, shop_id: str, ce_type: str, cid: str) -> list[Any]:
    return [e for e in await emitted(system, shop_id, ce_type) if e["customer_id"] == cid]


async def case_at(system: System, key: str, cid: str, level: str) -> dict[str, Any] | None:
    found = await cases(system, key, customer_id=cid)
    return found[0] if found and found[0]["escalation_level"] == level else None


# -- the tests -------------------------------------------------------------------------------


async def test_an_unhappy_call_opens_a_critical_case_that_climbs_the_ladder(
    feedback: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    cid, ro = await customer_with_visit(feedback, key)
    await call(feedback, key, cid, satisfied=False, score=2, notes="brakes feel unsafe")

    case = await one_case(feedback, key, cid)
    assert case["severity"] == "critical" and case["repair_order_id"] == ro
    window = datetime.fromisoformat(case["ack_due_at"]) - datetime.fromisoformat(case["opened_at"])
    assert window == timedelta(seconds=3)
    opened = await of_customer(feedback, shop_id, "regulars.recovery_case.opened.v1", cid)
    assert len(opened) == 1 and opened[0]["assignee_email"] == "sam@quick.example"
    assert (opened[0]["assignee"], opened[0]["escalation_level"]) == ("sam", "advisor")
    negative = await of_customer(feedback, shop_id, "regulars.feedback.negative.v1", cid)
    assert [n["source"] for n in negative] == ["follow_up_call"]
    assert negative[0]["incident_key"] == f"{cid}|ro:{ro}"

    manager = await wait_for(lambda: case_at(feedback, key, cid, "service_manager"), 15)
    assert manager["assignee"] == "maria"
    owner = await wait_for(lambda: case_at(feedback, key, cid, "owner"), 15)
    assert owner["assignee"] == "olga"

    escalated = await of_customer(feedback, shop_id, "regulars.recovery_case.escalated.v1", cid)
    assert [(e["from_level"], e["to_level"], e["clock"]) for e in escalated] == [
        ("advisor", "service_manager", "acknowledge"),
        ("service_manager", "owner", "acknowledge"),
    ]
    assert [e["assignee_email"] for e in escalated] == ["maria@q.example", "olga@quick.example"]
    # followup tells each person the case reached, by email, as it escalates.
    assert feedback.mail is not None
    for person in ("sam@quick.example", "maria@q.example", "olga@quick.example"):
        notices = await wait_for(lambda p=person: _mail_to(feedback, p, cid), 30)
        assert notices, person
    escalation_notices = [
        m
        for m in feedback.mail.to("maria@q.example")
        if "Escalated to you" in str(m["Subject"]) and cid in str(m["Subject"])
    ]
    assert len(escalation_notices) == 1
    at_risk = await of_customer(feedback, shop_id, "regulars.recovery_case.sla_at_risk.v1", cid)
    assert at_risk and all(e["clock"] == "acknowledge" for e in at_risk)

    async with httpx.AsyncClient(
        base_url=feedback.services["feedback"].url, headers=auth(key)
    ) as http:
        path = f"/v1/cases/{case['id']}"
        r = await http.post(f"{path}/acknowledge", json={"by": "olga", "note": "calling now"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "olga"
        assert (await http.post(f"{path}/acknowledge")).status_code == 200  # again: no change
        missing = await http.post(f"{path}/resolve", json={"by": "olga"})
        assert missing.status_code == 422 and "outcome" in missing.json()["detail"]
        blank = await http.post(f"{path}/resolve", json={"outcome": "  "})
        assert blank.status_code == 422 and "outcome" in blank.json()["detail"]
        r = await http.post(
            f"{path}/comments", json={"text": "customer comes in at 3", "by": "olga"}
        )
        assert r.status_code == 201, r.text
        r = await http.post(
            f"{path}/resolve", json={"outcome": "re-bled the brakes, no charge", "by": "olga"}
        )
        assert r.status_code == 200, r.text
        resolved = r.json()
        assert resolved["status"] == "resolved"
        assert resolved["outcome"] == "re-bled the brakes, no charge"
        kinds = [h["kind"] for h in resolved["history"]]
        assert kinds[0] == "opened" and kinds[-1] == "resolved"
        assert kinds.count("escalated") == 2
        assert {"sla_at_risk", "acknowledged", "comment"} <= set(kinds)
        assert (await http.post(f"{path}/resolve", json={"outcome": "again"})).status_code == 409
        assert (await http.post(f"{path}/acknowledge")).status_code == 409
        assert (await http.post(f"/v1/cases/{uuid.uuid4()}/acknowledge")).status_code == 404
        assert (await http.post("/v1/cases/not-a-case/resolve", json={})).status_code == 404
        listed = await http.get("/v1/cases", params={"status": "resolved", "customer_id": cid})
        assert [c["id"] for c in listed.json()["items"]] == [case["id"]]
        assert (await http.get("/v1/cases", params={"status": "closed"})).status_code == 422

    done = await of_customer(feedback, shop_id, "regulars.recovery_case.resolved.v1", cid)
    assert len(done) == 1
    assert done[0]["repair_order_id"] == ro and done[0]["resolved_at"]
    assert done[0]["outcome"] == "re-bled the brakes, no charge"
    await asyncio.sleep(1)
    again = await of_customer(feedback, shop_id, "regulars.recovery_case.escalated.v1", cid)
    assert len(again) == 2  # the clocks stopped

    # recovery_check_in_after (2 s here) later: the re-survey.
    async def resurvey() -> list[Any]:
        found = await of_customer(feedback, shop_id, "regulars.survey.requested.v1", cid)
        return [e for e in found if e["reason"] == "recovery_resurvey"]

    (requested,) = await wait_for(resurvey, 15)
    assert requested["case_id"] == case["id"] and requested["repair_order_id"] == ro
    assert requested["survey_page"].startswith("http") and not requested.get("survey_url")
    assert any(s["case_id"] == case["id"] for s in await surveys(feedback, key, cid))

    # Another shop sees none of it.
    _other, other_key = await feedback.create_shop("Nosy Shop")
    await wait_for(lambda: _authorised(feedback, other_key), 30)
    async with httpx.AsyncClient(
        base_url=feedback.services["feedback"].url, headers=auth(other_key)
    ) as http:
        assert (await http.get(f"/v1/cases/{case['id']}")).status_code == 404
        r = await http.post(f"/v1/cases/{case['id']}/comments", json={"text": "hi"})
        assert r.status_code == 404
        assert (await http.get("/v1/cases", params={"customer_id": cid})).json()["items"] == []


async def _authorised(system: System, key: str) -> bool:
    async with httpx.AsyncClient(base_url=system.services["feedback"].url) as http:
        return (await http.get("/v1/cases", headers=auth(key))).status_code == 200


async def test_a_detractor_answer_opens_one_high_case_however_often_it_is_sent(
    feedback: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    cid, ro, token = await surveyed(feedback, key)
    listed = await surveys(feedback, key, cid)
    assert listed[0]["link"].endswith(f"/s/{token}") and listed[0]["status"] == "sent"
    async with httpx.AsyncClient(base_url=feedback.services["feedback"].url) as http:
        page = await http.get(f"/s/{token}")
        assert page.status_code == 200 and 'name="nps"' in page.text
        assert "Quick &amp; Sons &lt;Auto&gt;" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert (await http.get("/s/no-such-token")).status_code == 404

    empty = await answer(feedback, token, {"comment": "meh"})
    assert empty.status_code == 422 and "nps" in empty.json()["detail"]
    assert (await answer(feedback, token, {"nps": 11})).status_code == 422
    first = await answer(feedback, token, {"nps": 2, "comment": "took forever"})
    assert first.status_code == 201, first.text
    second = await answer(feedback, token, {"nps": 9})
    assert second.status_code == 200 and second.json() == first.json()
    assert second.json()["nps"] == 2
    assert (await answer(feedback, "no-such-token", {"nps": 5})).status_code == 404

    case = await one_case(feedback, key, cid)
    assert case["severity"] == "high" and case["repair_order_id"] == ro
    assert (await surveys(feedback, key, cid))[0]["status"] == "answered"
    received = await of_customer(feedback, shop_id, "regulars.feedback.received.v1", cid)
    assert [(e["nps"], e["comment"]) for e in received] == [(2, "took forever")]
    await asyncio.sleep(0.5)
    assert len(await cases(feedback, key, customer_id=cid)) == 1
    assert await of_customer(feedback, shop_id, "regulars.review.requested.v1", cid) == []


async def test_every_answer_gets_a_review_ask_unless_a_case_is_open(
    feedback: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    passive, _ro, token = await surveyed(feedback, key)
    r = await answer(feedback, token, {"nps": 7})
    assert r.status_code == 201, r.text

    promoter, _ro2, token2 = await surveyed(feedback, key)
    # The page's own form: answered with HTML.
    async with httpx.AsyncClient(base_url=feedback.services["feedback"].url) as http:
        r = await http.post(
            f"/v1/surveys/{token2}/responses",
            content="nps=10&csat=5&comment=Thanks+Sam%2C+great+job",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200 and "Thank you" in r.text, r.text
        assert r.headers["content-type"].startswith("text/html")
        again = await http.post(
            f"/v1/surveys/{token2}/responses",
            content="nps=1",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 200 and "already" in again.text

    # An unhappy call opened a case: a fine survey answer then gets no review ask.
    unhappy, _ro3 = await customer_with_visit(feedback, key)
    await call(feedback, key, unhappy, satisfied=False, notes="the car pulls left still")
    await one_case(feedback, key, unhappy)
    token3 = (await wait_for(lambda: surveys(feedback, key, unhappy), 30))[0]["token"]
    assert (await answer(feedback, token3, {"nps": 8, "csat": 4})).status_code == 201

    async def asked(cid: str) -> list[Any]:
        return await of_customer(feedback, shop_id, "regulars.review.requested.v1", cid)

    assert len(await wait_for(lambda: asked(passive), 10)) == 1
    assert len(await wait_for(lambda: asked(promoter), 10)) == 1
    assert await asked(unhappy) == []
    referrals = await of_customer(feedback, shop_id, "regulars.referral.requested.v1", promoter)
    assert len(referrals) == 1
    assert await of_customer(feedback, shop_id, "regulars.referral.requested.v1", passive) == []
    positive = await of_customer(feedback, shop_id, "regulars.feedback.positive.v1", promoter)
    assert [p["nps"] for p in positive] == [10]
    praised = await of_customer(feedback, shop_id, "regulars.staff.praised.v1", promoter)
    assert [(p["staff_id"], p["manager"]) for p in praised] == [("sam", "maria")]
    assert praised[0]["manager_email"] == "maria@q.example"


async def test_kill_feedback_while_slas_run_out_each_case_escalates_once_per_level(
    feedback: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    notes = ["brakes grinding", "service was slow", "rude advisor", "steering shakes"]
    before = [await customer_with_visit(feedback, key) for _ in range(8)]
    for i, (cid, _ro) in enumerate(before):
        await call(feedback, key, cid, satisfied=False, notes=notes[i % len(notes)])
    for cid, _ro in before:
        await one_case(feedback, key, cid)
    svc = feedback.services["feedback"]
    await asyncio.sleep(2.5)  # the critical cases' first breaches are coming due
    svc.kill()
    # While feedback is down: more unhappy calls, and every first window runs out.
    during = [await customer_with_visit(feedback, key) for _ in range(4)]
    for i, (cid, _ro) in enumerate(during):
        await call(feedback, key, cid, satisfied=False, notes=notes[i % len(notes)])
    await asyncio.sleep(4)
    svc.start()
    svc.wait_healthy(60)
    everyone = [cid for cid, _ro in before + during]
    for cid in everyone:
        await wait_for(lambda c=cid: case_at(feedback, key, c, "owner"), 90)  # type: ignore[misc]
    await asyncio.sleep(2)  # any duplicate would have fired by now

    escalated = await emitted(feedback, shop_id, "regulars.recovery_case.escalated.v1")
    by_case = Counter((e["customer_id"], e["case_id"]) for e in escalated)
    for cid in everyone:
        mine = [e for e in escalated if e["customer_id"] == cid]
        assert len({e["case_id"] for e in mine}) == 1, mine
        assert sorted((e["from_level"], e["to_level"]) for e in mine) == [
            ("advisor", "service_manager"),
            ("service_manager", "owner"),
        ], mine
        assert len(await cases(feedback, key, customer_id=cid)) == 1
    assert all(n == 2 for n in by_case.values())
    opened = await emitted(feedback, shop_id, "regulars.recovery_case.opened.v1")
    opened_for = Counter(e["customer_id"] for e in opened)
    assert all(opened_for[cid] == 1 for cid in everyone), opened_for


async def test_replies_complain_or_are_notes_and_a_second_signal_joins_the_case(
    feedback: System, shop: tuple[str, str]
) -> None:
    shop_id, key = shop
    cid, ro = await customer_with_visit(feedback, key)
    await call(feedback, key, cid, satisfied=False, notes="the car pulls left still")
    case = await one_case(feedback, key, cid)
    assert case["severity"] == "normal"
    token = (await wait_for(lambda: surveys(feedback, key, cid), 30))[0]["token"]
    assert (await answer(feedback, token, {"nps": 1})).status_code == 201

    async def replied(text: str, n: int) -> None:
        r = await post(
            feedback,
            key,
            {
                "type": "customer.replied",
                "id": f"reply-{cid}-{n}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": {"customer_id": cid, "channel": "email", "text": text},
            },
        )
        assert r.status_code == 202, r.text

    await replied("Can I bring it in Tuesday?", 1)
    await replied("STOP", 2)
    await replied("And now I smell gas in the garage", 3)

    async def history_kinds() -> list[str] | None:
        found = await cases(feedback, key, customer_id=cid)
        kinds = [h["kind"] for h in found[0]["history"]] if found else []
        return kinds if kinds.count("joined") == 2 else None

    kinds = await wait_for(history_kinds, 30)
    assert "reply" in kinds
    (joined,) = await cases(feedback, key, customer_id=cid)
    assert joined["id"] == case["id"] and joined["severity"] == "critical"
    assert joined["repair_order_id"] == ro
    negatives = await of_customer(feedback, shop_id, "regulars.feedback.negative.v1", cid)
    assert [n["source"] for n in negatives] == ["follow_up_call", "survey", "reply"]
    assert {n["incident_key"] for n in negatives} == {f"{cid}|ro:{ro}"}
    opened = await of_customer(feedback, shop_id, "regulars.recovery_case.opened.v1", cid)
    assert len(opened) == 1

    # A customer with no visit on record: a complaint by text opens a case of their own.
    other = f"c-{uuid.uuid4().hex[:8]}"
    r = await post(
        feedback,
        key,
        {
            "type": "customer.upserted",
            "id": f"up-{other}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"customer_id": other, "name": "Pat Reply", "phone": "+15125550188"},
        },
    )
    assert r.status_code == 202
    r = await post(
        feedback,
        key,
        {
            "type": "customer.replied",
            "id": f"reply-{other}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"customer_id": other, "channel": "sms", "text": "you overcharged me"},
        },
    )
    assert r.status_code == 202
    mine = await one_case(feedback, key, other)
    assert mine["repair_order_id"] is None and mine["severity"] == "normal"
    assert mine["escalation_level"] in ("advisor", "service_manager", "owner")


async def _mail_to(system: System, address: str, cid: str) -> list[Any]:
    assert system.mail is not None
    return [m for m in system.mail.to(address) if cid in str(m["Subject"])]
