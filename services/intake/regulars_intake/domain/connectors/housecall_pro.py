"""Housecall Pro: ``{"event": "job.completed", "company_id": ..., "job": {...}}``. Pure.

Events name what happened (``job.completed``, ``job.paid``, ``job.canceled``,
``job.deleted``, ``job.appointment.scheduled``, ``customer.created|updated``); the job
carries its customer, ``work_timestamps.completed_at``, ``assigned_employees`` and
``total_amount`` in cents. Signed with ``Api-Signature``: hex HMAC-SHA256 of
``Api-Timestamp + "." + body``.
"""

from __future__ import annotations

from datetime import datetime
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
    full_name,
    hmac_sha256,
    invoice_posting,
    obj,
    same,
    text,
    voided_posting,
    when,
)

SYSTEM = "housecall_pro"
TOLERANCE = 300


def verify(delivery: Delivery, secret: str) -> bool:
    stamp = delivery.headers.get("api-timestamp")
    signature = delivery.headers.get("api-signature")
    if not stamp or not signature:
        return False
    if stamp.isdigit():
        seconds = int(stamp) / (1000 if len(stamp) > 11 else 1)
        if abs(delivery.received_at.timestamp() - seconds) > TOLERANCE:
            return False
    expected = hmac_sha256(secret.encode(), stamp.encode() + b"." + delivery.body).hex()
    return same(signature.lower(), expected)


def map_delivery(payload: Any, choices: Choices, delivery: Delivery) -> list[Raw]:
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise MappingFailed("expected {event, job|customer}")
    event: str = payload["event"]
    now = delivery.received_at
    if event.startswith("customer."):
        customer = payload.get("customer")
        if event == "customer.deleted" or not isinstance(customer, dict):
            return []  # our catalogue has no customer deletion: the record stays as it was
        found = _customer(customer, choices, now)
        return [found] if found else []
    job = payload.get("job")
    if not isinstance(job, dict):
        raise MappingFailed("a job event without job")
    order = text(job.get("id"))
    if order is None:
        raise MappingFailed("job.id: missing")
    tz = choices.timezone
    updated = when(job.get("updated_at"), tz) or now
    if event in {"job.canceled", "job.deleted"} or job.get("work_status") in (
        choices.voided_statuses or {"user canceled", "pro canceled", "canceled"}
    ):
        return [voided_posting(SYSTEM, order, updated)]
    customer = job.get("customer")
    customer_id = text(customer.get("id")) if isinstance(customer, dict) else None
    postings: list[Raw] = []
    if isinstance(customer, dict):
        found = _customer(customer, choices, now)
        if found:
            postings.append(found)
    if customer_id is None:
        raise MappingFailed("job.customer.id: missing")
    if event.startswith("job.appointment.") or event == "job.scheduled":
        schedule = obj(job.get("schedule"))
        appointment = payload.get("appointment")
        if isinstance(appointment, dict):
            schedule = {"scheduled_start": appointment.get("start_time"), **schedule}
            appointment_id = text(appointment.get("id")) or order
        else:
            appointment_id = order
        starts = when(schedule.get("scheduled_start"), tz)
        if starts is not None and not event.endswith(("discarded", "deleted")):
            postings.append(appointment_posting(SYSTEM, appointment_id, customer_id, starts, now))
        return postings
    timestamps = obj(job.get("work_timestamps"))
    completed_at = when(timestamps.get("completed_at"), tz)
    total = cents(job.get("total_amount"), choices.money)
    done = event == "job.completed" or job.get("work_status") in (
        choices.completed_statuses or {"completed", "complete rated", "complete unrated"}
    )
    if event == "job.paid":
        paid_at = when(job.get("paid_at") or job.get("updated_at"), tz) or now
        if total is not None:
            # Housecall Pro sends no invoice of its own: the paid job's invoice is issued
            # here, so that its payment (held until its invoice arrives) goes through.
            postings.append(
                invoice_posting(
                    SYSTEM, "invoice.issued", order, customer_id, total, paid_at, paid_at
                )
            )
            postings.append(
                invoice_posting(SYSTEM, "invoice.paid", order, customer_id, total, paid_at, paid_at)
            )
    if done or (event == "job.paid" and completed_at is not None):
        if completed_at is None:
            completed_at = updated
        employees = job.get("assigned_employees")
        advisor = (
            text(employees[0].get("id"))
            if isinstance(employees, list) and employees and isinstance(employees[0], dict)
            else None
        )
        postings.append(
            completed_posting(
                SYSTEM,
                order,
                customer_id,
                completed_at,
                advisor=advisor,
                total_cents=total,
                work_performed=text(job.get("description")),
                invoice_number=text(job.get("invoice_number")),
            )
        )
    return postings


def _customer(customer: dict[str, Any], choices: Choices, now: datetime) -> Raw | None:
    customer_id = text(customer.get("id"))
    if customer_id is None:
        return None
    phone = next(
        (
            text(customer.get(k))
            for k in ("mobile_number", "home_number", "work_number")
            if text(customer.get(k))
        ),
        None,
    )
    return customer_posting(
        SYSTEM,
        customer_id,
        full_name(customer.get("first_name"), customer.get("last_name"))
        or text(customer.get("company")),
        phone,
        text(customer.get("email")),
        when(customer.get("updated_at"), choices.timezone) or now,
    )
