"""What feedback keeps from other events: a visit's advisor and comeback flag, and what a
customer's free-text reply means (a complaint opens or joins a case; a note is kept)."""

from __future__ import annotations

from regulars_events.catalogue import CustomerReplied, ServiceCompleted
from regulars_runtime.bus import Received
from regulars_shop.compliance import classify_reply

from ..domain.cases import Signal, staff_of
from ..domain.classification import classify_customer_reply
from . import cases
from .base import Deps, FeedbackUnitOfWork, shop_policy
from .surveys import pass_on_praise


async def on_service_completed(
    message: Received[ServiceCompleted], uow: FeedbackUnitOfWork, deps: Deps
) -> None:
    """Remember who the advisor was (a case about this visit goes to them) and whether it
    was a comeback (which holds back review asks)."""
    event = message.event
    await uow.visits.remember(
        message.shop_id,
        event.repair_order_id,
        event.customer_id,
        advisor=event.advisor,
        comeback=event.comeback,
        completed_at=event.completed_at,
    )


async def on_customer_replied(
    message: Received[CustomerReplied], uow: FeedbackUnitOfWork, deps: Deps
) -> None:
    """Opt-out, opt-in and HELP are followup's; a complaint opens (or joins) a case; any
    other text is a note on the customer's open case, and stays on the timeline."""
    event, shop_id = message.event, message.shop_id
    known = await uow.shops.policy(shop_id)
    staff = staff_of(known.policy) if known else []
    verdict = classify_customer_reply(event.text, classify_reply(event.text), staff)
    if verdict is None:
        return
    if verdict.negative:
        policy = await shop_policy(uow, shop_id)
        await cases.report_negative(
            uow,
            deps,
            Signal(
                shop_id=shop_id,
                customer_id=event.customer_id,
                repair_order_id=None,
                source="reply",
                verdict=verdict,
                text=event.text,
            ),
            policy,
        )
        return
    await cases.note_reply(uow, shop_id, event.customer_id, event.text, deps.clock())
    pass_on_praise(
        uow,
        shop_id=shop_id,
        customer_id=event.customer_id,
        verdict=verdict,
        text=event.text,
        staff=staff,
        source="reply",
        repair_order_id=None,
    )
