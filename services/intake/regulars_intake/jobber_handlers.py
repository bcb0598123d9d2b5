"""Jobber's thin webhooks: kept at once by the hook, read and accepted later by a worker.

The hook keeps the event with :class:`KeepJobberEvent` and answers; the fetch worker claims
due events with :class:`ClaimJobberFetches`, reads each item from Jobber, and either
accepts what it maps to with :class:`AcceptFetched` (in the transaction that marks the
event done, and only while its lease holds) or records the failure with
:class:`FetchFailedFor`: retried later if it may pass, else parked on the connector's errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from regulars_runtime.bus import Command

from .domain.acceptance import Outcome
from .domain.connectors.jobber import Thin
from .domain.connectors.jobber_fetches import (
    FetchStatus,
    FetchVerdict,
    after_failure,
    dedupe_key,
)
from .domain.connectors.setup import Tally
from .domain.postings import Posting
from .handlers import AcceptDelivery, ClaimedFetch, Deps, IntakeUnitOfWork, accept_delivery


@dataclass(frozen=True)
class KeepJobberEvent(Command[bool]):
    """A signed thin event; answers whether it is new (False: a re-send)."""

    connector_id: uuid.UUID
    shop_id: uuid.UUID
    event: Thin
    payload: dict[str, Any]


@dataclass(frozen=True)
class ClaimJobberFetches(Command[list[ClaimedFetch]]):
    limit: int
    lease: timedelta


@dataclass(frozen=True)
class AcceptFetched(Command["list[Outcome] | None"]):
    """The item was read and mapped: its postings accepted as the delivery's."""

    claimed: ClaimedFetch
    postings: Sequence[Posting]
    rejected: int = 0


@dataclass(frozen=True)
class FetchFailedFor(Command["FetchVerdict | None"]):
    claimed: ClaimedFetch
    reason: str
    transient: bool


async def keep_jobber_event(command: KeepJobberEvent, uow: IntakeUnitOfWork, deps: Deps) -> bool:
    fresh = await uow.jobber_fetches.add(
        command.connector_id, command.shop_id, dedupe_key(command.event), command.payload
    )
    # the delivery is seen now; what it becomes is counted once it is read
    await uow.connectors.tally(command.connector_id, Tally())
    return fresh


async def claim_jobber_fetches(
    command: ClaimJobberFetches, uow: IntakeUnitOfWork, deps: Deps
) -> list[ClaimedFetch]:
    return await uow.jobber_fetches.claim(command.limit, command.lease)


async def accept_fetched(
    command: AcceptFetched, uow: IntakeUnitOfWork, deps: Deps
) -> list[Outcome] | None:
    """None when the lease was lost: another replica has the event, nothing is accepted."""
    claimed = command.claimed
    if not await uow.jobber_fetches.finish(claimed, FetchStatus.done, None, None):
        return None
    return await accept_delivery(
        AcceptDelivery(
            claimed.connector.id, claimed.connector.shop_id, command.postings, command.rejected
        ),
        uow,
        deps,
    )


async def fetch_failed_for(
    command: FetchFailedFor, uow: IntakeUnitOfWork, deps: Deps
) -> FetchVerdict | None:
    claimed = command.claimed
    verdict = after_failure(
        transient=command.transient,
        attempts=claimed.attempts,
        received_at=claimed.received_at,
        now=claimed.now,
    )
    kept = await uow.jobber_fetches.finish(
        claimed, verdict.status, command.reason[:500], verdict.retry_in
    )
    if not kept:
        return None
    if verdict.status is FetchStatus.parked:
        await uow.connectors.tally(claimed.connector.id, Tally(errors=1))
    return verdict
