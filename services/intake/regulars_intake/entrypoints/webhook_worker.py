"""The delivery worker: claims due tries under a lease, sends them, records each answer.

Any number of intake replicas run it; the claim (SKIP LOCKED, a lease in database time)
hands each try to one of them, and an answer is recorded only by the lease's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any, Protocol

from regulars_runtime.bus import MessageBus
from regulars_runtime.metrics import WEBHOOK_DELIVERIES, webhook_result

from ..domain.webhooks import Answer
from ..webhook_handlers import ClaimDeliveries, ClaimedDelivery, OwnerNotice, RecordAnswer

log = logging.getLogger(__name__)

#: longer than a try can take (10 s, plus the DNS look-up and recording)
LEASE = timedelta(seconds=60)
BATCH = 32
IDLE_SECONDS = 0.25


class Sender(Protocol):
    async def send(self, claimed: ClaimedDelivery) -> Answer: ...

    async def close(self) -> None: ...


class Mail(Protocol):
    async def send(self, notice: OwnerNotice) -> None: ...


class DeliveryWorker:
    def __init__(self, bus: MessageBus[Any, Any], sender: Sender, mail: Mail | None) -> None:
        self.bus = bus
        self.sender = sender
        self.mail = mail

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    claimed = await self.bus.handle(ClaimDeliveries(BATCH, LEASE))
                except Exception:
                    log.exception("claiming webhook deliveries failed")
                    claimed = []
                if claimed:
                    await asyncio.gather(*(self._deliver(c) for c in claimed))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
        finally:
            await self.sender.close()

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        try:
            answer = await self.sender.send(claimed)
        except Exception as exc:
            log.warning("webhook try failed", extra={"error": type(exc).__name__})
            answer = Answer(None, "connection")
        WEBHOOK_DELIVERIES.labels(webhook_result(answer.status_code, answer.error)).inc()
        try:
            notice = await self.bus.handle(RecordAnswer(claimed, answer))
        except Exception:
            # the lease runs out and another try follows: at least once, never lost
            log.exception("recording a webhook answer failed")
            return
        log.info(
            "webhook delivery tried",
            extra={
                "delivery_id": str(claimed.id),
                "attempt": claimed.attempts,
                "status_code": answer.status_code,
                "error": answer.error,
            },
        )
        if notice is not None and self.mail is not None:
            try:
                await self.mail.send(notice)
            except Exception as exc:
                log.warning("telling the owner failed", extra={"error": type(exc).__name__})
