"""What every connector shares: the delivery as it came, the shop's choices, and the
readings of money, times and ids that differ between systems. Pure.

A connector turns one system's webhook into postings in our own format (``{"type", "id",
"occurred_at", "data"}``), which then take the same path as ``POST /v1/events``. Each id is
derived from the system's own ids, so a re-sent or repeated webhook becomes the same
posting and is answered as a duplicate by intake's idempotency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

#: what a connector makes of a delivery: postings as a shop would have posted them
Raw = dict[str, Any]

#: dates some systems send for "none" (``0001-01-01T00:00:00``, the epoch)
_SENTINEL_YEARS = {1, 1900, 1970}


class MappingFailed(Exception):
    """The delivery is signed but not something this connector can read."""


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: header names lower-cased, the body as the bytes signed."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    #: when it arrived (for the systems that sign a timestamp)
    received_at: datetime


@dataclass(frozen=True)
class Choices:
    """What differs per shop, set with ``PUT /v1/connectors/{system}``."""

    #: read times without an offset here (the shop's timezone unless set)
    timezone: str = "UTC"
    #: the system's status names or ids that mean the visit is done
    completed_statuses: frozenset[str] = frozenset()
    #: the statuses that mean the order was voided or cancelled
    voided_statuses: frozenset[str] = frozenset()
    #: how the system's money fields are written
    money: Literal["cents", "dollars"] = "cents"
    extra: Mapping[str, Any] = field(default_factory=dict)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def same(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def when(value: Any, timezone: str) -> datetime | None:
    """A system's time as an aware datetime: an offset kept, none read in the shop's
    timezone, a sentinel (0001-01-01, 1900, the epoch), empty or unreadable value: None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        return None if moment.year in _SENTINEL_YEARS else moment
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.year in _SENTINEL_YEARS:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def iso(moment: datetime) -> str:
    return moment.isoformat()


def cents(value: Any, money: Literal["cents", "dollars"]) -> int | None:
    """Money as integer cents: cents kept, dollars (float or text) rounded to the cent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.replace(",", "").replace("$", ""))
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    if money == "dollars":
        return round(value * 100)
    return round(value)


def text(value: Any) -> str | None:
    """An id or name as text; numbers become their digits, 0 and empty become None
    (``shopId=0`` and ``customerId: 0`` are seen in samples for "none")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if value == 0 else str(int(value))
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def fingerprint(data: Any) -> str:
    """A short stable digest of mapped data: an upsert's id changes when its content does."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


def posting(kind: str, posting_id: str, occurred_at: datetime, data: dict[str, Any]) -> Raw:
    return {
        "type": kind,
        "id": posting_id[:200],
        "occurred_at": iso(occurred_at),
        "data": {k: v for k, v in data.items() if v is not None},
    }


def customer_posting(
    system: str,
    customer_id: str,
    name: str | None,
    phone: str | None,
    email: str | None,
    occurred_at: datetime,
    extra: dict[str, Any] | None = None,
) -> Raw | None:
    """customer.upserted, or None when the record has neither a name nor a way to reach
    them (intake needs a name and a phone or email)."""
    if not (phone or email):
        return None
    data = {
        "customer_id": customer_id,
        "name": (name or "").strip() or (email or phone),
        "phone": phone,
        "email": email,
        **(extra or {}),
    }
    data = {k: v for k, v in data.items() if v is not None}
    return posting(
        "customer.upserted",
        f"{system}:customer:{customer_id}:{fingerprint(data)}",
        occurred_at,
        data,
    )


def completed_posting(
    system: str,
    order_id: str,
    customer_id: str,
    completed_at: datetime,
    **optional: Any,
) -> Raw:
    """service.completed, its id fixed by the order and the time it was completed: a
    Completed then Posted, or a flood of updates, is the same visit."""
    data = {
        "repair_order_id": order_id,
        "customer_id": customer_id,
        "completed_at": iso(completed_at),
        **optional,
    }
    return posting(
        "service.completed",
        f"{system}:order:{order_id}:completed:{completed_at.astimezone(UTC).isoformat()}",
        completed_at,
        data,
    )


def voided_posting(system: str, order_id: str, occurred_at: datetime) -> Raw:
    """service.voided: one per order however many times the delete is sent."""
    return posting(
        "service.voided",
        f"{system}:order:{order_id}:voided",
        occurred_at,
        {"repair_order_id": order_id},
    )


def reopened_posting(system: str, order_id: str, occurred_at: datetime) -> Raw:
    return posting(
        "service.reopened",
        f"{system}:order:{order_id}:reopened:{occurred_at.astimezone(UTC).isoformat()}",
        occurred_at,
        {"repair_order_id": order_id},
    )


def appointment_posting(
    system: str, appointment_id: str, customer_id: str, starts_at: datetime, occurred_at: datetime
) -> Raw:
    """appointment.booked; a moved appointment is a new booking at its new time."""
    return posting(
        "appointment.booked",
        f"{system}:appointment:{appointment_id}:{starts_at.astimezone(UTC).isoformat()}",
        occurred_at,
        {"customer_id": customer_id, "starts_at": iso(starts_at), "appointment_id": appointment_id},
    )


def invoice_posting(
    system: str,
    kind: Literal["invoice.issued", "invoice.paid"],
    invoice_id: str,
    customer_id: str,
    amount_cents: int,
    due_at: datetime,
    occurred_at: datetime,
    id_suffix: str = "",
) -> Raw:
    stage = kind.split(".")[1]
    return posting(
        kind,
        f"{system}:invoice:{invoice_id}:{stage}{id_suffix}",
        occurred_at,
        {
            "invoice_id": invoice_id,
            "customer_id": customer_id,
            "amount_cents": amount_cents,
            "due_at": iso(due_at),
        },
    )


def first(items: Any, key: str = "primary") -> Any:
    """The primary item of a list of contact records, else the first; None if none."""
    if not isinstance(items, list) or not items:
        return None
    for item in items:
        if isinstance(item, dict) and item.get(key):
            return item
    return items[0]


def full_name(*parts: Any) -> str | None:
    words = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
    return " ".join(words) or None


def obj(value: Any) -> dict[str, Any]:
    """A nested record, or an empty one when the system sent none (or not an object)."""
    return value if isinstance(value, dict) else {}
