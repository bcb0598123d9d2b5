"""Shopmonkey: one webhook per row change, ``{apiVersion, operation, table, data, diff}``.
Pure.

``operation`` is INSERT, UPDATE or DELETE; ``table`` names the record (Order, Customer,
Payment, Appointment ...); ``data`` is the row after the change and ``diff`` lists what
changed. Orders are updated many times: only the change that completes, invoices, deletes
or reopens one becomes an event, and each of those is keyed by the order, so a flood of
updates is one truth. Money is in cents (``...Cents``). Signed like Standard Webhooks:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
id.timestamp.body>``, the key being the secret after ``whsec_``, base64-decoded.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from .common import (
    Choices,
    Delivery,
    MappingFailed,
    Raw,
    appointment_posting,
    b64,
    cents,
    completed_posting,
    customer_posting,
    first,
    full_name,
    hmac_sha256,
    invoice_posting,
    reopened_posting,
    same,
    text,
    voided_posting,
    when,
)

SYSTEM = "shopmonkey"
#: seconds a signed timestamp may be off: a replayed old delivery is refused
TOLERANCE = 300


def _key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def verify(delivery: Delivery, secret: str) -> bool:
    webhook_id = delivery.headers.get("webhook-id")
    stamp = delivery.headers.get("webhook-timestamp")
    signatures = delivery.headers.get("webhook-signature")
    if not webhook_id or not stamp or not signatures or not stamp.isdigit():
        return False
    if abs(delivery.received_at.timestamp() - int(stamp)) > TOLERANCE:
        return False
    expected = b64(hmac_sha256(_key(secret), f"{webhook_id}.{stamp}.".encode() + delivery.body))
    for signature in signatures.split():
        version, _, value = signature.partition(",")
        if version == "v1" and same(value, expected):
            return True
    return False


def _changed(diff: Any, name: str) -> bool:
    if not isinstance(diff, list):
        return False
    for item in diff:
        if isinstance(item, str) and item.strip("/") == name:
            return True
        if isinstance(item, dict):
            path = str(item.get("path") or item.get("field") or item.get("key") or "")
            if path.strip("/").split("/")[-1] == name:
                return True
    return False


def _was(diff: Any, name: str) -> Any:
    """The value before the change, where the diff says it."""
    if isinstance(diff, list):
        for item in diff:
            if isinstance(item, dict):
                path = str(item.get("path") or item.get("field") or item.get("key") or "")
                if path.strip("/").split("/")[-1] == name:
                    return item.get("old", item.get("oldValue", item.get("before")))
    return None


def map_delivery(payload: Any, choices: Choices, delivery: Delivery) -> list[Raw]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise MappingFailed("expected {operation, table, data}")
    table = str(payload.get("table") or "").lower()
    operation = str(payload.get("operation") or "").upper()
    data: dict[str, Any] = payload["data"]
    now = delivery.received_at
    if table == "order":
        return _order(operation, data, payload.get("diff"), choices, now)
    if table == "customer":
        return _customer(operation, data, choices, now)
    if table == "payment":
        return _payment(operation, data, choices, now)
    if table == "appointment":
        return _appointment(operation, data, choices, now)
    return []


def _deleted(operation: str, data: dict[str, Any], tz: str) -> bool:
    return (
        operation == "DELETE"
        or bool(data.get("deleted"))
        or (when(data.get("deletedDate"), tz) is not None)
    )


def _order(
    operation: str, data: dict[str, Any], diff: Any, choices: Choices, now: datetime
) -> list[Raw]:
    order = text(data.get("id"))
    if order is None:
        raise MappingFailed("data.id: the order has no id")
    tz = choices.timezone
    updated = when(data.get("updatedDate"), tz) or now
    if _deleted(operation, data, tz) or text(data.get("status")) in choices.voided_statuses:
        return [voided_posting(SYSTEM, order, updated)]
    completed_at = when(data.get("completedDate"), tz)
    invoiced_at = when(data.get("invoicedDate"), tz)
    if choices.extra.get("completed_on") == "invoiced":
        completed_at = invoiced_at
    elif completed_at is None and text(data.get("status")) in choices.completed_statuses:
        completed_at = invoiced_at or updated
    elif completed_at is None:
        completed_at = invoiced_at
    if completed_at is None:
        # an order taken back from completed (the diff shows completedDate cleared)
        if _changed(diff, "completedDate") and when(_was(diff, "completedDate"), tz):
            return [reopened_posting(SYSTEM, order, updated)]
        return []
    customer = text(data.get("customerId"))
    if customer is None:
        raise MappingFailed("data.customerId: a completed order without a customer")
    total = cents(data.get("totalCostCents"), "cents")
    postings = [
        completed_posting(
            SYSTEM,
            order,
            customer,
            completed_at,
            advisor=text(data.get("serviceWriterId")),
            asset_id=text(data.get("vehicleId")),
            mileage=_mileage(data.get("mileageOut")),
            total_cents=total,
            repair_order_number=text(data.get("number")),
        )
    ]
    if invoiced_at is not None and total is not None:
        postings.append(
            invoice_posting(
                SYSTEM, "invoice.issued", order, customer, total, invoiced_at, invoiced_at
            )
        )
    return postings


def _mileage(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def _customer(operation: str, data: dict[str, Any], choices: Choices, now: datetime) -> list[Raw]:
    customer = text(data.get("id"))
    if customer is None or _deleted(operation, data, choices.timezone):
        return []
    phone = first(data.get("phoneNumbers"))
    email = first(data.get("emails"))
    found = customer_posting(
        SYSTEM,
        customer,
        full_name(data.get("firstName"), data.get("lastName")) or text(data.get("companyName")),
        phone.get("number") if isinstance(phone, dict) else None,
        email.get("email") if isinstance(email, dict) else None,
        when(data.get("updatedDate"), choices.timezone) or now,
    )
    return [found] if found else []


def _payment(operation: str, data: dict[str, Any], choices: Choices, now: datetime) -> list[Raw]:
    if _deleted(operation, data, choices.timezone):
        return []
    payment = text(data.get("id"))
    order = text(data.get("orderId"))
    customer = text(data.get("customerId"))
    amount = cents(data.get("amountCents"), "cents")
    if payment is None or order is None or customer is None or amount is None:
        raise MappingFailed("a payment needs id, orderId, customerId and amountCents")
    paid_at = when(data.get("recordedDate") or data.get("createdDate"), choices.timezone) or now
    return [
        invoice_posting(
            SYSTEM, "invoice.paid", order, customer, amount, paid_at, paid_at, f":{payment}"
        )
    ]


def _appointment(
    operation: str, data: dict[str, Any], choices: Choices, now: datetime
) -> list[Raw]:
    if _deleted(operation, data, choices.timezone) or str(data.get("status", "")).lower() in {
        "canceled",
        "cancelled",
    }:
        return []
    appointment = text(data.get("id"))
    customer = text(data.get("customerId"))
    starts = when(data.get("startDate"), choices.timezone)
    if appointment is None or customer is None or starts is None:
        return []
    return [appointment_posting(SYSTEM, appointment, customer, starts, now)]
