"""The Jobber fetch worker: claims kept thin events under a lease, reads each item from
Jobber's API, and accepts what it maps to (or records why not).

Any number of intake replicas run it; the claim (SKIP LOCKED, a lease in database time)
hands each event to one of them, and only the lease's holder marks it done, in the
transaction that accepts its postings: a visit arrives once however often it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any, Protocol

from regulars_runtime.bus import MessageBus

from ..adapters.connectors import FetchFailed
from ..adapters.secret_box import SecretBox
from ..domain.connectors import MappingFailed
from ..domain.connectors import jobber as jobber_mapping
from ..domain.postings import Posting, Rejected, parse_posting
from ..handlers import ClaimedFetch
from ..jobber_handlers import AcceptFetched, ClaimJobberFetches, FetchFailedFor

log = logging.getLogger(__name__)

#: longer than a read can take (Jobber's 5 s timeout, plus accepting what it maps to)
LEASE = timedelta(seconds=60)
BATCH = 16
IDLE_SECONDS = 0.25


class Jobber(Protocol):
    async def fetch(
        self, token: str, query: str, variables: dict[str, Any], field: str
    ) -> dict[str, Any] | None: ...


class JobberFetchWorker:
    def __init__(
        self, bus: MessageBus[Any, Any], jobber: Jobber, secrets: SecretBox | None
    ) -> None:
        self.bus = bus
        self.jobber = jobber
        self.secrets = secrets

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                claimed = await self.bus.handle(ClaimJobberFetches(BATCH, LEASE))
            except Exception:
                log.exception("claiming Jobber fetches failed")
                claimed = []
            if claimed:
                await asyncio.gather(*(self._fetch(c) for c in claimed))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), IDLE_SECONDS)

    async def _fetch(self, claimed: ClaimedFetch) -> None:
        try:
            postings, rejected = await self._read(claimed)
        except (FetchFailed, MappingFailed) as failed:
            transient = isinstance(failed, FetchFailed) and failed.transient
            await self._record(FetchFailedFor(claimed, f"{failed}", transient), claimed)
            return
        except Exception:
            # not Jobber's answer but ours: the lease runs out and the event is read again,
            # and the worker goes on with the others
            log.exception("reading a Jobber item failed", extra={"fetch_id": str(claimed.id)})
            return
        await self._record(AcceptFetched(claimed, postings, rejected), claimed)

    async def _read(self, claimed: ClaimedFetch) -> tuple[list[Posting], int]:
        choices = claimed.connector.reading(claimed.timezone)
        event = jobber_mapping.thin(claimed.payload, choices)
        asked = jobber_mapping.query_for(event)
        item = None
        if asked is not None:
            sealed = claimed.sealed_token
            token = None if sealed is None or self.secrets is None else self.secrets.open(sealed)
            if token is None:
                raise MappingFailed("the connector has no usable access token for Jobber's API")
            query, variables, field = asked
            item = await self.jobber.fetch(token, query, variables, field)
        raws = jobber_mapping.map_event(event, item, choices, claimed.received_at)
        postings, rejected = [], 0
        for i, raw in enumerate(raws):
            try:
                postings.append(parse_posting(raw, where=f"mapped[{i}]"))
            except Rejected:
                rejected += 1
        return postings, rejected

    async def _record(self, command: AcceptFetched | FetchFailedFor, claimed: ClaimedFetch) -> None:
        try:
            if isinstance(command, AcceptFetched):
                await self.bus.handle(command)
            else:
                await self.bus.handle(command)
        except Exception:
            # the lease runs out and another try follows: at least once, never lost
            log.exception("recording a Jobber fetch failed")
            return
        log.info(
            "Jobber item read" if isinstance(command, AcceptFetched) else "Jobber read failed",
            extra={
                "fetch_id": str(claimed.id),
                "connector_id": str(claimed.connector.id),
                "attempt": claimed.attempts,
                "error": command.reason if isinstance(command, FetchFailedFor) else None,
            },
        )
