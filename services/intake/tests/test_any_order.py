"""Any order of delivery at the unit-of-work seam: a posting whose customer, repair order or
invoice has not arrived is accepted and held, and goes out when it arrives, as the same
event it would have been in order."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from regulars_intake import handlers
from regulars_intake.domain.acceptance import (
    CUSTOMER,
    INVOICE,
    RECORDED,
    RECORDED_CUSTOMER_UNKNOWN,
    REPAIR_ORDER,
    Arrival,
    Hold,
    Known,
    Needs,
    decide,
)
from regulars_intake.domain.postings import Posting, parse_posting
from regulars_intake.domain.repair_orders import VisitStatus

from services.intake.tests.fakes import Intake

SHOP = uuid.UUID("00000000-0000-4000-8000-0000000a11ce")
OTHER = uuid.UUID("00000000-0000-4000-8000-0000000b0b00")


def posting(kind: str, eid: str, minute: int, **data: Any) -> Posting:
    return parse_posting(
        {
            "type": kind,
            "id": eid,
            "occurred_at": f"2026-11-20T10:{minute:02d}:00-05:00",
            "data": data,
        }
    )


CUSTOMER_C1 = posting("customer.upserted", "cust-1", 0, customer_id="c-1", name="Dana")
VISIT = posting(
    "service.completed",
    "done-1",
    5,
    repair_order_id="ro-1",
    customer_id="c-1",
    completed_at="2026-11-20T10:05:00-05:00",
)
REOPEN = posting("service.reopened", "reopen-1", 10, repair_order_id="ro-1")
VOID = posting("service.voided", "void-1", 15, repair_order_id="ro-1")
INVOICE_DATA = {
    "invoice_id": "inv-1",
    "customer_id": "c-1",
    "amount_cents": 12_000,
    "due_at": "2026-12-20T00:00:00-05:00",
}
ISSUED = posting("invoice.issued", "issued-1", 20, **INVOICE_DATA)
PAID = posting("invoice.paid", "paid-1", 25, **INVOICE_DATA)
DAY = [CUSTOMER_C1, VISIT, REOPEN, VOID, ISSUED, PAID]


async def post(intake: Intake, *postings: Posting, shop: uuid.UUID = SHOP) -> list[str]:
    statuses = []
    for p in postings:
        uow = intake.unit_of_work()
        (outcome,) = await handlers.accept_many(uow, [(shop, p)])
        await uow.flush()
        statuses.append(outcome.status)
    return statuses


def published(intake: Intake) -> list[tuple[str, str | None, uuid.UUID, Any]]:
    return [(e.type, e.subject, e.id, e.data) for e in intake.outbox]


def test_a_void_before_its_visit_is_held_for_the_repair_order() -> None:
    arrival = Arrival.of(SHOP, VOID)
    decision = decide(arrival, Known(claim=RECORDED))
    assert isinstance(decision, Hold)
    assert decision.outcome.status == "accepted"
    assert decision.outcome.event_id == arrival.event_id
    assert decision.needs == Needs(SHOP, REPAIR_ORDER, "ro-1")


def test_a_payment_waits_for_its_customer_first_then_its_invoice() -> None:
    arrival = Arrival.of(SHOP, PAID)
    unknown = decide(arrival, Known(claim=RECORDED_CUSTOMER_UNKNOWN, invoice_known=False))
    assert isinstance(unknown, Hold) and unknown.needs == Needs(SHOP, CUSTOMER, "c-1")
    no_invoice = decide(arrival, Known(claim=RECORDED, invoice_known=False))
    assert isinstance(no_invoice, Hold) and no_invoice.needs == Needs(SHOP, INVOICE, "inv-1")
    assert not isinstance(decide(arrival, Known(claim=RECORDED, invoice_known=True)), Hold)


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(DAY)))))
async def test_every_order_of_delivery_ends_as_in_order(order: tuple[int, ...]) -> None:
    in_order, shuffled = Intake(), Intake()
    assert await post(in_order, *DAY) == ["accepted"] * len(DAY)
    assert await post(shuffled, *(DAY[i] for i in order)) == ["accepted"] * len(DAY)
    # the same events (ids, customers, data); a visit's before its void or reopen, an
    # invoice before its payment (what was already published stays where it went: a
    # reopen after a void changes nothing, downstream as here)
    events = published(shuffled)
    assert sorted(events, key=repr) == sorted(published(in_order), key=repr)
    kinds = [e[0].split(".")[1] + "." + e[0].split(".")[2] for e in events]
    assert kinds.index("customer.upserted") == 0
    assert kinds.index("service.completed") < kinds.index("service.voided")
    assert kinds.index("service.completed") < kinds.index("service.reopened")
    assert kinds.index("invoice.issued") < kinds.index("invoice.paid")
    assert shuffled.repair_orders.orders == in_order.repair_orders.orders
    assert shuffled.repair_orders.orders[(SHOP, "ro-1")].status is VisitStatus.VOIDED
    assert shuffled.customers.customers == in_order.customers.customers
    assert shuffled.invoices.invoices == in_order.invoices.invoices
    assert shuffled.waiting.held == {}


async def test_a_held_posting_resent_is_a_duplicate_and_another_body_a_conflict() -> None:
    intake = Intake()
    assert await post(intake, VISIT, VISIT) == ["accepted", "duplicate"]
    other = posting(
        "service.completed",
        "done-1",
        5,
        repair_order_id="ro-1",
        customer_id="c-1",
        completed_at="2026-11-20T10:06:00-05:00",
    )
    assert await post(intake, other) == ["rejected"]
    assert len(intake.waiting.held) == 1
    assert intake.outbox == []
    await post(intake, CUSTOMER_C1)
    assert [e.type for e in intake.outbox] == [
        "regulars.customer.upserted.v1",
        "regulars.service.completed.v1",
    ]


async def test_another_shops_customer_lets_nothing_through() -> None:
    intake = Intake()
    await post(intake, VISIT)
    await post(intake, CUSTOMER_C1, shop=OTHER)
    assert intake.waiting.waiting_for(SHOP) == [Needs(SHOP, CUSTOMER, "c-1")]
    assert [e.type for e in intake.outbox] == ["regulars.customer.upserted.v1"]
    await post(intake, CUSTOMER_C1)
    assert intake.waiting.held == {}
    assert intake.outbox[-1].type == "regulars.service.completed.v1"


async def test_a_held_posting_is_locked_for_what_it_needs_before_it_is_held() -> None:
    # Another replica may be storing that customer right now: both sides take the same
    # lock, so one of them sees the other.
    intake = Intake()
    await post(intake, VISIT)
    assert Needs(SHOP, CUSTOMER, "c-1") in intake.waiting.locked
    intake.waiting.locked.clear()
    await post(intake, CUSTOMER_C1)
    assert Needs(SHOP, CUSTOMER, "c-1") in intake.waiting.locked
    assert Needs(SHOP, REPAIR_ORDER, "ro-1") in intake.waiting.locked  # the visit let through


async def test_a_posting_held_again_keeps_its_age_on_the_waiting_list() -> None:
    intake = Intake()
    await post(intake, PAID)
    ((key, first_held),) = intake.waiting.since.items()
    await post(intake, CUSTOMER_C1)  # let through to wait for its invoice next
    assert intake.waiting.waiting_for(SHOP) == [Needs(SHOP, INVOICE, "inv-1")]
    assert intake.waiting.since[key] == first_held
