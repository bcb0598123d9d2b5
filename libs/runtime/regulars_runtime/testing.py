"""What every service's tests at the unit-of-work seam share: a clock they set, and the
platform's books (durable timers, the shops' policies) in memory.

Each behaves like the real one where a handler can tell: a timer is idempotent by key, a
cancelled or fired timer never fires, a missing policy is None.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from regulars_events.envelope import Envelope
from regulars_shop.policy import Policy

from .timers import NewTimer, Timer
from .unit_of_work import ShopPolicy


class FakeClock:
    """The time as the test says it is."""

    def __init__(self, now: datetime = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@dataclass
class BookedTimer:
    timer: NewTimer
    fired: bool = False
    cancelled_at: datetime | None = None


class TimersInMemory:
    """A service's durable timers (the TimerBook a unit of work holds), in memory."""

    def __init__(self) -> None:
        self.book: dict[str, BookedTimer] = {}

    async def schedule(self, timer: NewTimer, *, reschedule: bool = False) -> bool:
        booked = self.book.get(timer.key)
        if booked is not None and (not reschedule or booked.fired):
            return False  # a key is one moment; a fired timer is never moved
        self.book[timer.key] = BookedTimer(timer)
        return True

    async def schedule_many(self, new: Sequence[NewTimer]) -> int:
        return sum([await self.schedule(t) for t in new])

    async def cancel(self, key: str, *, at: datetime | None = None) -> bool:
        booked = self.book.get(key)
        if booked is None or booked.fired or booked.cancelled_at is not None:
            return False
        booked.cancelled_at = at or datetime.now(UTC)
        return True

    async def cancel_many(self, keys: Sequence[str]) -> int:
        return sum([await self.cancel(key) for key in keys])

    def pending(self, kind: str | None = None) -> list[NewTimer]:
        """The timers that will still fire, soonest first (of ``kind`` when given)."""
        return sorted(
            (
                b.timer
                for b in self.book.values()
                if not b.fired and b.cancelled_at is None and kind in (None, b.timer.kind)
            ),
            key=lambda t: (t.fire_at, t.key),
        )

    def of_kind(self, kind: str) -> list[NewTimer]:
        return self.pending(kind)

    def cancelled(self) -> set[str]:
        return {key for key, b in self.book.items() if b.cancelled_at is not None}

    def fired(self, timer: NewTimer) -> Timer:
        """``timer`` as the scheduler hands it to its handler (and it fires only once)."""
        self.book[timer.key].fired = True
        shop = None if timer.shop_id is None else uuid.UUID(str(timer.shop_id))
        return Timer(0, timer.key, timer.kind, shop, timer.fire_at, dict(timer.payload), 0)


class ShopsInMemory:
    """A service's copy of the shops' facts (the ShopBook), in memory."""

    def __init__(self) -> None:
        self.applied: list[Envelope] = []
        self.policies: dict[uuid.UUID, ShopPolicy] = {}

    async def apply(self, envelope: Envelope) -> None:
        """Keeps every shop fact; a policy change is the shop's policy from then on, as
        the shop directory's copy would be."""
        self.applied.append(envelope)
        if envelope.type == "regulars.shop.policy_changed.v1":
            self.policies[uuid.UUID(envelope.shop_id)] = ShopPolicy(
                int(envelope.data["version"]), Policy.model_validate(envelope.data["policy"])
            )

    async def policy(self, shop_id: uuid.UUID) -> ShopPolicy | None:
        return self.policies.get(shop_id)
