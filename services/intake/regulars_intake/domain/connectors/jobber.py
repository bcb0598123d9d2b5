"""Jobber: a thin webhook naming the item, then the item read from Jobber's GraphQL API.
Pure: this module says what to ask and how to read the answer; the asking is an adapter's.

The webhook is ``{"data": {"webHookEvent": {"topic", "appId", "accountId", "itemId",
"occurredAt"}}}`` (``occuredAt`` also seen), signed with ``X-Jobber-Hmac-SHA256``: the
base64 HMAC-SHA256 of the body with the app's client secret. Delivery is at least once and
Jobber wants an answer within a second. Money in the API is float dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .common import (
    Choices,
    Delivery,
    MappingFailed,
    Raw,
    b64,
    cents,
    completed_posting,
    customer_posting,
    first,
    full_name,
    hmac_sha256,
    invoice_posting,
    obj,
    same,
    text,
    voided_posting,
    when,
)

SYSTEM = "jobber"

_CLIENT = (
    "client { id firstName lastName companyName emails { address primary }"
    " phones { number primary } }"
)
_JOB = f"id jobNumber jobStatus completedAt total title {_CLIENT} property {{ id }}"
_INVOICE = f"id invoiceNumber invoiceStatus issuedDate dueDate amounts {{ total }} {_CLIENT}"

_CLIENT_QUERY = (
    "query($id: EncodedId!) { " + _CLIENT.replace("client {", "client(id: $id) {") + " }"
)

#: topic -> (the GraphQL query for its item, the field the item comes back under)
QUERIES: dict[str, tuple[str, str]] = {
    "JOB_CLOSED": (f"query($id: EncodedId!) {{ job(id: $id) {{ {_JOB} }} }}", "job"),
    "JOB_UPDATE": (f"query($id: EncodedId!) {{ job(id: $id) {{ {_JOB} }} }}", "job"),
    "VISIT_COMPLETE": (
        f"query($id: EncodedId!) {{ visit(id: $id) {{ id completedAt job {{ {_JOB} }} }} }}",
        "visit",
    ),
    "INVOICE_CREATE": (
        f"query($id: EncodedId!) {{ invoice(id: $id) {{ {_INVOICE} }} }}",
        "invoice",
    ),
    "INVOICE_UPDATE": (
        f"query($id: EncodedId!) {{ invoice(id: $id) {{ {_INVOICE} }} }}",
        "invoice",
    ),
    "PAYMENT_CREATE": (
        "query($id: EncodedId!) { paymentRecord(id: $id) { id amount entryDate"
        f" invoice {{ {_INVOICE} }} }} }}",
        "paymentRecord",
    ),
    "CLIENT_CREATE": (
        f"query($id: EncodedId!) {{ {_CLIENT.replace('client {', 'client(id: $id) {')} }}",
        "client",
    ),
    "CLIENT_UPDATE": (
        f"query($id: EncodedId!) {{ {_CLIENT.replace('client {', 'client(id: $id) {')} }}",
        "client",
    ),
}
#: topics whose item is gone: nothing to fetch
DESTROYED = {"JOB_DESTROY"}


@dataclass(frozen=True)
class Thin:
    topic: str
    item_id: str
    account_id: str | None
    occurred_at: datetime | None


def verify(delivery: Delivery, secret: str) -> bool:
    return same(
        delivery.headers.get("x-jobber-hmac-sha256"),
        b64(hmac_sha256(secret.encode(), delivery.body)),
    )


def thin(payload: Any, choices: Choices) -> Thin:
    event = payload.get("data", {}).get("webHookEvent") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        raise MappingFailed("expected {data: {webHookEvent: {topic, itemId}}}")
    topic, item = text(event.get("topic")), text(event.get("itemId"))
    if topic is None or item is None:
        raise MappingFailed("webHookEvent needs topic and itemId")
    return Thin(
        topic,
        item,
        text(event.get("accountId")),
        when(event.get("occurredAt") or event.get("occuredAt"), choices.timezone),
    )


def query_for(event: Thin) -> tuple[str, dict[str, Any], str] | None:
    """The GraphQL query, its variables and the answer's field; None: nothing to fetch."""
    found = QUERIES.get(event.topic)
    if found is None:
        return None
    query, field = found
    return query, {"id": event.item_id}, field


def map_event(
    event: Thin, item: dict[str, Any] | None, choices: Choices, now: datetime
) -> list[Raw]:
    occurred = event.occurred_at or now
    if event.topic in DESTROYED:
        return [voided_posting(SYSTEM, event.item_id, occurred)]
    if item is None:
        return []
    if event.topic.startswith("CLIENT_"):
        found = _client(item, occurred)
        return [found] if found else []
    if event.topic == "VISIT_COMPLETE":
        job = item.get("job")
        if not isinstance(job, dict):
            raise MappingFailed("visit.job: missing")
        return _job(job, choices, occurred, when(item.get("completedAt"), choices.timezone))
    if event.topic.startswith("JOB_"):
        return _job(item, choices, occurred, None)
    if event.topic.startswith("INVOICE_"):
        return _invoice(item, choices, occurred, None)
    if event.topic == "PAYMENT_CREATE":
        invoice = item.get("invoice")
        if not isinstance(invoice, dict):
            return []
        return _invoice(invoice, choices, occurred, item)
    return []


def _client(client: Any, occurred: datetime) -> Raw | None:
    if not isinstance(client, dict) or text(client.get("id")) is None:
        return None
    phone, email = first(client.get("phones")), first(client.get("emails"))
    return customer_posting(
        SYSTEM,
        str(client["id"]),
        full_name(client.get("firstName"), client.get("lastName"))
        or text(client.get("companyName")),
        text(phone.get("number")) if isinstance(phone, dict) else None,
        text(email.get("address")) if isinstance(email, dict) else None,
        occurred,
    )


def _job(
    job: dict[str, Any], choices: Choices, occurred: datetime, visit_done: datetime | None
) -> list[Raw]:
    job_id = text(job.get("id"))
    client = job.get("client")
    customer = text(client.get("id")) if isinstance(client, dict) else None
    if job_id is None or customer is None:
        raise MappingFailed("job.id and job.client.id are needed")
    status = str(job.get("jobStatus") or "").lower()
    if status in (choices.voided_statuses or {"archived_canceled", "canceled", "cancelled"}):
        return [voided_posting(SYSTEM, job_id, occurred)]
    completed_at = when(job.get("completedAt"), choices.timezone) or visit_done
    if completed_at is None and status not in (choices.completed_statuses or {"archived"}):
        return []
    postings: list[Raw] = []
    found = _client(client, occurred)
    if found:
        postings.append(found)
    prop = job.get("property")
    postings.append(
        completed_posting(
            SYSTEM,
            job_id,
            customer,
            completed_at or occurred,
            asset_id=text(prop.get("id")) if isinstance(prop, dict) else None,
            total_cents=cents(job.get("total"), "dollars"),
            work_performed=text(job.get("title")),
            job_number=text(job.get("jobNumber")),
        )
    )
    return postings


def _invoice(
    invoice: dict[str, Any], choices: Choices, occurred: datetime, payment: dict[str, Any] | None
) -> list[Raw]:
    invoice_id = text(invoice.get("id"))
    client = invoice.get("client")
    customer = text(client.get("id")) if isinstance(client, dict) else None
    amounts = obj(invoice.get("amounts"))
    total = cents(amounts.get("total"), "dollars")
    if invoice_id is None or customer is None or total is None:
        raise MappingFailed("invoice.id, invoice.client.id and invoice.amounts.total are needed")
    tz = choices.timezone
    issued = when(invoice.get("issuedDate"), tz) or occurred
    due = when(invoice.get("dueDate"), tz) or issued
    postings: list[Raw] = []
    found = _client(client, occurred)
    if found:
        postings.append(found)
    status = str(invoice.get("invoiceStatus") or "").lower()
    if payment is not None or status == "paid":
        # A paid invoice was issued, whether or not its creation was delivered: the same
        # posting as its creation's (a duplicate if that came), so its payment, held
        # until its invoice arrives, goes through.
        postings.append(
            invoice_posting(SYSTEM, "invoice.issued", invoice_id, customer, total, due, issued)
        )
    if payment is not None:
        amount = cents(payment.get("amount"), "dollars")
        paid_at = when(payment.get("entryDate"), tz) or occurred
        postings.append(
            invoice_posting(
                SYSTEM,
                "invoice.paid",
                invoice_id,
                customer,
                amount if amount is not None else total,
                due,
                paid_at,
                f":{text(payment.get('id'))}",
            )
        )
    elif str(invoice.get("invoiceStatus") or "").lower() == "paid":
        postings.append(
            invoice_posting(SYSTEM, "invoice.paid", invoice_id, customer, total, due, occurred)
        )
    elif str(invoice.get("invoiceStatus") or "").lower() not in {"draft", "void", "bad_debt"}:
        postings.append(
            invoice_posting(SYSTEM, "invoice.issued", invoice_id, customer, total, due, issued)
        )
    return postings
