"""How intake answers a posting: accepted, a duplicate, or rejected and why. Pure.

A posting's answer depends on what intake already holds: the idempotency record of its
id (a :class:`Receipt`), whether the customer it names is in the shop's directory, and
the repair order a void or a reopen names. :func:`decide` answers from those facts, and
says what to store and which event to emit. A posting with an id is first *claimed*: its
receipt is recorded if the id is free (and its customer known), in one statement for a
whole run of postings; ``decide`` then answers knowing whether the claim held.

:func:`runs` says which postings may be claimed together: those whose answers cannot
depend on one another.

These records are built for every posting on the hot path, so they are slotted and not
frozen (a frozen dataclass pays a ``setattr`` per field): treat them as values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regulars_events.base import Event
from regulars_events.catalogue import (
    ConsentChanged,
    CustomerUpserted,
    ReferralReported,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
)

from .postings import FieldError, Posting, Rejected
from .repair_orders import RepairOrder

#: types whose effect depends on what came before them (the directory, a visit's status):
#: accepted one at a time, in order
ONE_AT_A_TIME = frozenset(
    {"customer.upserted", "service.voided", "service.reopened", "consent.changed"}
)

#: (shop, the shop's id for a posting)
ReceiptKey = tuple[uuid.UUID, str]


@dataclass(slots=True)
class Outcome:
    """One posted event's answer: accepted, duplicate or rejected."""

    status: str
    event_id: uuid.UUID | None = None
    client_id: str | None = None
    rejection: Rejected | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.client_id is not None:
            body["id"] = self.client_id
        if self.event_id is not None:
            body["event_id"] = str(self.event_id)
        if self.rejection is not None:
            body["code"] = self.rejection.status
            body.update(self.rejection.as_dict())
        return body


@dataclass(slots=True)
class Receipt:
    """The idempotency record of a posting: the shop's id for it, a hash of what was
    posted, and the event it became."""

    shop_id: uuid.UUID
    client_id: str
    body_sha256: bytes
    event_id: uuid.UUID
    type: str

    @property
    def key(self) -> ReceiptKey:
        return (self.shop_id, self.client_id)

    def answer_repeat(self, posting: Posting) -> Outcome:
        """The answer to a later posting with this id: the same body is the same event."""
        if posting.body_hash == self.body_sha256:
            return Outcome("duplicate", self.event_id, self.client_id)
        return Outcome(
            "rejected",
            self.event_id,
            self.client_id,
            Rejected(
                409,
                f"id {self.client_id!r} was already used for another event body",
                [FieldError("id", "already used with a different type, occurred_at or data")],
            ),
        )


@dataclass(slots=True)
class Arrival:
    """One posting on its way in for one shop, with what its answer turns on."""

    shop_id: uuid.UUID
    posting: Posting
    #: once: without the shop's id the event id is random
    event_id: uuid.UUID
    client_id: str | None
    #: the data field naming a customer who must already be in the shop's directory
    customer_field: str | None
    required_customer: str | None
    #: the repair order a void or a reopen needs to find
    order_key: tuple[uuid.UUID, str] | None

    @classmethod
    def of(cls, shop_id: uuid.UUID, posting: Posting) -> Arrival:
        event = posting.event
        order_key = None
        field: str | None
        if isinstance(event, ServiceVoided | ServiceReopened):
            field, order_key = None, (shop_id, event.repair_order_id)
        elif isinstance(event, CustomerUpserted):
            field = None
        elif isinstance(event, ReferralReported):
            field = "referrer_customer_id"
        else:
            field = "customer_id"
        return cls(
            shop_id,
            posting,
            posting.event_id(shop_id),
            posting.client_id,
            field,
            None if field is None else str(getattr(event, field)),
            order_key,
        )


@dataclass(slots=True)
class Claimed:
    """How a claim on a posting's id went."""

    recorded: bool
    #: when not recorded: the receipt already holding the id (none: the customer the
    #: claim required is not in the directory)
    stored: Receipt | None = None


@dataclass(slots=True)
class Known:
    """What intake holds that one posting's answer depends on."""

    #: the repair order a void or reopen names, if the shop has it
    order: RepairOrder | None = None
    #: looked up for a posting without an id (with one, its claim checks the customer)
    customer_known: bool | None = None
    #: none: not claimed yet
    claim: Claimed | None = None


#: what a run of postings with ids starts from (nothing to look up: their claims check)
NOTHING_KNOWN = Known()
#: the common claim: the id was free and the customer known
RECORDED = Claimed(recorded=True)
_JUST_RECORDED = Known(claim=RECORDED)


def claimed(known: Known, claim: Claimed) -> Known:
    """``known`` with how its posting's claim went."""
    if known is NOTHING_KNOWN and claim is RECORDED:
        return _JUST_RECORDED  # the hot path: no new object per posting
    return Known(known.order, known.customer_known, claim)


# -- what decide() says ---------------------------------------------------------------


@dataclass(slots=True)
class ClaimFirst:
    """Record this receipt unless its id is taken or ``required_customer`` is not in the
    directory; then decide again, knowing which."""

    receipt: Receipt
    required_customer: str | None


@dataclass(slots=True)
class Answered:
    """A duplicate or a rejection: nothing is stored, nothing emitted."""

    outcome: Outcome


@dataclass(slots=True)
class NewVisit:
    order: RepairOrder


@dataclass(slots=True)
class OrderStatus:
    order: RepairOrder


@dataclass(slots=True)
class CustomerDetails:
    customer: CustomerUpserted


@dataclass(slots=True)
class ConsentChange:
    change: ConsentChanged


Change = NewVisit | OrderStatus | CustomerDetails | ConsentChange


@dataclass(slots=True)
class Accepted:
    """The posting becomes ``event`` (at ``time``); ``change`` is what intake stores."""

    outcome: Outcome
    event: Event
    time: datetime
    change: Change | None


Decision = ClaimFirst | Answered | Accepted


def decide(arrival: Arrival, known: Known) -> Decision:
    """The answer to one posting given what intake holds, or the claim it needs first."""
    posting = arrival.posting
    order = known.order
    order_key = arrival.order_key
    if order_key is not None and order is None:
        return Answered(
            Outcome(
                "rejected",
                None,
                arrival.client_id,
                Rejected(
                    404,
                    f"repair_order_id {order_key[1]!r} has no service.completed in this shop",
                    [FieldError("data.repair_order_id", "not found")],
                ),
            )
        )
    if arrival.client_id is None:
        if arrival.required_customer is not None:
            if known.customer_known is None:
                raise ValueError("a posting without an id needs its customer looked up")
            if not known.customer_known:
                return Answered(_unknown_customer(arrival))
    else:
        claim = known.claim
        if claim is None:
            return ClaimFirst(
                Receipt(
                    arrival.shop_id,
                    arrival.client_id,
                    posting.body_hash,
                    arrival.event_id,
                    posting.event.type,
                ),
                arrival.required_customer,
            )
        if not claim.recorded:
            if claim.stored is None:
                return Answered(_unknown_customer(arrival))
            return Answered(claim.stored.answer_repeat(posting))
    event, change = _effect(arrival, order)
    return Accepted(
        Outcome("accepted", arrival.event_id, arrival.client_id),
        event,
        posting.occurred_at.astimezone(UTC),
        change,
    )


def _effect(arrival: Arrival, order: RepairOrder | None) -> tuple[Event, Change | None]:
    event = arrival.posting.event
    if order is not None:
        # The void or reopen names its visit's customer, so it keys to them downstream.
        event = type(event).model_validate(
            {**event.model_dump(mode="json"), "customer_id": order.customer_id}
        )
        changed = order.voided() if isinstance(event, ServiceVoided) else order.reopened()
        return event, OrderStatus(changed)
    if isinstance(event, ServiceCompleted):
        return event, NewVisit(RepairOrder.completed(arrival.shop_id, event))
    if isinstance(event, CustomerUpserted):
        return event, CustomerDetails(event)
    if isinstance(event, ConsentChanged):
        return event, ConsentChange(event)
    return event, None


def _unknown_customer(arrival: Arrival) -> Outcome:
    field = arrival.customer_field
    assert field is not None
    return Outcome(
        "rejected",
        None,
        arrival.client_id,
        Rejected(
            404,
            f"{field} {arrival.required_customer!r} is not in this shop's customer directory;"
            " post customer.upserted first",
            [FieldError(f"data.{field}", "unknown customer")],
        ),
    )


def runs(arrivals: Sequence[Arrival]) -> list[list[Arrival]]:
    """The postings cut, in order, into consecutive runs that can be claimed together.

    A posting without an id, or one that must see what came before it, is a run of its
    own; a repeated id, or a second completion of the same repair order, must see the
    first, so it starts a new run.
    """
    cut: list[list[Arrival]] = []
    run: list[Arrival] = []
    keys: set[tuple[uuid.UUID, str]] = set()
    for arrival in arrivals:
        posting = arrival.posting
        if posting.client_id is None or posting.short_type in ONE_AT_A_TIME:
            if run:
                cut.append(run)
                run, keys = [], set()
            cut.append([arrival])
            continue
        touched = {(arrival.shop_id, "id:" + posting.client_id)}
        if isinstance(posting.event, ServiceCompleted):
            touched.add((arrival.shop_id, "order:" + posting.event.repair_order_id))
        if touched & keys:
            cut.append(run)
            run, keys = [], set()
        run.append(arrival)
        keys |= touched
    if run:
        cut.append(run)
    return cut
