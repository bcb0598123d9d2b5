"""``POST /v1/events`` as a bare ASGI endpoint in front of the FastAPI app.

It is the one endpoint shop systems call for every event, so it skips what the rest of
the API goes through per request (routing over every route, the Request object, the
exception middleware): on this path that was about a third of intake's CPU per event
(bench/: ``make bench`` profiles it). Everything else about it is the API's: the same
API keys, rate limit, size limits, parsing and answers, and its OpenAPI entry is kept
beside the other routes (``OPENAPI``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from regulars_runtime import metrics
from regulars_runtime.http import PROBLEM_JSON, Problem, check_text, problem_body
from regulars_runtime.service import ServiceContext, authorized_shop, client_address

from ..domain.postings import MAX_REQUEST_BYTES, Rejected, parse_posting
from .front import front_of
from .guards import check_rate, parse_json, read_body

log = logging.getLogger(__name__)

PATH = "/v1/events"

ASGIApp = Any
Scope = dict[str, Any]


def openapi_operation(event_schema: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """This endpoint's entry in intake's OpenAPI document (FastAPI does not see it);
    ``answer``: the schema of its 202 (the batch's result for one event)."""

    def reply(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": answer}}}

    return {
        "tags": ["events"],
        "summary": "Post one event from the shop's system",
        "description": "202 once the event is committed; the same id again answers the"
        " same result, the same id with another body is 409. An event whose customer,"
        " repair order or invoice has not arrived yet is accepted too, held, and published"
        " when that arrives (GET /v1/waiting lists what still waits after 7 days).",
        "operationId": "post_event",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": event_schema}},
        },
        "responses": {
            "202": reply("accepted, or a duplicate of an accepted event"),
            "400": reply("the body is not a JSON object"),
            "401": reply("missing or invalid API key"),
            "403": reply("a staff token: events come from the shop's system, with its API key"),
            "409": reply("the id was already used for another body"),
            "413": reply("the request is over 1 MB or the event over 64 KB"),
            "422": reply("a field is missing or wrong; each one is named"),
            "429": reply("over the shop's rate limit; see Retry-After"),
        },
    }


class PostEvent:
    """ASGI middleware: answers ``POST /v1/events`` itself, passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        ctx: ServiceContext[Any] = scope["app"].state.ctx
        try:
            if scope["method"] != "POST":
                raise Problem(405, "this path takes POST only", {"Allow": "POST"})
            if scope.get("query_string"):
                check_text(scope, b"")  # the body's own text is checked as it is parsed
            status, body, headers = await _post(ctx, scope, receive)
            media = b"application/json"
        except Problem as problem:
            status = problem.status
            body = problem_body(problem)
            headers = [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
            media = PROBLEM_JSON.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", media),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        metrics.HTTP_REQUESTS.labels("intake", PATH, str(status)).inc()
        metrics.HTTP_LATENCY.labels("intake", PATH).observe(time.perf_counter() - started)


async def _post(
    ctx: ServiceContext[Any], scope: Scope, receive: Any
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    authorization = declared = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            declared = value.decode("latin-1")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        # as every other endpoint does, before anything else: nothing of it is read
        raise Problem(413, f"request body is {declared} bytes; the limit is {MAX_REQUEST_BYTES}")
    shop = await authorized_shop(ctx, authorization, f"POST {PATH}", client_address(scope))
    await check_rate(ctx, front_of(ctx).events, shop, 1)
    raw = await read_body(receive, declared)
    try:
        posting = parse_posting(parse_json(raw), size=len(raw), body=raw)
    except Rejected as rejected:
        raise _problem(rejected) from None
    outcome = await front_of(ctx).acceptance.accept(shop, posting)
    if outcome.rejection is not None:
        raise _problem(outcome.rejection, outcome.client_id)
    return 202, orjson.dumps(outcome.as_dict()), []


def _problem(rejected: Rejected, client_id: str | None = None) -> Problem:
    extra: dict[str, Any] = {} if client_id is None else {"id": client_id}
    return Problem(
        rejected.status,
        rejected.message,
        errors=[e.as_dict() for e in rejected.errors],
        **extra,
    )
