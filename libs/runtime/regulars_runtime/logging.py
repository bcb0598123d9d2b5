"""JSON logs, one object a line, naming the work at hand.

Every line written while a request or an event is handled carries its shop id, event
id, correlation id, trace id and span id: a request's from :data:`work` (set by
:class:`RequestLog`, the shop filled in once the request's credentials name it), an
event's from the envelope the consumer is applying (``regulars_bus.tracing.handling``).
The trace and span ids are the current span's when traces are on, and otherwise those
of the context the request or the event carries.

No line holds a secret: a request is logged by its route template (``/s/{token}``, not
the survey token), and its query with the values of secret parameters masked.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi.routing import iter_route_contexts
from opentelemetry import trace
from regulars_bus import tracing
from regulars_events.envelope import new_traceparent
from starlette.routing import Match


@dataclass(slots=True)
class Work:
    """What a request's log lines say it is about."""

    correlation_id: str
    traceparent: str
    shop_id: str | None = None
    event_id: str | None = None


#: the request at hand (None outside one)
work: contextvars.ContextVar[Work | None] = contextvars.ContextVar("regulars_work", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

#: query parameters whose values are secrets (Tekmetric's hook ?token=, and the usual ones)
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "key",
        "api_key",
        "apikey",
        "secret",
        "client_secret",
        "password",
        "signature",
        "sig",
        "code",
        "auth",
        "authorization",
    }
)
MASK = "[redacted]"


def redacted_query(raw: bytes | str) -> str:
    """A query string with the values of :data:`SECRET_PARAMS` masked."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text:
        return ""
    pairs = parse_qsl(text, keep_blank_values=True)
    if not any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        return text
    return urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="[]")


def route_template(scope: dict[str, Any]) -> str:
    """The route a request was (or will be) served by, as declared: never the raw path,
    which may hold a token. A path no route matches is that path, without its query."""
    route = scope.get("route")
    app = scope.get("app")
    if route is None:
        # before routing (the server span's start): routes of included routers are
        # nested, matched through their effective contexts
        for candidate in iter_route_contexts(getattr(app, "routes", ())):
            match, _child = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
    found = getattr(route, "path", None)
    if isinstance(found, str):
        return found
    path = str(scope.get("path", ""))
    if path in front_routes(app):
        return path
    return path[:200]


def front_routes(app: Any) -> frozenset[str]:
    """Paths an ASGI endpoint in front of the routes answers (intake's POST /v1/events),
    as the service declares them in ``app.state.front_routes``."""
    state = getattr(app, "state", None)
    return frozenset(getattr(state, "front_routes", ()) or ())


def is_route(scope: dict[str, Any], template: str) -> bool:
    """Whether ``template`` is a declared route (not the raw path of a 404)."""
    app = scope.get("app")
    if template in front_routes(app):
        return True
    routes = iter_route_contexts(getattr(app, "routes", ()))
    return any(getattr(r, "path", None) == template for r in routes)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        _about(entry)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _about(entry: dict[str, Any]) -> None:
    """The ids of the request or the event at hand, into a log line."""
    carried = None
    event = tracing.handling.get()
    if event is not None:
        entry["shop_id"] = event.shop_id
        entry["event_id"] = str(event.id)
        entry["event_type"] = event.type
        entry["correlation_id"] = event.correlation_id
        carried = event.traceparent
    request = work.get()
    if request is not None:
        entry.setdefault("correlation_id", request.correlation_id)
        if request.shop_id is not None:
            entry.setdefault("shop_id", request.shop_id)
        if request.event_id is not None:
            entry.setdefault("event_id", request.event_id)
        carried = carried or request.traceparent
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        entry["trace_id"] = f"{span.trace_id:032x}"
        entry["span_id"] = f"{span.span_id:016x}"
        return
    ids = tracing.parse(carried)
    if ids is not None:
        entry["trace_id"], entry["span_id"] = ids[0], ids[1]


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR while a broker restarts; we report
    # what matters (publish failures, dead letters) ourselves.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # Ours is the access log (RequestLog): uvicorn's would print the raw path and query.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO: a webhook's URL, a provider's account
    # path or a link's token would land in ours. What a call did, we log ourselves.
    for client in QUIET_CLIENTS:
        logging.getLogger(client).setLevel(logging.WARNING)


QUIET_CLIENTS = ("httpx", "httpcore", "urllib3")


access = logging.getLogger("regulars.access")

#: probes and the scrape: every few seconds from every kubelet and Prometheus
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})

_CORRELATION_HEADERS = (b"x-correlation-id", b"x-request-id")


def _correlation(scope: dict[str, Any]) -> str | None:
    for key, value in scope.get("headers", ()):
        if key in _CORRELATION_HEADERS:
            text = bytes(value).decode("latin-1").strip()
            # an id to search logs by, not a place to put text in ours
            if 0 < len(text) <= 128 and all(c.isalnum() or c in "-_.:" for c in text):
                return text
    return None


def _incoming_traceparent(scope: dict[str, Any]) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            text = bytes(value).decode("latin-1")
            return text if tracing.parse(text) else None
    return None


class RequestLog:
    """Pure ASGI middleware: the request's log context, and one access line per request
    (route template, method, status, duration_ms), ours instead of uvicorn's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _incoming_traceparent(scope)
        # Off, a request still has a context of its own: the incoming trace id (or a
        # new one) and a span id, named by its log lines and carried by its events.
        context = Work(
            correlation_id=_correlation(scope) or new_traceparent()[3:35],
            traceparent=new_traceparent(incoming),
        )
        token = work.set(context)
        status = 500
        correlation = context.correlation_id.encode()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                headers.append((b"x-correlation-id", correlation))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            if route not in _QUIET:
                access.info(
                    "request",
                    extra={
                        "route": route,
                        "method": scope.get("method"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            work.reset(token)
