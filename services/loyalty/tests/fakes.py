"""loyalty's unit of work in memory: the seam its handler tests stand on."""

from __future__ import annotations

import uuid
from typing import Any

from regulars_events.envelope import Envelope
from regulars_loyalty.handlers import Deps, LoyaltyUnitOfWork
from regulars_runtime.testing import FakeClock, ShopsInMemory, TimersInMemory


class FakeTimeline:
    """Keeps each event once by id, as the timeline table does; ``added`` counts calls."""

    def __init__(self) -> None:
        self.added: list[uuid.UUID] = []
        self.entries: dict[uuid.UUID, Envelope] = {}

    async def add(self, envelope: Envelope) -> None:
        assert envelope.subject is not None, "a timeline entry belongs to a customer"
        self.added.append(envelope.id)
        self.entries.setdefault(envelope.id, envelope)

    def of(self, shop_id: str, customer_id: str) -> list[str]:
        return [
            e.type
            for e in sorted(self.entries.values(), key=lambda e: e.time)
            if e.shop_id == shop_id and e.subject == customer_id
        ]


class Loyalty:
    """loyalty's state in memory, and what its units of work emitted."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.deps = Deps(clock=self.clock)
        self.timeline = FakeTimeline()
        self.shops = ShopsInMemory()
        self.timers = TimersInMemory()
        self.outbox: list[Envelope] = []

    def unit_of_work(self, _conn: Any, cause: Envelope | None = None) -> FakeLoyaltyUnitOfWork:
        """The bus's unit-of-work factory: the connection is not used."""
        return FakeLoyaltyUnitOfWork(self, cause)


class FakeLoyaltyUnitOfWork(LoyaltyUnitOfWork):
    def __init__(self, loyalty: Loyalty, cause: Envelope | None = None) -> None:
        super().__init__(source="loyalty", cause=cause)
        self.loyalty = loyalty
        self.timeline = loyalty.timeline
        self.shops = loyalty.shops
        self.timers = loyalty.timers

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.loyalty.outbox.extend(envelopes)
