"""Trace context on the bus: W3C ``traceparent`` strings to spans and back.

The outbox stores an event's headers when its transaction commits, so the context cannot
ride on a Kafka client's instrumentation: it is the envelope's ``traceparent``, carried
explicitly. The relay and the consumer are handed a tracer (None when tracing is off:
then nothing here runs and nothing costs) and use these to start their spans.

The event being handled is also kept here (:data:`handling`), for the log lines written
while it is applied: the runtime's log formatter reads it.
"""

from __future__ import annotations

import contextvars
import re
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags
from regulars_events.envelope import Envelope

#: the event a consumer is applying in this task (None outside one)
handling: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar(
    "regulars_handling", default=None
)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse(traceparent: str | None) -> tuple[str, str, int] | None:
    """(trace id, span id, flags) of a well-formed W3C traceparent; None otherwise
    (version ff, all-zero ids and anything malformed are refused, as the spec says)."""
    if not traceparent:
        return None
    found = _TRACEPARENT.match(traceparent.strip().lower())
    if found is None:
        return None
    version, trace_id, span_id, flags = found.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, int(flags, 16)


def parent_context(traceparent: str | None) -> Context | None:
    """The OpenTelemetry context whose parent is ``traceparent`` (None: a new trace)."""
    ids = parse(traceparent)
    if ids is None:
        return None
    trace_id, span_id, flags = ids
    remote = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(flags & 0x01),
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def traceparent_of(span: Span) -> str | None:
    """A span's context as a W3C traceparent (None for an invalid one)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 0x01:02x}"


def event_attributes(envelope: Envelope, topic: str | None = None) -> dict[str, Any]:
    """What a span about one event says of it (OpenTelemetry messaging conventions)."""
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic or envelope.topic,
        "messaging.message.id": str(envelope.id),
        "cloudevents.event_id": str(envelope.id),
        "cloudevents.event_type": envelope.type,
        "cloudevents.event_source": envelope.source,
        "regulars.shop_id": envelope.shop_id,
        "regulars.correlation_id": envelope.correlation_id,
    }
