"""One trace from a shop's post to followup's effect, exported over OTLP/HTTP.

The collector is a stand-in that does what one does at its HTTP boundary: it takes
``POST /v1/traces`` with an ``application/x-protobuf`` ExportTraceServiceRequest
(gzip or not), decodes it with the OTLP protobuf definitions, keeps the spans, and
answers with an ExportTraceServiceResponse; anything else is refused as a collector
would refuse it.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from harness import System, auth, free_port, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any] = field(hash=False)


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return None

            def do_POST(self) -> None:
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(415)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception:
                    self.send_error(400)
                    return
                receiver.keep(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keep(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=ProtoSpan.SpanKind.Name(span.kind),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.requests += 1
            self.spans.extend(found)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.stop()


def traced_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
async def traced(system: System, receiver: OtlpReceiver) -> AsyncIterator[System]:
    system.restart(("intake", "followup"), **traced_env(receiver))
    try:
        yield system
    finally:
        system.restart(("intake", "followup"))


def person(cid: str) -> dict[str, Any]:
    return {
        "type": "customer.upserted",
        "id": f"p-{cid}",
        "occurred_at": "2026-11-20T09:00:00Z",
        "data": {"customer_id": cid, "name": "Lee Park", "email": "lee@example.com"},
    }


def visit(ro: str, cid: str) -> dict[str, Any]:
    return {
        "type": "service.completed",
        "id": f"done-{ro}",
        "occurred_at": "2026-11-20T15:00:00Z",
        "data": {
            "repair_order_id": ro,
            "customer_id": cid,
            "completed_at": "2026-11-20T15:00:00Z",
            "advisor": "maria",
            "work_performed": "oil change",
        },
    }


async def _followup_knows(system: System, key: str) -> bool:
    async with httpx.AsyncClient(base_url=system.services["followup"].url) as http:
        return (await http.get("/v1/followups", headers=auth(key))).status_code == 200


async def _post(system: System, key: str, traceparent: str) -> httpx.Response:
    """A visit of a customer the shop's directory has (else it would wait for them)."""
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as http:
        r = await http.post("/v1/events", json=person(cid), headers=auth(key))
        assert r.status_code == 202, r.text
        return await http.post(
            "/v1/events",
            json=visit(f"ro-{uuid.uuid4().hex[:8]}", cid),
            headers={**auth(key), "traceparent": traceparent},
        )


async def test_a_posted_visit_is_one_trace_from_intake_to_followup(
    traced: System, receiver: OtlpReceiver
) -> None:
    shop_id, key = await traced.create_shop("Traced Tires")
    await wait_for(lambda: _followup_knows(traced, key), timeout=60)
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    r = await _post(traced, key, f"00-{trace_id}-{caller}-01")
    assert r.status_code == 202, r.text
    event_id = r.json()["event_id"]

    async def followup_done() -> list[ReceivedSpan]:
        spans = receiver.trace(trace_id)
        done = [
            s for s in spans if s.service == "regulars-followup" and s.name.startswith("process ")
        ]
        children = [s for s in spans if done and s.parent_id == done[0].span_id]
        return spans if done and children else []

    try:
        spans = await wait_for(followup_done, timeout=60)
    except AssertionError:
        seen = [(s.service, s.name, s.trace_id, s.parent_id) for s in receiver.spans]
        raise AssertionError(f"no trace {trace_id} from intake to followup; got {seen}") from None
    await asyncio.sleep(0.5)  # what the batch processors still hold
    spans = receiver.trace(trace_id)
    by_id = {s.span_id: s for s in spans}

    # intake: the request, continuing the caller's context
    (request,) = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    assert request.service == "regulars-intake"
    assert request.name == "POST /v1/events"
    assert request.parent_id == caller
    # the relay's publishing of the event, a child of the request it was created in
    (publish,) = [
        s for s in spans if s.name == "publish regulars.service" and s.service == "regulars-intake"
    ]
    assert publish.kind == "SPAN_KIND_PRODUCER"
    assert publish.parent_id == request.span_id
    assert publish.attributes["cloudevents.event_id"] == event_id
    # followup: the consumer's span, whose parent is the record's traceparent
    (process,) = [
        s
        for s in spans
        if s.name == "process regulars.service.completed.v1" and s.service == "regulars-followup"
    ]
    assert process.kind == "SPAN_KIND_CONSUMER"
    assert process.parent_id == request.span_id
    assert process.attributes["regulars.shop_id"] == shop_id
    assert process.attributes["regulars.result"] == "applied"
    assert process.attributes["messaging.message.id"] == event_id
    # its effect: the statements of its transaction, children of the process span
    effect = [s for s in spans if s.parent_id == process.span_id]
    assert effect and all(s.service == "regulars-followup" for s in effect)
    assert any(s.kind == "SPAN_KIND_CLIENT" and "postgresql" in str(s.attributes) for s in effect)
    # every span but the first hangs off another span of this trace: one chain (a consumer
    # span of another event type may hang off a service this test does not trace, such as
    # loyalty's stage change the visit caused)
    for span in spans:
        if span is request:
            continue
        if span.kind == "SPAN_KIND_CONSUMER" and span.name != process.name:
            continue
        assert span.parent_id in by_id, (span.name, span.service)


async def test_a_token_in_a_path_stays_out_of_the_spans(
    traced: System, receiver: OtlpReceiver
) -> None:
    trace_id = secrets.token_hex(16)
    token = "tok" + secrets.token_hex(12)
    async with httpx.AsyncClient(base_url=traced.services["followup"].url) as http:
        r = await http.get(
            f"/u/{token}",
            params={"token": token},
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
    assert r.status_code < 500

    async def exported() -> list[ReceivedSpan]:
        return receiver.trace(trace_id)

    spans = await wait_for(exported, timeout=30)
    (server,) = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    assert server.name == "GET /u/{token}"
    for span in spans:
        assert token not in str(span.attributes), span


async def test_nothing_is_exported_when_the_sdk_is_disabled(
    traced: System, receiver: OtlpReceiver
) -> None:
    running = traced
    # the endpoint is there, OTEL_SDK_DISABLED says no: no provider, no request to it
    running.restart(
        ("intake",),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SDK_DISABLED="true",
    )
    try:
        shop_id, key = await running.create_shop("Untraced Tires")
        trace_id = secrets.token_hex(16)
        r = await _post(running, key, f"00-{trace_id}-{secrets.token_hex(8)}-01")
        assert r.status_code == 202, r.text
        await asyncio.sleep(2)
        # (followup, still traced, goes on with the context intake's event carries)
        from_intake = [s for s in receiver.spans if s.service == "regulars-intake"]
        assert not [s for s in from_intake if s.trace_id == trace_id]
        assert not [s for s in from_intake if s.attributes.get("regulars.shop_id") == shop_id]
        # still, the request's log lines name the caller's trace
        log = running.services["intake"].log_path.read_text()
        assert trace_id in log
    finally:
        running.restart(("intake",), **traced_env(receiver))
