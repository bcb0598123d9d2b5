"""What every followup handler is written against: its unit of work, the repositories it
holds (one per aggregate, the ports), and the handlers' dependencies.

The repositories are implemented with asyncpg in ``adapters/`` and in memory in the
tests' fakes; a handler loads an aggregate, calls it, saves it and emits what it returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork

from ..domain.consent import ConsentChange
from ..domain.customers import Customer
from ..domain.follow_up import CompletedVisit, FollowUpTask
from ..domain.inbound_texts import InboundText, KnownNumber
from ..domain.messages import OutboundMessage
from ..domain.outreach import BudgetFacts
from ..domain.sweep import CustomerHistory
from ..domain.visits import Visit

SCHEMA = "followup"


class FollowUpTasks(Protocol):
    async def add(self, task: FollowUpTask) -> bool:
        """False when the visit (or case) already has its task of that kind."""
        ...

    async def add_many(self, tasks: Sequence[FollowUpTask]) -> None: ...

    async def get(self, shop_id: uuid.UUID, task_id: uuid.UUID) -> FollowUpTask | None:
        """The shop's task, locked for the change about to be made."""
        ...

    async def by_id(self, task_id: uuid.UUID) -> FollowUpTask | None: ...

    async def for_visit(self, shop_id: uuid.UUID, repair_order_id: str) -> FollowUpTask | None:
        """The visit's call task (not a recovery check-in), locked."""
        ...

    async def open_calls(
        self, shop_id: uuid.UUID, customer_id: str, kind: str
    ) -> list[FollowUpTask]:
        """The customer's calls of ``kind`` still to make, locked."""
        ...

    async def save(self, task: FollowUpTask) -> None:
        """Its status, due time, script and the attempts recorded since it was loaded."""
        ...


class Visits(Protocol):
    async def add_new(self, visits: Sequence[CompletedVisit]) -> set[tuple[uuid.UUID, str]]:
        """Record the visits not known yet: the (shop, repair order) of those new."""
        ...

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None: ...

    async def save(self, visit: Visit) -> None: ...

    async def last_of(self, shop_id: uuid.UUID, customer_id: str) -> Visit | None:
        """The customer's latest completed visit (not a voided or reopened one)."""
        ...

    async def histories(
        self, shop_id: uuid.UUID, *, after: str | None, limit: int
    ) -> list[CustomerHistory]:
        """A page of the shop's customers, by customer id after ``after`` (a keyset), with
        their completed visits and their lifecycle stage, for the monthly check."""
        ...


class Customers(Protocol):
    """The customer directory and its consent ledger."""

    async def upsert(self, shop_id: uuid.UUID, record: dict[str, Any]) -> None: ...

    async def get(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        """Locked: consent is about to be read or changed."""
        ...

    async def contact(self, shop_id: uuid.UUID, customer_id: str) -> Customer | None:
        """How to reach them, unlocked (for sending)."""
        ...

    async def record_consent(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        change: ConsentChange,
        event_id: uuid.UUID | None,
        at: datetime,
    ) -> None:
        """Append to the ledger (the audit) and update the customer's current consent."""
        ...

    async def save_stage(self, shop_id: uuid.UUID, customer: Customer) -> None:
        """The customer's lifecycle stage and its time (``stage``, ``stage_at``)."""
        ...


class OutboundMessages(Protocol):
    async def add(self, message: OutboundMessage) -> bool:
        """False when its purpose already had its message: never the same message twice."""
        ...

    async def get(self, message_id: uuid.UUID) -> OutboundMessage | None: ...

    async def by_unsubscribe_token(self, token: str) -> OutboundMessage | None: ...

    async def by_provider_id(self, provider_id: str) -> OutboundMessage | None:
        """The message the provider knows by ``provider_id`` (its message sid), locked."""
        ...

    async def save(self, message: OutboundMessage) -> None: ...

    async def due(self, limit: int) -> list[OutboundMessage]:
        """Due messages, best first, locked; replicas skip each other's."""
        ...

    async def lease(
        self, message_id: uuid.UUID, owner: str, seconds: float, *, new_attempt: bool
    ) -> None:
        """``owner`` holds the message until ``seconds`` from now in database time;
        ``new_attempt``: a send begins (its claim time is now, no DATA begun)."""
        ...

    async def renew(self, message_id: uuid.UUID, owner: str, attempt: int, seconds: float) -> bool:
        """Extend the lease of ``owner``'s ``attempt``; False when it holds it no longer."""
        ...

    async def release(self, message_id: uuid.UUID, seconds: float) -> None:
        """Nobody holds it; recovery may take it ``seconds`` from now (database time)."""
        ...

    async def data_started(self, message_id: uuid.UUID, owner: str, attempt: int) -> bool:
        """Mark an email's DATA as begun; False when ``owner`` holds it no longer."""
        ...

    async def interrupted(self, limit: int) -> list[OutboundMessage]:
        """Messages 'sending' whose lease expired in database time, locked."""
        ...

    async def provider_id_taken(self, provider_id: str, message_id: uuid.UUID) -> bool:
        """Another message of ours was recorded with this provider sid."""
        ...

    async def budget_facts(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        since: datetime,
        *,
        decided_before: uuid.UUID | None = None,
    ) -> BudgetFacts:
        """The customer's messages sent since ``since``, and those decided but not sent
        yet (every one; with ``decided_before``, those decided before that message)."""
        ...

    async def wake_dispatcher(self) -> None:
        """Tell the dispatchers (at commit) that a message is due."""
        ...


class OpenCases(Protocol):
    """Which customers have an open recovery case (it holds back asks and marketing)."""

    async def open(
        self, shop_id: uuid.UUID, customer_id: str, case_id: str, at: datetime
    ) -> None: ...

    async def close(self, shop_id: uuid.UUID, case_id: str) -> None: ...

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool: ...


class InboundTexts(Protocol):
    """Texts customers sent to our number, as the SMS provider posted them."""

    async def record(self, text: InboundText) -> bool:
        """Keep the text; False when its message sid was kept before (a provider retry)."""
        ...

    async def known_numbers(self, phone: str) -> list[KnownNumber]:
        """Every shop's customer with this number, with our last text to each."""
        ...

    async def answered(self, message_sid: str, outcome: str) -> None:
        """What came of the text (``replied`` to whom, or ``unmatched``)."""
        ...

    async def applied_here(self, event_id: uuid.UUID, event_type: str) -> None:
        """An event this service emitted and already applied: its consumer skips it."""
        ...


class FollowUpUnitOfWork(UnitOfWork):
    tasks: FollowUpTasks
    visits: Visits
    customers: Customers
    messages: OutboundMessages
    cases: OpenCases
    texts: InboundTexts


@dataclass(frozen=True)
class Deps:
    """What handlers need besides the unit of work."""

    clock: Clock
    #: the SMS provider answers STOP and HELP texted to our number itself (Twilio's
    #: default): our own answer to those is recorded as suppressed, not sent
    provider_answers_keywords: bool = True
    #: makes survey links from a survey's id, as feedback made its token (None: no key,
    #: and then only an older event's whole link can be sent)
    survey_key: bytes | None = None
    #: customers per page of the monthly check (one transaction each)
    monthly_check_page: int = 500
