"""Tekmetric: ``{"event": "<free text>", "data": <the whole record>}``. Pure.

Tekmetric's webhooks are partner-gated; what is public (open-source integrators) shows a
free-text ``event`` and the full repair order, customer, appointment or payment in
``data``. Repair order statuses are ids: 1 Estimate, 2 Work-in-progress, 3 Complete,
4 Saved for later, 5 Posted, 6 Accounts receivable, 7 Deleted. Money is in cents.
Authentication is a token in the hook URL (``?token=``), the connector's secret.
"""

from __future__ import annotations

from typing import Any

from .common import (
    Choices,
    Delivery,
    MappingFailed,
    Raw,
    appointment_posting,
    cents,
    completed_posting,
    customer_posting,
    first,
    full_name,
    invoice_posting,
    reopened_posting,
    same,
    text,
    voided_posting,
    when,
)

SYSTEM = "tekmetric"
#: Complete, Posted, Accounts receivable
COMPLETED = frozenset({"3", "5", "6"})
POSTED = frozenset({"5", "6"})
DELETED = frozenset({"7"})


def verify(delivery: Delivery, secret: str) -> bool:
    return same(delivery.query.get("token") or delivery.headers.get("x-tekmetric-token"), secret)


def map_delivery(payload: Any, choices: Choices, delivery: Delivery) -> list[Raw]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise MappingFailed("expected {event, data}")
    event = str(payload.get("event") or "").lower()
    data: dict[str, Any] = payload["data"]
    tz = choices.timezone
    now = delivery.received_at
    if "repairorderstatus" in {k.lower() for k in data} or "repairOrderNumber" in data:
        return _repair_order(event, data, choices, now)
    if "amount" in data and "repairOrderId" in data:
        return _payment(data, choices, now)
    if "startTime" in data:
        customer = text(data.get("customerId"))
        starts = when(data.get("startTime"), tz)
        appointment = text(data.get("id"))
        if customer and starts and appointment and not data.get("deletedDate"):
            return [appointment_posting(SYSTEM, appointment, customer, starts, now)]
        return []
    if "firstName" in data or "lastName" in data or "customerType" in data:
        return _customer(data, choices, now)
    return []


def _customer(data: dict[str, Any], choices: Choices, now: Any) -> list[Raw]:
    customer = text(data.get("id"))
    if customer is None or when(data.get("deletedDate"), choices.timezone):
        return []
    phone = first(data.get("phone"))
    email = data.get("email")
    if isinstance(email, list):
        email = email[0] if email else None
    found = customer_posting(
        SYSTEM,
        customer,
        full_name(data.get("firstName"), data.get("lastName")),
        phone.get("number") if isinstance(phone, dict) else text(phone),
        email if isinstance(email, str) and email else None,
        when(data.get("updatedDate"), choices.timezone) or now,
    )
    return [found] if found else []


def _status(data: dict[str, Any]) -> str | None:
    status = data.get("repairOrderStatus")
    if isinstance(status, dict):
        return text(status.get("id"))
    return text(status)


def _repair_order(event: str, data: dict[str, Any], choices: Choices, now: Any) -> list[Raw]:
    order = text(data.get("id"))
    if order is None:
        raise MappingFailed("data.id: the repair order has no id")
    tz = choices.timezone
    status = _status(data)
    completed_statuses = choices.completed_statuses or COMPLETED
    deleted = (
        status in (choices.voided_statuses or DELETED)
        or when(data.get("deletedDate"), tz) is not None
        or "deleted" in event
        or "voided" in event
    )
    updated = when(data.get("updatedDate"), tz) or now
    if deleted:
        return [voided_posting(SYSTEM, order, updated)]
    if "reopen" in event or "unpost" in event:
        return [reopened_posting(SYSTEM, order, updated)]
    if status not in completed_statuses:
        return []
    customer = text(data.get("customerId"))
    completed_at = when(data.get("completedDate"), tz) or when(data.get("postedDate"), tz)
    if customer is None or completed_at is None:
        raise MappingFailed("a completed repair order without customerId or completedDate")
    total = cents(data.get("totalSales"), choices.money)
    postings = [
        completed_posting(
            SYSTEM,
            order,
            customer,
            completed_at,
            advisor=text(data.get("serviceWriterId")),
            asset_id=text(data.get("vehicleId")),
            mileage=_mileage(data.get("milesOut")),
            total_cents=total,
            repair_order_number=text(data.get("repairOrderNumber")),
        )
    ]
    posted_at = when(data.get("postedDate"), tz)
    if status in POSTED and posted_at is not None and total is not None:
        postings.append(
            invoice_posting(SYSTEM, "invoice.issued", order, customer, total, posted_at, posted_at)
        )
    return postings


def _mileage(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def _payment(data: dict[str, Any], choices: Choices, now: Any) -> list[Raw]:
    order = text(data.get("repairOrderId"))
    customer = text(data.get("customerId"))
    payment = text(data.get("id"))
    amount = cents(data.get("amount"), choices.money)
    if order is None or customer is None or amount is None or payment is None:
        raise MappingFailed("a payment needs id, repairOrderId, customerId and amount")
    paid_at = when(data.get("paymentDate"), choices.timezone) or now
    return [
        invoice_posting(
            SYSTEM, "invoice.paid", order, customer, amount, paid_at, paid_at, f":{payment}"
        )
    ]
