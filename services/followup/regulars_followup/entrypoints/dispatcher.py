"""The message dispatcher: hands due messages to SMTP or the SMS gateway.

A message is claimed ('sending') and that claim committed before anything leaves, so two
replicas never send the same one. If the process dies after the claim, the message is
found 'sending' later: an SMS goes again with the same idempotency token (the gateway
drops the copy); an email is marked failed, because SMTP has no such token and a second
copy in the customer's inbox is worse than a missing survey.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import asyncpg
from regulars_bus.supervise import keep_running
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_shop.policy import Policy

from ..adapters.delivery import DeliveryError
from ..domain.templates import render
from ..handlers import FollowUpUnitOfWork
from ..handlers.outreach import DISPATCH_CHANNEL, record_delivery

log = logging.getLogger(__name__)
# Longer than any send can take (the SMTP and SMS adapters time out after 10 s), so a
# message another replica is still sending is never taken for an interrupted one.
INTERRUPTED_AFTER = timedelta(seconds=30)


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
    ) -> None: ...


class SmsSender(Protocol):
    async def send(self, *, to: str, body: str, idempotency_key: str) -> str: ...


class MessageDispatcher:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        database_url: str,
        unit_of_work: Callable[[asyncpg.Connection, Envelope | None], FollowUpUnitOfWork],
        clock: Clock,
        email: EmailSender | None,
        sms: SmsSender | None,
        public_url: str,
        batch_size: int = 50,
    ) -> None:
        self.pool = pool
        self.database_url = database_url
        self.make_uow = unit_of_work
        self.clock = clock
        self.email = email
        self.sms = sms
        self.public_url = public_url.rstrip("/")
        self.batch_size = batch_size
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("message dispatcher", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        listen = await asyncpg.connect(self.database_url)
        try:
            await listen.add_listener(DISPATCH_CHANNEL, lambda *_: self._wake.set())
            while not stop.is_set():
                await self._recover_interrupted()
                sent = await self.dispatch_once()
                if sent >= self.batch_size:
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
        finally:
            with contextlib.suppress(Exception):
                await listen.close()

    async def dispatch_once(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await self.make_uow(conn, None).repo.claim_due_messages(self.batch_size)
        await asyncio.gather(*(self._deliver(m) for m in claimed))
        return len(claimed)

    async def _recover_interrupted(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            uow = self.make_uow(conn, None)
            for message in await uow.repo.interrupted_messages(self.clock() - INTERRUPTED_AFTER):
                if message["channel"] == "sms":
                    await uow.repo.set_message(message["id"], status="due")
                else:
                    await record_delivery(
                        uow,
                        self.clock,
                        message,
                        permanent=True,
                        error="interrupted while sending; not sent again so "
                        "the customer never gets it twice",
                    )
            await uow.flush()

    async def _deliver(self, message: Any) -> None:
        provider_id: str | None = None
        error: str | None = None
        permanent = True
        try:
            provider_id = await self._send(message)
        except DeliveryError as exc:
            error, permanent = exc.message, exc.permanent
        except Exception as exc:  # a bug or a bad template must not stall the queue
            log.exception("message could not be sent", extra={"message_id": str(message["id"])})
            error, permanent = f"{type(exc).__name__}: {exc}", True
        async with self.pool.acquire() as conn, conn.transaction():
            uow = self.make_uow(conn, None)
            await record_delivery(
                uow, self.clock, message, provider_id=provider_id, error=error, permanent=permanent
            )
            await uow.flush()

    async def _send(self, message: Any) -> str | None:
        async with self.pool.acquire() as conn:
            uow = self.make_uow(conn, None)
            customer = await uow.repo.contact(message["shop_id"], message["customer_id"])
            known = await uow.shops.policy(message["shop_id"])
        if customer is None or known is None:
            raise DeliveryError(True, "customer or shop unknown")
        policy: Policy = known[1]
        contact = policy.contact
        if message["to_staff"]:
            await self._send_to_staff(message, policy)
            return None
        token = message["context"].get("unsubscribe_token", "")
        unsubscribe = f"{self.public_url}/u/{token}"
        context = {
            **message["context"],
            "customer_name": customer["name"],
            "shop_name": contact.name or "your service shop",
            "shop_phone": contact.phone,
            "shop_address": contact.postal_address,
            "link": message["link"],
            "unsubscribe_url": unsubscribe,
        }
        rendered = render(message["kind"], message["channel"], context)
        key = f"{message['shop_id']}:{message['customer_id']}:{message['purpose']}"
        if message["channel"] == "sms":
            if self.sms is None:
                raise DeliveryError(True, "no SMS gateway configured (SMS_API_URL)")
            return await self.sms.send(
                to=customer["phone"], body=rendered.text, idempotency_key=key
            )
        if self.email is None:
            raise DeliveryError(True, "no SMTP server configured (SMTP_URL)")
        await self.email.send(
            to=customer["email"],
            subject=rendered.subject or contact.name or "Your visit",
            text=rendered.text,
            html=rendered.html,
            message_id=str(message["id"]),
            headers={"List-Unsubscribe-URL": unsubscribe},
        )
        return None

    async def _send_to_staff(self, message: Any, policy: Policy) -> None:
        member = policy.staff_member(message["to_staff"])
        if member is None or not member.email:
            raise DeliveryError(True, f"no email for staff {message['to_staff']!r} in the policy")
        if self.email is None:
            raise DeliveryError(True, "no SMTP server configured (SMTP_URL)")
        context = {**message["context"], "shop_name": policy.contact.name or "the shop"}
        rendered = render("staff_notification", "email", context)
        await self.email.send(
            to=member.email,
            subject=rendered.subject or "Regulars",
            text=rendered.text,
            html=rendered.html,
            message_id=str(message["id"]),
            headers={},
        )
        return None
