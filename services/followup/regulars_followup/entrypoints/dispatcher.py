"""The message dispatcher: hands due messages to SMTP or the SMS gateway.

Everything it decides goes through the bus as commands: a claim (committed before
anything leaves, so two replicas never send the same one), the outcome of each send
(sent, retried later, failed), and the recovery of messages a dead process left
'sending' (an SMS goes again with the same idempotency token, which the gateway drops as
a copy; an email is failed, because SMTP has no such token). What is left here is the
loop and the calls to the senders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from regulars_bus.supervise import keep_running
from regulars_runtime.bus import MessageBus

from ..adapters.delivery import DeliveryError
from ..domain.messages import Undeliverable, compose
from ..handlers import Deps, FollowUpUnitOfWork
from ..handlers.outreach import (
    ClaimDueMessages,
    Claimed,
    RecordDelivery,
    RecoverInterruptedMessages,
)

log = logging.getLogger(__name__)

#: where the SMS provider posts what became of a text (entrypoints/sms_hooks.py)
STATUS_HOOK = "/hooks/sms/status"


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
    async def send(
        self, *, to: str, body: str, idempotency_key: str, status_callback: str | None = None
    ) -> str: ...


class Wakeups(Protocol):
    """Notifications that a message became due (so the loop need not poll hard)."""

    def listening(self, wake: Any) -> AbstractAsyncContextManager[None]: ...


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
    ) -> None:
        self.bus = bus
        self.wakeups = wakeups
        self.email = email
        self.sms = sms
        self.public_url = public_url.rstrip("/")
        self.batch_size = batch_size
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("message dispatcher", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        async with self.wakeups.listening(self._wake.set):
            while not stop.is_set():
                await self.bus.handle(RecoverInterruptedMessages())
                sent = await self.dispatch_once()
                if sent >= self.batch_size:
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

    async def dispatch_once(self) -> int:
        claimed = await self.bus.handle(ClaimDueMessages(self.batch_size))
        await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _deliver(self, claimed: Claimed) -> None:
        message = claimed.message
        outcome = RecordDelivery(message.id)
        try:
            outcome = RecordDelivery(message.id, provider_id=await self._send(claimed))
        except DeliveryError as exc:
            outcome = RecordDelivery(
                message.id, error=exc.message, permanent=exc.permanent, code=exc.code
            )
        except Undeliverable as exc:
            outcome = RecordDelivery(message.id, error=exc.message, permanent=True)
        except Exception as exc:  # a bug or a bad template must not stall the queue
            log.exception("message could not be sent", extra={"message_id": str(message.id)})
            outcome = RecordDelivery(message.id, error=f"{type(exc).__name__}: {exc}")
        await self.bus.handle(outcome)

    async def _send(self, claimed: Claimed) -> str | None:
        message = claimed.message
        out = compose(message, claimed.recipient, claimed.policy, self.public_url)
        if out.channel == "sms":
            if self.sms is None:
                raise DeliveryError(True, "no SMS gateway configured (SMS_API_URL)")
            return await self.sms.send(
                to=out.to,
                body=out.text,
                idempotency_key=message.idempotency_key,
                # our id in the URL: the callback can come before the sid is saved
                status_callback=f"{self.public_url}{STATUS_HOOK}?message={message.id}",
            )
        if self.email is None:
            raise DeliveryError(True, "no SMTP server configured (SMTP_URL)")
        await self.email.send(
            to=out.to,
            subject=out.subject or "",
            text=out.text,
            html=out.html,
            message_id=str(message.id),
            headers=out.headers,
        )
        return None
