"""feedback's unit of work in memory, for handler tests: repositories that keep what they
are given (copies, as a database would), a timer book that fires what is due on a fake
clock, a shop book, and the outbox as a list of envelopes."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from regulars_events.base import Event
from regulars_events.envelope import Envelope
from regulars_feedback import bootstrap, handlers
from regulars_feedback.domain.cases import CaseEntry, RecoveryCase
from regulars_feedback.domain.surveys import Survey
from regulars_feedback.domain.verdicts import AskKind
from regulars_feedback.domain.visits import Visit
from regulars_feedback.handlers import Deps, FeedbackUnitOfWork
from regulars_runtime.bus import MessageBus
from regulars_runtime.testing import FakeClock, ShopsInMemory, TimersInMemory
from regulars_runtime.timers import NewTimer, Timer
from regulars_runtime.unit_of_work import ShopPolicy
from regulars_shop.policy import Policy

#: the key survey links are made with, in these tests (followup's tests hold it too)
SURVEY_KEY = b"survey links in the tests"


class InMemoryRecoveryCases:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, RecoveryCase] = {}
        self.history: dict[uuid.UUID, list[CaseEntry]] = {}
        self.negatives: list[tuple[uuid.UUID, uuid.UUID, str, str, datetime]] = []

    def _copy(self, case: RecoveryCase | None) -> RecoveryCase | None:
        return None if case is None else copy.deepcopy(case)

    async def get(
        self, case_id: uuid.UUID, shop_id: uuid.UUID | None = None, *, lock: bool = False
    ) -> RecoveryCase | None:
        case = self.rows.get(case_id)
        if case is None or (shop_id is not None and case.shop_id != shop_id):
            return None
        return self._copy(case)

    def _open(self, shop_id: uuid.UUID) -> list[RecoveryCase]:
        return [c for c in self.rows.values() if c.shop_id == shop_id and c.status != "resolved"]

    async def open_for_incident(self, shop_id: uuid.UUID, incident_key: str) -> RecoveryCase | None:
        found = [c for c in self._open(shop_id) if c.incident_key == incident_key]
        return self._copy(found[0] if found else None)

    async def latest_open(self, shop_id: uuid.UUID, customer_id: str) -> RecoveryCase | None:
        found = [c for c in self._open(shop_id) if c.customer_id == customer_id]
        return self._copy(max(found, key=lambda c: c.opened_at) if found else None)

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return any(c.customer_id == customer_id for c in self._open(shop_id))

    async def add(self, case: RecoveryCase) -> bool:
        if await self.open_for_incident(case.shop_id, case.incident_key) is not None:
            return False
        self.history[case.id] = case.taken()
        self.rows[case.id] = copy.deepcopy(case)
        return True

    async def save(self, case: RecoveryCase) -> None:
        assert case.id in self.rows, "save() is for a case that was added"
        self.history[case.id].extend(case.taken())
        self.rows[case.id] = copy.deepcopy(case)

    async def record_negative(
        self, negative_id: uuid.UUID, case: RecoveryCase, at: datetime
    ) -> None:
        self.negatives.append((negative_id, case.shop_id, case.customer_id, case.incident_key, at))

    async def other_incidents(
        self, shop_id: uuid.UUID, customer_id: str, incident_key: str, since: datetime
    ) -> int:
        return len(
            {
                key
                for _id, shop, customer, key, at in self.negatives
                if shop == shop_id and customer == customer_id and key != incident_key
                if at >= since
            }
        )

    def only(self) -> RecoveryCase:
        (case,) = self.rows.values()
        return case

    def kinds(self, case_id: uuid.UUID) -> list[str]:
        return [e.kind for e in self.history[case_id]]


class InMemorySurveys:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Survey] = {}

    async def add(self, survey: Survey) -> bool:
        for s in self.rows.values():
            same = (s.shop_id, s.customer_id, s.repair_order_id, s.reason, s.case_id)
            if same == (
                survey.shop_id,
                survey.customer_id,
                survey.repair_order_id,
                survey.reason,
                survey.case_id,
            ):
                return False
        self.rows[survey.id] = copy.deepcopy(survey)
        return True

    async def by_token(self, token: str, *, lock: bool = False) -> Survey | None:
        found = [s for s in self.rows.values() if s.token == token]
        return copy.deepcopy(found[0]) if found else None

    async def save_answer(self, survey: Survey) -> None:
        assert survey.response is not None
        assert self.rows[survey.id].response is None, "an answer is saved once"
        self.rows[survey.id] = copy.deepcopy(survey)

    def token(self, customer_id: str, reason: str | None = None) -> str:
        (survey,) = [
            s
            for s in self.rows.values()
            if s.customer_id == customer_id and reason in (None, s.reason)
        ]
        return survey.token


class InMemoryVisits:
    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, str], Visit] = {}
        self.seen: dict[tuple[uuid.UUID, str], datetime] = {}

    async def remember(
        self,
        shop_id: uuid.UUID,
        repair_order_id: str,
        customer_id: str,
        *,
        advisor: str | None,
        comeback: bool | None,
        completed_at: datetime | None,
    ) -> None:
        known = self.rows.get((shop_id, repair_order_id))
        if known is None:
            self.rows[(shop_id, repair_order_id)] = Visit(
                repair_order_id, customer_id, advisor, bool(comeback), completed_at
            )
            return
        # a call's assignee only fills in an advisor not known yet
        advisor = (known.advisor or advisor) if completed_at is None else (advisor or known.advisor)
        self.rows[(shop_id, repair_order_id)] = Visit(
            repair_order_id,
            customer_id,
            advisor,
            known.comeback if comeback is None else comeback,
            completed_at or known.completed_at,
        )

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None:
        return self.rows.get((shop_id, repair_order_id))

    async def had_comeback(self, shop_id: uuid.UUID, customer_id: str, since: datetime) -> bool:
        return any(
            shop == shop_id
            and v.customer_id == customer_id
            and v.comeback
            and (v.completed_at is None or v.completed_at >= since)
            for (shop, _ro), v in self.rows.items()
        )


class InMemoryAsks:
    def __init__(self) -> None:
        self.rows: set[tuple[uuid.UUID, str, str, AskKind]] = set()

    async def add(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        subject: str,
        kind: AskKind,
        survey_id: uuid.UUID | None,
        at: datetime,
    ) -> bool:
        key = (shop_id, customer_id, subject, kind)
        if key in self.rows:
            return False
        self.rows.add(key)
        return True


class InMemoryTimeline:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def add(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@dataclass
class World:
    """The stores one test's units of work share (what a database would hold)."""

    cases: InMemoryRecoveryCases = field(default_factory=InMemoryRecoveryCases)
    surveys: InMemorySurveys = field(default_factory=InMemorySurveys)
    visits: InMemoryVisits = field(default_factory=InMemoryVisits)
    asks: InMemoryAsks = field(default_factory=InMemoryAsks)
    timeline: InMemoryTimeline = field(default_factory=InMemoryTimeline)
    timers: TimersInMemory = field(default_factory=TimersInMemory)
    shops: ShopsInMemory = field(default_factory=ShopsInMemory)
    outbox: list[Envelope] = field(default_factory=list)


class FakeFeedbackUnitOfWork(FeedbackUnitOfWork):
    def __init__(self, world: World, cause: Envelope | None = None) -> None:
        super().__init__(source="feedback", cause=cause)
        self.world = world
        self.cases = world.cases
        self.surveys = world.surveys
        self.visits = world.visits
        self.asks = world.asks
        self.timeline = world.timeline
        self.timers = world.timers
        self.shops = world.shops

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.world.outbox.extend(envelopes)


class Feedback:
    """feedback's handlers behind its real bus, on the in-memory unit of work."""

    def __init__(self, now: datetime, policy: Policy | None) -> None:
        self.shop_id = uuid.uuid4()
        self.clock = FakeClock(now)
        self.world = World()
        if policy is not None:
            self.world.shops.policies[self.shop_id] = ShopPolicy(1, policy)
        self.deps = Deps(clock=self.clock, public_url="https://fb.example", survey_key=SURVEY_KEY)
        self.bus: MessageBus[FeedbackUnitOfWork, Deps] = MessageBus(
            unit_of_work=lambda _conn, cause: FakeFeedbackUnitOfWork(self.world, cause),
            deps=self.deps,
            events=handlers.EVENTS,
            timers=handlers.TIMERS,
            # the commands exactly as bootstrap registers them
            commands=bootstrap.bus(self.deps).commands,
            every_event=handlers.remember,
        )
        self._timer_ids = 0

    async def deliver(self, event: Event) -> None:
        envelope = Envelope.wrap(event, source="test", shop_id=str(self.shop_id), time=self.clock())
        await self.bus.handle_event(envelope, None)  # type: ignore[arg-type]

    async def handle(self, command: Any) -> Any:
        """As ``bus.handle`` does, on a unit of work that commits only if it succeeds."""
        uow = FakeFeedbackUnitOfWork(self.world)
        result = await self.bus.commands[type(command)](command, uow, self.deps)
        await uow.flush()
        return result

    async def fire(self, timer: NewTimer) -> None:
        """One timer firing (again, if it fired before: a stale or duplicate firing)."""
        self._timer_ids += 1
        booked = self.world.timers.book.get(timer.key)
        if booked is not None:
            booked.fired = True
        shop = timer.shop_id
        fired = Timer(
            id=self._timer_ids,
            key=timer.key,
            kind=timer.kind,
            shop_id=uuid.UUID(str(shop)) if shop is not None else None,
            fire_at=timer.fire_at,
            payload=dict(timer.payload),
            attempts=0,
        )
        await self.bus.handle_timer(fired, None)  # type: ignore[arg-type]

    async def at(self, when: datetime) -> int:
        """Move the clock to ``when`` and fire what is due, in order."""
        self.clock.now = when
        fired = 0
        while due := [t for t in self.world.timers.pending() if t.fire_at <= when]:
            await self.fire(due[0])
            fired += 1
        return fired

    def events(self, ce_type: str) -> list[dict[str, Any]]:
        return [e.data for e in self.world.outbox if e.type == ce_type]
