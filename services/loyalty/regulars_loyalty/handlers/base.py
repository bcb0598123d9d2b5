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
from regulars_shop.policy import StaffMember

from ..domain.risk import RiskModel
from ..domain.staff_access import SignInLink, StaffSession
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


@dataclass(frozen=True)
class KnownStaff:
    shop_id: uuid.UUID
    shop_name: str
    member: StaffMember


class SignIns(Protocol):
    async def staff_by_email(self, email: str) -> list[KnownStaff]:
        """Every shop's staff entry with this address (one person can work at two shops)."""
        ...

    async def count_requests(
        self, email_sha256: bytes, client: str, since: datetime
    ) -> tuple[int, int]:
        """Sign-in requests since ``since``: for this address, and from this client."""
        ...

    async def record_request(self, email_sha256: bytes, client: str, at: datetime) -> None: ...

    async def add_link(self, token_sha256: bytes, link: SignInLink) -> None: ...

    async def take_link(self, token_sha256: bytes) -> SignInLink | None:
        """The link, held until commit (two clicks at once: one of them signs in)."""
        ...

    async def spend_link(self, token_sha256: bytes, at: datetime) -> None: ...

    async def add_session(self, token_sha256: bytes, session: StaffSession) -> None: ...

    async def touch_session(self, token_sha256: bytes, at: datetime) -> None: ...

    async def end_session(self, token_sha256: bytes, at: datetime) -> None: ...


class LoyaltyUnitOfWork(UnitOfWork):
    timeline: Timeline
    history: History
    standings: Standings
    models: RiskModels
    sign_ins: SignIns


@dataclass(frozen=True)
class Deps:
    clock: Clock
