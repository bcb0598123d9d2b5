"""feedback's reactions to events. Every write of feedback's state happens here."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from regulars_events.catalogue import FollowUpCompleted, FollowUpMissed, SurveyRequested
from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.shop_directory import apply_shop_event, is_shop_event
from regulars_runtime.unit_of_work import UnitOfWork

from .adapters.repository import FeedbackRepository
from .domain.surveys import new_survey, survey_link

SCHEMA = "feedback"
TOPICS: list[str] = ["regulars.shop", "regulars.customer", "regulars.service", "regulars.followup"]


class FeedbackUnitOfWork(UnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *, schema: str = SCHEMA, **kw: Any) -> None:
        super().__init__(conn, schema=schema, **kw)
        self.repo = FeedbackRepository(conn)


async def request_survey(
    uow: FeedbackUnitOfWork,
    clock: Clock,
    public_url: str,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    repair_order_id: str | None,
    reason: str,
) -> None:
    """One survey per visit and reason; followup sends its link as consent allows."""
    survey = new_survey(reason, clock())
    survey_id = uuid.uuid4()
    added = await uow.repo.add_survey(
        {
            "id": survey_id,
            "shop_id": shop_id,
            "customer_id": customer_id,
            "repair_order_id": repair_order_id,
            "reason": reason,
            "token": survey.token,
            "expires_at": survey.expires_at,
        }
    )
    if not added:
        return
    uow.emit(
        SurveyRequested(
            survey_id=str(survey_id),
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            reason=reason,
            survey_url=survey_link(public_url, survey.token),
        ),
        shop_id=shop_id,
    )


def message_bus(
    clock: Clock, public_url: str
) -> Callable[[Envelope, asyncpg.Connection], Awaitable[None]]:
    async def handle(envelope: Envelope, conn: asyncpg.Connection) -> None:
        if is_shop_event(envelope.type):
            await apply_shop_event(envelope, conn)
            return
        uow = FeedbackUnitOfWork(conn, cause=envelope)
        if envelope.subject is not None:
            await uow.repo.add_to_timeline(envelope)
        event = envelope.event()
        if isinstance(event, FollowUpCompleted | FollowUpMissed):
            reason = (
                "after_follow_up" if isinstance(event, FollowUpCompleted) else "follow_up_missed"
            )
            await request_survey(
                uow,
                clock,
                public_url,
                shop_id=uuid.UUID(envelope.shop_id),
                customer_id=event.customer_id,
                repair_order_id=event.repair_order_id,
                reason=reason,
            )
        await uow.flush()

    return handle


def handles(event_type: str) -> bool:
    return True
