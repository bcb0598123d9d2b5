"""Traces: OpenTelemetry, configured by the standard ``OTEL_*`` variables, off unless asked.

On when an OTLP endpoint is given (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and neither ``OTEL_SDK_DISABLED=true`` nor
``OTEL_TRACES_EXPORTER=none`` says otherwise. Off, no provider is installed and no
instrumentation wraps anything: a request or an event costs what it did before.

One trace follows a shop's post: the HTTP request (continuing an incoming W3C
``traceparent``) -> the event, whose envelope carries the request span's context into
the outbox -> the relay's "publish <topic>" span -> the consumer's "process <type>" span
-> what that causes (its database statements, the events it emits, a webhook sent).

Spans go over OTLP/HTTP with protobuf (``/v1/traces``). The sampler is the one
``OTEL_TRACES_SAMPLER`` names (parent-based always-on by default), except that a
database statement with no span around it (a polling loop's) is not kept: it would be a
trace of one query, every second, from every replica.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Tracer
from opentelemetry.util.types import Attributes
from regulars_bus import tracing
from regulars_events.envelope import Envelope

log = logging.getLogger(__name__)

_tracer: Tracer | None = None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def wanted() -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    if _flag("OTEL_SDK_DISABLED"):
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporters in ("none", ""):
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(endpoint and endpoint.strip())


def configure(service: str) -> bool:
    """Install the tracer provider, the OTLP exporter and the client instrumentations
    (asyncpg, httpx) when the environment asks for traces; whether it did."""
    global _tracer
    if _tracer is not None:
        return True
    if not wanted():
        return False
    # Imported only when on: the SDK and its exporter are not loaded otherwise.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() and protocol.strip() != "http/protobuf":
        log.warning(
            "only OTLP over HTTP with protobuf is built in; exporting with it",
            extra={"asked_for": protocol},
        )
    attributes: dict[str, str] = {"service.namespace": "regulars"}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes["service.name"] = f"regulars-{service}"
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME under ours.
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=_no_lone_queries(_get_from_env_or_default())
    )
    # batching from OTEL_BSP_*; endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("regulars")
    log.info("traces exported over OTLP", extra={"service.name": attributes.get("service.name")})
    return True


def tracer() -> Tracer | None:
    """The tracer, or None when traces are off (the bus's workers then start no spans)."""
    return _tracer


def shutdown() -> None:
    """Send the spans still queued (at the end of the service's lifespan)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if _tracer is not None and callable(stop):
        stop()


def instrument_app(app: Any) -> None:
    """The FastAPI server span of every request but the probes and the scrape."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=trace.get_tracer_provider(),
        excluded_urls="/healthz,/readyz,/metrics",
        exclude_spans=["receive", "send"],
        server_request_hook=_redact_server_span,
    )


def _redact_server_span(span: Any, scope: dict[str, Any]) -> None:
    """A path or query may hold a secret (a survey or unsubscribe token, a hook's
    ?token=): the span keeps the route template and the query with secrets masked."""
    from .logging import is_route, redacted_query, route_template

    if span is None or not span.is_recording():
        return
    path = route_template(scope)
    if is_route(scope, path):
        # named by its route even when an endpoint in front of the router answers it
        span.update_name(f"{scope.get('method', 'HTTP')} {path}")
        span.set_attribute("http.route", path)
    query = redacted_query(scope.get("query_string", b""))
    target = path + (f"?{query}" if query else "")
    held = getattr(span, "attributes", None) or {}
    for name, value in (
        ("http.target", target),
        ("url.path", path),
        ("url.query", query),
        ("http.url", None),
        ("url.full", None),
    ):
        if name in held:
            if value is None:
                scheme = scope.get("scheme", "http")
                host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
                value = f"{scheme}://{host}{target}"
            span.set_attribute(name, value)


# -- the context at hand ----------------------------------------------------------------


def note_shop(shop: Any) -> None:
    """Name the shop a request acts for on its span."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("regulars.shop_id", str(shop))


def current_traceparent() -> str | None:
    """The current span's context as a W3C traceparent (None outside a span, or off)."""
    if _tracer is None:
        return None
    return tracing.traceparent_of(trace.get_current_span())


def traceparent_for_event(cause: Envelope | None, carried: str | None = None) -> str | None:
    """The traceparent a new event's envelope carries: the span it is created in.

    With traces on: the cause's (the consumer hands handlers its event carrying the
    "process" span's context), else the current span's. With traces off: None (the
    envelope continues its cause's trace id), or, for an event a request creates, the
    request's own ``carried`` context (the one its log lines name).
    """
    if _tracer is not None:
        if cause is not None:
            return cause.traceparent
        return current_traceparent() or carried
    if cause is None and carried and tracing.parse(carried):
        return carried
    return None


@contextlib.contextmanager
def within(envelope: Envelope) -> Iterator[None]:
    """While one event of several applied together is handled: its log lines name it,
    and (traces on) what it does is a child of its own "process" span, whose context
    the consumer put in its envelope."""
    handling = tracing.handling.set(envelope)
    attached = None
    if _tracer is not None:
        parent = tracing.parent_context(envelope.traceparent)
        if parent is not None:
            attached = otel_context.attach(parent)
    try:
        yield
    finally:
        if attached is not None:
            otel_context.detach(attached)
        tracing.handling.reset(handling)


def traceparent_here() -> str | None:
    """The context an event created here and now would carry (see above)."""
    from .logging import work

    request = work.get()
    return traceparent_for_event(None, request.traceparent if request is not None else None)


def start_span(
    name: str,
    *,
    parent: str | None,
    kind: Literal["internal", "client", "producer", "consumer"] = "internal",
    attributes: Attributes = None,
    links: Sequence[str] = (),
) -> Any:
    """A context manager: a current span whose parent is ``parent`` (a traceparent; None
    continues the current span), linked to the contexts in ``links``. Off: a no-op that
    yields None."""
    if _tracer is None:
        return contextlib.nullcontext()
    context: Context | None = tracing.parent_context(parent) if parent else None
    linked = []
    for other in links:
        ctx = tracing.parent_context(other)
        if ctx is not None:
            linked.append(Link(trace.get_current_span(ctx).get_span_context()))
    return _tracer.start_as_current_span(
        name, context=context, kind=_KINDS[kind], attributes=attributes, links=linked
    )


_KINDS = {
    "internal": SpanKind.INTERNAL,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


def _no_lone_queries(inner: Any) -> Any:
    """The configured sampler, except for a database statement outside any span."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class NoLoneQueries(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if (
                not parent.is_valid
                and kind is SpanKind.CLIENT
                and attributes
                and ("db.system" in attributes or "db.system.name" in attributes)
            ):
                return SamplingResult(Decision.DROP)
            result: SamplingResult = inner.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
            return result

        def get_description(self) -> str:
            return f"NoLoneQueries{{{inner.get_description()}}}"

    return NoLoneQueries()
