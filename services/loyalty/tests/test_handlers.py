"""loyalty's handlers through its bus, at the unit-of-work seam: what reaches a
customer's timeline and what reaches the shop book."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from regulars_events.base import Event
from regulars_events.catalogue import (
    CustomerUpserted,
    ServiceCompleted,
    ShopApiKeyIssued,
    ShopPolicyChanged,
)
from regulars_events.envelope import Envelope
from regulars_loyalty import bootstrap
from regulars_shop.policy import Policy

from services.loyalty.tests.fakes import Loyalty

SHOP = str(uuid.UUID("00000000-0000-4000-8000-00000000cafe"))
AT = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)


def envelope(event: Event, minutes: int = 0) -> Envelope:
    return Envelope.wrap(event, source="intake", shop_id=SHOP, time=AT + timedelta(minutes=minutes))


def customer_events() -> list[Envelope]:
    return [
        envelope(CustomerUpserted(customer_id="c-1", name="Dana Whitfield"), 0),
        envelope(ServiceCompleted(repair_order_id="ro-1", customer_id="c-1", completed_at=AT), 1),
        envelope(ServiceCompleted(repair_order_id="ro-2", customer_id="c-2", completed_at=AT), 2),
    ]


def shop_events() -> list[Envelope]:
    return [
        envelope(ShopPolicyChanged(version=1, policy=Policy.defaults().model_dump(mode="json"))),
        envelope(ShopApiKeyIssued(key_id="0123456789abcdef", secret_sha256="ab" * 32)),
    ]


async def test_every_event_about_a_customer_goes_on_their_timeline_once() -> None:
    loyalty = Loyalty()
    bus = bootstrap.bus(loyalty.deps, unit_of_work=loyalty.unit_of_work)
    events = customer_events()
    for e in events:
        await bus.handle_event(e, None)
    assert loyalty.timeline.added == [e.id for e in events]
    assert loyalty.timeline.of(SHOP, "c-1") == [
        "regulars.customer.upserted.v1",
        "regulars.service.completed.v1",
    ]
    assert loyalty.timeline.of(SHOP, "c-2") == ["regulars.service.completed.v1"]
    assert loyalty.outbox == []


async def test_a_batch_of_events_is_remembered_as_one_by_one() -> None:
    one_by_one, batched = Loyalty(), Loyalty()
    events = [*customer_events(), *shop_events()]
    for e in events:
        await bootstrap.bus(one_by_one.deps, unit_of_work=one_by_one.unit_of_work).handle_event(
            e, None
        )
    bus = bootstrap.bus(batched.deps, unit_of_work=batched.unit_of_work)
    await bus.handle_events(events, None)
    assert batched.timeline.added == one_by_one.timeline.added == [e.id for e in events[:3]]


async def test_shop_events_go_to_the_shop_book_not_the_timeline() -> None:
    loyalty = Loyalty()
    bus = bootstrap.bus(loyalty.deps, unit_of_work=loyalty.unit_of_work)
    events = shop_events()
    assert all(bus.handles(e.type) for e in events)
    for e in events:
        await bus.handle_event(e, None)
    assert [e.id for e in loyalty.shops.applied] == [e.id for e in events]
    assert loyalty.timeline.added == []
    assert loyalty.timeline.entries == {}
