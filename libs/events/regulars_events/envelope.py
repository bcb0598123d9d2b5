"""CloudEvents 1.0 in Kafka binary mode: attributes in headers, the data as JSON value."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .base import Event, event_class
from .topics import partition_key, topic_for

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


class EnvelopeError(ValueError):
    """A Kafka record that is not a Regulars CloudEvent (missing header, bad value)."""


def new_traceparent(parent: str | None = None) -> str:
    """A W3C traceparent: the parent's trace id when there is one, and a new span id."""
    trace_id = secrets.token_hex(16)
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            trace_id = parts[1]
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True, slots=True)
class Envelope:
    id: uuid.UUID
    type: str
    source: str
    time: datetime
    shop_id: str
    subject: str | None
    data: dict[str, Any]
    correlation_id: str
    causation_id: str | None = None
    traceparent: str = field(default_factory=new_traceparent)

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        shop_id: str,
        id: uuid.UUID | None = None,
        time: datetime | None = None,
        cause: Envelope | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        """Wrap an event; when it is caused by another, carry its correlation and trace.
        ``traceparent``: the context it is created in (the span at hand), as it is;
        without one it continues its cause's trace."""
        event_id = id or uuid.uuid4()
        return cls(
            id=event_id,
            type=event.type,
            source=source,
            time=time or datetime.now(UTC),
            shop_id=shop_id,
            subject=event.subject(),
            data=event.model_dump(mode="json"),
            correlation_id=correlation_id
            or (cause.correlation_id if cause else None)
            or str(event_id),
            causation_id=str(cause.id) if cause else None,
            traceparent=traceparent or new_traceparent(cause.traceparent if cause else None),
        )

    def event(self) -> Event:
        return event_class(self.type).model_validate(self.data)

    @property
    def topic(self) -> str:
        return topic_for(self.type)

    @property
    def key(self) -> bytes:
        return partition_key(self.shop_id, self.subject)

    @property
    def value(self) -> bytes:
        return orjson.dumps(self.data)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", SPECVERSION),
            ("ce_id", str(self.id)),
            ("ce_type", self.type),
            ("ce_source", self.source),
            ("ce_time", self.time.isoformat()),
            ("content-type", CONTENT_TYPE),
            ("shop_id", self.shop_id),
            ("correlation_id", self.correlation_id),
            ("traceparent", self.traceparent),
        ]
        if self.subject is not None:
            headers.append(("ce_subject", self.subject))
        if self.causation_id is not None:
            headers.append(("causation_id", self.causation_id))
        return [(k, v.encode()) for k, v in headers]

    @classmethod
    def from_kafka(cls, headers: Any, value: bytes | None) -> Envelope:
        h: dict[str, str] = {}
        for k, v in headers or ():
            h[k] = v.decode() if isinstance(v, bytes) else str(v)
        missing = [
            k for k in ("ce_specversion", "ce_id", "ce_type", "ce_source", "shop_id") if k not in h
        ]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        if h["ce_specversion"] != SPECVERSION:
            raise EnvelopeError(f"unsupported ce_specversion {h['ce_specversion']!r}")
        try:
            data = orjson.loads(value or b"null")
            event_id = uuid.UUID(h["ce_id"])
            time = datetime.fromisoformat(h["ce_time"]) if "ce_time" in h else datetime.now(UTC)
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise EnvelopeError(f"bad CloudEvent: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("event data is not a JSON object")
        return cls(
            id=event_id,
            type=h["ce_type"],
            source=h["ce_source"],
            time=time,
            shop_id=h["shop_id"],
            subject=h.get("ce_subject"),
            data=data,
            correlation_id=h.get("correlation_id") or str(event_id),
            causation_id=h.get("causation_id"),
            traceparent=h.get("traceparent") or new_traceparent(),
        )
