"""What loyalty's handlers are written against: its unit of work and its dependencies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from regulars_events.base import Event
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork

from ..domain.risk import RiskModel
from ..domain.standing import CustomerStanding

#: (shop id, customer id)
CustomerKey = tuple[str, str]


class Timeline(Protocol):
    async def add(self, envelopes: Sequence[Envelope]) -> None:
        """Record each event on its customer's timeline (once per event id)."""
        ...


class History(Protocol):
    """The facts the metrics count, kept per event (visits, answers, cases, invoices...)."""

    async def record(self, events: Sequence[tuple[Envelope, Event]]) -> None:
        """Keep what each event says (idempotent per event)."""
        ...

    async def visits_by_customer(self, shop_id: uuid.UUID) -> list[list[datetime]]:
        """Every customer's standing visit times (for fitting the shop's rhythm)."""
        ...


class Standings(Protocol):
    async def lock(self, keys: Sequence[CustomerKey]) -> dict[CustomerKey, CustomerStanding]:
        """The standings of ``keys``, locked until the transaction ends (new ones for
        customers not seen before)."""
        ...

    async def lock_shop(
        self, shop_id: uuid.UUID, *, after: str, limit: int
    ) -> list[CustomerStanding]:
        """The shop's next ``limit`` standings in customer id order after ``after``,
        locked (a chunk of the monthly rescoring)."""
        ...

    async def save(self, standings: Sequence[CustomerStanding]) -> None: ...


class RiskModels(Protocol):
    async def get(self, shop_id: uuid.UUID) -> RiskModel: ...

    async def save(self, shop_id: uuid.UUID, model: RiskModel, customers: int) -> None:
        """Store the shop's model, fitted on ``customers`` customers with visits."""
        ...


class LoyaltyUnitOfWork(UnitOfWork):
    timeline: Timeline
    history: History
    standings: Standings
    models: RiskModels


@dataclass(frozen=True)
class Deps:
    clock: Clock
