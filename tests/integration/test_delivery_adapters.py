"""The email and SMS adapters against real servers at their network boundary.

SMTP: aiosmtpd on a free port, keeping what it receives (or refusing on cue).
SMS: a real local HTTP server playing a Twilio-compatible provider.
No service, database or broker is needed.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from regulars_cli import sms_sink
from regulars_followup.adapters.delivery import DeliveryError, UnconfirmedDelivery
from regulars_followup.adapters.email import SmtpSender, make_message_id, parse_smtp_url
from regulars_followup.adapters.sms import TWILIO_UNSUBSCRIBED, TwilioCompatibleSms
from regulars_followup.domain.messages import text_digest

SENDER = "Main St Auto <noreply@regulars.example>"
UNSUB = "https://regulars.example/unsubscribe/" + "t" * 120 + "?shop=main-st&c=42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------------------ SMTP


class Keeper:
    """An aiosmtpd handler that keeps every message, or refuses on cue."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None  # e.g. "550 ...": refuse every recipient
        self.data_reply: str | None = None  # e.g. "554 ...": refuse the message
        self.logins: list[tuple[bytes, bytes]] = []
        self.data_delay = 0.0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            # the message is in, the answer is late (or never comes, for a client that quit)
            self.envelopes.append(envelope)
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"mailer" and auth_data.password == b"s3cr:t@pw"
        # handled=False: aiosmtpd then answers 535 itself (with the default, True, it
        # assumes the reply was sent and the client waits out its timeout).
        return AuthResult(success=ok, handled=False)

    def received(self, index: int = -1) -> EmailMessage:
        raw: bytes = self.envelopes[index].content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Smtp:
    keeper: Keeper
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    keeper = Keeper()
    port = free_port()
    controller = Controller(
        keeper,
        hostname="127.0.0.1",
        port=port,
        authenticator=keeper.authenticator,
        auth_require_tls=False,  # AUTH over plain text is fine on loopback in a test
    )
    controller.start()
    try:
        yield Smtp(keeper, port)
    finally:
        controller.stop()


async def send_one(sender: SmtpSender, **over: Any) -> None:
    args: dict[str, Any] = {
        "to": "Dana Whitfield <dana@example.com>",
        "subject": "How was your visit to Main St Auto?",
        "text": "Hi Dana,\n\nHow did we do? https://regulars.example/s/abc\n",
        "html": "<p>Hi Dana,</p><p>How did we do? Caf\u00e9 &amp; co</p>",
        "message_id": "followup:msg:7f3a",
        "headers": {"List-Unsubscribe": UNSUB},
    }
    await sender.send(**(args | over))


async def test_email_arrives_with_headers_bodies_and_one_click_unsubscribe(smtp: Smtp) -> None:
    await send_one(SmtpSender(smtp.url, SENDER))

    [envelope] = smtp.keeper.envelopes
    assert envelope.mail_from == "noreply@regulars.example"
    assert envelope.rcpt_tos == ["dana@example.com"]
    msg = smtp.keeper.received()
    assert msg["To"] == "Dana Whitfield <dana@example.com>"
    assert msg["From"] == SENDER
    assert msg["Subject"] == "How was your visit to Main St Auto?"
    assert msg["Date"]
    assert msg["Message-ID"] == make_message_id("followup:msg:7f3a", "regulars.example")
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The long URL is on the wire as is: no RFC 2047 encoded-words a mailbox would not follow.
    assert f"List-Unsubscribe: <{UNSUB}>".encode() in envelope.content
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert "How did we do? https://regulars.example/s/abc" in plain.get_content()
    assert "Caf\u00e9 &amp; co" in rich.get_content()


async def test_message_id_is_stable_per_idempotency_key(smtp: Smtp) -> None:
    sender = SmtpSender(smtp.url, SENDER)
    await send_one(sender, message_id="followup:msg:1")
    await send_one(sender, message_id="followup:msg:1")  # a retry of the same message
    await send_one(sender, message_id="followup:msg:2")
    ids = [smtp.keeper.received(i)["Message-ID"] for i in range(3)]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("<") and ids[0].endswith("@regulars.example>")


async def test_mailto_unsubscribe_alone_gets_no_one_click_header(smtp: Smtp) -> None:
    headers = {"List-Unsubscribe": "<mailto:unsubscribe@regulars.example?subject=u-42>"}
    await send_one(SmtpSender(smtp.url, SENDER), headers=headers)
    msg = smtp.keeper.received()
    assert msg["List-Unsubscribe"] == "<mailto:unsubscribe@regulars.example?subject=u-42>"
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058 needs an HTTPS URI


async def test_https_and_mailto_together(smtp: Smtp) -> None:
    value = f"<{UNSUB}>, <mailto:unsubscribe@regulars.example>"
    await send_one(SmtpSender(smtp.url, SENDER), headers={"List-Unsubscribe": value})
    msg = smtp.keeper.received()
    assert msg["List-Unsubscribe"] == value
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_unsubscribe_from_url_and_mailto_keys(smtp: Smtp) -> None:
    headers = {
        "List-Unsubscribe-URL": UNSUB,
        "List-Unsubscribe-Mailto": "unsubscribe@regulars.example",
        "Reply-To": "service@mainstauto.example",
    }
    await send_one(SmtpSender(smtp.url, SENDER), headers=headers)
    msg = smtp.keeper.received()
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>, <mailto:unsubscribe@regulars.example>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Reply-To"] == "service@mainstauto.example"
    assert msg["List-Unsubscribe-URL"] is None and msg["List-Unsubscribe-Mailto"] is None


async def test_no_unsubscribe_header_when_none_given(smtp: Smtp) -> None:
    await send_one(SmtpSender(smtp.url, SENDER), headers={}, html=None)
    msg = smtp.keeper.received()
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert msg.get_content_type() == "text/plain"


async def test_recipient_refused_with_550_is_permanent(smtp: Smtp) -> None:
    smtp.keeper.rcpt_reply = "550 5.1.1 <dana@example.com>: mailbox unavailable"
    with pytest.raises(DeliveryError) as caught:
        await send_one(SmtpSender(smtp.url, SENDER))
    assert caught.value.permanent is True
    assert caught.value.code == 550
    assert "mailbox unavailable" in caught.value.message
    assert smtp.keeper.envelopes == []


async def test_recipient_deferred_with_451_is_transient(smtp: Smtp) -> None:
    smtp.keeper.rcpt_reply = "451 4.3.0 try again later"
    with pytest.raises(DeliveryError) as caught:
        await send_one(SmtpSender(smtp.url, SENDER))
    assert caught.value.permanent is False and caught.value.code == 451


async def test_message_refused_at_data_with_554_is_permanent(smtp: Smtp) -> None:
    smtp.keeper.data_reply = "554 5.7.1 message rejected"
    with pytest.raises(DeliveryError) as caught:
        await send_one(SmtpSender(smtp.url, SENDER))
    assert caught.value.permanent is True and caught.value.code == 554


async def test_before_data_is_heard_after_the_recipient_and_before_data(smtp: Smtp) -> None:
    heard: list[int] = []

    async def before_data() -> None:
        heard.append(len(smtp.keeper.envelopes))

    await send_one(SmtpSender(smtp.url, SENDER), before_data=before_data)
    assert heard == [0] and len(smtp.keeper.envelopes) == 1
    smtp.keeper.rcpt_reply = "550 5.1.1 no such user"
    with pytest.raises(DeliveryError):
        await send_one(SmtpSender(smtp.url, SENDER), before_data=before_data)
    assert heard == [0]  # a refused recipient never reaches DATA


async def test_a_failing_before_data_sends_nothing_and_is_raised_as_it_was(smtp: Smtp) -> None:
    async def before_data() -> None:
        raise ConnectionRefusedError("our database is away")  # an OSError, not SMTP's

    with pytest.raises(ConnectionRefusedError):
        await send_one(SmtpSender(smtp.url, SENDER), before_data=before_data)
    assert smtp.keeper.envelopes == []


async def test_silence_after_data_is_unconfirmed_not_a_failure_to_retry(smtp: Smtp) -> None:
    smtp.keeper.data_delay = 3.0
    with pytest.raises(UnconfirmedDelivery) as caught:
        await send_one(SmtpSender(smtp.url, SENDER, timeout=0.5))
    assert caught.value.permanent is False
    assert len(smtp.keeper.envelopes) == 1  # the server has it, whatever it answers later


async def test_refused_at_data_is_not_unconfirmed(smtp: Smtp) -> None:
    smtp.keeper.data_reply = "451 4.3.0 try later"
    with pytest.raises(DeliveryError) as caught:
        await send_one(SmtpSender(smtp.url, SENDER))
    assert not isinstance(caught.value, UnconfirmedDelivery) and caught.value.code == 451


async def test_closed_port_is_transient() -> None:
    sender = SmtpSender(f"smtp://127.0.0.1:{free_port()}", SENDER, timeout=2)
    with pytest.raises(DeliveryError) as caught:
        await send_one(sender)
    assert caught.value.permanent is False


async def test_login_with_percent_encoded_password_which_never_shows(smtp: Smtp) -> None:
    url = f"smtp://mailer:s3cr%3At%40pw@127.0.0.1:{smtp.port}"
    sender = SmtpSender(url, SENDER)
    await send_one(sender)
    assert smtp.keeper.logins == [(b"mailer", b"s3cr:t@pw")]
    assert len(smtp.keeper.envelopes) == 1
    assert "s3cr" not in repr(sender)


async def test_wrong_password_is_transient_not_the_customers_fault(smtp: Smtp) -> None:
    sender = SmtpSender(f"smtp://mailer:nope@127.0.0.1:{smtp.port}", SENDER)
    with pytest.raises(DeliveryError) as caught:
        await send_one(sender)
    assert caught.value.permanent is False
    assert "nope" not in str(caught.value) and "nope" not in repr(caught.value)


async def test_bad_recipient_address_is_permanent_and_sends_nothing(smtp: Smtp) -> None:
    with pytest.raises(DeliveryError) as caught:
        await send_one(SmtpSender(smtp.url, SENDER), to="not-an-address")
    assert caught.value.permanent is True
    assert smtp.keeper.envelopes == []


async def test_header_injection_is_refused(smtp: Smtp) -> None:
    with pytest.raises(ValueError, match="one line"):
        await send_one(SmtpSender(smtp.url, SENDER), subject="Hi\r\nBcc: all@example.com")
    with pytest.raises(ValueError, match="set by the sender"):
        await send_one(SmtpSender(smtp.url, SENDER), headers={"Bcc": "all@example.com"})
    assert smtp.keeper.envelopes == []


# ------------------------------------------------------------------------------- SMS


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]


@dataclass
class Provider:
    """A Twilio-compatible provider on a real socket; answers from ``replies`` in order."""

    base_url: str
    seen: list[Seen] = field(default_factory=list)
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    stall: bool = False


@pytest.fixture
def provider() -> Iterator[Provider]:
    port = free_port()
    state = Provider(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            state.seen.append(Seen("POST", self.path, dict(self.headers.items()), parse_qs(body)))
            if state.stall:
                state.hold.wait(10)  # longer than the client's timeout
            status, payload = state.replies.pop(0) if state.replies else (201, {"sid": "SMdefault"})
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.hold.set()
        server.shutdown()
        server.server_close()


def sms(provider: Provider, client: httpx.AsyncClient | None = None) -> TwilioCompatibleSms:
    return TwilioCompatibleSms(
        provider.base_url, "AC0123456789", "tok-secret", "+15550001111", client=client
    )


async def test_sms_posts_the_form_with_basic_auth_and_no_made_up_token(
    provider: Provider,
) -> None:
    provider.replies.append((201, {"sid": "SM9f8e7d", "status": "queued"}))
    adapter = sms(provider)
    try:
        sid = await adapter.send(to="+1 (555) 010-2030", body="Main St Auto: Hi Dana & co")
    finally:
        await adapter.aclose()
    assert sid == "SM9f8e7d"
    [req] = provider.seen
    assert req.path == "/2010-04-01/Accounts/AC0123456789/Messages.json"
    assert req.form == {
        "To": ["+15550102030"],
        "From": ["+15550001111"],
        "Body": ["Main St Auto: Hi Dana & co"],
    }
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    scheme, _, token = req.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == "AC0123456789:tok-secret"
    # the provider reads no idempotency token when sending: none is sent to pretend one
    assert not any(k.lower().startswith("i-twilio") for k in req.headers)
    assert "tok-secret" not in repr(adapter)


async def test_sms_to_an_unsubscribed_number_is_permanent(provider: Provider) -> None:
    provider.replies.append(
        (
            400,
            {
                "code": TWILIO_UNSUBSCRIBED,
                "message": "Attempt to send to unsubscribed recipient",
                "status": 400,
            },
        )
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as caught:
            await sms(provider, client).send(to="+15550102030", body="hi")
    assert caught.value.permanent is True
    assert caught.value.code == 21610
    assert "unsubscribed recipient" in caught.value.message


@pytest.mark.parametrize(("status", "unconfirmed"), [(500, True), (503, True), (429, False)])
async def test_sms_provider_trouble_is_transient(
    provider: Provider, status: int, unconfirmed: bool
) -> None:
    provider.replies.append((status, {"code": 20500, "message": "Service Unavailable"}))
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as caught:
            await sms(provider, client).send(to="+15550102030", body="hi")
    assert caught.value.permanent is False
    # a 5xx came after the provider read the text: it may exist, so it is looked up
    assert isinstance(caught.value, UnconfirmedDelivery) is unconfirmed
    assert len(provider.seen) == 1


async def test_sms_timeout_after_the_request_went_out_is_unconfirmed(provider: Provider) -> None:
    provider.stall = True
    async with httpx.AsyncClient(timeout=0.3) as client:
        with pytest.raises(UnconfirmedDelivery) as caught:
            await sms(provider, client).send(to="+15550102030", body="hi")
    assert caught.value.permanent is False
    assert len(provider.seen) == 1  # it reached the provider, which may have made the text


async def test_sms_unreachable_provider_is_transient() -> None:
    adapter = TwilioCompatibleSms(f"http://127.0.0.1:{free_port()}", "AC1", "tok", "+15550001111")
    try:
        with pytest.raises(DeliveryError) as caught:
            await adapter.send(to="+15550102030", body="hi")
    finally:
        await adapter.aclose()
    assert caught.value.permanent is False
    assert not isinstance(caught.value, UnconfirmedDelivery)  # nothing left: safe to retry


@pytest.mark.parametrize("number", ["5550102030", "+1555", "+1555010203040506", "+1555abc0102"])
async def test_sms_bad_number_is_permanent_and_never_reaches_the_provider(
    provider: Provider, number: str
) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as caught:
            await sms(provider, client).send(to=number, body="hi")
    assert caught.value.permanent is True
    assert provider.seen == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.local:2525", ("mail.local", 2525, None, None, False, False)),
        ("smtp://mail.local", ("mail.local", 25, None, None, False, False)),
        ("smtp://u:p@mail.local:587?starttls=1", ("mail.local", 587, "u", "p", False, True)),
        ("smtp+starttls://u:p@mail.local", ("mail.local", 587, "u", "p", False, True)),
        ("smtps://u%40x:p%2Fw@mail.local", ("mail.local", 465, "u@x", "p/w", True, False)),
    ],
)
def test_smtp_url_forms(url: str, expected: tuple[Any, ...]) -> None:
    s = parse_smtp_url(url)
    assert (s.host, s.port, s.username, s.password, s.use_tls, s.start_tls) == expected


@pytest.mark.parametrize(
    "url", ["http://mail.local", "smtp://", "smtps://h?starttls=1", "smtp://:pw@h", "smtp://h:x"]
)
def test_bad_smtp_urls_are_refused_without_echoing_secrets(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_smtp_url(url)
    assert "pw" not in str(caught.value)


# ------------------------------------------------------------------ the provider's list


async def test_interrupted_texts_are_found_in_the_stand_ins_list(tmp_path: Path) -> None:
    """sent_since against the local stand-in (which lists as the provider does): same
    number and words, created since the claim, over several pages."""
    sink = sms_sink.app(tmp_path, step=0)
    transport = httpx.ASGITransport(app=sink)
    async with httpx.AsyncClient(transport=transport, base_url="http://provider") as client:
        adapter = TwilioCompatibleSms(
            "http://provider", "AClocal", "local", "+15550001111", client=client
        )
        before = datetime.now(UTC) - timedelta(seconds=1)
        sids = [await adapter.send(to="+15550102030", body="Your car is ready") for _ in range(3)]
        for n in range(120):  # more than a page of other texts to the same number
            await adapter.send(to="+15550102030", body=f"other {n}")
        await adapter.send(to="+15550109999", body="Your car is ready")
        digest = text_digest("Your car is ready")
        found = await adapter.sent_since(to="+15550102030", body_sha256=digest, since=before)
        assert sorted(found) == sorted(sids)
        later = datetime.now(UTC) + timedelta(minutes=10)
        assert await adapter.sent_since(to="+15550102030", body_sha256=digest, since=later) == []
        other = text_digest("never sent")
        assert await adapter.sent_since(to="+15550102030", body_sha256=other, since=before) == []


async def test_a_text_still_queued_at_the_provider_is_found_too(tmp_path: Path) -> None:
    """A queued text has no DateSent yet, so the day's sent texts miss it: it is found
    among the number's texts all the same, and never taken for one that did not leave."""
    sink = sms_sink.app(tmp_path, step=600)  # the carrier takes ten minutes to send
    transport = httpx.ASGITransport(app=sink)
    async with httpx.AsyncClient(transport=transport, base_url="http://provider") as client:
        adapter = TwilioCompatibleSms(
            "http://provider", "AClocal", "local", "+15550001111", client=client
        )
        before = datetime.now(UTC) - timedelta(seconds=1)
        sid = await adapter.send(to="+15550102030", body="Your car is ready")
        digest = text_digest("Your car is ready")
        dated = await client.get(
            "/2010-04-01/Accounts/AClocal/Messages.json",
            params={"To": "+15550102030", "DateSent>": before.date().isoformat()},
        )
        assert dated.json()["messages"] == []
        assert await adapter.sent_since(to="+15550102030", body_sha256=digest, since=before) == [
            sid
        ]
