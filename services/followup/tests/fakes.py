"""followup's unit of work in memory, for handler tests: the seam bootstrap wires at.

Every repository keeps copies (what a database would), so a test sees only what a
handler saved; timers and the outbox are lists a test can read.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from regulars_events.base import Event
from regulars_events.envelope import Envelope
from regulars_followup.adapters.sms import normalize_e164
from regulars_followup.domain.attempts import Attempt
from regulars_followup.domain.consent import ConsentChange
from regulars_followup.domain.customers import Customer
from regulars_followup.domain.follow_up import CompletedVisit, FollowUpTask
from regulars_followup.domain.inbound_texts import InboundText, KnownNumber
from regulars_followup.domain.messages import MessageStatus, OutboundMessage
from regulars_followup.domain.outreach import DECIDED_UNSENT, BudgetFacts, Priority, Spent
from regulars_followup.domain.sweep import CustomerHistory, VisitFact
from regulars_followup.domain.visits import Visit, VisitStatus
from regulars_followup.handlers import Deps, FollowUpUnitOfWork
from regulars_runtime.bus import Received
from regulars_runtime.testing import FakeClock, ShopsInMemory, TimersInMemory
from regulars_runtime.unit_of_work import ShopPolicy
from regulars_shop.policy import Policy

#: the key survey links are made with, in these tests
SURVEY_KEY = b"survey links in the tests"


class FakeTasks:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, FollowUpTask] = {}
        self.attempts: dict[uuid.UUID, list[tuple[int, Attempt]]] = {}

    def _one_per(self, task: FollowUpTask) -> bool:
        return not any(
            (t.shop_id, t.repair_order_id, t.kind)
            == (task.shop_id, task.repair_order_id, task.kind)
            for t in self.rows.values()
        )

    async def add(self, task: FollowUpTask) -> bool:
        if not self._one_per(task):
            return False
        self.rows[task.id] = copy.deepcopy(task)
        return True

    async def add_many(self, tasks: Sequence[FollowUpTask]) -> None:
        for task in tasks:
            await self.add(task)

    async def get(self, shop_id: uuid.UUID, task_id: uuid.UUID) -> FollowUpTask | None:
        task = self.rows.get(task_id)
        return copy.deepcopy(task) if task is not None and task.shop_id == shop_id else None

    async def by_id(self, task_id: uuid.UUID) -> FollowUpTask | None:
        return copy.deepcopy(self.rows.get(task_id))

    async def open_calls(
        self, shop_id: uuid.UUID, customer_id: str, kind: str
    ) -> list[FollowUpTask]:
        return [
            copy.deepcopy(t)
            for t in self.rows.values()
            if (t.shop_id, t.customer_id, t.kind) == (shop_id, customer_id, kind) and t.is_open
        ]

    async def for_visit(self, shop_id: uuid.UUID, repair_order_id: str) -> FollowUpTask | None:
        for task in self.rows.values():
            if (task.shop_id, task.repair_order_id, task.kind) == (
                shop_id,
                repair_order_id,
                "visit",
            ):
                return copy.deepcopy(task)
        return None

    async def save(self, task: FollowUpTask) -> None:
        assert task.id in self.rows, "save() of a task never added"
        self.attempts.setdefault(task.id, []).extend(task.new_attempts)
        task.new_attempts.clear()
        self.rows[task.id] = copy.deepcopy(task)


class FakeVisits:
    def __init__(self, customers: FakeCustomers) -> None:
        self.rows: dict[tuple[uuid.UUID, str], Visit] = {}
        self.customers = customers

    async def add_new(self, visits: Sequence[CompletedVisit]) -> set[tuple[uuid.UUID, str]]:
        added = set()
        for v in visits:
            key = (v.shop_id, v.repair_order_id)
            if key not in self.rows:
                self.rows[key] = Visit(
                    v.shop_id,
                    v.repair_order_id,
                    v.customer_id,
                    v.completed_at,
                    VisitStatus.COMPLETED,
                    dict(v.data),
                )
                added.add(key)
        return added

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None:
        return copy.deepcopy(self.rows.get((shop_id, repair_order_id)))

    async def save(self, visit: Visit) -> None:
        self.rows[(visit.shop_id, visit.repair_order_id)] = copy.deepcopy(visit)

    async def last_of(self, shop_id: uuid.UUID, customer_id: str) -> Visit | None:
        theirs = [
            v
            for v in self.rows.values()
            if (v.shop_id, v.customer_id) == (shop_id, customer_id)
            and v.status is VisitStatus.COMPLETED
        ]
        last = max(theirs, key=lambda v: (v.completed_at, v.repair_order_id), default=None)
        return copy.deepcopy(last)

    async def histories(
        self, shop_id: uuid.UUID, *, after: str | None, limit: int
    ) -> list[CustomerHistory]:
        out = []
        for (shop, cid), customer in sorted(self.customers.rows.items()):
            if shop != shop_id or (after is not None and cid <= after):
                continue
            if len(out) == limit:
                break
            visits = sorted(
                (
                    VisitFact(
                        v.repair_order_id,
                        v.completed_at,
                        v.data.get("asset_id"),
                        v.data.get("mileage"),
                        " ".join(str(v.data.get(k) or "") for k in ("work_performed", "concern")),
                    )
                    for v in self.rows.values()
                    if (v.shop_id, v.customer_id) == (shop_id, cid)
                    and v.status is VisitStatus.COMPLETED
                ),
                key=lambda f: f.completed_at,
            )
            out.append(CustomerHistory(cid, customer.birthday, visits, customer.stage))
        return out


class FakeCustomers:
    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, str], Customer] = {}
        self.ledger: list[tuple[uuid.UUID, str, ConsentChange]] = []

    async def upsert(self, shop_id: uuid.UUID, record: dict[str, Any]) -> None:
        key = (shop_id, record["customer_id"])
        known = self.rows.get(key, Customer(record["customer_id"]))
        self.rows[key] = replace(
            known,
            name=record["name"],
            phone=record.get("phone"),
            email=record.get("email"),
            state=record.get("state"),
            timezone=record.get("timezone"),
            birthday=date.fromisoformat(record["birthday"]) if record.get("birthday") else None,
        )

    async def get(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        return self.rows.get((shop_id, customer_id))

    async def contact(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        return self.rows.get((shop_id, customer_id))

    async def record_consent(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        change: ConsentChange,
        event_id: uuid.UUID | None,
        at: datetime,
    ) -> None:
        self.ledger.append((shop_id, customer_id, change))
        key = (shop_id, customer_id)
        c = self.rows[key]
        sms = change.channel == "sms"
        self.rows[key] = replace(
            c,
            consent={**c.consent, change.channel: change.granted},
            sms_opted_out_at=at if sms and not change.granted else c.sms_opted_out_at,
            awaiting_opt_out_answer=(not change.granted) if sms else c.awaiting_opt_out_answer,
        )

    async def save_stage(self, shop_id: uuid.UUID, customer: Customer) -> None:
        key = (shop_id, customer.customer_id)
        self.rows[key] = replace(self.rows[key], stage=customer.stage, stage_at=customer.stage_at)


class FakeMessages:
    def __init__(self, visits: FakeVisits) -> None:
        self.rows: dict[uuid.UUID, OutboundMessage] = {}
        self.visits = visits
        self.open_cases: set[tuple[uuid.UUID, str]] = set()
        self.wake_ups = 0
        self.lease_expires: dict[uuid.UUID, datetime] = {}
        #: how far the database's clock is from the machine's (leases are in its time)
        self.db_clock_offset = timedelta(0)

    async def add(self, message: OutboundMessage) -> bool:
        if any(
            (m.shop_id, m.customer_id, m.purpose)
            == (message.shop_id, message.customer_id, message.purpose)
            for m in self.rows.values()
        ):
            return False
        self.rows[message.id] = copy.deepcopy(message)
        return True

    async def get(self, message_id: uuid.UUID) -> OutboundMessage | None:
        return copy.deepcopy(self.rows.get(message_id))

    async def by_provider_id(self, provider_id: str) -> OutboundMessage | None:
        for m in self.rows.values():
            if m.provider_id == provider_id:
                return copy.deepcopy(m)
        return None

    async def by_unsubscribe_token(self, token: str) -> OutboundMessage | None:
        for m in self.rows.values():
            if m.context.get("unsubscribe_token") == token:
                return copy.deepcopy(m)
        return None

    async def save(self, message: OutboundMessage) -> None:
        assert message.id in self.rows, "save() of a message never added"
        kept = copy.deepcopy(message)
        old = self.rows[message.id]
        # the lease is the repository's: a save keeps it, and ends it out of 'sending'
        kept.lease_owner = old.lease_owner if kept.status is MessageStatus.SENDING else None
        kept.claimed_at, kept.data_started_at = old.claimed_at, old.data_started_at
        if kept.status is not MessageStatus.SENDING:
            self.lease_expires.pop(message.id, None)
        self.rows[message.id] = kept

    async def due(self, limit: int) -> list[OutboundMessage]:
        due = sorted(
            (m for m in self.rows.values() if m.status is MessageStatus.DUE),
            key=lambda m: (m.priority, m.send_at or datetime.min.replace(tzinfo=UTC)),
        )[:limit]
        return [copy.deepcopy(m) for m in due]

    def _now(self) -> datetime:
        # the database's clock: what leases are compared in, never the handlers' clock
        return datetime.now(UTC) + self.db_clock_offset

    async def lease(
        self, message_id: uuid.UUID, owner: str, seconds: float, *, new_attempt: bool
    ) -> None:
        m = self.rows[message_id]
        m.lease_owner = owner
        self.lease_expires[message_id] = self._now() + timedelta(seconds=seconds)
        if new_attempt:
            m.claimed_at, m.data_started_at = self._now(), None

    async def renew(self, message_id: uuid.UUID, owner: str, attempt: int, seconds: float) -> bool:
        m = self.rows[message_id]
        if (m.status, m.lease_owner, m.attempts) != (MessageStatus.SENDING, owner, attempt):
            return False
        self.lease_expires[message_id] = self._now() + timedelta(seconds=seconds)
        return True

    async def release(self, message_id: uuid.UUID, seconds: float) -> None:
        self.rows[message_id].lease_owner = None
        self.lease_expires[message_id] = self._now() + timedelta(seconds=seconds)

    async def data_started(self, message_id: uuid.UUID, owner: str, attempt: int) -> bool:
        m = self.rows[message_id]
        if (m.status, m.lease_owner, m.attempts) != (MessageStatus.SENDING, owner, attempt):
            return False
        m.data_started_at = self._now()
        return True

    async def interrupted(self, limit: int) -> list[OutboundMessage]:
        now = self._now()
        return [
            copy.deepcopy(m)
            for m in self.rows.values()
            if m.status is MessageStatus.SENDING and self.lease_expires.get(m.id, now) <= now
        ][:limit]

    async def provider_id_taken(self, provider_id: str, message_id: uuid.UUID) -> bool:
        return any(m.provider_id == provider_id and m.id != message_id for m in self.rows.values())

    async def budget_facts(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        since: datetime,
        *,
        decided_before: uuid.UUID | None = None,
    ) -> BudgetFacts:
        # rows keep their insertion order: the order they were decided in
        theirs = [
            m
            for m in self.rows.values()
            if (m.shop_id, m.customer_id) == (shop_id, customer_id) and m.to_staff is None
        ]
        if decided_before is not None:
            order = list(self.rows)
            mine = order.index(decided_before)
            earlier = set(order[:mine])
        spent = []
        for m in theirs:
            if m.sent_at is not None:
                if m.sent_at >= since:
                    spent.append(Spent(m.priority == Priority.MARKETING, m.channel, m.sent_at))
            elif (
                m.status.value in DECIDED_UNSENT
                and m.send_at is not None
                and (decided_before is None or m.id in earlier)
            ):
                spent.append(Spent(m.priority == Priority.MARKETING, m.channel, m.send_at))
        visits = sorted(
            (
                v
                for v in self.visits.rows.values()
                if (v.shop_id, v.customer_id) == (shop_id, customer_id)
                and v.status is VisitStatus.COMPLETED
            ),
            key=lambda v: v.completed_at,
        )
        return BudgetFacts(
            tuple(spent),
            any(c == customer_id for s, c in self.open_cases if s == shop_id),
            (visits[-1].completed_at, bool(visits[-1].data.get("comeback"))) if visits else None,
        )

    async def wake_dispatcher(self) -> None:
        self.wake_ups += 1


class FakeCases:
    def __init__(self, messages: FakeMessages) -> None:
        self.messages = messages
        self.by_case: dict[tuple[uuid.UUID, str], str] = {}

    async def open(self, shop_id: uuid.UUID, customer_id: str, case_id: str, at: datetime) -> None:
        self.by_case[(shop_id, case_id)] = customer_id
        self.messages.open_cases.add((shop_id, customer_id))

    async def close(self, shop_id: uuid.UUID, case_id: str) -> None:
        customer = self.by_case.pop((shop_id, case_id), None)
        if customer is not None and customer not in {
            c for (s, _), c in self.by_case.items() if s == shop_id
        }:
            self.messages.open_cases.discard((shop_id, customer))

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool:
        return (shop_id, customer_id) in self.messages.open_cases


class FakeTexts:
    """Inbound texts by message sid, and the numbers of the customers in memory."""

    def __init__(self, customers: FakeCustomers, messages: FakeMessages) -> None:
        self.customers = customers
        self.messages = messages
        self.rows: dict[str, InboundText] = {}
        self.outcomes: dict[str, str] = {}
        self.inbox: set[uuid.UUID] = set()

    async def record(self, text: InboundText) -> bool:
        if text.message_sid in self.rows:
            return False
        self.rows[text.message_sid] = text
        return True

    async def known_numbers(self, phone: str) -> list[KnownNumber]:
        found = []
        for (shop_id, customer_id), c in sorted(self.customers.rows.items(), key=str):
            if c.phone is None or normalize_e164(c.phone) != phone:
                continue
            sent = [
                m.sent_at
                for m in self.messages.rows.values()
                if (m.shop_id, m.customer_id) == (shop_id, customer_id)
                and m.channel == "sms"
                and m.sent_at is not None
            ]
            found.append(
                KnownNumber(
                    shop_id, customer_id, max(sent, default=None), c.awaiting_opt_out_answer
                )
            )
        return found

    async def answered(self, message_sid: str, outcome: str) -> None:
        self.outcomes[message_sid] = outcome

    async def applied_here(self, event_id: uuid.UUID, event_type: str) -> None:
        self.inbox.add(event_id)


class FakeUnitOfWork(FollowUpUnitOfWork):
    """One in-memory "database" shared by every unit of work a test opens on it."""

    def __init__(self) -> None:
        super().__init__(source="followup")
        self.timers = TimersInMemory()
        self.shops = ShopsInMemory()
        self.tasks = FakeTasks()
        self.customers = FakeCustomers()
        self.visits = FakeVisits(self.customers)
        self.messages = FakeMessages(self.visits)
        self.cases = FakeCases(self.messages)
        self.texts = FakeTexts(self.customers, self.messages)
        self.outbox: list[Envelope] = []

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.outbox.extend(envelopes)

    def emitted(self, kind: type[Event] | None = None) -> list[Any]:
        """The events written so far (and those pending), of ``kind`` if given."""
        found = [e.event() for e in [*self.outbox, *self.pending]]
        return [e for e in found if kind is None or isinstance(e, kind)]


@dataclass
class World:
    """A shop with a policy, a clock, and followup's state in memory."""

    clock: FakeClock
    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    shop_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.uow.shops.policies[self.shop_id] = ShopPolicy(1, Policy.defaults())

    @property
    def deps(self) -> Deps:
        return Deps(clock=self.clock, survey_key=SURVEY_KEY)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        """A command's transaction (in memory, all one)."""
        yield self.uow

    def set_policy(self, patch: dict[str, Any]) -> None:
        version, policy = self.uow.shops.policies[self.shop_id]
        self.uow.shops.policies[self.shop_id] = ShopPolicy(version + 1, policy.merged(patch))

    def received(self, event: Event) -> Received[Any]:
        return Received(event, Envelope.wrap(event, source="intake", shop_id=str(self.shop_id)))
