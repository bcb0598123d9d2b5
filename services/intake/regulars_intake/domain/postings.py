"""What a shop posts: parsed and checked, with errors that name the field. Pure.

A posting is ``{"type", "id"?, "occurred_at", "data"}``. Its ``id`` is the shop's own
idempotency key: the same id and body is the same event (answered as a duplicate); the
same id with another body is a conflict. The CloudEvents id is derived from the shop and
the id, so a retried post can never become two events.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from regulars_events.base import Event
from regulars_events.catalogue import SHOP_EVENTS

MAX_EVENT_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
MAX_BATCH = 500
MAX_ID_LENGTH = 200
_ID_NAMESPACE = uuid.UUID("6c1f4e0e-5a7e-4a43-9c55-2f1f0b9e0d11")
_POSTING_KEYS = {"type", "id", "occurred_at", "data"}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class Rejected(Exception):
    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []

    def as_dict(self) -> dict[str, Any]:
        return {"detail": self.message, "errors": [e.as_dict() for e in self.errors]}


@dataclass(frozen=True)
class Posting:
    short_type: str
    event: Event
    client_id: str | None
    occurred_at: datetime
    body_hash: bytes
    #: the W3C trace context of the request that brought it, for the event it becomes
    #: (committed with other requests' postings, by a writer outside that request)
    traceparent: str | None = field(default=None, compare=False)

    def event_id(self, shop_id: uuid.UUID) -> uuid.UUID:
        if self.client_id is None:
            return uuid.uuid4()
        return uuid.uuid5(_ID_NAMESPACE, f"{shop_id}:{self.client_id}")


def as_posted(posting: Posting) -> dict[str, Any]:
    """The posting as a shop would post it (what a held posting is kept as, and parsed
    from again when it is let through)."""
    return {
        "type": posting.short_type,
        "id": posting.client_id,
        "occurred_at": posting.occurred_at.isoformat(),
        "data": posting.event.model_dump(mode="json", exclude_unset=True),
    }


def body_hash(raw: dict[str, Any]) -> bytes:
    """Hash of what makes two posts "the same event": type, time and data, key order aside."""
    canonical = {k: raw.get(k) for k in ("type", "occurred_at", "data")}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()


def _pydantic_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        errors.append(FieldError(path, err["msg"]))
    return errors


def _parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise Rejected(
            422,
            f"{field} must be an ISO-8601 time with an offset",
            [FieldError(field, "expected a string such as 2026-11-23T10:00:00-05:00")],
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(
            422,
            f"{field} is not an ISO-8601 time",
            [FieldError(field, f"{value[:60]!r} is not an ISO-8601 time")],
        ) from None
    if parsed.tzinfo is None:
        raise Rejected(
            422,
            f"{field} has no UTC offset",
            [FieldError(field, "a time needs an offset, e.g. 2026-11-23T10:00:00-05:00 or Z")],
        )
    return parsed


def _nul_at(value: Any, path: str) -> str | None:
    """Where a NUL character is (PostgreSQL text and jsonb cannot hold one), if anywhere."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner
            found = _nul_at(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_at(item, f"{path}[{i}]")
            if found:
                return found
    return None


def parse_posting(
    raw: Any, *, size: int | None = None, where: str = "", body: bytes | None = None
) -> Posting:
    """One posted event, checked; raises Rejected naming what is wrong.

    ``body``: the JSON text ``raw`` was parsed from, if at hand. JSON can only carry a NUL
    as ``\\u0000``, so without that text in it the search for NUL is skipped.
    """
    if size is None:
        size = len(orjson.dumps(raw))
    if size > MAX_EVENT_BYTES:
        raise Rejected(
            413,
            f"{where or 'event'} is {size} bytes; an event may be at most {MAX_EVENT_BYTES} bytes",
        )
    if not isinstance(raw, dict):
        raise Rejected(400, f"{where or 'body'} must be a JSON object")
    p = f"{where}." if where else ""
    nul = _nul_at(raw, where) if body is None or b"\\u0000" in body else None
    if nul is not None:
        raise Rejected(
            422, f"{nul}: contains a NUL character (\\u0000)", [FieldError(nul, "NUL character")]
        )
    errors: list[FieldError] = []
    unknown = sorted(set(raw) - _POSTING_KEYS)
    for key in unknown:
        errors.append(
            FieldError(p + key, "unknown field; an event has type, id, occurred_at, data")
        )
    short_type = raw.get("type")
    if not isinstance(short_type, str):
        errors.append(FieldError(p + "type", "required: one of " + ", ".join(SHOP_EVENTS)))
    elif short_type not in SHOP_EVENTS:
        errors.append(
            FieldError(
                p + "type",
                f"unknown event type {short_type[:60]!r}; one of " + ", ".join(SHOP_EVENTS),
            )
        )
    client_id = raw.get("id")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_ID_LENGTH
    ):
        errors.append(FieldError(p + "id", f"must be a string of 1 to {MAX_ID_LENGTH} characters"))
    data = raw.get("data")
    if not isinstance(data, dict):
        errors.append(FieldError(p + "data", "required: a JSON object"))
    # Every problem in one answer: a careless system fixes them all in one round.
    occurred_at = None
    if "occurred_at" not in raw:
        errors.append(FieldError(p + "occurred_at", "required: an ISO-8601 time with an offset"))
    else:
        try:
            occurred_at = _parse_time(raw["occurred_at"], p + "occurred_at")
        except Rejected as bad_time:
            errors += bad_time.errors
    event = None
    if isinstance(short_type, str) and short_type in SHOP_EVENTS and isinstance(data, dict):
        try:
            event = SHOP_EVENTS[short_type].model_validate(data)
        except ValidationError as exc:
            errors += _pydantic_errors(exc, p + "data")
    if errors:
        raise Rejected(422, "; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    assert isinstance(short_type, str) and event is not None and occurred_at is not None
    return Posting(short_type, event, client_id, occurred_at, body_hash(raw))
