"""loyalty's unit of work in memory: the seam its handler tests stand on."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from regulars_events.base import Event
from regulars_events.envelope import Envelope
from regulars_loyalty.domain.risk import RiskModel
from regulars_loyalty.domain.staff_access import SignInLink, StaffSession
from regulars_loyalty.domain.standing import CustomerStanding
from regulars_loyalty.handlers import Deps, LoyaltyUnitOfWork
from regulars_loyalty.handlers.base import CustomerKey, KnownStaff
from regulars_runtime.testing import FakeClock, ShopsInMemory, TimersInMemory


class FakeTimeline:
    """Keeps each event once by id, as the timeline table does; ``added`` counts calls."""

    def __init__(self) -> None:
        self.added: list[uuid.UUID] = []
        self.entries: dict[uuid.UUID, Envelope] = {}

    async def add(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            assert envelope.subject is not None, "a timeline entry belongs to a customer"
            self.added.append(envelope.id)
            self.entries.setdefault(envelope.id, envelope)

    def of(self, shop_id: str, customer_id: str) -> list[str]:
        return [
            e.type
            for e in sorted(self.entries.values(), key=lambda e: e.time)
            if e.shop_id == shop_id and e.subject == customer_id
        ]


class FakeHistory:
    def __init__(self) -> None:
        self.recorded: list[tuple[Envelope, Event]] = []

    async def record(self, events: Sequence[tuple[Envelope, Event]]) -> None:
        self.recorded.extend(events)

    async def visits_by_customer(self, shop_id: uuid.UUID) -> list[list[datetime]]:
        visits: dict[str, dict[str, datetime]] = {}
        for envelope, event in self.recorded:
            if envelope.shop_id != str(shop_id):
                continue
            data = event.model_dump()
            if envelope.type == "regulars.service.completed.v1":
                visits.setdefault(data["customer_id"], {})[data["repair_order_id"]] = data[
                    "completed_at"
                ]
            elif envelope.type in ("regulars.service.voided.v1", "regulars.service.reopened.v1"):
                for orders in visits.values():
                    orders.pop(data["repair_order_id"], None)
        return [sorted(v.values()) for v in visits.values() if v]


class FakeStandings:
    """Standings kept as saved (a copy), so a test sees only what a handler saved."""

    def __init__(self) -> None:
        self.saved: dict[CustomerKey, CustomerStanding] = {}

    async def lock(self, keys: Sequence[CustomerKey]) -> dict[CustomerKey, CustomerStanding]:
        return {
            k: copy.deepcopy(self.saved[k]) if k in self.saved else CustomerStanding(k[0], k[1])
            for k in sorted(set(keys))
        }

    async def lock_shop(
        self, shop_id: uuid.UUID, *, after: str, limit: int
    ) -> list[CustomerStanding]:
        chosen = [s for k, s in sorted(self.saved.items()) if k[0] == str(shop_id) and k[1] > after]
        return [copy.deepcopy(s) for s in chosen[:limit]]

    async def save(self, standings: Sequence[CustomerStanding]) -> None:
        for s in standings:
            assert s.stage is not None and s.risk is not None, "saved once assessed"
            self.saved[(s.shop_id, s.customer_id)] = copy.deepcopy(s)

    def of(self, shop_id: str, customer_id: str) -> CustomerStanding:
        return self.saved[(shop_id, customer_id)]


class FakeRiskModels:
    def __init__(self) -> None:
        self.models: dict[uuid.UUID, RiskModel] = {}

    async def get(self, shop_id: uuid.UUID) -> RiskModel:
        return self.models.get(shop_id, RiskModel())

    async def save(self, shop_id: uuid.UUID, model: RiskModel, customers: int) -> None:
        self.models[shop_id] = model


@dataclasses.dataclass(frozen=True)
class SignInRequest:
    at: datetime
    email_sha256: bytes
    client: str


class SignInsInMemory:
    """The console's sign-in state as PostgresSignIns keeps it: requests, links and
    sessions by the SHA-256 of their token (never the token), staff found in the shops'
    policies (ShopsInMemory) by their address, case-blind, in shop id order."""

    def __init__(self, shops: ShopsInMemory) -> None:
        self.shops = shops
        self.requests: list[SignInRequest] = []
        self.links: dict[bytes, SignInLink] = {}
        self.sessions: dict[bytes, StaffSession] = {}

    async def staff_by_email(self, email: str) -> list[KnownStaff]:
        return [
            KnownStaff(shop_id, known.policy.contact.name or "your shop", member)
            for shop_id, known in sorted(self.shops.policies.items())
            for member in known.policy.staff
            if member.email is not None and member.email.lower() == email
        ]

    async def count_requests(
        self, email_sha256: bytes, client: str, since: datetime
    ) -> tuple[int, int]:
        recent = [r for r in self.requests if r.at >= since]
        return (
            sum(r.email_sha256 == email_sha256 for r in recent),
            sum(r.client == client for r in recent),
        )

    async def record_request(self, email_sha256: bytes, client: str, at: datetime) -> None:
        self.requests.append(SignInRequest(at, email_sha256, client))

    async def add_link(self, token_sha256: bytes, link: SignInLink) -> None:
        assert token_sha256 not in self.links, "a token hash is the primary key"
        self.links[token_sha256] = link

    async def take_link(self, token_sha256: bytes) -> SignInLink | None:
        return self.links.get(token_sha256)

    async def spend_link(self, token_sha256: bytes, at: datetime) -> None:
        if token_sha256 in self.links:
            self.links[token_sha256] = dataclasses.replace(self.links[token_sha256], used_at=at)

    async def add_session(self, token_sha256: bytes, session: StaffSession) -> None:
        assert token_sha256 not in self.sessions, "a token hash is the primary key"
        self.sessions[token_sha256] = session

    async def touch_session(self, token_sha256: bytes, at: datetime) -> None:
        found = self.sessions.get(token_sha256)
        if found is not None and found.ended_at is None:
            later = max(found.last_seen_at, at)
            self.sessions[token_sha256] = dataclasses.replace(found, last_seen_at=later)

    async def end_session(self, token_sha256: bytes, at: datetime) -> None:
        found = self.sessions.get(token_sha256)
        if found is not None and found.ended_at is None:
            self.sessions[token_sha256] = dataclasses.replace(found, ended_at=at)

    def state(
        self,
    ) -> tuple[list[SignInRequest], dict[bytes, SignInLink], dict[bytes, StaffSession]]:
        return list(self.requests), dict(self.links), dict(self.sessions)

    def restore(
        self, state: tuple[list[SignInRequest], dict[bytes, SignInLink], dict[bytes, StaffSession]]
    ) -> None:
        self.requests, self.links, self.sessions = (
            list(state[0]),
            dict(state[1]),
            dict(state[2]),
        )


class Loyalty:
    """loyalty's state in memory, and what its units of work emitted."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.deps = Deps(clock=self.clock)
        self.timeline = FakeTimeline()
        self.history = FakeHistory()
        self.standings = FakeStandings()
        self.models = FakeRiskModels()
        self.shops = ShopsInMemory()
        self.timers = TimersInMemory()
        self.sign_ins = SignInsInMemory(self.shops)
        self.outbox: list[Envelope] = []

    def unit_of_work(self, _conn: Any, cause: Envelope | None = None) -> FakeLoyaltyUnitOfWork:
        """The bus's unit-of-work factory: the connection is not used."""
        return FakeLoyaltyUnitOfWork(self, cause)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeLoyaltyUnitOfWork]:
        """A command's transaction (``MessageBus.transaction``): what the handler changed
        in the sign-in state is undone if it raises, as a rolled-back transaction is."""
        before = self.sign_ins.state()
        uow = self.unit_of_work(None)
        try:
            yield uow
            await uow.flush()
        except BaseException:
            self.sign_ins.restore(before)
            raise

    def emitted(self, event_type: str) -> list[Envelope]:
        return [e for e in self.outbox if e.type == event_type]


class FakeLoyaltyUnitOfWork(LoyaltyUnitOfWork):
    def __init__(self, loyalty: Loyalty, cause: Envelope | None = None) -> None:
        super().__init__(source="loyalty", cause=cause)
        self.loyalty = loyalty
        self.timeline = loyalty.timeline
        self.history = loyalty.history
        self.standings = loyalty.standings
        self.models = loyalty.models
        self.shops = loyalty.shops
        self.timers = loyalty.timers
        self.sign_ins = loyalty.sign_ins

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.loyalty.outbox.extend(envelopes)
