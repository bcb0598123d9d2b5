"""How intake answers a posting: accepted, a duplicate, or rejected and why. Pure.

A posting's answer depends on what intake already holds: the idempotency record of its
id (a :class:`Receipt`), whether the customer it names is in the shop's directory, the
repair order a void or a reopen names, and the invoice a payment names. :func:`decide`
answers from those facts, and says what to store and which event to emit. A posting with
an id is first *claimed*: its receipt is recorded if the id is free, in one statement for
a whole run of postings (which also says whether its customer is known); ``decide`` then
answers knowing whether the claim held.

Shop systems deliver concurrently and out of order, so a posting whose customer, repair
order or invoice has not arrived yet is accepted all the same and *held* (:class:`Hold`):
it waits, durably, for what it :class:`Needs`, and is decided again when that arrives
(:func:`provides`), so it becomes the same event it would have been in order.

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
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
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


@dataclass(frozen=True, slots=True, order=True)
class Needs:
    """What a held posting waits for: a customer, a repair order or an invoice of a shop."""

    shop_id: uuid.UUID
    kind: str  # "customer" | "repair_order" | "invoice"
    id: str


CUSTOMER, REPAIR_ORDER, INVOICE = "customer", "repair_order", "invoice"


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
    #: the invoice a payment or an overdue notice needs to find
    invoice_key: tuple[uuid.UUID, str] | None = None
    #: accepted before and held: it was claimed then, and is decided again now
    held: bool = False

    @classmethod
    def of(cls, shop_id: uuid.UUID, posting: Posting, held_as: uuid.UUID | None = None) -> Arrival:
        """``held_as``: the event id a held posting was accepted as."""
        event = posting.event
        order_key = None
        invoice_key = None
        if isinstance(event, InvoicePaid | InvoiceOverdue):
            invoice_key = (shop_id, event.invoice_id)
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
            posting.event_id(shop_id) if held_as is None else held_as,
            posting.client_id,
            field,
            None if field is None else str(getattr(event, field)),
            order_key,
            invoice_key,
            held_as is not None,
        )


@dataclass(slots=True)
class Claimed:
    """How a claim on a posting's id went."""

    recorded: bool
    #: when not recorded: the receipt already holding the id
    stored: Receipt | None = None
    #: when recorded: whether the customer the claim named is in the directory
    customer_known: bool = True


@dataclass(slots=True)
class Known:
    """What intake holds that one posting's answer depends on."""

    #: the repair order a void or reopen names, if the shop has it
    order: RepairOrder | None = None
    #: looked up for a posting without an id (with one, its claim checks the customer)
    customer_known: bool | None = None
    #: none: not claimed yet
    claim: Claimed | None = None
    #: whether the invoice a payment or overdue notice names was issued (None: not asked)
    invoice_known: bool | None = None


#: what a run of postings with ids starts from (nothing to look up: their claims check)
NOTHING_KNOWN = Known()
#: the common claim: the id was free and the customer known
RECORDED = Claimed(recorded=True)
#: the id was free but its customer is not in the directory (yet)
RECORDED_CUSTOMER_UNKNOWN = Claimed(recorded=True, customer_known=False)
_JUST_RECORDED = Known(claim=RECORDED)


def claimed(known: Known, claim: Claimed) -> Known:
    """``known`` with how its posting's claim went."""
    if known is NOTHING_KNOWN and claim is RECORDED:
        return _JUST_RECORDED  # the hot path: no new object per posting
    return Known(known.order, known.customer_known, claim, known.invoice_known)


# -- what decide() says ---------------------------------------------------------------


@dataclass(slots=True)
class ClaimFirst:
    """Record this receipt unless its id is taken, and say whether ``required_customer``
    is in the directory; then decide again, knowing both."""

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


@dataclass(slots=True)
class InvoiceRecord:
    """An issued invoice, kept so that its payment can find it."""

    invoice: InvoiceIssued


Change = NewVisit | OrderStatus | CustomerDetails | ConsentChange | InvoiceRecord


@dataclass(slots=True)
class Hold:
    """Accepted (the answer is ``outcome``), but it waits for ``needs`` before it becomes
    an event: nothing is emitted until then."""

    outcome: Outcome
    needs: Needs


@dataclass(slots=True)
class Accepted:
    """The posting becomes ``event`` (at ``time``); ``change`` is what intake stores."""

    outcome: Outcome
    event: Event
    time: datetime
    change: Change | None


Decision = ClaimFirst | Answered | Accepted | Hold


def decide(arrival: Arrival, known: Known) -> Decision:
    """The answer to one posting given what intake holds, or the claim it needs first.

    A posting whose customer, repair order or invoice is missing is accepted and held
    for it; a held posting is decided again (its claim long made) once that arrives.
    """
    posting = arrival.posting
    customer_known = known.customer_known
    if arrival.client_id is not None and not arrival.held:
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
                raise ValueError("a claim not recorded names the receipt holding its id")
            return Answered(claim.stored.answer_repeat(posting))
        customer_known = claim.customer_known
    accepted = Outcome("accepted", arrival.event_id, arrival.client_id)
    if arrival.required_customer is not None:
        if customer_known is None:
            raise ValueError("a posting without a claim needs its customer looked up")
        if not customer_known:
            return Hold(accepted, Needs(arrival.shop_id, CUSTOMER, arrival.required_customer))
    order = known.order
    if arrival.order_key is not None and order is None:
        return Hold(accepted, Needs(arrival.shop_id, REPAIR_ORDER, arrival.order_key[1]))
    if arrival.invoice_key is not None:
        if known.invoice_known is None:
            raise ValueError("a payment or overdue notice needs its invoice looked up")
        if not known.invoice_known:
            return Hold(accepted, Needs(arrival.shop_id, INVOICE, arrival.invoice_key[1]))
    event, change = _effect(arrival, order)
    return Accepted(accepted, event, posting.occurred_at.astimezone(UTC), change)


def provides(shop_id: uuid.UUID, change: Change | None) -> Needs | None:
    """What held postings a change lets through: the customer it adds, the visit, the
    invoice."""
    if isinstance(change, CustomerDetails):
        return Needs(shop_id, CUSTOMER, change.customer.customer_id)
    if isinstance(change, NewVisit):
        return Needs(shop_id, REPAIR_ORDER, change.order.repair_order_id)
    if isinstance(change, InvoiceRecord):
        return Needs(shop_id, INVOICE, change.invoice.invoice_id)
    return None


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
    if isinstance(event, InvoiceIssued):
        return event, InvoiceRecord(event)
    return event, None


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
