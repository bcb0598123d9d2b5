"""No secret in any service's log: a run that handles every kind of them, then a scan.

The four services run with an SMTP server that wants a password (in ``SMTP_URL``, as
production's relay does). The run issues API keys, a webhook secret and a Tekmetric
hook token, signs a staff member in by the emailed link's token, uses a staff token,
sends a survey by mail and opens it, unsubscribes by the mail's link, and sends with
the SMS gateway's token configured. Then every line the four processes wrote (stdout
and stderr, as the harness keeps them) is searched for each of those secrets; and the
lines that should be there (the access lines of the token-bearing routes) are, by
their route templates.
"""

from __future__ import annotations

import base64
import email
import re
import secrets
import uuid
from collections.abc import Iterator
from email import policy as email_policy
from typing import Any

import httpx
import orjson
import pytest
from harness import SERVICES, System, auth, free_port, wait_for
from regulars_cli.sms_sink import LOCAL_TOKEN
from test_connectors import TEK_TOKEN
from test_feedback import POLICY, call, customer_with_visit, surveys
from test_staff_tokens import bearer, token

SMTP_USER = "relay-user"
SMTP_PASSWORD = "smtp-pw-" + secrets.token_hex(12)


class AuthenticatedMail:
    """An SMTP server that takes mail only after AUTH with the one user and password."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Any] = []
        self.logins = 0
        sink = self

        def authenticator(
            _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == SMTP_USER
                and data.password.decode() == SMTP_PASSWORD
            )
            if ok:
                sink.logins += 1
            return AuthResult(success=ok)

        class Keep:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if not session.authenticated:
                    return "530 Authentication required"
                sink.messages.append(
                    email.message_from_bytes(envelope.content, policy=email_policy.default)
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(
            Keep(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_required=True,
            # no TLS here: a relay on the pod's network, as the plain smtp:// form says
            auth_require_tls=False,
        )
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"

    def texts(self) -> str:
        out = []
        for message in self.messages:
            out.append(str(message))
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    out.append(part.get_content())
        return "\n".join(out)

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def mail() -> Iterator[AuthenticatedMail]:
    sink = AuthenticatedMail()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def guarded(system: System, mail: AuthenticatedMail) -> Iterator[System]:
    """The four services, started again with the password-protected SMTP server."""
    env = {"SMTP_URL": mail.url, "REGULARS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
    system.restart(SERVICES, **env)
    try:
        yield system
    finally:
        system.restart(SERVICES)


async def _known(system: System, key: str) -> bool:
    for name in ("followup", "feedback"):
        path = "/v1/followups" if name == "followup" else "/v1/cases"
        async with httpx.AsyncClient(base_url=system.services[name].url) as http:
            if (await http.get(path, headers=auth(key))).status_code != 200:
                return False
    return True


def _logs(system: System) -> dict[str, str]:
    return {name: system.services[name].log_path.read_text() for name in SERVICES}


def _access_routes(text: str) -> set[str]:
    routes = set()
    for line in text.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("logger") == "regulars.access":
            routes.add(f"{entry['method']} {entry['route']}")
    return routes


async def test_no_secret_reaches_a_log_line(guarded: System, mail: AuthenticatedMail) -> None:
    system = guarded
    found: dict[str, str] = {"smtp password": SMTP_PASSWORD, "sms token": LOCAL_TOKEN}
    shop_id, key = await system.create_shop("Secret Keepers", policy=POLICY)
    found["api key"] = key
    await wait_for(lambda: _known(system, key), 60)
    intake = system.services["intake"].url
    async with httpx.AsyncClient(base_url=intake, headers=auth(key)) as http:
        # a second API key, a webhook (its secret, then a new one) and a Tekmetric hook
        r = await http.post("/v1/keys", json={"label": "Tekmetric"})
        assert r.status_code == 201, r.text
        found["second api key"] = r.json()["api_key"]
        r = await http.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["customer.upserted"]},
        )
        assert r.status_code == 201, r.text
        found["webhook secret"] = r.json()["secret"]
        rotated = await http.post(f"/v1/webhooks/{r.json()['id']}/rotate-secret")
        assert rotated.status_code in (200, 201), rotated.text
        found["rotated webhook secret"] = rotated.json()["secret"]
        r = await http.put("/v1/connectors/tekmetric", json={"secret": TEK_TOKEN})
        assert r.status_code == 200, r.text
        hook_path = r.json()["hook_path"]
    found["tekmetric hook token"] = TEK_TOKEN
    async with httpx.AsyncClient(base_url=intake) as http:
        # the token in the query: refused or not, it must not be logged
        await http.post(hook_path, params={"token": TEK_TOKEN}, json={"event": "ping"})

    # staff: a token on the API, and a sign-in by the emailed link
    staff_token = token(shop_id, "sam", "advisor")
    found["staff token"] = staff_token
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        assert (await http.get("/v1/followups", headers=bearer(staff_token))).status_code == 200
    loyalty = system.services["loyalty"].url
    async with httpx.AsyncClient(base_url=loyalty) as http:
        page = await http.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        r = await http.post("/sign-in", data={"csrf": csrf.group(1), "email": "sam@quick.example"})
        assert r.status_code == 200, r.text[:500]

    async def link() -> str | None:
        got = re.search(r"/sign-in/([A-Za-z0-9_-]{20,})", mail.texts())
        return got.group(1) if got else None

    sign_in = await wait_for(link, 30)
    found["sign-in link token"] = sign_in
    async with httpx.AsyncClient(base_url=loyalty) as http:
        page = await http.get(f"/sign-in/{sign_in}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        r = await http.post("/sign-in/link", data={"csrf": csrf.group(1), "token": sign_in})
        assert r.status_code == 303, r.text[:500]
        session = http.cookies["regulars_session"]
        found["console session"] = session
        assert (await http.get("/")).status_code == 200

    # a survey, mailed through the password-protected server, opened and answered
    cid, _ro = await customer_with_visit(system, key)
    await call(system, key, cid, satisfied=True, notes="all fine")
    survey = (await wait_for(lambda: surveys(system, key, cid), 30))[0]
    found["survey token"] = survey["token"]

    async def mailed(needle: str) -> bool:
        return needle in mail.texts()

    await wait_for(lambda: mailed(f"/s/{survey['token']}"), 60)
    assert mail.logins >= 2  # the sign-in mail and the survey: each after AUTH
    feedback = system.services["feedback"].url
    async with httpx.AsyncClient(base_url=feedback) as http:
        assert (await http.get(f"/s/{survey['token']}")).status_code == 200
        r = await http.post(f"/v1/surveys/{survey['token']}/responses", json={"nps": 9})
        assert r.status_code == 201, r.text
    unsubscribe = re.search(r"/u/([A-Za-z0-9_.-]{16,})", mail.texts())
    if unsubscribe is not None:
        found["unsubscribe token"] = unsubscribe.group(1)
        async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
            assert (await http.get(f"/u/{unsubscribe.group(1)}")).status_code == 200

    # what a log line would hold of a secret: the whole, and the part after a prefix
    logs = _logs(system)
    everything = "\n".join(logs.values())
    for what, secret in found.items():
        for form in {secret, secret.rsplit("_", 1)[-1], base64.b64encode(secret.encode()).decode()}:
            if len(form) >= 12:
                hits = [n for n, text in logs.items() if form in text]
                assert not hits, f"the {what} is in the log of {hits}"
    # and the scan looked at the lines it should have: the token routes, by template
    routes = _access_routes(everything)
    for route in (
        "GET /s/{token}",
        "POST /v1/surveys/{token}/responses",
        "GET /sign-in/{token}",
        "POST /hooks/{system}/{connector_id}",
        "POST /v1/events",
    ):
        assert route in routes, sorted(routes)
    assert str(uuid.UUID(shop_id)) in everything  # lines name the shop they were for
