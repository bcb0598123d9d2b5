"""One message, once, whatever the replicas: followup's dispatchers on a real PostgreSQL,
with the local SMS stand-in (which, as the provider, keeps every POST as a text) and
real SMTP servers, slow or silent on cue, and dispatchers killed with -9 mid-send.

The dispatchers have a lease of a few seconds (production: a minute) so that a test
need not wait for one to expire. The database is one of this module's own: no followup
service another test started claims these messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from dispatcher_proc import Timing, replica
from harness import SmsSink, System, free_port, wait_for
from regulars_followup.entrypoints.dispatcher import MessageDispatcher
from regulars_followup.handlers.outreach import ClaimDueMessages, RecordDelivery
from regulars_shop.policy import Policy
from test_outreach import daytime_zone

PROC = Path(__file__).with_name("dispatcher_proc.py")
PHONE_PREFIX = "+1512555"


@pytest.fixture(scope="module")
def database(system: System) -> str:
    from regulars_cli.schemas import migrate

    name = f"dispatch_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(system.database_url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    # the same server, another database (the embedded one's URL names its socket in the query)
    url = urlunsplit(urlsplit(system.database_url)._replace(path=f"/{name}"))
    asyncio.run(migrate(url))
    return url


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Callable[..., SmsSink]]:
    """Start a stand-in with options of its own; each is stopped after the test."""
    started: list[SmsSink] = []

    def start(*options: str) -> SmsSink:
        folder = tmp_path / f"provider-{len(started)}"
        folder.mkdir()
        started.append(SmsSink(folder, *options))
        return started[-1]

    yield start
    for one in started:
        one.stop()


class Mailbox:
    """A real SMTP server (aiosmtpd) that keeps what it is given; ``hold``: it has the
    message and then answers DATA only that many seconds later (a slow server)."""

    def __init__(self, hold: float = 0.0) -> None:
        self.messages: list[Any] = []
        self.hold = hold
        box = self

        class Keep:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.messages.append(envelope.content)
                await asyncio.sleep(box.hold)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A server that takes a connection and the request and never says a word: what a
    dispatcher talks to when it is killed mid-request before anything was made."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()


async def shop_and_customer(url: str, *, phone: str | None, email: str | None) -> tuple[Any, str]:
    shop_id, cid = uuid.uuid4(), f"c-{uuid.uuid4().hex[:8]}"
    contact = {"name": "Quick Lube", "phone": "+15125550123", "postal_address": "1 Main St"}
    policy = Policy.defaults().merged({"contact": contact}).model_dump(mode="json")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO followup.shop_policies (shop_id, version, policy)"
            " VALUES ($1, 1, $2::jsonb)",
            shop_id,
            json.dumps(policy),
        )
        await conn.execute(
            "INSERT INTO followup.customers (shop_id, customer_id, name, phone, email, timezone)"
            " VALUES ($1, $2, 'Robin Quick', $3, $4, $5)",
            shop_id,
            cid,
            phone,
            email,
            daytime_zone(),
        )
    finally:
        await conn.close()
    return shop_id, cid


async def due_survey(url: str, channel: str) -> tuple[uuid.UUID, str]:
    """A survey due now, by ``channel``, to a customer of a new shop; its id and address."""
    address = (
        f"{PHONE_PREFIX}{secrets.randbelow(10_000):04d}"
        if channel == "sms"
        else f"{uuid.uuid4().hex[:8]}@example.com"
    )
    shop_id, cid = await shop_and_customer(
        url,
        phone=address if channel == "sms" else None,
        email=address if channel == "email" else None,
    )
    message_id = uuid.uuid4()
    context = {"unsubscribe_token": secrets.token_urlsafe(16), "channels": [channel]}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO followup.messages (id, shop_id, customer_id, purpose, kind, channel,"
            " priority, status, send_at, link, context) VALUES ($1, $2, $3, $4, 'survey', $5,"
            " 0, 'due', now(), 'https://quick.example/s/abc', $6::jsonb)",
            message_id,
            shop_id,
            cid,
            f"survey:{message_id}",
            channel,
            json.dumps(context),
        )
    finally:
        await conn.close()
    return message_id, address


async def row(url: str, message_id: uuid.UUID) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchrow(
            "SELECT status, provider_id, reason, attempts, lease_owner, data_started_at"
            " FROM followup.messages WHERE id = $1",
            message_id,
        )
    finally:
        await conn.close()
    assert found is not None
    return found


def settled(url: str, message_id: uuid.UUID, *statuses: str) -> Callable[[], Any]:
    async def check() -> asyncpg.Record | None:
        found = await row(url, message_id)
        return found if found["status"] in statuses else None

    return check


@contextlib.asynccontextmanager
async def replicas(
    url: str, sms_url: str, smtp_url: str, timing: Timing, count: int = 3
) -> AsyncIterator[list[MessageDispatcher]]:
    """``count`` dispatchers, each with its own pool and owner id, running."""
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        running = [
            await stack.enter_async_context(
                replica(url, sms_url, smtp_url, f"replica-{n}-{uuid.uuid4().hex[:4]}", timing)
            )
            for n in range(count)
        ]
        tasks = [asyncio.create_task(d.run(stop)) for d in running]
        try:
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)


class Killable:
    """A dispatcher in a process of its own, for kill -9."""

    def __init__(self, url: str, sms_url: str, smtp_url: str, timing: Timing) -> None:
        self.owner = f"doomed-{uuid.uuid4().hex[:6]}"
        args = [url, sms_url, smtp_url, self.owner]
        args += [str(timing.lease), str(timing.renew), str(timing.deadline)]
        self.proc = subprocess.Popen(
            [sys.executable, str(PROC), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def texts_to(provider: SmsSink, number: str) -> list[dict[str, Any]]:
    return provider.to(number)


TIMING = Timing(lease=3.0, renew=0.5, deadline=2.0)


async def test_a_provider_slower_than_the_lease_with_three_replicas_gets_one_text(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """The stand-in takes the text at once and answers after 5 s, longer than the 3 s
    lease: the sender gives up at 2 s without knowing, and no replica sends it again;
    the text is found in the provider's list and recorded sent with its sid."""
    provider = sink("--answer-after", "5")
    message_id, number = await due_survey(database, "sms")
    async with replicas(database, provider.url, "smtp://127.0.0.1:9", TIMING):
        sent = await wait_for(settled(database, message_id, "sent"), 30)
        await asyncio.sleep(TIMING.lease + 2)  # a lease more: nothing else goes
    (text,) = texts_to(provider, number)
    assert "/s/abc" in text["body"]
    assert sent["provider_id"] == text["sid"] and sent["attempts"] == 1
    assert (await row(database, message_id))["status"] == "sent"


async def test_a_live_sender_keeps_its_message_past_the_lease_by_renewing_it(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """A sender busy for three leases keeps its message: the other replicas' recovery,
    which takes leases expired in database time, finds nothing to take."""
    provider = sink()
    timing = Timing(lease=1.0, renew=0.2, deadline=0.5)
    message_id, _number = await due_survey(database, "sms")
    async with contextlib.AsyncExitStack() as stack:
        a, b, c = [
            await stack.enter_async_context(
                replica(database, provider.url, "smtp://127.0.0.1:9", f"r{n}", timing)
            )
            for n in range(3)
        ]
        claimed = await a.bus.handle(ClaimDueMessages(10, a.owner, a.public_url, timing.lease))
        (mine,) = [x for x in claimed if x.message.id == message_id]
        busy = asyncio.create_task(a._while_leased(message_id, mine.lease, asyncio.sleep(3.0)))
        taken = 0
        while not busy.done():
            taken += await b.recover_once() + await c.recover_once()
            await asyncio.sleep(0.1)
        await busy
        assert taken == 0
        assert await a.bus.handle(RecordDelivery(message_id, mine.lease, provider_id="SMmine"))
    assert (await row(database, message_id))["provider_id"] == "SMmine"


async def test_recovery_takes_only_leases_expired_in_database_time(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    provider = sink()
    message_id, _number = await due_survey(database, "sms")

    def hours_ahead() -> datetime:
        return datetime.now(UTC) + timedelta(hours=3)  # this replica's clock is wrong

    timing = Timing(lease=30.0, renew=5.0, deadline=2.0)
    async with (
        replica(database, provider.url, "smtp://127.0.0.1:9", "a", timing) as a,
        replica(database, provider.url, "smtp://127.0.0.1:9", "b", timing, hours_ahead) as b,
    ):
        claimed = await a.bus.handle(ClaimDueMessages(10, "a", a.public_url, timing.lease))
        assert message_id in [x.message.id for x in claimed]
        assert await b.recover_once() == 0
        assert (await row(database, message_id))["lease_owner"] == "a"
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(
                "UPDATE followup.messages SET lease_expires_at = now() - interval '1 second'"
                " WHERE id = $1",
                message_id,
            )
        finally:
            await conn.close()
        assert await b.recover_once() == 1  # looked up at the provider: nothing there
    again = await row(database, message_id)
    assert (again["status"], again["reason"]) == ("due", "not at the SMS provider: sent again")


async def test_kill9_while_the_provider_holds_the_request_records_it_sent_once(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """The provider took the text and the dispatcher died before it heard: the text is
    found at the provider and recorded sent, never sent again."""
    provider = sink("--answer-after", "30")
    message_id, number = await due_survey(database, "sms")
    doomed = Killable(database, provider.url, "smtp://127.0.0.1:9", TIMING)
    try:
        await wait_for(lambda: _async(texts_to(provider, number)), 20, every=0.02)
    finally:
        doomed.kill()
    assert (await row(database, message_id))["lease_owner"] == doomed.owner
    async with replicas(database, provider.url, "smtp://127.0.0.1:9", TIMING, count=2):
        sent = await wait_for(settled(database, message_id, "sent"), 30)
        await asyncio.sleep(1)
    (text,) = texts_to(provider, number)
    assert sent["provider_id"] == text["sid"]


async def test_kill9_after_the_provider_answered_and_before_it_was_recorded(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """The provider took the text and answered; the dispatcher died before its record
    of the sid committed (held here behind a lock on the message's row): found at the
    provider, recorded sent once, never sent again."""
    provider = sink("--answer-after", "2")
    message_id, number = await due_survey(database, "sms")
    # the answer (2 s) comes well before the sender would give up (4 s)
    timing = Timing(lease=6.0, renew=0.5, deadline=4.0)
    doomed = Killable(database, provider.url, "smtp://127.0.0.1:9", timing)
    holder = await asyncpg.connect(database)
    try:
        await wait_for(lambda: _async(texts_to(provider, number)), 20, every=0.02)
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM followup.messages WHERE id = $1 FOR UPDATE", message_id)
        await asyncio.sleep(3.0)  # the answer is in; the record waits on the lock
        doomed.kill()
        await lock.rollback()
    finally:
        doomed.kill()
        await holder.close()
    assert (await row(database, message_id))["status"] == "sending"
    async with replicas(database, provider.url, "smtp://127.0.0.1:9", TIMING, count=2):
        sent = await wait_for(settled(database, message_id, "sent"), 30)
        await asyncio.sleep(1)
    (text,) = texts_to(provider, number)
    assert sent["provider_id"] == text["sid"] and sent["attempts"] == 1


async def test_kill9_before_the_provider_had_the_text_sends_it_once(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """The dispatcher died mid-request and the provider never made the text: looked up,
    not found, it goes, once."""
    provider = sink()
    message_id, number = await due_survey(database, "sms")
    async with black_hole() as nowhere:
        doomed = Killable(database, f"http://{nowhere}", "smtp://127.0.0.1:9", TIMING)
        try:
            await wait_for(settled(database, message_id, "sending"), 20, every=0.02)
            await asyncio.sleep(0.5)  # the POST is out, unanswered
        finally:
            doomed.kill()
    async with replicas(database, provider.url, "smtp://127.0.0.1:9", TIMING):
        sent = await wait_for(settled(database, message_id, "sent"), 30)
        await asyncio.sleep(TIMING.lease + 1)
    (text,) = texts_to(provider, number)
    assert sent["provider_id"] == text["sid"] and sent["attempts"] == 2


async def test_kill9_after_data_began_is_not_confirmed_and_never_sent_again(
    database: str,
) -> None:
    mailbox = Mailbox(hold=30)
    try:
        message_id, _address = await due_survey(database, "email")
        doomed = Killable(database, "http://127.0.0.1:9", mailbox.url, TIMING)
        try:
            await wait_for(lambda: _async(mailbox.messages), 20, every=0.02)
        finally:
            doomed.kill()
        assert (await row(database, message_id))["data_started_at"] is not None
        async with replicas(database, "http://127.0.0.1:9", mailbox.url, TIMING):
            failed = await wait_for(settled(database, message_id, "failed"), 30)
            await asyncio.sleep(1)
        assert "not confirmed" in failed["reason"] and "not sent again" in failed["reason"]
        assert len(mailbox.messages) == 1
    finally:
        mailbox.stop()


async def test_kill9_before_the_smtp_server_had_it_sends_it_once(database: str) -> None:
    mailbox = Mailbox()
    try:
        message_id, address = await due_survey(database, "email")
        async with black_hole() as nowhere:
            doomed = Killable(database, "http://127.0.0.1:9", f"smtp://{nowhere}", TIMING)
            try:
                await wait_for(settled(database, message_id, "sending"), 20, every=0.02)
                await asyncio.sleep(0.3)
            finally:
                doomed.kill()
        assert (await row(database, message_id))["data_started_at"] is None
        async with replicas(database, "http://127.0.0.1:9", mailbox.url, TIMING):
            sent = await wait_for(settled(database, message_id, "sent"), 30)
            await asyncio.sleep(1)
        assert sent["attempts"] == 2
        assert len(mailbox.messages) == 1 and address.encode() in mailbox.messages[0]
    finally:
        mailbox.stop()


def night_zone() -> str:
    """A zone where it is about 1 a.m. now: inside quiet hours."""
    offset = (1 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 12 else offset
    # Etc/GMT zones have the POSIX sign: Etc/GMT-3 is UTC+3.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"


async def test_consent_and_quiet_hours_are_decided_again_at_the_claim(
    database: str, sink: Callable[..., SmsSink]
) -> None:
    """Due before the customer texted STOP, or before their night began: not sent."""
    provider = sink()
    revoked, revoked_number = await due_survey(database, "sms")
    night, night_number = await due_survey(database, "sms")
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "UPDATE followup.customers SET consent = $2::jsonb WHERE phone = $1",
            revoked_number,
            json.dumps({"sms": False}),
        )
        await conn.execute(
            "UPDATE followup.customers SET timezone = $2 WHERE phone = $1",
            night_number,
            night_zone(),
        )
    finally:
        await conn.close()
    async with replica(database, provider.url, "smtp://127.0.0.1:9", "a", TIMING) as a:
        await a.dispatch_once()
    gone, held = await row(database, revoked), await row(database, night)
    assert (gone["status"], gone["reason"]) == ("suppressed", "sms: customer opted out of sms")
    assert held["status"] == "held" and "quiet hours" in held["reason"]
    assert texts_to(provider, revoked_number) == [] and texts_to(provider, night_number) == []
    conn = await asyncpg.connect(database)
    try:
        wake = await conn.fetchval(
            "SELECT count(*) FROM followup.timers WHERE payload->>'message_id' = $1", str(night)
        )
    finally:
        await conn.close()
    assert wake == 1  # brought back when the window opens


async def _async(value: Any) -> Any:
    return value
