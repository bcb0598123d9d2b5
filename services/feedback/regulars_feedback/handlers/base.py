"""What every feedback handler is written against: its unit of work, the repositories it
holds (one per aggregate, as ports), and the handlers' dependencies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork
from regulars_shop.policy import Policy

from ..domain.cases import RecoveryCase
from ..domain.surveys import Survey
from ..domain.verdicts import AskKind
from ..domain.visits import Visit

SCHEMA = "feedback"


class RecoveryCases(Protocol):
    """Recovery cases, and the negatives that tell one incident from the next."""

    async def get(
        self, case_id: uuid.UUID, shop_id: uuid.UUID | None = None, *, lock: bool = False
    ) -> RecoveryCase | None:
        """A case by id (of ``shop_id``, when given); ``lock`` holds it to the transaction."""
        ...

    async def open_for_incident(self, shop_id: uuid.UUID, incident_key: str) -> RecoveryCase | None:
        """The incident's case still open, held to the transaction."""
        ...

    async def latest_open(self, shop_id: uuid.UUID, customer_id: str) -> RecoveryCase | None:
        """The customer's newest case still open, held to the transaction."""
        ...

    async def has_open(self, shop_id: uuid.UUID, customer_id: str) -> bool: ...

    async def add(self, case: RecoveryCase) -> bool:
        """A new case and its first history; False when the incident already has an open
        case (another writer was first), and then nothing is written."""
        ...

    async def save(self, case: RecoveryCase) -> None:
        """The case as it is now, and the history lines it added."""
        ...

    async def record_negative(
        self,
        negative_id: uuid.UUID,
        case: RecoveryCase,
        at: datetime,
    ) -> None: ...

    async def other_incidents(
        self, shop_id: uuid.UUID, customer_id: str, incident_key: str, since: datetime
    ) -> int:
        """How many other incidents of this customer had a negative since ``since``."""
        ...


class Surveys(Protocol):
    async def add(self, survey: Survey) -> bool:
        """False when this visit already has its survey for this reason (and case)."""
        ...

    async def by_token(self, token: str, *, lock: bool = False) -> Survey | None:
        """A survey by its link's token, with its first answer if it has one."""
        ...

    async def save_answer(self, survey: Survey) -> None:
        """The survey's first answer, which answers every later submission."""
        ...


class Visits(Protocol):
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
        """What a visit's events tell (the latest "completed" wins; a call's assignee only
        fills in an advisor not known yet)."""
        ...

    async def get(self, shop_id: uuid.UUID, repair_order_id: str) -> Visit | None: ...

    async def had_comeback(self, shop_id: uuid.UUID, customer_id: str, since: datetime) -> bool: ...


class Asks(Protocol):
    async def add(
        self,
        shop_id: uuid.UUID,
        customer_id: str,
        subject: str,
        kind: AskKind,
        survey_id: uuid.UUID | None,
        at: datetime,
    ) -> bool:
        """False when this subject already had this ask."""
        ...


class Timeline(Protocol):
    async def add(self, envelope: Envelope) -> None: ...


class FeedbackUnitOfWork(UnitOfWork):
    cases: RecoveryCases
    surveys: Surveys
    visits: Visits
    asks: Asks
    timeline: Timeline


@dataclass(frozen=True)
class Deps:
    """What handlers need besides the unit of work: the time, the public survey URL and
    the key survey links are made with (followup holds the same one)."""

    clock: Clock
    public_url: str
    survey_key: bytes


async def shop_policy(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """The shop's policy; the consumer waits for it while it has not arrived."""
    return (await uow.policy(shop_id)).policy


async def policy_or_defaults(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """For an API command, which cannot wait: the defaults stand in for a missing policy."""
    return (await uow.policy_or_defaults(shop_id)).policy
