"""Traces off unless asked, log lines naming the work at hand, and no secret in either."""

from __future__ import annotations

import io
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter
from regulars_bus import tracing
from regulars_events.catalogue import CustomerUpserted
from regulars_events.envelope import Envelope
from regulars_runtime import telemetry
from regulars_runtime.logging import QUIET_CLIENTS, JsonFormatter, Work, redacted_query, work
from regulars_runtime.service import ServiceDefinition, Wiring, create_app
from regulars_runtime.settings import ServiceSettings
from regulars_runtime.unit_of_work import UnitOfWork

router = APIRouter()
log = logging.getLogger("regulars.test")


@router.get("/s/{token}")
async def survey(token: str) -> dict[str, str]:
    log.info("survey opened")
    return {"ok": "yes"}


class _Settings(ServiceSettings):
    service = "notes"


def _wire(_pool: Any, _settings: _Settings) -> Wiring[None]:
    raise AssertionError("the tests run without the lifespan")


DEFINITION: ServiceDefinition[_Settings, None] = ServiceDefinition(
    name="notes", title="notes", description="t", settings=_Settings, wire=_wire, routers=[router]
)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("notes"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # as logging.configure leaves them: this test's own client is one of them
    for client in QUIET_CLIENTS:
        logging.getLogger(client).setLevel(logging.WARNING)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)
    for client in QUIET_CLIENTS:
        logging.getLogger(client).setLevel(logging.NOTSET)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(DEFINITION, _Settings(database_url="postgresql://unused"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


def _parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "regulars-intake"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_traces_are_off_unless_an_endpoint_is_given(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not telemetry.wanted()
    assert not telemetry.configure("notes")
    assert telemetry.tracer() is None


def test_an_endpoint_asks_for_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    assert telemetry.wanted()


def test_a_traceparent_is_read_as_the_w3c_spec_says() -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    assert tracing.parse(f"00-{trace_id}-{span_id}-01") == (trace_id, span_id, 1)
    assert tracing.parse(f"00-{trace_id.upper()}-{span_id}-00") == (trace_id, span_id, 0)
    for bad in (
        None,
        "",
        "garbage",
        f"ff-{trace_id}-{span_id}-01",
        f"00-{'0' * 32}-{span_id}-01",
        f"00-{trace_id}-{'0' * 16}-01",
        f"00-{trace_id[:-1]}-{span_id}-01",
    ):
        assert tracing.parse(bad) is None


def test_secret_query_values_are_masked() -> None:
    assert redacted_query(b"token=abc&page=2") == "token=[redacted]&page=2"
    assert "abc" not in redacted_query("Token=abc&api_key=xyz&message=m-1")
    assert "m-1" in redacted_query("Token=abc&api_key=xyz&message=m-1")
    assert redacted_query(b"page=2&limit=10") == "page=2&limit=10"
    assert redacted_query(b"") == ""


async def test_a_request_is_one_access_line_by_its_route_with_its_ids(
    client: httpx.AsyncClient, lines: io.StringIO
) -> None:
    token = "tok" + secrets.token_hex(12)
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    r = await client.get(
        f"/s/{token}",
        params={"token": token},
        headers={"traceparent": f"00-{trace_id}-{caller}-01", "x-correlation-id": "req-42"},
    )
    assert r.status_code == 200
    assert r.headers["x-correlation-id"] == "req-42"
    assert token not in lines.getvalue()
    written = _parsed(lines)
    (access,) = [e for e in written if e["logger"] == "regulars.access"]
    assert access["route"] == "/s/{token}"
    assert (access["method"], access["status"]) == ("GET", 200)
    assert isinstance(access["duration_ms"], float)
    (inside,) = [e for e in written if e["message"] == "survey opened"]
    for entry in (access, inside):
        # traces are off here: the caller's trace id, and a span id of the request's own
        assert entry["trace_id"] == trace_id
        assert len(entry["span_id"]) == 16 and entry["span_id"] != caller
        assert entry["correlation_id"] == "req-42"
    assert access["span_id"] == inside["span_id"]


async def test_probes_are_not_access_logged(client: httpx.AsyncClient, lines: io.StringIO) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert not [e for e in _parsed(lines) if e["logger"] == "regulars.access"]


def _envelope() -> Envelope:
    return Envelope.wrap(
        CustomerUpserted(customer_id="c-1", name="Lee"),
        source="intake",
        shop_id=str(uuid.uuid4()),
    )


def test_a_line_written_while_an_event_is_applied_names_it(lines: io.StringIO) -> None:
    envelope = _envelope()
    token = tracing.handling.set(envelope)
    try:
        log.info("applying")
    finally:
        tracing.handling.reset(token)
    log.info("after")
    during, after = _parsed(lines)
    assert during["shop_id"] == envelope.shop_id
    assert during["event_id"] == str(envelope.id)
    assert during["correlation_id"] == envelope.correlation_id
    ids = tracing.parse(envelope.traceparent)
    assert ids is not None
    assert (during["trace_id"], during["span_id"]) == ids[:2]
    assert "event_id" not in after and "trace_id" not in after


def test_an_event_a_request_creates_carries_the_requests_context() -> None:
    uow = UnitOfWork(source="notes")
    trace_id = secrets.token_hex(16)
    context = Work(correlation_id="c", traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
    token = work.set(context)
    try:
        made = uow.emit(CustomerUpserted(customer_id="c-1", name="Lee"), shop_id=uuid.uuid4())
    finally:
        work.reset(token)
    assert made.traceparent == context.traceparent
    # caused by another event: the cause's trace goes on
    cause = _envelope()
    uow.cause = cause
    follow = uow.emit(CustomerUpserted(customer_id="c-2", name="Kim"), shop_id=uuid.uuid4())
    assert follow.traceparent.split("-")[1] == cause.traceparent.split("-")[1]


async def test_each_event_applied_together_names_itself_in_its_lines(lines: io.StringIO) -> None:
    from regulars_runtime.bus import MessageBus, Received

    class Memory(UnitOfWork):
        def __init__(self, _conn: Any, cause: Envelope | None) -> None:
            super().__init__(source="notes", cause=cause)

            class Shops:
                async def apply(self, envelope: Envelope) -> None:
                    return None

            self.shops = Shops()  # type: ignore[assignment]

        async def _write_outbox(self, envelopes: list[Envelope]) -> None:
            return None

    async def on_customer(message: Received[Any], uow: Memory, deps: None) -> None:
        log.info("customer seen")

    bus: MessageBus[Memory, None] = MessageBus(
        unit_of_work=Memory, deps=None, events={CustomerUpserted.type: on_customer}
    )
    first, second = _envelope(), _envelope()
    await bus.handle_events([first, second], conn=None)  # type: ignore[arg-type]
    seen = [e for e in _parsed(lines) if e["message"] == "customer seen"]
    assert [e["event_id"] for e in seen] == [str(first.id), str(second.id)]
    assert [e["shop_id"] for e in seen] == [first.shop_id, second.shop_id]
    assert seen[0]["trace_id"] == first.traceparent.split("-")[1]
