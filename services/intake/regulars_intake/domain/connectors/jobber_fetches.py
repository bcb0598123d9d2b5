"""A thin Jobber webhook kept until its item is read: when to ask again, when to stop.

Jobber wants its answer within a second and delivers at least once, so the hook stores the
thin event and answers; a worker reads the item later. What can pass (Jobber slow or down,
its rate limit) is asked again with a growing wait; what will not (an item Jobber does not
know, a token it refuses, an item that does not map) is parked on the connector's errors.
Pure: no clock, no I/O; the times come from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .jobber import Thin

#: the first wait after a transient failure; each later one doubles
FIRST_WAIT = timedelta(seconds=1)
LONGEST_WAIT = timedelta(minutes=15)
#: after this long unread the item is parked (a connector whose API never answers again
#: should be seen by the shop, not asked forever)
GIVE_UP_AFTER = timedelta(days=3)


class FetchStatus(StrEnum):
    pending = "pending"
    done = "done"
    parked = "parked"


@dataclass(frozen=True)
class FetchVerdict:
    status: FetchStatus
    #: the wait before the next try; None once parked
    retry_in: timedelta | None


def dedupe_key(event: Thin) -> tuple[str, str, str]:
    """What makes a re-sent thin event the same one: its topic, item and when it
    happened (a later change of the same item is a new event)."""
    occurred = event.occurred_at.isoformat() if event.occurred_at is not None else ""
    return event.topic, event.item_id, occurred


def after_failure(
    *, transient: bool, attempts: int, received_at: datetime, now: datetime
) -> FetchVerdict:
    """``attempts`` counts the try that just failed (1 for the first)."""
    if not transient or now - received_at >= GIVE_UP_AFTER:
        return FetchVerdict(FetchStatus.parked, None)
    wait = FIRST_WAIT * (2 ** max(attempts - 1, 0)) if attempts < 20 else LONGEST_WAIT
    return FetchVerdict(FetchStatus.pending, min(wait, LONGEST_WAIT))
