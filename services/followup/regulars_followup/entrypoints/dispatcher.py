"""The message dispatcher: hands due messages to SMTP or the SMS gateway.

Everything it decides goes through the bus as commands. A claim leases each message to
this replica (its owner id) until a time in the database's clock, committed before
anything leaves; the sender renews the lease while a send goes on, confirms it just
before anything leaves, and records the outcome only while it still holds it. A lease
that expired in database time means its sender died or heard nothing: an email whose
DATA never began goes again, one whose DATA began is failed as not confirmed (SMTP has
no token to ask with); a text is looked up at the provider, which has no idempotency
token either, only its list of messages: found, it was sent; not found, it never left.

A database error while dispatching is the infrastructure's, never the customer's
message failing: the message is left to its lease (or the command is tried again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from regulars_bus.supervise import keep_running
from regulars_runtime.bus import Command, MessageBus

from ..adapters.delivery import DeliveryError, UnconfirmedDelivery
from ..adapters.unit_of_work import infrastructure_fault
from ..domain.messages import Undeliverable
from ..handlers import Deps, FollowUpUnitOfWork
from ..handlers.outreach import (
    LEASE_SECONDS,
    ClaimDueMessages,
    Claimed,
    Lease,
    MarkDataStarted,
    ProviderLookup,
    RecordDelivery,
    RecoverInterruptedMessages,
    RenewLease,
    SettleLookup,
)

log = logging.getLogger(__name__)

R = TypeVar("R")

#: where the SMS provider posts what became of a text (entrypoints/sms_hooks.py)
STATUS_HOOK = "/hooks/sms/status"

#: the longest a send may take, end to end (the adapters' own timeouts, 10 s, are per
#: step): under the lease by more than a renewal, so that once a lease has expired in
#: database time the request of the sender that held it is surely over
SEND_DEADLINE = 20.0


class EmailSender(Protocol):
    async def send(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str | None,
        message_id: str,
        headers: dict[str, str],
        before_data: Callable[[], Awaitable[None]] | None = None,
    ) -> None: ...


class SmsSender(Protocol):
    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> str: ...

    async def sent_since(self, *, to: str, body_sha256: str, since: datetime) -> list[str]: ...


class Wakeups(Protocol):
    """Notifications that a message became due (so the loop need not poll hard)."""

    def listening(self, wake: Any) -> AbstractAsyncContextManager[None]: ...


def replica_id() -> str:
    """This dispatcher's name on its leases: host, process and a random part (a pid is
    reused after a restart, a host name by every pod of a StatefulSet)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseLost(Exception):
    """Another dispatcher took the message over: this one stops and records nothing."""


class MessageDispatcher:
    def __init__(
        self,
        *,
        bus: MessageBus[FollowUpUnitOfWork, Deps],
        wakeups: Wakeups,
        email: EmailSender | None,
        sms: SmsSender | None,
        public_url: str,
        batch_size: int = 50,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        renew_every: float | None = None,
        send_deadline: float = SEND_DEADLINE,
        retry_pause: float = 0.5,
    ) -> None:
        self.renew_every = renew_every if renew_every is not None else lease_seconds / 6
        if send_deadline + self.renew_every >= lease_seconds:
            raise ValueError(
                f"a send may take {send_deadline:g} s: the lease ({lease_seconds:g} s) must be"
                f" longer than that and a renewal ({self.renew_every:g} s)"
            )
        self.bus = bus
        self.wakeups = wakeups
        self.email = email
        self.sms = sms
        self.public_url = public_url.rstrip("/")
        self.batch_size = batch_size
        self.owner = owner or replica_id()
        self.lease_seconds = lease_seconds
        self.send_deadline = send_deadline
        self.retry_pause = retry_pause
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("message dispatcher", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        async with self.wakeups.listening(self._wake.set):
            while not stop.is_set():
                await self.recover_once()
                sent = await self.dispatch_once()
                if sent >= self.batch_size:
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

    async def recover_once(self) -> int:
        """Settle the messages whose lease expired; the texts among them are looked up."""
        lookups = await self.bus.handle(
            RecoverInterruptedMessages(self.owner, self.public_url, self.lease_seconds)
        )
        await asyncio.gather(*(self._look_up(lookup) for lookup in lookups))
        return len(lookups)

    async def dispatch_once(self) -> int:
        claimed = await self.bus.handle(
            ClaimDueMessages(self.batch_size, self.owner, self.public_url, self.lease_seconds)
        )
        await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _look_up(self, lookup: ProviderLookup) -> None:
        extra = {"message_id": str(lookup.message_id)}
        if self.sms is None:
            log.warning("an interrupted text waits for an SMS gateway (SMS_API_URL)", extra=extra)
            return
        sms = self.sms
        try:
            sids = await self._while_leased(
                lookup.message_id,
                lookup.lease,
                sms.sent_since(to=lookup.to, body_sha256=lookup.body_sha256, since=lookup.since),
            )
        except (DeliveryError, LeaseLost) as exc:
            # Asked again once this lease expires: never re-sent without an answer.
            log.warning("interrupted text not looked up: %s", exc, extra=extra)
            return
        except Exception as exc:
            if not infrastructure_fault(exc):
                raise
            log.warning("interrupted text not looked up: %r", exc, extra=extra)
            return
        await self._record(SettleLookup(lookup.message_id, lookup.lease, tuple(sids)), extra)

    async def _deliver(self, claimed: Claimed) -> None:
        message, lease = claimed.message, claimed.lease
        extra = {"message_id": str(message.id)}
        outcome: RecordDelivery
        try:
            provider_id = await self._while_leased(message.id, lease, self._send(claimed))
            outcome = RecordDelivery(message.id, lease, provider_id=provider_id)
        except LeaseLost:
            log.warning("message taken over by another dispatcher; left to it", extra=extra)
            return
        except UnconfirmedDelivery as exc:
            outcome = RecordDelivery(
                message.id,
                lease,
                error=exc.message,
                unconfirmed=True,
                look_up_after=self.lease_seconds,
            )
        except DeliveryError as exc:
            outcome = RecordDelivery(
                message.id, lease, error=exc.message, permanent=exc.permanent, code=exc.code
            )
        except Undeliverable as exc:
            outcome = RecordDelivery(message.id, lease, error=exc.message, permanent=True)
        except Exception as exc:
            if infrastructure_fault(exc):
                # Our database, not the customer's message: nothing left, or the lease's
                # recovery settles it (an email whose DATA began is not sent again).
                log.warning("message left to its lease: %r", exc, extra=extra)
                return
            # a bug in a sender: this message's error, and the queue goes on
            log.exception("message could not be sent", extra=extra)
            outcome = RecordDelivery(message.id, lease, error=f"{type(exc).__name__}: {exc}")
        await self._record(outcome, extra)

    async def _record(self, command: Command[bool], extra: dict[str, str]) -> None:
        """Record an outcome, trying again while the database is away; given up, the
        message is settled by the lease's recovery instead."""
        for attempt in range(5):
            try:
                if not await self.bus.handle(command):
                    log.warning("outcome not recorded: another dispatcher holds it", extra=extra)
                return
            except Exception as exc:
                if not infrastructure_fault(exc):
                    raise
                log.warning("recording an outcome failed (%r); trying again", exc, extra=extra)
                await asyncio.sleep(self.retry_pause * 2**attempt)
        log.error("outcome not recorded; left to the lease's recovery", extra=extra)

    async def _while_leased(self, message_id: Any, lease: Lease, work: Coroutine[Any, Any, R]) -> R:
        """Run ``work`` while renewing the lease; cancelled, with LeaseLost, as soon as
        another dispatcher holds the message."""
        task = asyncio.ensure_future(work)
        lost = False

        async def heartbeat() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(self.renew_every)
                try:
                    held = await self.bus.handle(RenewLease(message_id, lease, self.lease_seconds))
                except Exception as exc:
                    if not infrastructure_fault(exc):
                        raise
                    log.warning("lease not renewed (%r); trying again", exc)
                    continue
                if not held:
                    lost = True
                    task.cancel()
                    return

        beating = asyncio.create_task(heartbeat())
        try:
            return await task
        except asyncio.CancelledError:
            if lost:
                raise LeaseLost() from None
            raise
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beating

    async def _confirm(self, message_id: Any, lease: Lease) -> None:
        """Right before anything leaves: this replica still holds the message, for a
        whole lease from now in database time (a sender stalled past its lease stops)."""
        if not await self.bus.handle(RenewLease(message_id, lease, self.lease_seconds)):
            raise LeaseLost()

    async def _send(self, claimed: Claimed) -> str | None:
        message, out, lease = claimed.message, claimed.outgoing, claimed.lease
        if out.channel == "sms":
            if self.sms is None:
                raise DeliveryError(True, "no SMS gateway configured (SMS_API_URL)")
            await self._confirm(message.id, lease)
            try:
                async with asyncio.timeout(self.send_deadline):
                    return await self.sms.send(
                        to=out.to,
                        body=out.text,
                        # our id in the URL: the callback can come before the sid is saved,
                        # or settle a text whose sender died
                        status_callback=f"{self.public_url}{STATUS_HOOK}?message={message.id}",
                    )
            except TimeoutError:
                raise UnconfirmedDelivery(
                    f"no answer from the SMS provider in {self.send_deadline:g} s"
                ) from None
        if self.email is None:
            raise DeliveryError(True, "no SMTP server configured (SMTP_URL)")
        began = False

        async def before_data() -> None:
            nonlocal began
            if not await self.bus.handle(MarkDataStarted(message.id, lease)):
                raise LeaseLost()
            began = True

        await self._confirm(message.id, lease)
        try:
            async with asyncio.timeout(self.send_deadline):
                await self.email.send(
                    to=out.to,
                    subject=out.subject or "",
                    text=out.text,
                    html=out.html,
                    message_id=str(message.id),
                    headers=out.headers,
                    before_data=before_data,
                )
        except TimeoutError:
            if began:
                raise UnconfirmedDelivery(
                    f"no answer from the SMTP server in {self.send_deadline:g} s"
                ) from None
            raise DeliveryError(
                False, f"SMTP server too slow: not done in {self.send_deadline:g} s"
            ) from None
        return None
