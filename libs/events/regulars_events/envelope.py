"""CloudEvents 1.0 in Kafka binary mode: attributes in headers, the data as JSON value.

Regulars' own attributes are CloudEvents extensions, named as the spec wants them (lower
case letters and digits) behind the binding's ``ce_`` prefix, so that a CloudEvents SDK
sees them: ``ce_shopid``, ``ce_correlationid``, ``ce_causationid`` and ``ce_traceparent``
(the Distributed Tracing extension). The same values also travel under the names
consumers written before them read (``shop_id``, ``correlation_id``, ``causation_id``,
``traceparent``); a record with either set is read.
"""

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


#: each extension attribute's header, and the header it also travels under for the
#: consumers that predate it
LEGACY_HEADERS = {
    "ce_shopid": "shop_id",
    "ce_correlationid": "correlation_id",
    "ce_causationid": "causation_id",
    "ce_traceparent": "traceparent",
}


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
    ) -> Envelope:
        """Wrap an event; when it is caused by another, carry its correlation and trace."""
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
            traceparent=new_traceparent(cause.traceparent if cause else None),
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
            ("ce_shopid", self.shop_id),
            ("ce_correlationid", self.correlation_id),
            ("ce_traceparent", self.traceparent),
            ("shop_id", self.shop_id),
            ("correlation_id", self.correlation_id),
            ("traceparent", self.traceparent),
        ]
        if self.subject is not None:
            headers.append(("ce_subject", self.subject))
        if self.causation_id is not None:
            headers.append(("ce_causationid", self.causation_id))
            headers.append(("causation_id", self.causation_id))
        return [(k, v.encode()) for k, v in headers]

    @classmethod
    def from_kafka(cls, headers: Any, value: bytes | None) -> Envelope:
        h: dict[str, str] = {}
        for k, v in headers or ():
            h[k] = v.decode() if isinstance(v, bytes) else str(v)
        for extension, legacy in LEGACY_HEADERS.items():
            if extension not in h and legacy in h:
                h[extension] = h[legacy]
        missing = [
            k
            for k in ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_shopid")
            if k not in h
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
            shop_id=h["ce_shopid"],
            subject=h.get("ce_subject"),
            data=data,
            correlation_id=h.get("ce_correlationid") or str(event_id),
            causation_id=h.get("ce_causationid"),
            traceparent=h.get("ce_traceparent") or new_traceparent(),
        )
