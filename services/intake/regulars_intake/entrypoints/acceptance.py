"""Group commit for single-event posts: requests that arrive together commit together.

Every ``POST /v1/events`` still answers 202 only after its event is committed; what is
shared is the transaction. While one transaction is in flight, new postings queue here;
the next writer takes them all and accepts them with ``handlers.accept_many`` (one
statement per table instead of one transaction per request). On this workload the
database round trips, not fsync, were most of the cost per request (see bench/).

A batch that fails as a whole (a deadlock with another replica, one bad row) is retried
one posting per transaction, so one posting's error is that posting's answer alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from regulars_runtime import telemetry

from .. import handlers
from ..adapters.unit_of_work import lost_a_lock_race
from ..domain.postings import Posting
from ..handlers import IntakeUnitOfWork, Outcome

log = logging.getLogger(__name__)

#: transactions in flight at once: one commits while the next batch forms
WRITERS = 2
#: postings per transaction at most
MAX_BATCH = 256
#: tries of one posting's transaction when PostgreSQL broke a deadlock with it
TRIES = 4

Waiting = tuple[uuid.UUID, Posting, "asyncio.Future[Outcome]"]


class AcceptanceQueue:
    def __init__(
        self,
        unit_of_work: Callable[[], AbstractAsyncContextManager[IntakeUnitOfWork]],
        *,
        writers: int = WRITERS,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._writers = writers
        self._running = 0
        self._waiting: deque[Waiting] = deque()
        self._tasks: set[asyncio.Task[None]] = set()  # referenced, or a writer could be collected

    async def accept(self, shop_id: uuid.UUID, posting: Posting) -> Outcome:
        """The posting's outcome, once its transaction has committed."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        traceparent = telemetry.traceparent_here()
        if traceparent is not None:
            posting = dataclasses.replace(posting, traceparent=traceparent)
        self._waiting.append((shop_id, posting, future))
        if self._running < self._writers:
            # Writers exist only while there is work: nothing to start or stop with the app.
            self._running += 1
            # A context of its own: the writer commits other requests' postings too, and
            # must not write its lines (or its spans) as this request's.
            task = asyncio.create_task(self._write(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # A client that hangs up cancels only this future: the writer commits the batch
        # regardless and skips answering it.
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
                await self._commit(batch)
        finally:
            self._running -= 1

    async def _commit(self, batch: list[Waiting], tries: int = TRIES) -> None:
        try:
            async with self._unit_of_work() as uow:
                outcomes = await handlers.accept_many(uow, [(s, p) for s, p, _f in batch])
        except asyncio.CancelledError:
            for _s, _p, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1:
                if tries > 1 and lost_a_lock_race(exc):
                    await self._commit(batch, tries - 1)
                    return
                _settle(batch[0][2], exc)
                return
            log.warning(
                "a batch of postings failed; retrying one by one",
                extra={"postings": len(batch), "error": repr(exc)},
            )
            for one in batch:
                await self._commit([one])
            return
        for (_s, _p, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)


def _settle(future: asyncio.Future[Outcome], result: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
