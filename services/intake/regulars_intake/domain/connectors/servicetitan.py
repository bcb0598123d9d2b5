"""ServiceTitan: the job graph with ``__eventInfo {eventId, webhookId, webhookType}`` and
``__tenantInfo {id, name}``. Pure.

v1 (``JobCompleted``, deprecated 2026-03-31) and v2 callbacks post the job with its
customer, location, assignments and invoice. ``completedOn`` often has no offset: it is
read in the shop's timezone. Invoice totals are float dollars. v2 signs with an optional
HMAC key; this connector requires one: ``X-ServiceTitan-Signature`` (or ``ST-Signature``),
the HMAC-SHA256 of the body, base64 or hex. v1 had no signature, so a v1 sender must put
the connector's secret in the hook URL as ``?token=``.
"""

from __future__ import annotations

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
    hmac_sha256,
    invoice_posting,
    obj,
    same,
    text,
    voided_posting,
    when,
)

SYSTEM = "servicetitan"
_HEADERS = ("x-servicetitan-signature", "st-signature", "x-signature")


def verify(delivery: Delivery, secret: str) -> bool:
    digest = hmac_sha256(secret.encode(), delivery.body)
    for header in _HEADERS:
        given = delivery.headers.get(header)
        if given is not None:
            given = given.removeprefix("sha256=")
            return same(given, b64(digest)) or same(given.lower(), digest.hex())
    return same(delivery.query.get("token"), secret)


def _contact(customer: dict[str, Any], kinds: set[str]) -> str | None:
    for contact in customer.get("contacts") or []:
        if isinstance(contact, dict) and str(contact.get("type", "")).lower() in kinds:
            value = text(contact.get("value"))
            if value:
                return value
    return None


def map_delivery(payload: Any, choices: Choices, delivery: Delivery) -> list[Raw]:
    if not isinstance(payload, dict):
        raise MappingFailed("expected the job as a JSON object")
    info = obj(payload.get("__eventInfo"))
    kind = str(info.get("webhookType") or info.get("eventType") or "").lower()
    job: dict[str, Any] = obj(payload.get("job")) or payload
    order = text(job.get("id"))
    if order is None:
        raise MappingFailed("id: the job has no id")
    tz = choices.timezone
    now = delivery.received_at
    status = str(job.get("jobStatus") or job.get("status") or "").lower()
    updated = when(job.get("modifiedOn"), tz) or now
    if (
        status in (choices.voided_statuses or {"canceled", "cancelled"})
        or "cancel" in kind
        or (job.get("active") is False)
    ):
        return [voided_posting(SYSTEM, order, updated)]
    customer = obj(job.get("customer"))
    customer_id = text(customer.get("id")) or text(job.get("customerId"))
    if customer_id is None:
        raise MappingFailed("customer.id: the job has no customer")
    postings: list[Raw] = []
    found = customer_posting(
        SYSTEM,
        customer_id,
        text(customer.get("name")),
        text(customer.get("phoneNumber")) or _contact(customer, {"mobilephone", "phone"}),
        text(customer.get("email")) or _contact(customer, {"email"}),
        now,
    )
    if found:
        postings.append(found)
    if "appointment" in kind or "booked" in kind or "scheduled" in kind:
        appointment = obj(payload.get("appointment")) or job
        starts = when(appointment.get("start") or appointment.get("startsOn"), tz)
        appointment_id = text(appointment.get("id")) or order
        if starts is not None:
            postings.append(appointment_posting(SYSTEM, appointment_id, customer_id, starts, now))
        return postings
    completed_at = when(job.get("completedOn"), tz)
    done = "completed" in kind or status in (choices.completed_statuses or {"completed"})
    if not done or completed_at is None:
        if done:
            raise MappingFailed("completedOn: a completed job without a completion time")
        return postings
    assignments = job.get("jobAssignments") or []
    technician = None
    if isinstance(assignments, list) and assignments and isinstance(assignments[0], dict):
        tech = assignments[0].get("technician")
        technician = (
            text(tech.get("id"))
            if isinstance(tech, dict)
            else text(assignments[0].get("technicianId"))
        )
    location = obj(job.get("location"))
    invoice = obj(job.get("invoice"))
    total = cents(invoice.get("total"), "dollars")
    postings.append(
        completed_posting(
            SYSTEM,
            order,
            customer_id,
            completed_at,
            advisor=technician,
            asset_id=text(location.get("id")) or text(job.get("locationId")),
            total_cents=total,
            job_number=text(job.get("jobNumber") or job.get("number")),
            comeback=True if job.get("recallForId") else None,
        )
    )
    invoice_id = text(invoice.get("id"))
    if invoice_id is not None and total is not None:
        issued = when(invoice.get("invoiceDate"), tz) or completed_at
        due = when(invoice.get("dueDate"), tz) or issued
        postings.append(
            invoice_posting(SYSTEM, "invoice.issued", invoice_id, customer_id, total, due, issued)
        )
        balance = cents(invoice.get("balance"), "dollars")
        if balance == 0 and total > 0:
            postings.append(
                invoice_posting(
                    SYSTEM, "invoice.paid", invoice_id, customer_id, total, due, updated
                )
            )
    return postings
