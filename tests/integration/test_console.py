"""The staff console in a real headless Chromium, as the shop's people use it, against all
four services, the real database and broker, and a real SMTP server for the sign-in mail.

One walkthrough, by visible labels and roles: an advisor signs in by the emailed link,
records a Reached call that was not satisfied and sees the recovery case appear; a manager
acknowledges it and tries to resolve it without an outcome, then with one; the customer's
journey shows each step; the metrics show charts; the owner changes business hours;
the advisor is refused the settings; another shop's owner sees none of it. Every page is
checked with axe-core, at 375 px for sideways scrolling, and photographed into
.artifacts/screenshots/.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from browser import DESKTOP, PHONE, assert_accessible, assert_fits, new_page, screenshot
from harness import System, auth, wait_for
from playwright.async_api import Browser, Page, expect
from test_followup_flow import post

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
STAFF = [
    {"id": "ana", "name": "Ana Reyes", "role": "advisor", "email": "ana@mainst.example"},
    {"id": "sam", "name": "Sam Okafor", "role": "service_manager", "email": "sam@mainst.example"},
    {"id": "olivia", "name": "Olivia Grant", "role": "owner", "email": "olivia@mainst.example"},
]
POLICY = {
    "business_hours": ALL_DAY,
    "follow_up_delay": "PT0S",
    "follow_up_missed_after": "PT6H",
    "staff": STAFF,
    "contact": {"name": "Main St Auto", "phone": "+15125550100"},
}
OTHER_POLICY = {
    "business_hours": ALL_DAY,
    "staff": [{"id": "bob", "name": "Bob Other", "role": "owner", "email": "bob@other.example"}],
    "contact": {"name": "Other Garage"},
}


@pytest.fixture(scope="module")
async def console(running: System) -> AsyncIterator[System]:
    """All four services, loyalty started last so that it knows where the others are."""
    for name in ("feedback",):
        svc = running.services.get(name)
        if svc is None or svc.proc is None or svc.proc.poll() is not None:
            running.start(name)
    loyalty = running.services.get("loyalty")
    if loyalty is not None and loyalty.proc is not None and loyalty.proc.poll() is None:
        loyalty.kill(signal.SIGTERM)
    running.start("loyalty", **{"_CONSOLE_RESTART": "1"})
    yield running


async def _policy_reached(system: System, shop_id: str, staff_id: str) -> bool:
    rows = await system.fetch(
        "SELECT 1 FROM loyalty.shop_policies p, feedback.shop_policies f"
        " WHERE p.shop_id = $1 AND f.shop_id = $1"
        " AND p.policy->'staff' @> $2::jsonb AND f.policy->'staff' @> $2::jsonb",
        uuid.UUID(shop_id),
        f'[{{"id": "{staff_id}"}}]',
    )
    return bool(rows)


@pytest.fixture(scope="module")
async def shops(console: System) -> dict[str, tuple[str, str]]:
    main = await console.create_shop("Main St Auto", "America/Chicago", policy=POLICY)
    other = await console.create_shop("Other Garage", "America/Chicago", policy=OTHER_POLICY)
    await wait_for(lambda: _policy_reached(console, main[0], "olivia"), 30)
    await wait_for(lambda: _policy_reached(console, other[0], "bob"), 30)
    return {"main": main, "other": other}


async def _visit(
    system: System, key: str, name: str, phone: str, advisor: str = "ana"
) -> tuple[str, str]:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    ro = f"RO-{uuid.uuid4().hex[:6].upper()}"
    now = datetime.now(UTC).isoformat()
    for event in (
        {
            "type": "customer.upserted",
            "id": f"up-{cid}",
            "occurred_at": now,
            "data": {"customer_id": cid, "name": name, "phone": phone},
        },
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
                "asset_id": "2019 Honda Civic",
            },
        },
    ):
        r = await post(system, key, event)
        assert r.status_code == 202, r.text
    return cid, ro


async def _task(system: System, key: str, cid: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        r = await http.get("/v1/followups", params={"customer_id": cid}, headers=auth(key))
    items = r.json()["items"]
    return items[0] if items else None


async def _customer_known(system: System, shop_id: str, cid: str) -> bool:
    rows = await system.fetch(
        "SELECT 1 FROM loyalty.customers WHERE shop_id = $1 AND customer_id = $2"
        " AND stage IS NOT NULL AND name IS NOT NULL",
        uuid.UUID(shop_id),
        cid,
    )
    return bool(rows)


def _cli_link(system: System, shop_id: str, email: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "regulars_cli.main",
            "staff",
            "link",
            "--shop",
            shop_id,
            "--email",
            email,
            "--quiet",
        ],
        env=system.env(CONSOLE_PUBLIC_URL=system.services["loyalty"].url),
        capture_output=True,
        text=True,
        check=True,
    )
    link = out.stdout.strip()
    assert link.startswith(system.services["loyalty"].url + "/sign-in/"), link
    return link


async def _checked(page: Page, name: str, width: int = PHONE) -> None:
    """Every page: no serious accessibility violation, no sideways scrolling, a photo."""
    await assert_accessible(page, name)
    await assert_fits(page, width)
    await screenshot(page, name)


async def _sign_in_by_link(page: Page, link: str) -> None:
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Today", level=1)).to_be_visible()


def _mailed_link(system: System, address: str, before: int) -> str | None:
    assert system.mail is not None
    found = system.mail.to(address)
    if len(found) <= before:
        return None
    body = found[-1].get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"http://\S+/sign-in/[A-Za-z0-9_-]+", body)
    return match.group(0) if match else None


async def test_walkthrough(
    console: System, shops: dict[str, tuple[str, str]], browser: Browser
) -> None:
    shop_id, key = shops["main"]
    base = console.services["loyalty"].url
    cid, ro = await _visit(console, key, "Dana Whitfield", "(512) 555-0142")
    task = await wait_for(lambda: _task(console, key, cid), 30)
    await wait_for(lambda: _customer_known(console, shop_id, cid), 30)

    # -- the advisor signs in with the link the sign-in page emails her ---------------------
    async with new_page(browser, PHONE, base_url=base) as page:
        await page.goto("/")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await _checked(page, "sign-in")
        assert console.mail is not None
        before = len(console.mail.to("ana@mainst.example"))
        await page.get_by_label("Your work email").fill("ana@mainst.example")
        await page.get_by_role("button", name="Email me a sign-in link").click()
        await expect(page.get_by_text("a sign-in link is on its way")).to_be_visible()
        link = await wait_for(
            lambda: _async(_mailed_link(console, "ana@mainst.example", before)), 15
        )
        cookies = await page.context.cookies()
        await _sign_in_by_link(page, link)
        session = next(c for c in await page.context.cookies() if c["name"] == "regulars_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert not session["secure"], "Secure is for every host but this machine"
        assert not [c for c in cookies if c["name"] == "regulars_session"]

        # -- Today: her call, its script filled in, the phone a tel: link ---------------------
        card = page.locator(f"#call-{task['id']}")
        await expect(card).to_be_visible()
        await expect(card.get_by_role("heading", name="Dana Whitfield")).to_be_visible()
        script = await card.get_by_role("list", name="What to say").inner_text()
        assert "Ana Reyes" in script and "Dana" in script, script
        assert "{" not in script and "}" not in script, script
        tel = card.get_by_role("link", name=re.compile(r"Call \(512\) 555-0142"))
        assert await tel.get_attribute("href") == "tel:+15125550142"
        await expect(card.get_by_text(ro)).to_be_visible()
        await _checked(page, "today")

        # -- Reached, not satisfied: the list updates in place -------------------------------
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await card.get_by_role("button", name="Reached").click()
        await card.get_by_label("No, not satisfied").check()
        await card.get_by_label("Score 0-10 (optional)").fill("3")
        await card.get_by_label("Notes (optional)").fill("Brakes still squeal when cold")
        await card.get_by_role("button", name="Save call").click()
        await expect(page.get_by_text("Call recorded: Reached, not satisfied.")).to_be_visible()
        await expect(page.locator(f"#call-{task['id']}")).to_have_count(0)
        assert page.url.rstrip("/") == base, "the list updated in place, no page load"
        assert not errors, errors

        # -- the recovery case appears within seconds ----------------------------------------
        await (
            page.get_by_role("navigation", name="Console").get_by_role("link", name="Cases").click()
        )
        case_link = page.get_by_role("link", name="Dana Whitfield")
        for _ in range(40):
            if await case_link.count():
                break
            await page.wait_for_timeout(250)
            await page.reload()
        await expect(case_link).to_be_visible()
        await _checked(page, "cases")
        await case_link.click()
        await expect(page.get_by_role("heading", name="Case: Dana Whitfield")).to_be_visible()
        await expect(page.get_by_text("Brakes still squeal when cold").first).to_be_visible()
        case_url = page.url
        await _checked(page, "case")

        # -- the advisor may not change the settings -----------------------------------------
        refused = await page.goto("/settings")
        assert refused is not None and refused.status == 403
        await expect(page.get_by_text("Only an owner changes the shop's settings.")).to_be_visible()
        await _checked(page, "settings-refused")
        await expect(
            page.get_by_role("navigation", name="Console").get_by_role("link", name="Settings")
        ).to_have_count(0)

    # -- the service manager works the case ---------------------------------------------------
    async with new_page(browser, PHONE, base_url=base) as page:
        await _sign_in_by_link(page, _cli_link(console, shop_id, "sam@mainst.example"))
        await page.goto(case_url)
        await page.get_by_role("button", name="Acknowledge").click()
        await expect(page.get_by_text("Acknowledged: the acknowledgement clock")).to_be_visible()
        await page.get_by_role("button", name="Resolve").click()
        outcome = page.get_by_label("Outcome (required to resolve)")
        await expect(outcome).to_have_attribute("aria-invalid", "true")
        error = page.locator("#outcome-error")
        await expect(error).to_contain_text("required")
        assert await outcome.get_attribute("aria-describedby") == "outcome-hint outcome-error"
        await _checked(page, "case-resolve-error")
        await outcome.fill("Replaced the pads free of charge; customer happy")
        await page.get_by_role("button", name="Resolve").click()
        await expect(page.get_by_text("Resolved: every clock has stopped.")).to_be_visible()
        await expect(page.get_by_text("by Sam Okafor").first).to_be_visible()

        # -- the customer, and these steps on their journey ----------------------------------
        await page.get_by_role("link", name="Customers").click()
        await page.get_by_label("Name, phone or customer id").fill("whitf")
        await page.get_by_role("button", name="Search").click()
        await _checked(page, "customers")
        await page.get_by_role("link", name="Dana Whitfield").click()
        await expect(page.get_by_role("heading", name="Dana Whitfield", level=1)).to_be_visible()
        await expect(page.get_by_text("Churn risk")).to_be_visible()
        journey = page.locator("ol.timeline")
        for _ in range(40):
            text = await journey.inner_text()
            if "resolved" in text.lower() and "acknowledged" in text.lower():
                break
            await page.wait_for_timeout(250)
            await page.reload()
        text = (await journey.inner_text()).lower()
        for step in ("reached", "case opened", "acknowledged", "resolved"):
            assert step in text, (step, text)
        await _checked(page, "customer")

        # -- metrics, with charts and their definitions --------------------------------------
        await page.get_by_role("link", name="Metrics").click()
        await expect(page.get_by_role("heading", name="Metrics", level=1)).to_be_visible()
        charts = page.get_by_role("img", name=re.compile("by month"))
        assert await charts.count() == 7
        first = page.get_by_text("What this counts").first
        await first.click()
        await expect(page.get_by_text("(E - N) / S")).to_be_visible()
        await _checked(page, "metrics")
    async with new_page(browser, DESKTOP, base_url=base) as page:
        await _sign_in_by_link(page, _cli_link(console, shop_id, "sam@mainst.example"))
        await page.goto("/reports")
        await _checked(page, "metrics-desktop", DESKTOP)

    # -- the owner changes the business hours --------------------------------------------------
    async with new_page(browser, PHONE, base_url=base) as page:
        await _sign_in_by_link(page, _cli_link(console, shop_id, "olivia@mainst.example"))
        await page.get_by_role("link", name="Settings").click()
        await expect(page.get_by_text("Review requests are not sent")).to_be_visible()
        await _checked(page, "settings")
        monday = page.get_by_label("Monday")
        await monday.fill("8 till 5")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.locator("#business_hours-mon-error")).to_contain_text("09:00-18:00")
        await expect(page.get_by_label("Monday")).to_have_attribute("aria-invalid", "true")
        await page.get_by_label("Monday").fill("08:00-17:00")
        await page.get_by_label("Review link (e.g. your Google review page)").fill("not a link")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.locator("#contact-review_url-error")).to_be_visible()
        await _checked(page, "settings-error")
        await page.get_by_label("Review link (e.g. your Google review page)").fill("")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.get_by_text(re.compile(r"Saved as policy version \d+"))).to_be_visible()
        async with httpx.AsyncClient(base_url=console.services["intake"].url) as http:
            policy = (await http.get("/v1/policy", headers=auth(key))).json()
        assert policy["policy"]["business_hours"]["mon"] == [["08:00", "17:00"]]
        assert policy["policy"]["business_hours"]["tue"] == [["00:00", "24:00"]]
        assert policy["policy"]["follow_up_delay"] == "PT0S", "keys the form does not show stay"
        assert policy.get("changed_by") == "olivia"

        # -- signing out ends the session -----------------------------------------------------
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_text("You are signed out.")).to_be_visible()
        await page.goto("/")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # -- another shop's owner sees none of it ---------------------------------------------------
    other_id, _ = shops["other"]
    async with new_page(browser, PHONE, base_url=base) as page:
        await _sign_in_by_link(page, _cli_link(console, other_id, "bob@other.example"))
        await expect(page.get_by_text("Dana Whitfield")).to_have_count(0)
        await page.goto("/?who=all")
        await expect(page.get_by_text("No calls due")).to_be_visible()
        await page.goto("/cases?who=all")
        await expect(page.get_by_text("Dana Whitfield")).to_have_count(0)
        refused = await page.goto(case_url.replace(base, ""))
        assert refused is not None and refused.status == 404
        refused = await page.goto(f"/customers/{cid}")
        assert refused is not None and refused.status == 404
        await page.goto("/customers?q=Dana")
        await expect(page.get_by_text("No customer matches")).to_be_visible()


async def _async(value: Any) -> Any:
    return value


async def test_sign_in_answers_alike_and_is_rate_limited(
    console: System, shops: dict[str, tuple[str, str]]
) -> None:
    base = console.services["loyalty"].url
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        form = {"csrf": token.group(1)}
        known = await http.post("/sign-in", data={**form, "email": "olivia@mainst.example"})
        unknown = await http.post("/sign-in", data={**form, "email": "nobody@mainst.example"})
        assert known.status_code == unknown.status_code == 200
        assert _notice(known.text) == _notice(unknown.text)
        # no CSRF token: refused, nothing sent
        forged = await http.post(
            "/sign-in", data={"email": "olivia@mainst.example", "csrf": "x" * 30}
        )
        assert forged.status_code == 400
        statuses = [
            (await http.post("/sign-in", data={**form, "email": "Rate.Test@mainst.example"}))
            for _ in range(6)
        ]
        assert [r.status_code for r in statuses] == [200] * 5 + [429]
        assert statuses[-1].headers["retry-after"] == "900"


def _notice(html: str) -> str:
    found = re.search(r'<p class="notice[^"]*" role="status">([^<]+)</p>', html)
    assert found is not None, html
    return found.group(1)


async def test_posts_need_the_session_csrf_token(
    console: System, shops: dict[str, tuple[str, str]]
) -> None:
    shop_id, _ = shops["main"]
    base = console.services["loyalty"].url
    link = _cli_link(console, shop_id, "olivia@mainst.example")
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get(link.replace(base, ""))
        form = re.search(r'name="csrf" value="([^"]+)"', page.text)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert form and token
        signed = await http.post(
            "/sign-in/link", data={"csrf": form.group(1), "token": token.group(1)}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        # a second use of the same link is refused
        again = await http.post(
            "/sign-in/link", data={"csrf": form.group(1), "token": token.group(1)}
        )
        assert again.status_code == 400 and "used already" in again.text
        refused = await http.post(
            "/settings", data={"contact.name": "Hijacked"}, follow_redirects=False
        )
        assert refused.status_code == 400
        settings = await http.get("/settings")
        assert settings.status_code == 200 and "Hijacked" not in settings.text
        # signed out: the session cookie no longer works
        csrf = re.search(r'name="csrf" value="([^"]+)"', settings.text)
        assert csrf is not None
        session = http.cookies.get("regulars_session")
        assert session
        out = await http.post("/sign-out", data={"csrf": csrf.group(1)})
        assert out.status_code == 200
    async with httpx.AsyncClient(base_url=base, cookies={"regulars_session": session}) as http:
        after = await http.get("/", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"] == "/sign-in"


async def test_an_advisor_sees_her_calls_and_everyone_s_and_works_them_without_javascript(
    console: System, shops: dict[str, tuple[str, str]], browser: Browser
) -> None:
    shop_id, key = shops["main"]
    base = console.services["loyalty"].url
    mine, _ = await _visit(console, key, "Lee Mine", "+1 512 555 0171", advisor="ana")
    theirs, _ = await _visit(console, key, "Kim Theirs", "+1 512 555 0172", advisor="sam")
    my_task = await wait_for(lambda: _task(console, key, mine), 30)
    await wait_for(lambda: _task(console, key, theirs), 30)
    await wait_for(lambda: _customer_known(console, shop_id, theirs), 30)
    context = await browser.new_context(java_script_enabled=False, base_url=base)
    try:
        page = await context.new_page()
        await page.goto(_cli_link(console, shop_id, "ana@mainst.example"))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Lee Mine")).to_be_visible()
        await expect(page.get_by_role("heading", name="Kim Theirs")).to_have_count(0)
        await page.get_by_role("link", name="Everyone's calls").click()
        await expect(page.get_by_role("heading", name="Kim Theirs")).to_be_visible()
        await expect(page.get_by_role("heading", name="Lee Mine")).to_be_visible()
        # without a script: Reached opens its questions on a page of its own, then saves
        await page.get_by_role("link", name="My calls").click()
        card = page.locator(f"#call-{my_task['id']}")
        await card.get_by_role("button", name="Reached").click()
        await expect(page).to_have_url(re.compile(r"reached="))
        card = page.locator(f"#call-{my_task['id']}")
        await card.get_by_role("button", name="Save call").click()
        # satisfied is required: the error is next to the question, nothing was recorded
        await expect(card.get_by_text("Say whether the customer was satisfied")).to_be_visible()
        task = await _task(console, key, mine)
        assert task is not None and task["attempts"] == 0 and task["status"] == "scheduled"
        await card.get_by_label("Yes, satisfied").check()
        await card.get_by_role("button", name="Save call").click()
        await expect(page.get_by_text("Call recorded: Reached, satisfied.")).to_be_visible()
        task = await _task(console, key, mine)
        assert task is not None and task["status"] == "completed"
    finally:
        await context.close()


async def test_links_and_sessions_run_out(
    console: System, shops: dict[str, tuple[str, str]]
) -> None:
    shop_id, _ = shops["main"]
    base = console.services["loyalty"].url
    link = _cli_link(console, shop_id, "sam@mainst.example")
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get(link.replace(base, ""))
        form = re.search(r'name="csrf" value="([^"]+)"', page.text)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert form and token
        # 15 minutes and one second later, the link is spent
        await console.fetch(
            "UPDATE loyalty.sign_in_links SET expires_at = now() - interval '1 second'"
            " WHERE token_sha256 = sha256(convert_to($1, 'UTF8'))",
            token.group(1),
        )
        old = await http.post(
            "/sign-in/link", data={"csrf": form.group(1), "token": token.group(1)}
        )
        assert old.status_code == 400 and "more than 15 minutes old" in old.text
        assert "regulars_session" not in http.cookies
    link = _cli_link(console, shop_id, "sam@mainst.example")
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get(link.replace(base, ""))
        form = re.search(r'name="csrf" value="([^"]+)"', page.text)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert form and token
        signed = await http.post(
            "/sign-in/link", data={"csrf": form.group(1), "token": token.group(1)}
        )
        assert signed.status_code == 303
        assert (await http.get("/", follow_redirects=False)).status_code == 200
        session = http.cookies["regulars_session"]
        # 12 hours without a request: the session is over
        await console.fetch(
            "UPDATE loyalty.staff_sessions SET last_seen_at = now() - interval '12 hours 1 second'"
            " WHERE token_sha256 = sha256(convert_to($1, 'UTF8'))",
            session,
        )
        idle = await http.get("/", follow_redirects=False)
        assert idle.status_code == 303 and idle.headers["location"] == "/sign-in"
